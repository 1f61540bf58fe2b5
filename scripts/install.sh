#!/usr/bin/env bash
# Installs llmexp and its test tools into the active Python environment, at the exact versions CI
# tests: requirements/lock.txt is a pip constraints file (made by scripts/lock.sh), so every
# package, direct or not, gets the locked version. pyproject.toml keeps open ranges for people
# who install llmexp into an environment of their own (`pip install llmexp`).
# torch first, the CPU build of the lock (pip must see it: here a local wheel folder, elsewhere
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu). On a GPU machine set
# LLMEXP_TORCH_VERSION (e.g. 2.13.0): that torch build is installed and the lock holds the rest.
# Then proof that the stack imports together (datasets/pyarrow need numpy 2, which W&B's
# `sweeps` engine must accept).
#
#   bash scripts/install.sh                      the locked versions (README, .ci/run)
#   LLMEXP_UNLOCKED=1 bash scripts/install.sh    the newest versions pyproject.toml allows, torch
#                                                still the lock's (scripts/check_latest.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
held="$here/requirements/lock.txt"
if [ -n "${LLMEXP_UNLOCKED:-}" ]; then held="$here/requirements/torch.txt"; fi
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if [ -n "${LLMEXP_TORCH_VERSION:-}" ]; then
  { grep -v '^torch==' "$held"; echo "torch==$LLMEXP_TORCH_VERSION"; } > "$constraints"
else
  cp "$held" "$constraints"
fi
python -m pip install --quiet -c "$constraints" torch
python -m pip install --quiet -c "$constraints" "$here[dev]"
python -c "import numpy, pyarrow, datasets, lightning, llmexp.sweep.compat
assert int(numpy.__version__.split('.')[0]) >= 2, 'numpy ' + numpy.__version__ + ': datasets and pyarrow need numpy 2'"
