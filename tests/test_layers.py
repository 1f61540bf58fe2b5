"""The architecture holds (docs/architecture.md): three layers whose imports point down only,
function-level imports included; no import cycles between modules; core free of torch."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("llmexp")  # every import statement, those inside functions too


def _layer(module: str) -> int:
    """0 = apps, 1 = runtime, 2 = core (the order of pyproject's layers contract)."""
    for rank, layer in enumerate(LAYERS):
        for container in (m.strip() for m in layer.split(":")):
            if module == container or module.startswith(container + "."):
                return rank
    raise AssertionError(f"{module} belongs to no layer: add it to [tool.importlinter] in pyproject.toml")


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"  # import-linter's command, beside this interpreter
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def test_every_module_sits_in_a_layer_and_imports_only_down(graph):
    upward = []
    for importer in graph.modules:
        if importer == "llmexp":
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported.startswith("llmexp.") and _layer(imported) < _layer(importer):
                upward.append(f"{importer} -> {imported}")
    assert not upward, upward


def test_no_import_cycles_between_modules(graph):
    modules = [m for m in graph.modules if m != "llmexp"]
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules}
    cycles = []
    for a in modules:
        for b in edges[a]:
            if a < b and a in _reachable(edges, b):
                cycles.append((a, b))
    assert not cycles, f"modules importing each other (directly or through others): {cycles}"


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_optimizer_lr_flows_from_the_cli_to_the_optimizer_downward_only(graph):
    """The walk of one knob: parsed by the CLI (apps), typed and checked in core, used by the
    optimizer builder (runtime): every hop of the import chain goes down or sideways."""
    chain = graph.find_shortest_chain(importer="llmexp.cli", imported="llmexp.optim")
    assert chain is not None and chain[0] == "llmexp.cli" and chain[-1] == "llmexp.optim"
    ranks = [_layer(m) for m in chain]
    assert ranks == sorted(ranks), list(zip(chain, ranks))
    assert graph.find_shortest_chain(importer="llmexp.optim", imported="llmexp.config.groups.optimizer")
    assert graph.find_shortest_chain(importer="llmexp.config.groups.optimizer", imported="llmexp.optim") is None
