#!/usr/bin/env bash
# Installs llmexp and its test tools into the active Python environment.
# torch first, pinned to the CPU build these machines carry (set LLMEXP_TORCH_VERSION on a GPU
# machine); then llmexp with its test tools; then proof that the stack imports together
# (datasets/pyarrow need numpy 2, which W&B's `sweeps` engine must accept).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install --quiet "torch==${LLMEXP_TORCH_VERSION:-2.13.0}"
python -m pip install --quiet "$here[dev]"
python -c "import numpy, pyarrow, datasets, lightning, llmexp.sweep.compat
assert int(numpy.__version__.split('.')[0]) >= 2, 'numpy ' + numpy.__version__ + ': datasets and pyarrow need numpy 2'"
