"""The installed package carries conf/ and runs from any directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _installed_copy() -> Path | None:
    """Where `import llmexp` resolves outside the checkout (CI installs with `pip install .`)."""
    out = subprocess.run([sys.executable, "-c", "import llmexp; print(llmexp.__file__)"], capture_output=True,
                         text=True, cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if out.returncode != 0:
        return None
    path = Path(out.stdout.strip()).parent
    return None if REPO in path.parents else path


def test_installed_package_runs_a_dry_run_from_any_directory(tmp_path):
    installed = _installed_copy()
    if installed is None:
        pytest.skip("llmexp is not installed outside this checkout (CI installs it with pip install .)")
    assert (installed / "conf" / "config.yaml").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "llmexp", "model=7b", "tokenizer=bpe_32k", "dry_run=json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params_total"] == 6_738_415_616
    console = Path(sys.executable).with_name("llmexp")
    assert console.exists()  # the console script equals python -m llmexp
    assert subprocess.run([str(console), "model.n_heads=5"], capture_output=True, cwd=tmp_path, env=env).returncode == 2
