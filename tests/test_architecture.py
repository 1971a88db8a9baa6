"""The package's shape, as ARCHITECTURE.md states it: no import cycles, layers import only downwards,
no Streamlit and no test tooling inside ``vfs``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vfs"

#: What each part of vfs may import from the others (besides vfs.errors and private vfs._* helpers).
ALLOWED = {
    "vfs.features": set(),
    "vfs.cache": {"vfs.features"},
    "vfs.similarity": {"vfs.features", "vfs.cache"},
    "vfs.feature_search": {"vfs.features", "vfs.cache", "vfs.similarity"},
    "vfs.pictures": {"vfs.features"},
    "vfs.analysis": {"vfs.features", "vfs.cache", "vfs.similarity", "vfs.feature_search"},
    "vfs.notebook": {"vfs.features", "vfs.cache", "vfs.similarity", "vfs.feature_search", "vfs.pictures",
                     "vfs.analysis"},
    "vfs.dashboard": {"vfs.features", "vfs.cache", "vfs.similarity", "vfs.feature_search", "vfs.pictures",
                      "vfs.analysis"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at any depth (lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            names.update(submodules or {node.module})  # `from vfs.x import y`: y itself when y is a module
    return names


GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def part_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_the_package():
    assert {"vfs.features.models", "vfs.cache.indexing", "vfs.similarity.exact", "vfs.dashboard.links"} <= set(MODULES)
    assert "vfs.features.models" in GRAPH["vfs.cache.indexing"]  # imports are found


def test_no_import_cycles():
    assert find_cycle() is None, " → ".join(find_cycle() or [])


def test_a_made_up_cycle_is_found(monkeypatch):
    monkeypatch.setitem(GRAPH, "vfs.features.models", GRAPH["vfs.features.models"] | {"vfs.cache.indexing"})
    assert find_cycle() is not None


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_the_layers_below_it(part):
    allowed = ALLOWED[part] | {part, "vfs.errors", "vfs"}
    wrong = sorted(f"{module} imports {target}" for module in MODULES if part_of(module) == part
                   for target in GRAPH[module]
                   if part_of(target) not in allowed and not target.split(".")[1].startswith("_"))
    assert not wrong


def test_the_runtime_package_imports_no_streamlit_and_no_test_tooling():
    for name, path in MODULES.items():
        roots = {m.split(".")[0] for m in imports_of(path)}
        assert not roots & {"streamlit", "tests", "app_pages", "pytest", "playwright"}, name
