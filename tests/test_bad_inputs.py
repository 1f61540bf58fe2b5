"""Bad input anywhere is one line on stderr, exit code 2, no traceback: a corpus across every
subcommand (run, multirun, Hydra's flags, prepare, export, sweep, scaling, lm-eval) and every
phase (compose, validate, environment, data, load, export), beside tests/test_bad_configs.py
(the validate pass). Most run in-process (fast); a representative set runs as a user types it.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from llmexp.cli import SUBCOMMANDS, main
from llmexp.accelerators import gpu_present
from tests.test_bad_configs import BAD

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """Files a user might point llmexp at by mistake."""
    d = tmp_path_factory.mktemp("bad")
    (d / "text.txt").write_text("not a checkpoint\n")
    (d / "empty.txt").write_text("")
    import pickle

    (d / "pickle.ckpt").write_bytes(pickle.dumps({"state_dict": {}}))  # torch.load's legacy format
    with zipfile.ZipFile(d / "whole.ckpt", "w") as z:  # a zip archive as torch.save writes, then cut short
        z.writestr("archive/data.pkl", b"x" * 4096)
    (d / "truncated.ckpt").write_bytes((d / "whole.ckpt").read_bytes()[:1500])
    (d / "bad.jsonl").write_text('{"text": "a"}\nnot json\n')
    (d / "nofield.jsonl").write_text('{"body": "hello world"}\n')
    for name, tok in {"wordpiece": {"model": {"type": "WordPiece", "vocab": {}}},
                      "normalized": {"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "NFC"}}}.items():
        (d / name).mkdir()
        (d / name / "tokenizer.json").write_text(json.dumps(tok))
    (d / "sweep_bad_method.yaml").write_text("method: annealing\nmetric: {name: val/loss, goal: minimize}\nparameters: {}\n")
    (d / "sweep_list.yaml").write_text("- 1\n- 2\n")
    (d / "study").mkdir()
    (d / "run").mkdir()  # what an llmexp run folder holds first (llmexp/rundir.py)
    (d / "run" / "config.yaml").write_text("stage: {name: pretrain}\n")
    (d / "run" / "plan.json").write_text("{}")
    return d


RUN = ["trainer=debug", "trainer.max_steps=1"]
# (argv with {bad} for the fixture folder and {tmp} for a fresh folder, a phrase of the one line)
CASES = [
    # Hydra's flags and the command line itself
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["--info", "nope"], "invalid choice"),
    (["-m", "--cfg", "job", "model=7b,13b"], "only one of --run, --multirun, --cfg"),
    (["--cfg", "job", "model=nope"], "model='nope'"),
    (["--cfg", "all", "trainer.max_steps=abc"], "expected int"),
    (["--info", "config", "optimizer=lamb"], "optimizer='lamb'"),
    (["--config-dir", "/no/such/dir", "dry_run=true"], "--config-dir='/no/such/dir': no such folder"),
    (["--config-path", "/no/such"], "--config-path='/no/such': no such folder"),
    (["--config-name", "nope"], "--config-name='nope'"),
    (["-m", "model=7b,nope", "dry_run=true"], "model='nope'"),
    (["-m", "model=[7b", "dry_run=true"], "not valid Hydra override syntax"),
    (["-m", "optimizer.lr=1e-3,abc", "dry_run=true"], "optimizer.lr='abc'"),
    (["-m", "hydra/launcher=nope", "model=tiny,125m", "dry_run=true"], "hydra/launcher='nope': unknown option"),
    (["-m", "hydra/sweeper=nope", "model=tiny", "dry_run=true"], "hydra/sweeper='nope': unknown option"),
    (["hydra.run.dir=/tmp/x", "run_dir=/tmp/y", "dry_run=true"], "run_dir is given too"),
    (["model=125m", "trainer.max_steps=x", "--cfg", "job"], "expected int"),
    # keys that would have no effect
    (["optimizer.name=lamb"], "allowed: adamw, sgd, adafactor"),
    (["optimizer=sgd", "optimizer.betas=[0.8,0.9]"], "only adamw reads it"),
    (["optimizer.momentum=0.5"], "only sgd reads it"),
    (["optimizer=sgd", "optimizer.momentum=1.5"], "[0, 1)"),
    (["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=true"], "needs optimizer.momentum > 0"),
    (["optimizer=adafactor", "optimizer.fused=true"], "only adamw, sgd reads it"),
    (["optimizer=adafactor", "optimizer.eps=1e-6"], "only adamw reads it"),
    (["parallelism=ddp", "trainer.devices=2", "trainer.global_batch_size=32", "parallelism.reshard_after_forward=false"],
     "no effect under strategy ddp"),
    (["parallelism=ddp", "trainer.devices=2", "trainer.global_batch_size=32", "parallelism.meta_init=true"],
     "no effect under strategy ddp"),
    (["parallelism=ddp", "trainer.devices=2", "trainer.global_batch_size=32", "parallelism.cpu_offload=true"],
     "offload is an fsdp or deepspeed option"),
    (["parallelism.distributed_checkpoint=false"], "no effect under strategy single"),
    (["parallelism.deepspeed_stage=2"], "no effect under strategy single"),
    # the environment, checked before anything heavy is imported
    (["run_dir=/proc/llmexp-run"], "run_dir='/proc/llmexp-run': cannot be created"),
    (["out_dir=/etc/passwd"], "out_dir='/etc/passwd': exists and is not a folder"),
    (["run_dir={bad}/text.txt"], "exists and is not a folder"),
    (["init_from={bad}/text.txt"], "is not a torch checkpoint"),
    (["init_from={bad}/pickle.ckpt"], "is not a torch checkpoint"),
    (["init_from={bad}/truncated.ckpt"], "is not a torch checkpoint"),
    (["resume={bad}/truncated.ckpt"], "is not a torch checkpoint"),
    (["resume={bad}/text.txt"], "is not a torch checkpoint"),
    (["init_from={bad}/empty.txt"], "is not a torch checkpoint"),
    (["tokenizer.kind=hf", "tokenizer.name={bad}"], "has no tokenizer.json"),
    (["tokenizer.kind=hf", "tokenizer.name={bad}/wordpiece"], "a WordPiece tokenizer"),
    (["tokenizer.kind=hf", "tokenizer.name={bad}/normalized"], "has a normalizer"),
    (["stage=eval"], "stage=eval starts from a trained model"),
    (["eval.intrinsic_text=/no/such.txt"], "eval.intrinsic_text='/no/such.txt'"),
    (["eval=smoke", "eval.every_n_steps=0"], "eval.every_n_steps=0"),
    ([*RUN, "run_dir={tmp}", "eval.tasks=[no_such_task]", "eval.every_n_steps=1"], "eval.tasks=['no_such_task']: unknown to lm-eval: no_such_task"),
    (["eval=smoke"], "eval='smoke': stage=pretrain scores these only every eval.every_n_steps=N steps"),
    (["eval.tasks=[llmexp_smoke_mc]"], "eval.tasks=['llmexp_smoke_mc']: stage=pretrain scores these only"),
    # data time: the run starts, reads the data, and stops at the first bad record
    ([*RUN, "run_dir={tmp}", "data=jsonl", "data.sources.0.path={bad}/bad.jsonl"], "bad.jsonl:2: invalid JSON"),
    ([*RUN, "run_dir={tmp}", "data=jsonl", "data.sources.0.path={bad}/nofield.jsonl"], "no field 'text'"),
    ([*RUN, "run_dir={tmp}", "data=text", "data.sources.0.path={bad}/empty.txt"], "cleaning removed every one"),
    ([*RUN, "run_dir={tmp}", "data=parquet", "data.sources.0.path={bad}/text.txt"], "not a readable Parquet file"),
    # load time: tiktoken's named encodings download (offline here)
    ([*RUN, "run_dir={tmp}", "tokenizer=gpt2"], "tiktoken could not download"),
    ([*RUN, "run_dir={tmp}", "tokenizer=o200k_base"], "tiktoken could not download"),
    # llmexp prepare
    (["prepare", "--bogus"], "unrecognized arguments: --bogus"),
    (["prepare", "model=nope"], "model='nope'"),
    (["prepare", "data=jsonl", "data.sources.0.path=/no/file.jsonl"], "no such file"),
    (["prepare", "data=jsonl", "data.sources.0.path={bad}/bad.jsonl"], "invalid JSON"),
    (["prepare", "--config-dir", "/no/such", "data=embedded"], "--config-dir='/no/such'"),
    # llmexp export
    (["export"], "the following arguments are required"),
    (["export", "/no/such/run", "{tmp}"], "not a .ckpt"),
    (["export", "{bad}/text.txt", "{tmp}"], "is not a torch checkpoint"),
    (["export", "{bad}/truncated.ckpt", "{tmp}"], "is not a torch checkpoint"),
    (["export", "{bad}/pickle.ckpt", "{tmp}"], "is not a torch checkpoint"),
    (["export", "{bad}", "{tmp}"], "not a .ckpt"),
    (["export", "{bad}/text.txt", "{tmp}", "--dtype", "int3"], "invalid choice"),
    (["export", "{bad}/whole.ckpt", "{bad}/run"], "/run is an llmexp run folder: export to a folder of its own (e.g. run-hf)"),
    # llmexp sweep
    (["sweep"], "the following arguments are required: sweep"),
    (["sweep", "/no/such.yaml"], "cannot read the sweep file"),
    (["sweep", "{bad}/text.txt"], "a sweep file is a YAML mapping"),
    (["sweep", "{bad}/sweep_list.yaml"], "a sweep file is a YAML mapping"),
    (["sweep", "{bad}/sweep_bad_method.yaml", "--check"], "method"),
    (["sweep", "sweeps/lr_bayes.yaml", "--count", "abc"], "not a whole number: 'abc'"),
    (["sweep", "sweeps/lr_bayes.yaml", "--count", "0"], "argument --count: must be >= 1: '0'"),
    (["sweep", "sweeps/lr_bayes.yaml", "--poll", "-1"], "argument --poll: must be a finite number > 0"),
    (["sweep", "sweeps/lr_bayes.yaml", "--c", "3"], "unrecognized arguments"),
    # llmexp scaling
    (["scaling"], "the following arguments are required: command"),
    (["scaling", "bogus"], "invalid choice: 'bogus'"),
    (["scaling", "plan"], "one of the arguments"),
    (["scaling", "plan", "--compute", "abc"], "abc"),
    (["scaling", "plan", "--compute", "-1"], "-1"),
    (["scaling", "fit", "/no/such"], "not a study folder"),
    (["scaling", "run", "/no/such"], "not a study folder"),
    (["scaling", "report", "{bad}/study"], "not a study folder"),
    (["scaling", "shape", "--params", "abc"], "abc"),
    (["scaling", "plan", "--compute", "1e20", "--law", "{bad}/text.txt"], "is not a fit.json"),
    # llmexp lm-eval
    (["lm-eval", "--bogus"], "unrecognized arguments: --bogus"),
    (["lm-eval", "--model", "llmexp", "--model_args", "checkpoint=/no/such", "--tasks", "llmexp_smoke_mc"], "not a .ckpt"),
    (["lm-eval", "--model", "llmexp", "--model_args", "checkpoint={bad}/truncated.ckpt", "--tasks", "llmexp_smoke_mc"],
     "is not a torch checkpoint"),
    # llmexp generate / chat: checked before any weights load
    (["generate", "--bogus", "x"], "unrecognized arguments: --bogus"),
    (["generate", "/no/such/run", "--prompt", "x"], "not a .ckpt, an llmexp run folder or a transformers folder"),
    (["generate", "{bad}/truncated.ckpt", "--prompt", "x"], "is not a torch checkpoint"),
    (["generate", "{bad}/truncated.ckpt"], "no prompts"),
    (["generate", "{bad}/truncated.ckpt", "--prompt", ""], "an empty prompt has no token to continue from"),
    (["generate", "{bad}/truncated.ckpt", "--prompts-file", "{bad}/bad.jsonl"], "bad.jsonl:1: needs a string field 'prompt'"),
    (["generate", "{bad}/truncated.ckpt", "--prompt", "x", "--top-p", "2"], "--top-p=2.0: must be in (0, 1]"),
    (["generate", "{bad}/truncated.ckpt", "--prompt", "x", "--device", "tpu"], "--device=tpu"),
    (["chat"], "the following arguments are required: source"),
    (["chat", "/no/such/run"], "not a .ckpt"),
    (["chat", "{bad}/truncated.ckpt", "--max-new-tokens", "0"], "--max-new-tokens=0: must be >= 1"),
]
if not gpu_present():  # on a GPU machine the GPU is there
    CASES.append((["trainer.accelerator=gpu"], "no GPU is visible"))


def _fill(argv: list[str], bad: Path, tmp: Path) -> list[str]:
    return [a.replace("{bad}", str(bad)).replace("{tmp}", str(tmp / "out")) for a in argv]


def _one_line(argv: list[str], capsys) -> str:
    """Run the CLI in-process: exit code 2 and exactly one line on stderr, or the test fails
    (an uncaught exception fails it with its traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, (exit_info.value.code, err[-2000:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    return err.strip()


def test_the_corpus_covers_every_subcommand_and_80_inputs():
    assert len(CASES) + len(BAD) >= 80
    assert {c[0][0] for c in CASES} >= set(SUBCOMMANDS)


@pytest.mark.parametrize("argv,phrase", CASES, ids=[" ".join(c[0])[:70] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, phrase, bad, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # the Hydra app reads sys.argv
    line = _one_line(_fill(argv, bad, tmp_path), capsys)
    assert phrase in line, line


# As a user types them: the real exit code, stderr as the terminal shows it.
TYPED = [
    ["model=8b"],
    ["-c", "job", "model=nope"],
    ["-m", "model=7b,nope", "dry_run=true"],
    ["run_dir=/proc/llmexp-run"],
    ["init_from={bad}/truncated.ckpt"],
    ["export", "{bad}/pickle.ckpt", "{tmp}"],
    ["scaling", "plan", "--compute", "abc"],
    ["sweep", "{bad}/text.txt"],
    ["prepare", "model=nope"],
]


@pytest.mark.parametrize("argv", TYPED, ids=[" ".join(a) for a in TYPED])
def test_typed_bad_input_is_one_line_exit_2(argv, bad, tmp_path):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "llmexp", *_fill(argv, bad, tmp_path)], capture_output=True,
                            text=True, timeout=120, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    if argv[0] not in SUBCOMMANDS or argv[0] in ("scaling", "sweep", "prepare"):
        assert elapsed < 10, elapsed  # knowable before any data is read: no torch, no Lightning (goal < 2 s)


# Garbage for every entry point: whatever it is, the answer is help (0) or one line (2), never a crash.
GARBAGE = [["--bogus"], ["x=1=2"], ["=="], ["/etc/passwd"], ["--help=3"], ["-"], ["\x00"]]
ENTRIES = [[], *([name] for name in SUBCOMMANDS), ["scaling", "plan"], ["scaling", "fit"],
           ["--cfg", "job"], ["--info", "all"], ["-m"]]


@pytest.mark.parametrize("entry", ENTRIES, ids=[" ".join(e) or "run" for e in ENTRIES])
def test_no_entry_point_crashes_on_garbage(entry, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    for garbage in GARBAGE:
        argv = [*entry, *garbage]
        try:
            main(argv)
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        err = capsys.readouterr().err
        assert code in (0, 2, None), (argv, code, err[-1500:])
        assert "Traceback" not in err, (argv, err[-1500:])
        if code == 2:
            assert len(err.strip().splitlines()) == 1, (argv, err[-1500:])


# Tools with their own module entry (python -m llmexp.<tool>), not under `llmexp <subcommand>`.
MODULE_CASES = [
    ("llmexp.eval.generation", [], "the following arguments are required: --data"),
    ("llmexp.eval.generation", ["--data", "/no/such", "--runs", "x", "--out", "{tmp}.md"], "no JSONL files found"),
    ("llmexp.eval.generation", ["--data", "{bad}/text.txt", "--runs", "x", "--out", "{tmp}.md"], "text.txt:1: invalid JSON"),
    ("llmexp.parallel.checkpoint", ["/no/such"], "is not a distributed checkpoint folder"),
    ("llmexp.parallel.checkpoint", ["--bogus", "x"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("module,argv,phrase", MODULE_CASES, ids=[" ".join([m, *a])[:70] for m, a, _ in MODULE_CASES])
def test_module_tools_answer_bad_input_in_one_line(module, argv, phrase, bad, tmp_path, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(_fill(argv, bad, tmp_path))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and phrase in err, err[-2000:]


def test_scaling_plan_json_into_head_ends_quietly():
    """`llmexp scaling plan ... --json | head -1`: the reader leaves, the writer exits without a BrokenPipe traceback."""
    result = subprocess.run(f"{sys.executable} -m llmexp scaling plan --compute 1e21 --json | head -1", shell=True,
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.stdout.strip() == "{" and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_time_to_first_error_line(bad, tmp_path):
    """The slowest error class knowable before data is read (a multirun whose second job is bad:
    every job is composed and validated first) still answers within 2 s of starting (median of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "llmexp", "-m", "model=7b,13b,nope", "dry_run=true"],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path)
        first = proc.stderr.readline()
        times.append(time.perf_counter() - started)
        proc.wait(timeout=60)
        assert first.startswith("llmexp: error: model='nope'") and proc.returncode == 2
    print(f"time to first error line: {sorted(times)[1]:.2f} s")
    assert sorted(times)[1] < 4.0  # goal 2 s on a quiet machine; the CI's cores are shared


def test_console_is_quiet_and_names_the_device(tmp_path):
    """A short run's console: the plan, the data report, one training bar, validation lines and the
    summary; none of Lightning's notices or third-party warnings; the CPU run's estimate says CPU."""
    result = subprocess.run([sys.executable, "-m", "llmexp", "trainer=debug", "trainer.max_steps=2", f"run_dir={tmp_path / 'run'}"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "weights_only", "Automatic Mixed Precision",
                  "Validation DataLoader", "warnings.warn("):
        assert noise not in console, noise
    time_line = result.stdout.split("time estimate")[1].split("\n")[0]
    assert "x cpu at" in time_line and "h100" not in time_line
    assert "validation loss" in result.stdout and "run folder" in result.stdout
