#!/usr/bin/env bash
# Drift check, run by hand or on a schedule: the newest versions pyproject.toml allows (no lock;
# torch stays the lock's CPU build, set LLMEXP_TORCH_VERSION to move it) in a throw-away virtual
# environment, then the default test suite. Prints which packages are newer than the lock and a
# one-line verdict; exit status is pytest's. When it passes, bump the lock: scripts/lock.sh --upgrade
#
#   scripts/check_latest.sh                  the default suite (~30 minutes on 2 AVX2 cores)
#   scripts/check_latest.sh tests/sweep -x   pytest arguments narrow it
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
if ! LLMEXP_UNLOCKED=1 bash "$here/scripts/install.sh"; then
  echo "check_latest: FAIL -- the newest allowed versions do not install together (see above)"
  exit 1
fi

# every installed distribution whose version differs from the lock's, or that the lock lacks
drift="$(python - "$here/requirements/lock.txt" <<'PY'
import re, sys
from importlib.metadata import distributions

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

pins = (line.split()[0].split("==") for line in open(sys.argv[1]) if "==" in line and not line.startswith("#"))
locked = {norm(name): version for name, version in pins}
for dist in sorted(distributions(), key=lambda d: norm(d.metadata["Name"])):
    name = norm(dist.metadata["Name"])
    if name not in ("llmexp", "pip") and locked.get(name) != dist.version:
        print(f"  {name} {locked.get(name, '(not in the lock)')} -> {dist.version}")
PY
)"

cd "$here"
export LLMEXP_CACHE="$work/cache" WANDB_MODE=offline
python -m pytest -q -p no:cacheprovider "$@"
status=$?
echo
echo "newer than requirements/lock.txt:"
echo "${drift:-  (nothing)}"
if [ "$status" = 0 ]; then
  echo "check_latest: PASS with the newest allowed versions -- bump the lock: scripts/lock.sh --upgrade"
else
  echo "check_latest: FAIL (pytest exit $status) with the newest allowed versions -- the lock holds the versions above until fixed"
fi
exit "$status"
