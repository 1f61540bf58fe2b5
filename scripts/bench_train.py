"""Training throughput of llmexp against a minimal hand-written PyTorch loop.

Both train the identical `tiny` model (same init, batch, sequence length, dtype, fused AdamW
with the same parameter groups and gradient clipping) on the same token windows, in this
process, one after the other and alternating, for each precision. Timing covers steady-state
optimizer steps only (after warm-up), so start-up costs do not count for either side.

    python scripts/bench_train.py                    # fp32 and bf16-mixed, tiny preset
    python scripts/bench_train.py --steps 40 --repeats 3 model=tiny trainer.micro_batch_size=8

Prints tokens/s of each and the ratio llmexp / reference (target: >= 0.95).

GPU mode: tokens/s, MFU and peak memory against the plan's estimate, of llmexp's own training
path on one GPU, for the `1b` preset (bf16-mixed, micro 8 x seq 2048) and a Llama-3-8B shape
(bf16-true, full activation checkpointing, micro 4), with fused AdamW, SDPA (flash) attention
and torch.compile per block; about 5 minutes on an H100/H200:

    python scripts/bench_train.py --gpu
    python scripts/bench_train.py --gpu --dry --steps 3 --warmup 1 --repeats 1   # the same path, tiny, on the CPU

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


# One GPU, bf16, SDPA (flash) attention, torch.compile per block. The 8B shape is Llama-3-8B's
# blocks (GQA 8 KV heads, SwiGLU 14336) in bf16-true (8 bytes/param: the 16 of mixed precision
# with fp32 master weights would not fit one 80 GiB GPU) with full activation checkpointing.
GPU_SHAPES = {
    "1b": ["model=1b", "parallelism.precision=bf16-mixed", "trainer.micro_batch_size=8"],
    "8b": ["model=7b", "model.n_kv_heads=8", "model.ffn_dim=14336", "parallelism.precision=bf16-true",
           "parallelism.activation_checkpointing=true", "parallelism.activation_checkpointing_mode=full",
           "trainer.micro_batch_size=4"],
}
# --dry: the same code path on the CPU with a tiny shape, so the script cannot rot untested.
DRY = ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=128",
       "trainer.seq_len=64", "tokenizer.vocab_size=512", "trainer.accelerator=cpu", "parallelism.compile=false"]


def _device(args) -> tuple[float, str, str]:
    """(peak FLOP/s, device name, plan.accelerator) of the device the benchmark runs on."""
    from llmexp.accelerators import ACCELERATORS, cpu

    if args.dry:
        return args.peak_flops or cpu().peak_bf16_flops, "cpu", "h100"
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (--dry runs the same path on the CPU, tiny)")
    device = torch.cuda.get_device_name(0)
    known = [name for name in ACCELERATORS if name in device.lower().replace(" ", "")]
    if not known and not args.peak_flops:
        raise SystemExit(f"unknown peak FLOP/s for {device!r}: pass --peak-flops")
    name = max(known, key=len) if known else "h100"  # "h100" in "nvidiah100...": the longest match
    return args.peak_flops or ACCELERATORS[name].peak_bf16_flops, device, name


def bench_gpu(args) -> None:
    from llmexp.plan import resolve_auto

    peak, device, accelerator = _device(args)
    for shape in args.shapes.split(","):
        cfg = llmexp.compose([
            *GPU_SHAPES[shape], "parallelism=single", "parallelism.compile=true", "trainer.accelerator=gpu",
            "trainer.seq_len=2048", "trainer.global_batch_size=${trainer.micro_batch_size}",
            f"plan.accelerator={accelerator}", f"trainer.max_steps={args.steps}", "trainer.max_tokens=null",
            f"trainer.val_every={10 * args.steps}", f"trainer.checkpoint_every={10 * args.steps}",
            f"trainer.log_every={args.steps}", *(DRY if args.dry else []), *args.overrides,
        ])
        plan = llmexp.derive(cfg)
        cfg = resolve_auto(cfg)
        data = prepare_data(cfg)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        tokens_per_s = statistics.median(bench_llmexp(cfg, plan, data, args.warmup) for _ in range(args.repeats))
        mfu = tokens_per_s * plan.flops_per_token / peak
        print(f"{shape}: params={plan.params_total:,} seq={plan.seq_len} micro={plan.micro_batch_size} "
              f"precision={plan.precision} checkpointing={cfg.parallelism.activation_checkpointing} "
              f"compile={cfg.parallelism.compile} on {device}")
        print(f"{shape}: tokens/s {tokens_per_s:,.0f}  FLOPs/token {plan.flops_per_token:,}  "
              f"MFU {mfu:.1%} of {peak / 1e12:.1f} TFLOP/s", flush=True)
        if torch.cuda.is_available():
            measured = torch.cuda.max_memory_allocated()
            print(f"{shape}: peak memory {measured / 2**30:.2f} GiB, plan {plan.memory.total / 2**30:.2f} GiB "
                  f"({measured / plan.memory.total - 1:+.1%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per side")
    parser.add_argument("--precisions", default="32,bf16-mixed")
    parser.add_argument("--gpu", action="store_true", help="tokens/s, MFU and peak memory on one GPU")
    parser.add_argument("--shapes", default="1b,8b", help="--gpu: which of %s" % ",".join(GPU_SHAPES))
    parser.add_argument("--dry", action="store_true", help="--gpu on the CPU with a tiny shape (checks the script)")
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
