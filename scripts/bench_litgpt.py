"""Training throughput of llmexp against LitGPT 0.5.13, both through their real CLIs.

One run: a throw-away venv gets `litgpt==0.5.13` and the same torch as ours; then, for each
(precision, compile) cell, `python -m llmexp ...` and `litgpt pretrain --config ...` train the
identical Llama (4 layers, d_model 256, 4 heads, SwiGLU 704, vocab 4096, seq 256, micro-batch 8,
untied embeddings) on the same token stream (llmexp's prepared `embedded` data, saved as .npy and
read by LitGPT through a small DataModule), with AdamW at the same lr / warmup / clip, alternating
the two tools for --rounds rounds.

Throughput: each tool's per-step wall time, from step end to step end (llmexp: the logged
`throughput/tokens_per_s`; LitGPT: differences of its cumulative `time`), after --warmup steps
(start-up and compilation excluded for both); the median step of each run, then the median over
rounds. The ratio llmexp / LitGPT is printed per cell, with the first loss values of both side by side.

LitGPT 0.5.13's `pretrain` always wraps the whole model in torch.compile; its eager runs set
TORCH_COMPILE_DISABLE=1 (torch's own switch that makes torch.compile a no-op).

    python scripts/bench_litgpt.py                                   # 4 cells x 3 rounds
    python scripts/bench_litgpt.py --cells 32:eager --rounds 1 --steps 12 --venv /tmp/litgpt-venv
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

LITGPT = "litgpt==0.5.13"
EXTRA = "requests"  # litgpt's CLI imports it (jsonargparse URL configs) but 0.5.13 does not declare it
SEQ, MICRO, VOCAB = 256, 8, 4096
SHAPE = {"model.n_layers": 4, "model.d_model": 256, "model.n_heads": 4, "model.n_kv_heads": 4,
         "model.ffn_dim": 704, "model.max_seq_len": SEQ, "model.tie_embeddings": "false"}
CELLS = ("32:eager", "32:compile", "bf16-mixed:eager", "bf16-mixed:compile")
LITGPT_PRECISION = {"32": "32-true", "bf16-mixed": "bf16-mixed"}

DATA_MODULE = '''"""LitGPT DataModule over a token stream saved as .npy: windows of seq+1 tokens (written by bench_litgpt.py)."""
from dataclasses import dataclass, field
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from litgpt.data import DataModule


class _Windows(Dataset):
    def __init__(self, tokens, seq):
        self.tokens, self.seq = tokens, seq
    def __len__(self):
        return (len(self.tokens) - 1) // self.seq
    def __getitem__(self, i):
        return torch.from_numpy(self.tokens[i * self.seq : (i + 1) * self.seq + 1].astype(np.int64))


@dataclass
class TokenWindows(DataModule):
    train_path: str = ""
    val_path: str = ""
    seed: int = 1234
    batch_size: int = field(default=1, init=False, repr=False)
    seq_length: int = field(default=2048, init=False, repr=False)

    def connect(self, tokenizer=None, batch_size=1, max_seq_length=None, **kwargs):
        self.batch_size, self.seq_length = batch_size, max_seq_length

    def train_dataloader(self):
        data = _Windows(np.load(self.train_path), self.seq_length)
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True, generator=gen, drop_last=True)

    def val_dataloader(self):
        return DataLoader(_Windows(np.load(self.val_path), self.seq_length), batch_size=self.batch_size)
'''


@dataclass
class Run:
    """What one CLI run left: the loss and the tokens/s of each optimizer step (None: untimed)."""
    losses: list[float]
    tokens_per_s: list[Optional[float]]

    def steady(self, warmup: int) -> float:
        """Median tokens/s over the steps after `warmup` (start-up and compilation excluded)."""
        rates = [r for r in self.tokens_per_s[warmup:] if r is not None]
        if not rates:
            raise ValueError(f"no timed step after {warmup} warm-up steps (of {len(self.tokens_per_s)})")
        return statistics.median(rates)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def parse_llmexp(metrics_csv: Path) -> Run:
    """llmexp's metrics.csv: one row per optimizer step with train/loss (validation rows have none);
    throughput/tokens_per_s is the step-end-to-step-end rate, absent on the process's first step."""
    rows = [r for r in _rows(metrics_csv) if r.get("train/loss")]
    return Run([float(r["train/loss"]) for r in rows],
               [float(r["throughput/tokens_per_s"]) if r.get("throughput/tokens_per_s") else None for r in rows])


