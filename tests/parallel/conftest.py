"""Tiny multi-process trainings on the CPU (gloo): the model, batch and budget every layout
test shares, and a helper that runs one through the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

# d=64, 2 layers, GQA (4 heads, 2 KV heads), seq 32, fp32 so layouts can agree to ~1e-5;
# a constant, large learning rate so six steps move the loss well away from its start.
TINY = [
    "model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=128",
    "trainer.seq_len=32", "tokenizer.vocab_size=512", "trainer.accelerator=cpu", "parallelism.precision=32",
    "trainer.micro_batch_size=4", "trainer.global_batch_size=8", "trainer.max_tokens=null",
    "trainer.val_batches=2", "trainer.log_every=1", "trainer.val_every=3", "trainer.checkpoint_every=3",
    "optimizer.schedule=constant", "optimizer.warmup_steps=0", "optimizer.lr=1e-2",
]

LAYOUTS = {  # overrides per layout; 2 processes each, 4 for the 2-D and 3-D ones
    "single": ["parallelism=single"],
    "ddp": ["parallelism=ddp", "parallelism.precision=32", "trainer.devices=2"],
    "fsdp": ["parallelism=fsdp", "parallelism.precision=32", "trainer.devices=2"],
    "tp": ["parallelism=tp", "parallelism.precision=32", "trainer.devices=2"],
    "fsdp_tp": ["parallelism=fsdp_tp", "parallelism.precision=32", "parallelism.activation_checkpointing=false",
                "trainer.devices=4", "parallelism.tensor_parallel_size=2"],
    "pp": ["parallelism=pp", "parallelism.precision=32", "trainer.devices=2"],
    # dp 2 x pp 2; micro-batch 2, so each data-parallel rank runs 2 micro-batches through its pipeline
    "fsdp_pp": ["parallelism=fsdp_pp", "parallelism.precision=32", "trainer.devices=4",
                "parallelism.pipeline_parallel_size=2", "trainer.micro_batch_size=2"],
    "hsdp": ["parallelism=hsdp", "parallelism.precision=32", "trainer.devices=2"],
    # tp 2 x pp 2, dp 1: FSDP2 still wraps each stage, over a data-parallel mesh of one rank
    "fsdp_tp_pp": ["parallelism=fsdp_tp_pp", "parallelism.precision=32", "parallelism.activation_checkpointing=false",
                   "trainer.devices=4", "parallelism.tensor_parallel_size=2", "parallelism.pipeline_parallel_size=2"],
}


def train(layout: str, run_dir: Path, steps: int, *extra: str) -> dict:
    result = run_cli(*TINY, *LAYOUTS[layout], f"trainer.max_steps={steps}", f"run_dir={run_dir}", *extra)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((run_dir / "summary.json").read_text())
