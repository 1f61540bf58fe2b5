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


def gpu_present() -> bool:
    """A CUDA or ROCm device node exists and CUDA_VISIBLE_DEVICES does not hide every device:
    asked of the device files rather than torch, so the validate pass stays free of torch."""
    import glob
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")
