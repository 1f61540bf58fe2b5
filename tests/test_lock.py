"""requirements/lock.txt, the exact versions scripts/install.sh installs and CI tests: it pins every
dependency pyproject.toml declares, inside pyproject.toml's ranges; scripts/lock.sh remakes it and
scripts/check_latest.sh tries the newest allowed versions (both need PyPI: slow)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip-compile output."""
    found = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split()[0].split("==")
            found[canonicalize_name(name)] = version
    return found


def declared(pyproject: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return [Requirement(r) for r in (*project["dependencies"], *project["optional-dependencies"]["dev"])]


def mismatches(root: Path) -> list[str]:
    locked = pins(root / "requirements" / "lock.txt")
    wrong = []
    for req in declared(root / "pyproject.toml"):
        if req.marker is not None and not req.marker.evaluate({"extra": "dev"}):
            continue
        version = locked.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{req}: locked {version}")
    return wrong


def test_the_lock_pins_every_declared_dependency_inside_its_range():
    assert mismatches(REPO) == [], "pyproject.toml and requirements/lock.txt disagree: run scripts/lock.sh"


def test_the_lock_holds_torch_at_the_build_install_sh_installs():
    assert pins(REPO / "requirements" / "lock.txt")["torch"] == pins(REPO / "requirements" / "torch.txt")["torch"]


@pytest.mark.slow
def test_lock_sh_remakes_the_lock_and_check_latest_reports(tmp_path):
    """The README's commands, in a copy of the checkout: scripts/lock.sh reproduces the committed
    lock, scripts/check_latest.sh (here on this file's fast tests) lists what is newer than it and
    ends with its verdict, and --upgrade moves the lock within pyproject.toml's ranges."""
    root = tmp_path / "llmexp"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info"))
    committed = (REPO / "requirements" / "lock.txt").read_text()

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1800)

    remade = run("scripts/lock.sh")
    assert remade.returncode == 0, remade.stderr[-3000:]
    assert (root / "requirements" / "lock.txt").read_text() == committed
    latest = run("scripts/check_latest.sh", "tests/test_lock.py")
    print(latest.stdout[-3000:])
    assert latest.returncode == 0, latest.stdout[-3000:] + latest.stderr[-3000:]
    assert "newer than requirements/lock.txt:" in latest.stdout
    assert latest.stdout.strip().splitlines()[-1].startswith("check_latest: PASS")

    upgraded = run("scripts/lock.sh", "--upgrade")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert mismatches(root) == []
