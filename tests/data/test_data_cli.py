"""`llmexp prepare` as a user runs it, and a short training run on a two-source mix."""
from __future__ import annotations

import json
import re

from llmexp.callbacks import read_metrics
from tests.conftest import FAST_TRAINING, run_cli
from tests.data.conftest import corpus, write_jsonl


def test_prepare_command_reports_and_is_reused(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", corpus(1, 100) + corpus(1, 5))  # 5 exact duplicates
    args = ["prepare", "data=jsonl", f"data.sources.0.path={path}", "data.sources.0.clean.exact_dedup=true",
            "tokenizer.vocab_size=300", f"data.cache_dir={tmp_path / 'cache'}", f"tokenizer.cache_dir={tmp_path / 'cache'}"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert re.search(r"exact_dedup\s+docs\s+105 ->\s+100\s", first.stdout)
    assert "bytes/token" in first.stdout and "tokenized" in first.stdout
    again = run_cli(*args, "--json")
    summary = json.loads(again.stdout)
    assert "tokenized" not in again.stdout + again.stderr  # found in the cache
    assert summary["sources"][0]["docs"]["train"] + summary["sources"][0]["docs"]["val"] == 100
    bad = run_cli("prepare", "data=jsonl", f"data.sources.0.path={path}", "data.sources.0.text_field=body",
                  f"data.cache_dir={tmp_path / 'cache2'}")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "a.jsonl:1: no field 'body' (fields: text)" in bad.stderr


def test_training_on_a_mix_logs_tokens_per_source(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", corpus(1, 150))
    run_dir = tmp_path / "run"
    result = run_cli(*FAST_TRAINING, "data=mix", f"data.sources.1.path={a}", "data.sources.1.kind=jsonl",
                     "data.sources.1.clean.near_dedup=false", "trainer.max_steps=2", "trainer.log_every=1",
                     "trainer.val_every=2", "trainer.val_batches=1", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mixture over" in result.stdout and "notes: weight 0.700" in result.stdout
    data = json.loads((run_dir / "data.json").read_text())
    assert [s["name"] for s in data["sources"]] == ["pydoc", "notes"] and data["sources"][1]["bytes_per_token"] > 1
    metrics = read_metrics(run_dir / "metrics.csv")
    pydoc, notes, tokens = (dict(metrics[k]) for k in ("data/tokens_pydoc", "data/tokens_notes", "tokens"))
    assert pydoc and all(pydoc[s] + notes[s] == tokens[s] > 0 for s in pydoc)  # every token, split between sources
    assert all(0.4 < notes[s] / tokens[s] < 1.0 for s in notes)
