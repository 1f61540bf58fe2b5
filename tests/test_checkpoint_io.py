"""Checkpoints stream to disk: saving a few hundred MB of state costs no second copy in memory."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

PROBE = r"""
import json, resource, sys, torch
from pathlib import Path
from llmexp.callbacks import AtomicCheckpointIO

state = {"state_dict": {f"w{i}": torch.ones(25_000_000) for i in range(3)}}  # 3 x 100 MB, pages touched
size = sum(t.numel() * t.element_size() for t in state["state_dict"].values())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak so far: the state is in it
AtomicCheckpointIO().save_checkpoint(state, Path(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
loaded = torch.load(sys.argv[1], weights_only=True, mmap=True)
print(json.dumps({"size": size, "extra": after - before, "same": bool(torch.equal(loaded["state_dict"]["w2"], state["state_dict"]["w2"]))}))
"""


def test_a_checkpoint_save_streams_without_copying_the_state(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "last.ckpt")], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["same"]
    assert figures["extra"] <= 0.05 * figures["size"], figures  # peak RSS <= state + 5% (an in-memory copy: +100%)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left behind
