"""Training throughput of llmexp against a minimal hand-written PyTorch loop.

Both train the identical `tiny` model (same init, batch, sequence length, dtype, fused AdamW
with the same parameter groups and gradient clipping) on the same token windows, in this
process, one after the other and alternating, for each precision. Timing covers steady-state
optimizer steps only (after warm-up), so start-up costs do not count for either side.

    python scripts/bench_train.py                    # fp32 and bf16-mixed, tiny preset
    python scripts/bench_train.py --steps 40 --repeats 3 model=tiny trainer.micro_batch_size=8

Prints tokens/s of each and the ratio llmexp / reference (target: >= 0.95).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

import llmexp
from llmexp.build import build, quiet_lightning_warnings
from llmexp.data.datamodule import WindowDataset
from llmexp.data.prepare import prepare_data
from llmexp.models import Llama
from llmexp.optim import build_optimizer
from llmexp.run import config_dict, flatten
from llmexp.stages.base import model_shape


class StepTimer(L.Callback):
    """Wall time between the end of optimizer step `warmup` and the end of the last one."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.end, self.steps = time.perf_counter(), trainer.global_step - self.warmup


def bench_llmexp(cfg, plan, data, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        L.seed_everything(cfg.trainer.seed, verbose=False)
        module, datamodule, trainer = build(cfg, plan, data, Path(tmp), {}, flatten(config_dict(cfg)))
        timer = StepTimer(warmup)
        trainer.callbacks.append(timer)
        trainer.fit(module, datamodule=datamodule)
    return timer.steps * plan.tokens_per_step / (timer.end - timer.start)


def bench_reference(cfg, plan, data, warmup: int) -> float:
    """The loop a person would write by hand around the same model."""
    torch.manual_seed(cfg.trainer.seed)
    model = Llama(model_shape(cfg, plan.vocab_size))
    optimizer = build_optimizer(model, cfg.optimizer, "cpu")
    windows = WindowDataset(data.train, plan.seq_len)
    order = torch.randperm(len(windows))
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if cfg.parallelism.precision == "bf16-mixed"
                else nullcontext())
    micro, accumulation = cfg.trainer.micro_batch_size, plan.grad_accumulation
    start = None
    for step in range(plan.steps):
        if step == warmup:
            start = time.perf_counter()
        for m in range(accumulation):
            k = (step * accumulation + m) * micro
            batch = torch.stack([windows[int(order[(k + j) % len(order)])] for j in range(micro)])
            with autocast:
                logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten()) / accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (plan.steps - warmup) * plan.tokens_per_step / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per side")
    parser.add_argument("--precisions", default="32,bf16-mixed")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet_lightning_warnings()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, lightning {L.__version__}")
    print(f"{'precision':<12}{'llmexp tok/s':>14}{'reference tok/s':>17}{'ratio':>8}")
    for precision in args.precisions.split(","):
        cfg = llmexp.compose([
            "model=tiny", f"parallelism.precision={precision}", f"trainer.max_steps={args.steps}",
            "trainer.max_tokens=null", f"trainer.val_every={10 * args.steps}",
            f"trainer.checkpoint_every={10 * args.steps}", *args.overrides,
        ])
        plan = llmexp.derive(cfg)
        data = prepare_data(cfg)
        ours, reference = [], []
        for _ in range(args.repeats):  # alternate, so drift in machine speed hits both sides
            reference.append(bench_reference(cfg, plan, data, args.warmup))
            ours.append(bench_llmexp(cfg, plan, data, args.warmup))
        a, b = statistics.median(ours), statistics.median(reference)
        print(f"{precision:<12}{a:>14,.0f}{b:>17,.0f}{a / b:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
