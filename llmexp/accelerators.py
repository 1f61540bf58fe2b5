"""Accelerators the plan can estimate time and memory for: dense bf16 peak FLOP/s and memory
(vendor specs), and this machine's CPU for CPU runs."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_bf16_flops: float  # dense, no sparsity
    memory_bytes: float
    peak_fp8_flops: float = 0.0  # dense fp8 tensor cores with fp32 accumulation (torch._scaled_mm); 0: none


GiB = 1024**3
ACCELERATORS = {
    a.name: a
    for a in (
        Accelerator("a100", 312e12, 80 * GiB),
        Accelerator("a100-40gb", 312e12, 40 * GiB),
        Accelerator("v100", 125e12, 32 * GiB),  # fp16 tensor cores (no bf16)
        Accelerator("a10g", 125e12, 24 * GiB),
        Accelerator("l4", 121e12, 24 * GiB, 242e12),
        Accelerator("h100", 989e12, 80 * GiB, 1979e12),
        Accelerator("h200", 989e12, 141 * GiB, 1979e12),
        Accelerator("gh200", 989e12, 96 * GiB, 1979e12),
        Accelerator("h20", 148e12, 96 * GiB, 296e12),
        Accelerator("b200", 2250e12, 180 * GiB, 4500e12),
        Accelerator("gb200", 2500e12, 186 * GiB, 5000e12),
        Accelerator("mi250x", 383e12, 128 * GiB),
        Accelerator("mi300x", 1307e12, 192 * GiB, 2615e12),
        Accelerator("mi325x", 1307e12, 256 * GiB, 2615e12),
        Accelerator("l40s", 362e12, 48 * GiB, 733e12),
        Accelerator("rtx4090", 165e12, 24 * GiB),
        Accelerator("tpu-v5p", 459e12, 95 * GiB),
    )
}


def cpu() -> Accelerator:
    """This machine's CPU as the plan's device: its RAM (psutil, imported here so a plan for a
    GPU never pays for it) and a nominal peak of 32 fp32 FLOP per cycle per core (two AVX2 FMA
    units) at 2.5 GHz; no vendor table exists for CPUs, so the time estimate is rough."""
    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return Accelerator("cpu", cores * 2.5e9 * 32, float(psutil.virtual_memory().total))


def gpu_present() -> bool:
    """A CUDA or ROCm device node exists and CUDA_VISIBLE_DEVICES does not hide every device:
    asked of the device files rather than torch, so the validate pass stays free of torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")

