#!/usr/bin/env bash
# Regenerates requirements/lock.txt -- the exact versions CI tests, which scripts/install.sh
# installs (`pip install -c requirements/lock.txt`) -- with pip-tools' pip-compile, from
# pyproject.toml's dependencies and its `dev` extra, torch held to requirements/torch.txt.
# pip-compile keeps every pin already in the lock unless told to move it, so:
#   scripts/lock.sh                          after editing pyproject.toml: add/drop what changed, move nothing else
#   scripts/lock.sh --upgrade                the newest allowed versions (after scripts/check_latest.sh passes)
#   scripts/lock.sh --upgrade-package wandb  move one package
# pip-compile resolves with pip, so it sees pip's configuration: where the CPU torch wheel comes
# from (e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu). pip-tools runs in a
# throw-away virtual environment; nothing else is installed.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet --upgrade pip "pip-tools>=7.4,<8"
cd "$here"
CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "$tools/venv/bin/pip-compile" --quiet --extra dev --constraint requirements/torch.txt --strip-extras \
  --allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
  --output-file requirements/lock.txt "$@" pyproject.toml
