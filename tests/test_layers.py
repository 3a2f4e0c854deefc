"""No import runs back up the layers (CPU tier).

refit_core's packages, bottom to top; a module may import from its own layer and below,
function-level (lazy) imports included.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "refit_core"

LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("errors", "config", "fileio", "provenance"),
    ("models",),
    ("onnx_prep",),
    ("trt",),
    ("refit",),
    ("samples",),  # the two samples (MNIST, BiDAF): build on refit and trt, read by the cases
    ("cases",),
    ("reporting",),
    ("pytest_plugin", "pytest_fixtures", "pytest_session", "fault_catalog", "faults", "selfcheck", "check", "cli",
     "__main__", "__init__"),
)
RANK: Dict[str, int] = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def room_of(module: str) -> str:
    """'refit_core.trt.engine' -> 'trt'; 'refit_core' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> List[Tuple[int, str]]:
    """(line, absolute module) of every refit_core import in the file, lazy ones included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "refit_core"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "refit_core":
                continue
            if target == "refit_core" or (not node.module and node.level):
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
    return out


def test_every_room_has_a_layer():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py")}
    assert rooms <= set(RANK), f"rooms without a layer: {sorted(rooms - set(RANK))}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up_the_layers(path):
    here = room_of(module_name(path))
    upward = []
    for line, target in imports_of(path):
        there = room_of(target)
        if there in RANK and RANK[there] > RANK[here]:
            upward.append(f"line {line}: {target} ({there} sits above {here})")
    assert not upward, "; ".join(upward)


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake_pkg = tmp_path / "refit_core"
    (fake_pkg / "onnx_prep").mkdir(parents=True)
    bad = fake_pkg / "onnx_prep" / "bad.py"
    bad.write_text("from ..samples.bidaf.prepare import prepare_bidaf\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE", fake_pkg)
    with pytest.raises(AssertionError, match="samples sits above onnx_prep"):
        test_no_import_runs_up_the_layers(bad)


#: the most lines one module may have: past it, a module holds more than one job
MAX_MODULE_LINES = 450


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (at most {MAX_MODULE_LINES})"


def import_graph(package: Path) -> Dict[str, List[str]]:
    """module -> the refit_core modules it imports (lazy ones included); an imported name
    resolves to the module that defines it, or the package it is taken from."""
    modules = {module_name(p): p for p in package.rglob("*.py")}
    graph: Dict[str, List[str]] = {}
    for name, path in modules.items():
        targets = set()
        for _, target in imports_of(path):
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = sorted(targets)
    return graph


def find_cycle(graph: Dict[str, List[str]]) -> List[str]:
    """One import cycle as [a, b, ..., a], or [] where there is none (depth-first search)."""
    state: Dict[str, int] = {}  # 1: on the stack, 2: done
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["b"]}) == []
