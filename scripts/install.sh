#!/usr/bin/env bash
# Installs llmexp and its test tools into the active Python environment.
#   - torch first, pinned to the CPU build these machines carry (a GPU machine can skip the pin);
#   - W&B's sweep engine (`sweeps`) without its stale numpy<2 pin (numpy 2 is needed by datasets).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install --quiet "torch==${LLMEXP_TORCH_VERSION:-2.13.0}"
python -m pip install --quiet "$here[dev]"