def parse_litgpt(metrics_csv: Path, tokens_per_step: int) -> Run:
    """LitGPT's CSV metrics: one row per iteration (log_interval 1, no accumulation) with `loss` and
    `time`, the seconds since training started, taken at the end of the step."""
    rows = [r for r in _rows(metrics_csv) if r.get("loss") and r.get("time")]
    times = [float(r["time"]) for r in rows]
    rates: list[Optional[float]] = [None] + [tokens_per_step / (b - a) if b > a else None
                                            for a, b in zip(times, times[1:])]
    return Run([float(r["loss"]) for r in rows], rates)


def llmexp_command(cell: str, steps: int, lr: float, warmup_steps: int, out_dir: Path, name: str) -> list[str]:
    precision, mode = cell.split(":")
    overrides = {**SHAPE, "trainer.seq_len": SEQ, "trainer.micro_batch_size": MICRO, "trainer.global_batch_size": MICRO,
                 "trainer.max_steps": steps, "trainer.log_every": 1, "trainer.val_every": 10 ** 6,
                 "trainer.val_batches": 2, "trainer.checkpoint_every": 10 ** 6, "trainer.num_workers": 0,
                 "tokenizer.vocab_size": VOCAB, "optimizer.lr": lr, "optimizer.warmup_steps": warmup_steps,
                 "optimizer.grad_clip": 1.0, "optimizer.schedule": "cosine", "optimizer.min_lr_ratio": 0.1,
                 "parallelism.precision": precision, "parallelism.compile": str(mode == "compile").lower(),
                 "trainer.accelerator": "cpu", "out_dir": out_dir, "name": name}
    return [sys.executable, "-m", "llmexp", *(f"{k}={v}" for k, v in overrides.items())]


def litgpt_config(cell: str, steps: int, lr: float, warmup_steps: int, out_dir: Path, train: Path, val: Path) -> str:
    """`litgpt pretrain --config` YAML for the same model, data, optimizer and schedule."""
    precision = LITGPT_PRECISION[cell.split(":")[0]]
    return f"""model_name: pythia-14m
model_config:
  name: llmexp-tiny
  block_size: {SEQ}
  vocab_size: {VOCAB}
  padded_vocab_size: {VOCAB}
  n_layer: {SHAPE['model.n_layers']}
  n_head: {SHAPE['model.n_heads']}
  n_query_groups: {SHAPE['model.n_kv_heads']}
  n_embd: {SHAPE['model.d_model']}
  intermediate_size: {SHAPE['model.ffn_dim']}
  rotary_percentage: 1.0
  parallel_residual: false
  bias: false
  norm_class_name: RMSNorm
  norm_eps: 1.0e-05
  mlp_class_name: LLaMAMLP
  rope_base: 10000
out_dir: {out_dir}
precision: {precision}
data:
  class_path: shared_tokens.TokenWindows
  init_args:
    train_path: {train}
    val_path: {val}
train:
  save_interval: null
  log_interval: 1
  global_batch_size: {MICRO}
  micro_batch_size: {MICRO}
  max_tokens: {steps * MICRO * SEQ}
  max_seq_length: {SEQ}
  lr_warmup_steps: {warmup_steps}
  tie_embeddings: false
  max_norm: 1.0
  min_lr: {lr * 0.1}
eval:
  interval: 1000000
  max_iters: 2
  initial_validation: false
  final_validation: false
optimizer:
  class_path: torch.optim.AdamW
  init_args:
    lr: {lr}
    weight_decay: 0.1
    betas: [0.9, 0.95]
devices: 1
logger_name: csv
seed: 1234
"""


