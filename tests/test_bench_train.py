"""scripts/bench_train.py --gpu runs its whole path (compose with the plan's device, train the
1b and 8B shapes' settings, MFU from the plan's FLOPs) on the CPU in --dry mode, so the GPU
command cannot rot while no GPU is around."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_dry_run_reports_tokens_and_mfu_for_both_shapes():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_train.py"), "--gpu", "--dry", "--steps", "3",
                          "--warmup", "1", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for shape in ("1b", "8b"):
        assert re.search(rf"^{shape}: tokens/s [\d,]+  FLOPs/token [\d,]+  MFU [\d.]+% of", out.stdout, re.M), out.stdout
    assert "8b: params=" in out.stdout and "precision=bf16-true checkpointing=True" in out.stdout
