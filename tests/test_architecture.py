"""The layout docs/architecture.md describes: one package per stage, data moving forward.

Every module under bnbench/ is parsed (not imported) and each of its imports of a bnbench
module becomes an edge, wherever it sits: at the top, inside a function, under
TYPE_CHECKING. The graph must have no circle, and no module may import from a stage above
its own. A package's __init__ runs before its modules, but it is a node like any other: an
edge to it is drawn only where an import names the package itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bnbench"
# Lowest first: a module may import from its own stage and the ones before it, never after.
STAGES = ("config", "store", "train", "analysis", "claims", "report", "sweep", "bench", "cli")
ROOT_MODULES = ("bnbench", "bnbench.__main__")  # load_runs / load_curves and `python -m`
MAX_LINES = 350


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, name: str, is_package: bool) -> list[str]:
    """The dotted names an import statement in module `name` may load."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's own package upwards
        anchor = name.split(".") if is_package else name.split(".")[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """module -> {imported bnbench module: line of the first such import}."""
    known = modules(package)
    graph: dict[str, dict[str, int]] = {name: {} for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = imported(node, name, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):  # `from pkg import module` names the module
                names = [t for t in targets[:-1] if t in known] or targets[-1:]
            else:
                names = targets
            for target in names:
                while target and target not in known:  # `import a.b.c`: the module it is
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(closed_path(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def closed_path(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """One circle through the group, a -> b -> ... -> a, for the failure message."""
    start = min(group)
    path, seen = [start], {start}
    while True:
        nxt = next(n for n in sorted(graph[path[-1]]) if n in group)
        if nxt in seen:
            return path[path.index(nxt) :] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def stage(module: str) -> int:
    """The module's place in STAGES; the package root sits above them all."""
    if module in ROOT_MODULES:
        return len(STAGES)
    return STAGES.index(module.split(".")[1])


def upward_imports(graph: dict[str, dict[str, int]], package: Path) -> list[str]:
    files = modules(package)
    return [
        f"{files[a].relative_to(package.parent)}:{line}: {a} ({STAGES[stage(a)]}) imports {b} "
        f"({STAGES[stage(b)] if stage(b) < len(STAGES) else 'the package root'})"
        for a, targets in graph.items()
        if a not in ROOT_MODULES
        for b, line in targets.items()
        if stage(b) > stage(a)
    ]


def test_every_module_is_in_a_stage_package():
    stray = [
        name
        for name in modules(PACKAGE)
        if name not in ROOT_MODULES and name.split(".")[1] not in STAGES
    ]
    assert not stray, f"modules outside the stage packages {STAGES}: {stray}"


def test_each_package_says_its_job_in_one_line():
    for stage_name in STAGES:
        init = PACKAGE / stage_name / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "\n" not in doc, f"{init}: a one-line docstring saying the package's job"


def test_no_import_circles():
    found = circles(import_graph(PACKAGE))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_stage_imports_from_a_later_one():
    found = upward_imports(import_graph(PACKAGE), PACKAGE)
    assert not found, f"imports against the stage order {' < '.join(STAGES)}:\n" + "\n".join(found)


def test_no_module_is_over_350_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in modules(PACKAGE).values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small package laid out by stage, for checking the checks themselves."""
    files = {
        "__init__.py": "",
        "config/__init__.py": '"""Config."""',
        "config/schema.py": "import os\n",
        "store/__init__.py": '"""Store."""',
        "store/files.py": "from bnbench.config.schema import X\n",
        "store/hold.py": "from . import files\n",
        "cli/__init__.py": '"""CLI."""\nfrom bnbench.cli.main import app as app\n',
        "cli/main.py": "def f():\n    from bnbench.store import hold\n",
    }
    for relative, text in files.items():
        path = tmp_path / "bnbench" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "bnbench"


def test_the_graph_reads_every_kind_of_import(tree: Path):
    graph = import_graph(tree)
    assert graph["bnbench.store.files"] == {"bnbench.config.schema": 1}
    assert graph["bnbench.store.hold"] == {"bnbench.store.files": 1}  # relative
    assert graph["bnbench.cli.main"] == {"bnbench.store.hold": 2}  # inside a function
    assert graph["bnbench.cli"] == {"bnbench.cli.main": 2}
    assert not circles(graph) and not upward_imports(graph, tree)


def test_a_circle_and_an_upward_import_are_caught(tree: Path):
    (tree / "config" / "schema.py").write_text("def f():\n    import bnbench.store.hold\n")
    graph = import_graph(tree)
    assert circles(graph) == [
        ["bnbench.config.schema", "bnbench.store.hold", "bnbench.store.files"]
        + ["bnbench.config.schema"]
    ]
    assert upward_imports(graph, tree) == [
        "bnbench/config/schema.py:2: bnbench.config.schema (config) imports "
        "bnbench.store.hold (store)"
    ]
