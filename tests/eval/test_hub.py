"""init_from=hf:<org>/<name>[@revision] and `generate hf:...` offline: read from a Hugging Face
cache in huggingface_hub's own layout (models--org--name/refs, snapshots/<commit>); a model
not in the cache is one line and exit code 2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_with(folder, root):
    """A hub cache holding `folder` as acme/tiny at COMMIT, branch main and tag v1 pointing at it."""
    repo = root / "models--acme--tiny"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    return root


def _llmexp(cache, *args, python: tuple[str, ...] = ("-m", "llmexp")):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *python, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=env)


def test_hub_references_resolve_from_the_cache_offline(foreign_folder, tmp_path):
    from huggingface_hub import scan_cache_dir

    cache = _cache_with(foreign_folder[2], tmp_path / "hub")
    assert [r.repo_id for r in scan_cache_dir(cache).repos] == ["acme/tiny"]  # huggingface_hub reads it as its own
    out = _llmexp(cache, "generate", "hf:acme/tiny@v1", "--prompt", "Hello", "--max-new-tokens", "3")
    assert out.returncode == 0 and out.stdout.startswith("Hello"), out.stderr
    # The validated config (Hydra's --cfg prints the composed one, before validation resolves it).
    show = ("import sys, llmexp; print(llmexp.compose(sys.argv[1:]).init_from)")
    validated = _llmexp(cache, "stage=sft", "init_from=hf:acme/tiny", f"stage.dataset={REPO / 'pyproject.toml'}",
                        python=("-c", show))
    assert validated.returncode == 0, validated.stderr
    assert f"snapshots/{COMMIT}" in validated.stdout  # init_from names the exact commit it resolved to


def test_a_model_missing_from_the_cache_offline_is_one_line(tmp_path):
    (tmp_path / "hub").mkdir()
    for args in (["generate", "hf:acme/missing", "--prompt", "x"], ["stage=eval", "init_from=hf:acme/missing", "eval=smoke"]):
        out = _llmexp(tmp_path / "hub", *args)
        assert out.returncode == 2, out.stderr
        assert out.stderr.count("\n") == 1 and "not in the Hugging Face cache" in out.stderr
    bad = _llmexp(tmp_path / "hub", "generate", "hf:no-slash", "--prompt", "x")
    assert bad.returncode == 2 and "hf:<org>/<name>" in bad.stderr
