"""The package's layers point one way and its imports have no circle (docs/ARCHITECTURE.md).

Every ``import`` in every module counts, those inside functions too: a lazy import changes when a
module loads, not what depends on what.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vidconcept"

#: Layers, top to bottom: a module may import its own layer and those below it, never one above.
#: The longest matching prefix names a module's layer (docs/ARCHITECTURE.md draws the same table).
LAYERS: dict[str, int] = {
    "vidconcept.cli": 4, "vidconcept.__main__": 4, "vidconcept.web": 4,          # interfaces
    "vidconcept": 3, "vidconcept.api": 3, "vidconcept.concepts": 3, "vidconcept.shards": 3,  # api
    "vidconcept.ingest": 2, "vidconcept.engines": 2, "vidconcept.upgrade": 2,     # pipeline
    "vidconcept.video": 1, "vidconcept.model": 1, "vidconcept.data": 1, "vidconcept.index": 1,
    "vidconcept.search": 1, "vidconcept.export": 1, "vidconcept.evaluate": 1,     # parts
    "vidconcept.config": 0, "vidconcept.errors": 0, "vidconcept.registry": 0, "vidconcept.metrics": 0,
    "vidconcept.records": 0, "vidconcept.timecode": 0, "vidconcept.images": 0,
    "vidconcept.logistic": 0,                                                    # base
}
LAYER_NAMES = ["base", "parts", "pipeline", "api", "interfaces"]
#: Tools for tests and benchmarks: may import anything; nothing in the product imports them.
TESTING = "vidconcept.testing"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _target(module: str, node: ast.ImportFrom, alias: ast.alias, is_package: bool) -> str:
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    candidate = f"{prefix}.{alias.name}"
    return candidate if candidate in MODULES else prefix


def _imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its body."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {_target(module, node, a, path.name == "__init__.py") for a in node.names}
    owners = set()
    for name in found:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module and name.split(".")[0] == "vidconcept":
            owners.add(name)
    return owners


GRAPH = {m: _imports(m) for m in MODULES}


def layer(module: str) -> int:
    matches = [p for p in LAYERS if module == p or (p != "vidconcept" and module.startswith(p + "."))]
    assert matches, f"{module} is in no layer: add it to LAYERS here and to docs/ARCHITECTURE.md"
    return LAYERS[max(matches, key=len)]


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith(TESTING)])
def test_no_upward_import(module):
    upward = sorted(f"{t} ({LAYER_NAMES[layer(t)]})" for t in GRAPH[module]
                    if not t.startswith(TESTING) and layer(t) > layer(module))
    assert not upward, f"{module} ({LAYER_NAMES[layer(module)]}) imports a layer above it: {upward}"


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith(TESTING)])
def test_product_does_not_import_testing_tools(module):
    assert not [t for t in GRAPH[module] if t.startswith(TESTING)]


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of two or more modules
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for start in sorted(graph):
        if start not in index:
            visit(start)
    return circles


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Module edges where a package's ``__init__`` that only re-exports its own submodules is
    replaced by those submodules (``from . import x`` in a submodule is not a circle)."""
    return {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}


def test_no_import_circle():
    circles = _circles(_without_package_inits(GRAPH))
    assert not circles, "modules that import each other, directly or through others: " + "; ".join(map(str, circles))


def test_no_circle_between_packages():
    """The parts (video, model, index, …) depend on each other one way only."""
    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        packages.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
    packages.pop("vidconcept", None)  # the package's own __init__: the public re-exports
    circles = _circles({p: t - {"vidconcept"} for p, t in packages.items()})
    assert not circles, "packages that import each other: " + "; ".join(map(str, circles))


def test_the_checker_sees_lazy_imports():
    """``Index.ingest`` imports the ingest pipeline inside the method; the graph has the edge."""
    assert "vidconcept.ingest" in GRAPH["vidconcept.api"]