def build_venv(folder: Path, torch_version: str) -> Path:
    """A venv with LitGPT and our torch; exits with one line when it cannot be built (offline)."""
    python = folder / "bin" / "python"
    if (folder / "bin" / "litgpt").exists() and any(folder.glob("lib/python*/site-packages/requests")):
        return folder
    steps = [[sys.executable, "-m", "venv", str(folder)],
             [str(python), "-m", "pip", "install", "-q", f"torch=={torch_version}", LITGPT, EXTRA]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            sys.exit(f"bench_litgpt: cannot build the LitGPT venv in {folder} ({' '.join(cmd[-2:])}): {last}")
    return folder


def prepare_tokens(work: Path) -> tuple[Path, Path]:
    """llmexp prepares its embedded data with the same BPE (vocab 4096) it trains on; LitGPT gets
    that token stream as .npy, so both read identical tokens."""
    import numpy as np

    import llmexp
    from llmexp.data.prepare import prepare_data

    overrides = [f"{k}={v}" for k, v in SHAPE.items()] + [f"trainer.seq_len={SEQ}", f"tokenizer.vocab_size={VOCAB}"]
    data = prepare_data(llmexp.compose(overrides), log=lambda message: None)
    train, val = work / "train.npy", work / "val.npy"
    np.save(train, np.asarray(data.train, dtype=np.int32))
    np.save(val, np.asarray(data.val, dtype=np.int32))
    return train, val


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: int) -> None:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:3])} failed ({done.returncode}):\n{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=24, help="optimizer steps per run")
    ap.add_argument("--warmup", type=int, default=8, help="first steps excluded from timing (compile happens here)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lr-warmup", type=int, default=10)
    ap.add_argument("--curve", type=int, default=10, help="loss values printed side by side")
    ap.add_argument("--venv", type=Path, help="keep LitGPT's venv here (reused when present); default: a temp dir")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one CLI run may take")
    args = ap.parse_args()
    if args.warmup >= args.steps - 1:
        ap.error("--warmup must leave at least two timed steps")

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench_litgpt_"))
    try:
        venv = build_venv(args.venv or work / "venv", torch.__version__.split("+")[0])
        train, val = prepare_tokens(work)
        (work / "shared_tokens.py").write_text(DATA_MODULE)
        threads = os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads()))
        base_env = {**os.environ, "OMP_NUM_THREADS": threads}
        results: dict[str, dict[str, list[Run]]] = {c: {"llmexp": [], "litgpt": []} for c in args.cells}
        for rnd in range(args.rounds):
            for cell in args.cells:
                # alternate which tool goes first, so neither always runs on a warmer machine
                for tool in (("llmexp", "litgpt") if rnd % 2 == 0 else ("litgpt", "llmexp")):
                    out = work / f"{tool}-{cell.replace(':', '-')}-{rnd}"
                    if tool == "llmexp":
                        _run(llmexp_command(cell, args.steps, args.lr, args.lr_warmup, out, "bench"), base_env, work,
                             args.timeout)
                        run = parse_llmexp(next(out.glob("*/metrics.csv")))
                    else:
                        yaml = work / f"{out.name}.yaml"
                        yaml.write_text(litgpt_config(cell, args.steps, args.lr, args.lr_warmup, out, train, val))
                        env = {**base_env, "PYTHONPATH": str(work)}
                        if cell.endswith(":eager"):
                            env["TORCH_COMPILE_DISABLE"] = "1"
                        _run([str(venv / "bin" / "litgpt"), "pretrain", "--config", str(yaml)], env, work,
                             args.timeout)
                        run = parse_litgpt(next(out.rglob("metrics.csv")), MICRO * SEQ)
                    results[cell][tool].append(run)
                    print(f"round {rnd + 1} {cell:20s} {tool:7s} {run.steady(args.warmup):8.0f} tokens/s", flush=True)
                    shutil.rmtree(out, ignore_errors=True)
        report(results, args.warmup, args.curve)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict[str, list[Run]]], warmup: int, curve: int) -> None:
    print(f"\n{'cell':20s} {'llmexp tok/s':>13s} {'LitGPT tok/s':>13s} {'ratio':>7s}   (median of rounds)")
    for cell, runs in results.items():
        ours = statistics.median(r.steady(warmup) for r in runs["llmexp"])
        theirs = statistics.median(r.steady(warmup) for r in runs["litgpt"])
        print(f"{cell:20s} {ours:13.0f} {theirs:13.0f} {ours / theirs:6.2f}x")
    print("\ntraining loss of the first steps (round 1), llmexp | LitGPT:")
    for cell, runs in results.items():
        a, b = runs["llmexp"][0].losses[:curve], runs["litgpt"][0].losses[:curve]
        print(f"  {cell:20s} " + "  ".join(f"{x:.2f}|{y:.2f}" for x, y in zip(a, b)))


if __name__ == "__main__":
    main()
