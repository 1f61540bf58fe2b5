"""Accelerators the plan can estimate time for: dense bf16 peak FLOP/s and memory (vendor specs)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_bf16_flops: float  # dense, no sparsity
    memory_bytes: float


GiB = 1024**3
ACCELERATORS = {
    a.name: a
    for a in (
        Accelerator("a100", 312e12, 80 * GiB),
        Accelerator("h100", 989e12, 80 * GiB),
        Accelerator("h200", 989e12, 141 * GiB),
        Accelerator("b200", 2250e12, 180 * GiB),
        Accelerator("mi300x", 1307e12, 192 * GiB),
        Accelerator("l40s", 362e12, 48 * GiB),
        Accelerator("a10g", 125e12, 24 * GiB),
    )
}


def nvidia_gpu_present() -> bool:
    """Whether this machine shows an NVIDIA GPU to this process, asked of the driver's /proc
    entries rather than torch, so the validate pass stays free of torch (CUDA_VISIBLE_DEVICES=""
    or "-1" hides them, as it does from CUDA)."""
    import os

    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    gpus = "/proc/driver/nvidia/gpus"
    return os.path.isdir(gpus) and bool(os.listdir(gpus))
