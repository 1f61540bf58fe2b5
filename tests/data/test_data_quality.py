"""Web-data cleaning on datatrove: a planted corpus where each filter removes exactly its plants
and nothing of the clean control set; bad records skipped and counted; the SLURM job it would
submit; resumption; small-data edge cases; the `prepare` -> training journey."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmexp.config.schema import CleanConfig, SourceConfig
from llmexp.data.engine import MixCleaning, Submitted
from llmexp.data.prepare import prepare_data, source_keys
from llmexp.data.shards import iter_part_texts
from llmexp.data.sources import DataError
from tests.conftest import FAST_TRAINING, REPO, run_cli
from tests.data.conftest import config, corpus, write_jsonl
from tests.data.planted import FOOTER, NAV, build

WEB_FILTERS = dict(extract_main_text=True, mask_emails=True, mask_ips=True, mask_phones=True, languages=["en"],
                   toxicity="profanity_check", gopher_quality={}, c4_quality={}, fineweb_quality={}, review_samples=50)


def planted_mix(tmp_path: Path, **data):
    labels = build(tmp_path / "corpus")
    web = SourceConfig(kind="jsonl", name="web", path=str(tmp_path / "corpus" / "web.jsonl"), text_field="html",
                       clean=CleanConfig(url_blocklist=str(tmp_path / "corpus" / "blocklist.txt"), **WEB_FILTERS))
    forum = SourceConfig(kind="jsonl", name="forum", path=str(tmp_path / "corpus" / "forum.jsonl"))
    return labels, config(tmp_path, [web, forum], **{"on_bad_record": "skip", "minhash_dedup": True, **data})


def kept_texts(source) -> list[str]:
    return [t for split in ("train", "val") for part in source.clean[split]["parts"]
            for texts in iter_part_texts(source.folder / "clean" / part) for t in texts]


def test_each_filter_removes_its_plants_and_no_control_document(tmp_path, quiet):
    labels, cfg = planted_mix(tmp_path)
    data = prepare_data(cfg, log=quiet)
    web, forum = data.sources
    ids = {i + 1: json.loads(line)["id"] for i, line in enumerate((tmp_path / "corpus" / "web.jsonl").read_text().splitlines())
           if line.startswith('{"html"')}
    removed = {}
    for source in (web, forum):
        for step in source.clean["steps"]:
            for r in step["removed"]:
                path, line = r["id"].rsplit(":", 1)
                removed.setdefault(step["step"], []).append(ids[int(line)] if source is web else f"forum:{line}")
    planted = {k: v for k, v in labels.items() if k not in ("control", "pii", "bad_lines")}
    assert removed == planted  # every plant removed by its own filter, nothing else removed
    steps = {s["step"]: s for s in web.clean["steps"]}
    assert steps["read"]["bad_records"] == 2 and steps["read"]["bad_examples"][0].endswith("web.jsonl:6: invalid JSON (Invalid control character at)")
    assert steps["extract_main_text"]["bytes_out"] < 0.85 * steps["extract_main_text"]["bytes_in"]
    texts = kept_texts(web)
    assert len(texts) == len(labels["control"]) and len(kept_texts(forum)) == 6  # zero false removals
    assert not any(NAV in t or FOOTER in t or "Related:" in t for t in texts)  # boilerplate gone
    joined = "\n".join(texts)
    assert all(v not in joined for v in labels["pii"].values())
    assert all(mask in joined for mask in ("<EMAIL>", "<IP> or <IP>", "<PHONE>"))
    assert not list((tmp_path / "cache" / "data").glob("work-*"))  # the work folder goes once the parts exist


def test_a_bad_record_stops_prepare_naming_its_line_unless_skipped(tmp_path, quiet):
    labels, cfg = planted_mix(tmp_path, on_bad_record="error")
    with pytest.raises(DataError, match=r"web\.jsonl:6: invalid JSON .*data\.on_bad_record=skip"):
        prepare_data(cfg, log=quiet)


def test_cleaning_resumes_with_the_tasks_that_did_not_finish(tmp_path, quiet):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", corpus(1, 40))
    (folder / "b.jsonl").write_text("not json\n")
    cfg = config(tmp_path, [SourceConfig(kind="jsonl", name="two", path=str(folder))], tasks=2, on_bad_record="error")
    with pytest.raises(DataError, match=r"b\.jsonl:1: invalid JSON"):
        prepare_data(cfg, log=quiet)  # task 0 (a.jsonl) finished, task 1 failed: as if killed there
    work = next((tmp_path / "cache" / "data").glob("work-*"))
    done = work / "filtered" / "000-two" / "00000.jsonl.gz"
    stamp = done.stat().st_mtime_ns
    write_jsonl(folder / "b.jsonl", corpus(2, 40))
    data = prepare_data(cfg, log=quiet)
    assert stamp == done.stat().st_mtime_ns  # task 0 was not run again
    assert data.n_train_docs + data.n_val_docs == 80


def test_slurm_executor_builds_the_jobs_it_would_submit(tmp_path, monkeypatch):
    import datatrove.executor.slurm as slurm

    scripts = []

    def fake_sbatch(script, job_id_retriever, *args):
        scripts.append((script, args))
        return str(100 + len(scripts))

    monkeypatch.setattr(slurm, "launch_slurm_job", fake_sbatch)
    _, cfg = planted_mix(tmp_path, executor="slurm", slurm_partition="cpu", tasks=4, workers=2,
                         slurm_sbatch_args={"account": "proj"})
    data = cfg.data
    cleaning = MixCleaning(data.sources, data, tmp_path / "work")
    with pytest.raises(Submitted, match=r"submitted to SLURM as jobs \['101', '103', '105', '107', '109', '111'\]"):
        cleaning.run(print)
    jobs = [(s, a) for s, a in scripts if "launch_pickled_pipeline" in s]  # the others merge stats
    assert len(jobs) == 6  # clean-web, clean-forum, then the four MinHash stages
    first, args = jobs[0]
    for line in ("#SBATCH --partition=cpu", "#SBATCH --array=0-3%2", "#SBATCH --account=proj", "#SBATCH --job-name=llmexp-clean-web",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --mem-per-cpu=2G"):
        assert line in first
    assert "--dependency=afterok:101" in jobs[1][1]  # forum after web, MinHash after both
    assert "#SBATCH --array=0-13%2" in jobs[3][0]  # one task per LSH bucket
    assert (tmp_path / "work" / "logs" / "clean-web" / "executor.pik").is_file()
    with pytest.raises(Submitted, match="have not finished"):  # a second prepare does not submit twice
        MixCleaning(data.sources, data, tmp_path / "work").run(print)


def test_slurm_executor_builds_the_tokenization_job_it_would_submit(tmp_path, monkeypatch, quiet):
    import datatrove.executor.slurm as slurm

    scripts = []
    monkeypatch.setattr(slurm, "launch_slurm_job", lambda script, *a: scripts.append(script) or str(200 + len(scripts)))
    cfg = config(tmp_path, [SourceConfig(kind="embedded")], ["tokenizer=cl100k_base"], shard_bytes=100_000)
    data = prepare_data(cfg, log=quiet)  # cleaned and tokenized locally; now the shards are lost
    parts = len(data.sources[0].index["splits"]["train"]) + len(data.sources[0].index["splits"]["val"])
    shutil.rmtree(data.sources[0].token_dir)
    for key, value in dict(executor="slurm", slurm_partition="cpu", workers=2).items():
        setattr(cfg.data, key, value)
    with pytest.raises(Submitted, match=r"tokenization submitted to SLURM as jobs \['201'\].*to write the shard indexes"):
        prepare_data(cfg, log=quiet)  # the cleaned parts are cached: only tokenization is submitted
    job = next(s for s in scripts if "launch_pickled_pipeline" in s)
    for line in (f"#SBATCH --array=0-{parts - 1}%2", "#SBATCH --job-name=llmexp-tokenize", "#SBATCH --partition=cpu"):
        assert line in job
    work = next((tmp_path / "cache" / "data").glob("tokenize-*"))
    assert len((work / "parts.txt").read_text().splitlines()) == parts and (work / "tokenizer" / "tokenizer.json").is_file()
    with pytest.raises(Submitted, match="tokenization jobs .* have not finished"):
        prepare_data(cfg, log=quiet)


def test_a_kill_during_tokenization_then_a_rerun_finishes_with_the_same_shards(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", corpus(5, 2000, words=400))
    overrides = ["data=jsonl", f"data.sources.0.path={tmp_path / 'a.jsonl'}", "tokenizer=cl100k_base", "data.shard_bytes=100000"]
    cache = tmp_path / "cache" / "data"
    proc = subprocess.Popen([sys.executable, "-m", "llmexp", "prepare", *overrides, f"data.cache_dir={tmp_path / 'cache'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 300
    while not list(cache.glob("*/tokens/*/train-*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the first shard is done: kill prepare (and any worker) mid-tokenization
    proc.wait()
    token_dir = next(cache.glob("*/tokens/cl100k_base"))
    done = {p.with_suffix(".bin").name: p.with_suffix(".bin").stat().st_mtime_ns for p in token_dir.glob("*-*.json")}
    parts = json.loads(next(cache.glob("*/clean/report.json")).read_text())
    n_parts = len(parts["train"]["parts"]) + len(parts["val"]["parts"])
    assert not (token_dir / "index.json").exists() and 0 < len(done) < n_parts
    marked = len(list(next(cache.glob("tokenize-*")).glob("logs/tokenize/completions/*")))  # datatrove's marks
    assert len(done) - 1 <= marked <= len(done)  # a kill may land between a shard and its task's mark

    import llmexp

    lines = []
    resumed = prepare_data(llmexp.compose([*overrides, f"data.cache_dir={tmp_path / 'cache'}"]), log=lines.append).sources[0]
    assert any(f"tokenizing {n_parts} part(s) on datatrove" in x for x in lines), lines
    assert all((token_dir / name).stat().st_mtime_ns == stamp for name, stamp in done.items())  # finished tasks not rerun
    assert not list(token_dir.glob(".*.tmp")) and not list(cache.glob("tokenize-*"))
    fresh = prepare_data(llmexp.compose([*overrides, f"data.cache_dir={tmp_path / 'fresh'}"]), log=lambda m: None).sources[0]
    assert resumed.index == fresh.index  # same shards, token counts and checksums as an uninterrupted prepare


def test_one_document_source_is_split_by_bytes(tmp_path):
    text = "\n".join(corpus(3, 200))
    (tmp_path / "input.txt").write_text(text)
    lines = []
    cfg = config(tmp_path, [SourceConfig(kind="text", name="tiny", path=str(tmp_path / "input.txt"))])
    data = prepare_data(cfg, log=lines.append)
    assert any("tiny: one document: split by bytes" in line for line in lines)
    assert data.n_train_docs == 1 and data.n_val_docs == 1
    assert 0.03 < data.sources[0].tokens("val") / data.sources[0].tokens("train") < 0.08
    cfg.trainer.seq_len = data.sources[0].tokens("val")  # one token short of one sequence plus its target
    with pytest.raises(DataError, match=r"validation text has [\d,]+ tokens, shorter than one sequence"):
        prepare_data(cfg, log=lines.append)


def test_temporary_files_of_a_killed_prepare_are_removed(tmp_path):
    cfg = config(tmp_path, [SourceConfig(kind="embedded")])
    data = prepare_data(cfg, log=lambda m: None)
    token_dir = data.sources[0].token_dir
    stale = token_dir / ".train-00000.bin.999999999.tmp"  # a pid that cannot be running
    stale.write_bytes(b"\0" * 10)
    (token_dir / "index.json").unlink()
    lines = []
    prepare_data(cfg, log=lines.append)
    assert not stale.exists() and any("removed 1 temporary file(s)" in line for line in lines)


def test_detoxify_is_a_real_path_that_fails_offline_in_one_line(tmp_path):
    labels = build(tmp_path / "corpus")
    result = run_cli("prepare", "data=web", f"data.sources.0.path={tmp_path / 'corpus' / 'web.jsonl'}",
                     "data.sources.0.clean.toxicity=detoxify", "tokenizer.vocab_size=300",
                     f"data.cache_dir={tmp_path / 'cache'}", f"tokenizer.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert "clean.toxicity=detoxify" in result.stderr and "toxicity=profanity_check" in result.stderr
    assert labels


def test_cache_key_of_a_source_covers_the_mix_only_with_minhash(tmp_path):
    a, b = SourceConfig(kind="embedded", name="a"), SourceConfig(kind="embedded", name="b")
    cfg = config(tmp_path, [a, b])
    alone = source_keys([a], cfg.data)[0]
    assert source_keys([a, b], cfg.data)[0] == alone
    cfg.data.minhash_dedup = True
    assert source_keys([a, b], cfg.data)[0] != source_keys([a], cfg.data)[0]


def test_prepare_then_train_on_the_planted_web_corpus(tmp_path):
    build(tmp_path / "corpus")
    cache = [f"data.cache_dir={tmp_path / 'cache'}", f"tokenizer.cache_dir={tmp_path / 'cache'}"]
    web = ["data=web", f"data.sources.0.path={tmp_path / 'corpus' / 'web.jsonl'}",
           f"data.sources.0.clean.url_blocklist={tmp_path / 'corpus' / 'blocklist.txt'}", "data.val_fraction=0.1"]
    prepared = run_cli("prepare", *web, "tokenizer.vocab_size=1024", *cache)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    out = prepared.stdout
    assert "skipped 2 bad record(s), first: " in out and "web.jsonl:6" in out
    for step, removed in (("url_blocklist", 2), ("length", 1), ("language", 3), ("toxicity", 2), ("gopher_quality", 1),
                          ("c4_quality", 2), ("fineweb_quality", 1)):
        line = next(x for x in out.splitlines() if x.strip().startswith(step + " "))
        n_in, n_out = (int(v.replace(",", "")) for v in line.split("docs")[1].split("bytes")[0].split("->"))
        assert n_in - n_out == removed, line
    run_dir = tmp_path / "run"
    trained = run_cli(*FAST_TRAINING, *web, *cache, "data.on_exhausted=repeat", "trainer.max_steps=2", "trainer.val_every=2", "trainer.val_batches=1",
                      f"run_dir={run_dir}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "tokenizing" in prepared.stdout and "on datatrove" in prepared.stdout  # the engine wrote the shards...
    assert "tokenizing" not in trained.stdout  # ...and training read them unchanged
    assert (run_dir / "metrics.csv").is_file()


@pytest.mark.parametrize("override, message", [
    ("data.executor=k8s", "allowed: local, slurm"),
    ("data.on_bad_record=ignore", "allowed: skip, error"),
    ("data.executor=slurm", "executor=slurm needs a partition"),
    ("data.sources.0.clean.toxicity=perspective", "allowed: profanity_check, detoxify"),
    ("+data.sources.0.clean.gopher_quality.min_words=5", "not a GopherQualityFilter option (options: min_doc_words"),
    ("data.sources.0.clean.languages=[english]", "ISO 639-1 codes"),
])
def test_bad_engine_and_filter_settings_are_one_line_config_errors(override, message):
    import llmexp
    from llmexp.config.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        llmexp.compose(["data=web", f"data.sources.0.path={Path(__file__).resolve().parents[2] / 'README.md'}", override])
