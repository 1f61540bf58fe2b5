"""glibc malloc settings for training on the CPU.

A training step allocates and frees the same large activations every step. With glibc's defaults
the freed top of the heap is trimmed back to the system and blocks above the (dynamic) mmap
threshold are unmapped, so each step maps them again and pays a page fault per 4 KiB page, in
the middle of the matmuls. Keeping up to KEEP bytes of freed memory mapped made the tiny Llama of
scripts/bench_litgpt.py train 6% faster in fp32 on a 2-core CPU (5014 -> 5310 tokens/s, median of 3
alternating runs; ~10% before the chunked loss removed the largest buffers); the price is RSS
that stays at the step's peak, which a training process reaches anyway. PyTorch's CPU tuning guide recommends
jemalloc or tcmalloc for the same reason; mallopt is the part of that which needs no preload.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # <malloc.h>
KEEP = 1 << 30  # freed bytes kept mapped at the top of the heap, and grown by at a time
MMAP_THRESHOLD = 32 << 20  # glibc's largest mmap threshold: blocks below it come from the heap


def keep_freed_memory() -> bool:
    """Set the process's malloc to keep freed memory (see the module); False where it does not
    apply: not glibc, or the user tuned malloc already (MALLOC_* / GLIBC_TUNABLES, an LD_PRELOADed
    allocator), whose choice stands."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "GLIBC_TUNABLES" in os.environ or "LD_PRELOAD" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    libc = ctypes.CDLL("libc.so.6")
    return all(libc.mallopt(option, value) == 1 for option, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, KEEP), (M_TOP_PAD, KEEP)))
