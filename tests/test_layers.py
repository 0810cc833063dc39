"""The package's layers: imports only go down, no cycles, the paper apart from the engine.

The import graph is read from the source (every ``import`` statement, those inside
functions too), so a lazy import cannot hide a cycle.
"""

import ast
from pathlib import Path

import pytest

import mlmiss

PACKAGE = Path(mlmiss.__file__).parent

#: layer of each top-level module or subpackage; a module may import its own layer's
#: modules (without a cycle) and lower layers, never higher ones
LAYERS = {
    "version": 0, "errors": 0, "threads": 0, "progress": 0, "linalg": 0,
    "data": 1,
    "likelihood": 2, "paper": 2,
    "model": 3, "methods": 3, "datasets": 3,
    "estimation": 4,
    "inference": 5,
    "report": 6,
    "output": 7,
    "results": 8,
    "fitting": 9,
    "warmup": 10, "simulation": 10,
    "cli": 11,
    "__init__": 12, "__main__": 13,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Package-internal modules imported by one source file (dotted, without 'mlmiss.')."""
    name = module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("mlmiss"):
                    base = node.module.split(".")[1:]
                else:
                    continue
            else:
                base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                candidate = ".".join(base + [alias.name])
                found.add(candidate if _exists(candidate) else ".".join(base))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mlmiss."):
                    found.add(alias.name.split(".", 1)[1])
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
              == "import_module" and node.args and isinstance(node.args[0], ast.JoinedStr)):
            # import_module(f"{__package__}.paper.{method}"): the subpackage it reaches into
            text = "".join(v.value for v in node.args[0].values if isinstance(v, ast.Constant))
            found.add(text.strip(".").split(".")[0])
    return {m for m in found if m and m != name}


def _exists(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def top(module: str) -> str:
    return module.split(".")[0]


def test_every_module_has_a_layer():
    assert {top(m) for m in graph()} <= set(LAYERS)


def test_imports_only_go_down():
    wrong = [(m, i) for m, deps in graph().items() for i in deps
             if top(i) != top(m) and LAYERS[top(i)] >= LAYERS[top(m)]]
    assert not wrong


def test_no_import_cycle():
    g = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in g.get(node, ()):
            dep = dep if dep in g else top(dep)
            if state.get(dep) == "open":
                pytest.fail(f"import cycle: {' -> '.join(path + [node, dep])}")
            if dep not in state:
                visit(dep, path + [node])
        state[node] = "done"

    for node in g:
        if node not in state:
            visit(node, [])


def test_paper_and_engine_are_apart():
    g = graph()
    for module, deps in g.items():
        if top(module) == "paper":
            assert not {d for d in deps if top(d) == "likelihood"}, module
        if top(module) == "likelihood":
            assert not {d for d in deps if top(d) == "paper"}, module


def test_paper_objective5_is_short():
    lines = (PACKAGE / "paper" / "objective5.py").read_text().splitlines()
    assert len(lines) <= 300


def test_the_graph_reader_sees_lazy_imports():
    # results imports estimation; cli imports fitting inside a function
    g = graph()
    assert "estimation.saturated" in g["results"]
    assert "fitting" in g["cli"]
    assert "paper" in g["methods"] and "likelihood" in {top(d) for d in g["methods"]}
