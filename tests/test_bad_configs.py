"""A corpus of bad configurations: each fails in the validate pass with exit code 2 and one
line naming the key, the value and what is allowed, before torch or Lightning are imported."""
from __future__ import annotations

import sys

import pytest

from llmexp.cli import main
from tests.conftest import run_cli

# (overrides, the start of the one-line error after "llmexp: error: ", a word of the "allowed" part)
BAD = [
    (["model=8b"], "model='8b'", "allowed: 125m"),
    (["foo=1"], "foo=", "unknown key"),
    (["model.foo=1"], "model.foo=", "unknown key"),
    (["foo.bar=1"], "foo.bar='1'", "unknown key"),  # the key as typed, not OmegaConf's first unknown part
    (["experiment=chat_pipeline", "pipeline.0.nope=1"], "pipeline.0.nope='1'", "allowed: name, overrides"),
    (["experiment=chat_pipeline", "pipeline.nope=1"], "pipeline.nope=1", "a list's items are numbered"),
    (["+model.bar=2"], "model.bar=2", "unknown key"),
    (["model.n_layers=abc"], "model.n_layers='abc'", "expected int"),
    (["model.n_heads=7"], "model.n_heads=7", "must divide model.d_model=256"),
    (["model.n_kv_heads=3"], "model.n_kv_heads=3", "must divide model.n_heads=8"),
    (["model.d_model=264"], "model.n_heads=8", "must be even for RoPE"),
    (["model.tie_embeddings=maybe"], "model.tie_embeddings='maybe'", "expected bool"),
    (["model.vocab_size=1000"], "model.vocab_size=1000", "tokenizer.vocab_size=4096"),
    (["trainer.global_batch_size=24"], "trainer.global_batch_size=24", "multiple of micro_batch_size"),
    (["trainer.seq_len=512"], "trainer.seq_len=512", "model.max_seq_len=256"),
    (["trainer.max_steps=0"], "trainer.max_steps=0", "> 0"),
    (["trainer.devices=0"], "trainer.devices=0", "> 0"),
    (["trainer.accelerator=tpu"], "trainer.accelerator='tpu'", "allowed: auto, cpu, gpu"),
    (["trainer.log_every=0"], "trainer.log_every=0", "> 0"),
    (["optimizer.lr=-1"], "optimizer.lr=-1", "> 0"),
    (["optimizer.schedule=exp"], "optimizer.schedule='exp'", "cosine, linear, constant, wsd"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]", "two values"),
    (["optimizer.min_lr_ratio=2"], "optimizer.min_lr_ratio=2", "[0, 1]"),
    (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1", ">= 0"),
    (["optimizer=lamb"], "optimizer='lamb'", "allowed: adafactor, adamw"),
    (["parallelism.precision=fp8"], "parallelism.precision='fp8'", "bf16-mixed"),
    (["parallelism.strategy=megatron"], "parallelism.strategy='megatron'", "allowed: auto, single, ddp"),
    (["parallelism=single", "trainer.devices=2", "trainer.global_batch_size=32"], "parallelism.strategy='single'", "use ddp"),
    (["parallelism.precision=16-mixed"], "parallelism.precision='16-mixed'", "needs a GPU"),
    (["tokenizer.vocab_size=100"], "tokenizer.vocab_size=100", "byte-level BPE needs"),
    (["tokenizer=gpt2", "tokenizer.vocab_size=50000"], "tokenizer.vocab_size=50000", "gpt2 has 50257"),
    (["tokenizer.kind=sentencepiece"], "tokenizer.kind='sentencepiece'", "allowed: bpe, tiktoken"),
    (["tokenizer.special_tokens=[a,a]"], "tokenizer.special_tokens=", "unique"),
    (["data=text"], "data.sources.0.path=", "required for kind=text"),
    (["data=jsonl", "data.sources.0.path=/no/such/file.jsonl"], "data.sources.0.path='/no/such/file.jsonl'", "no such file"),
    # The embedded default would ignore a path: a user pointing it at a file is told how to read it.
    (["data.sources.0.path=corpus.jsonl"], "data.sources.0.path='corpus.jsonl'", "set data.sources.0.kind=text|jsonl"),
    (["data.val_fraction=0.9"], "data.val_fraction=0.9", "(0, 0.5)"),
    (["logger=mlflow"], "logger='mlflow'", "allowed: csv"),
    (["stage=ppo"], "stage='ppo'", "unknown option; allowed: "),
    (["init_from=/tmp"], "init_from='/tmp'", "checkpoints/last.ckpt"),
    (["plan=explicit", "trainer.max_tokens=null"], "trainer.max_steps=None", "needs a budget"),
    (["plan.mfu=1.5"], "plan.mfu=1.5", "(0, 1]"),
    (["plan.accelerator=tpu-v9"], "plan.accelerator='tpu-v9'", "allowed: a100"),
    (["dry_run=maybe"], "dry_run='maybe'", "false, true, json"),
    (["resume=/no/such/run"], "resume='/no/such/run'", "no such checkpoint"),
    (["model.n_layers"], "override='model.n_layers'", "key=value"),
]


@pytest.mark.parametrize("overrides,start,allowed", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_config_is_one_line_and_exit_2(overrides, start, allowed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*overrides, "dry_run=true"] if "dry_run" not in overrides[0] else overrides)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    line = err.strip()
    assert line.startswith(f"llmexp: error: {start}"), line
    assert allowed in line, line


def test_corpus_is_large():
    assert len(BAD) >= 25


PROBE = (
    "import sys\nfrom llmexp.cli import main\n"
    "try:\n    main(sys.argv[1:])\n"
    "finally:\n    print('heavy:', sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
)


@pytest.mark.parametrize("overrides", [["model.n_heads=7"], ["model=8b"], ["trainer.global_batch_size=24"]])
def test_cli_error_has_no_traceback_and_imports_nothing_heavy(overrides):
    import subprocess

    result = subprocess.run([sys.executable, "-c", PROBE, *overrides], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "heavy: []" in result.stdout


def test_real_cli_exit_code():
    result = run_cli("model.n_kv_heads=3")
    assert result.returncode == 2 and result.stderr.startswith("llmexp: error: model.n_kv_heads=3")
