"""Training throughput of llmexp against a minimal hand-written PyTorch loop.

Both train the identical `tiny` model (same init, batch, sequence length, dtype, fused AdamW
with the same parameter groups and gradient clipping) on the same token windows, in this
process, one after the other and alternating, for each precision. Timing covers steady-state
optimizer steps only (after warm-up), so start-up costs do not count for either side.

    python scripts/bench_train.py                    # fp32 and bf16-mixed, tiny preset
    python scripts/bench_train.py --steps 40 --repeats 3 model=tiny trainer.micro_batch_size=8

Prints tokens/s of each and the ratio llmexp / reference (target: >= 0.95).

GPU mode: tokens/s and MFU of llmexp's own training path for the `1b` preset on one GPU, in
bf16 autocast with fused AdamW, SDPA (flash) attention and torch.compile per block:

    python scripts/bench_train.py --gpu                      # 1b, micro 8 x seq 2048
    python scripts/bench_train.py --gpu trainer.micro_batch_size=4 parallelism.activation_checkpointing=true

MFU = tokens/s x the plan's FLOPs/token (6 N_matmul + attention, llmexp/plan.py) / the GPU's
dense bf16 peak (llmexp/accelerators.py, found from the device name, or --peak-flops).
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
from llmexp.rundir import config_dict, flatten
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


def _peak_flops(given: float | None) -> tuple[float, str]:
    from llmexp.accelerators import ACCELERATORS

    if given:
        return given, "--peak-flops"
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (or --peak-flops to time another device)")
    device = torch.cuda.get_device_name(0)
    for name, accelerator in ACCELERATORS.items():
        if name in device.lower().replace(" ", ""):
            return accelerator.peak_bf16_flops, device
    raise SystemExit(f"unknown peak FLOP/s for {device!r}: pass --peak-flops")


def bench_gpu(args) -> None:
    peak, device = _peak_flops(args.peak_flops)
    cfg = llmexp.compose([
        "model=1b", "parallelism=single", "parallelism.precision=bf16-mixed", "parallelism.compile=true",
        "trainer.accelerator=gpu", "trainer.seq_len=2048", "trainer.micro_batch_size=8", "trainer.global_batch_size=8",
        f"trainer.max_steps={args.steps}", "trainer.max_tokens=null", f"trainer.val_every={10 * args.steps}",
        f"trainer.checkpoint_every={10 * args.steps}", f"trainer.log_every={args.steps}", *args.overrides,
    ])
    plan = llmexp.derive(cfg)
    data = prepare_data(cfg)
    tokens_per_s = statistics.median(bench_llmexp(cfg, plan, data, args.warmup) for _ in range(args.repeats))
    mfu = tokens_per_s * plan.flops_per_token / peak
    print(f"model={plan.model} params={plan.params_total:,} seq={plan.seq_len} micro={plan.micro_batch_size} "
          f"precision={plan.precision} compile={cfg.parallelism.compile} on {device}")
    print(f"tokens/s {tokens_per_s:,.0f}  FLOPs/token {plan.flops_per_token:,}  MFU {mfu:.1%} of {peak / 1e12:.0f} TFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per side")
    parser.add_argument("--precisions", default="32,bf16-mixed")
    parser.add_argument("--gpu", action="store_true", help="tokens/s and MFU of the 1b preset on one GPU")
    parser.add_argument("--peak-flops", type=float, help="--gpu: the device's dense bf16 peak, FLOP/s")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet_lightning_warnings()
    if args.gpu:
        bench_gpu(args)
        return
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
