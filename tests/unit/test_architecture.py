"""The house plan (docs/architecture.md) as a check: which way imports may go.

Every `import` and `from ... import` in the tree, at any depth of the module (lazy
imports inside functions count too), is read with `ast` and held against the rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "tiling", "inference", "postprocess", "store", "plc", "console")
# what a runtime service may run in production: no training code, no torch
RUNTIME = (*STAGES, "common", "offline")
TOOLS = ("cli", "bench", "localstack")  # may call anything


def imports_of(path: Path) -> list[str]:
    """Every module a file imports; `from package import name` counts `package.name` too
    (a submodule, where `name` is one)."""
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def room(module: str) -> tuple[str, str]:
    """(top package, its first sub-package or module) of a dotted name."""
    parts = module.split(".")
    return parts[0], parts[1] if len(parts) > 1 else ""


def wrong_way(path: Path, imported: str) -> str | None:
    """Why `path` may not import `imported`, None when it may."""
    here = path.relative_to(ROOT).with_suffix("").parts
    top, sub = room(imported)
    in_services = here[0] == "services"
    runtime = in_services and here[1] in RUNTIME
    to_stage = top == "services" and sub in STAGES
    to_tool = top == "services" and sub in TOOLS
    shares_logic = imported.split(".")[2:3] == ["logic"]
    if runtime and top == "models":
        return "a runtime service imports training code (models/)"
    if runtime and to_tool:
        return f"a runtime service imports the {sub} tool"
    if in_services and here[1] == "common" and top == "services" and sub not in ("common", ""):
        return "services/common imports a stage or tool: common is below every stage"
    if in_services and here[1] in STAGES and to_stage and sub != here[1]:
        return f"stage {here[1]} imports stage {sub}: stages talk through topics"
    if in_services and here[1] == "offline" and to_stage and not shares_logic:
        return "offline inspection may share a stage's logic, not its service or adapters"
    if here[0] == "models" and to_stage and not shares_logic:
        return "models/ may share a stage's logic, not its service or adapters"
    if here[0] == "models" and to_tool:
        return f"models/ imports the {sub} tool"
    return None


def python_files() -> list[Path]:
    return sorted(
        p
        for folder in ("services", "models")
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def test_imports_go_the_right_way():
    found = [
        f"{p.relative_to(ROOT)} imports {name}: {why}"
        for p in python_files()
        for name in imports_of(p)
        if (why := wrong_way(p, name))
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("file", "imported"),
    [
        ("services/tiling/logic.py", "models.anomaly.train"),
        ("services/common/recipes.py", "services.tiling.logic"),
        ("services/postprocess/main.py", "services.tiling.main"),
        ("services/offline/inspect.py", "services.tiling.main"),
        ("services/store/main.py", "services.cli.main"),
        ("models/prepare.py", "services.inference.adapters.triton"),
    ],
)
def test_a_planted_backwards_import_is_caught(file, imported):
    assert wrong_way(ROOT / file, imported) is not None


@pytest.mark.parametrize(
    ("file", "imported"),
    [
        ("services/tiling/main.py", "services.common.recipes"),
        ("services/offline/inspect.py", "services.postprocess.logic"),
        ("models/prepare.py", "services.offline.inspect"),
        ("services/cli/offline.py", "models.eval.accuracy"),
    ],
)
def test_the_allowed_directions_pass(file, imported):
    assert wrong_way(ROOT / file, imported) is None


def test_no_module_imports_itself_through_others():
    modules = {module_name(p): p for p in python_files()}
    graph = {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    assert cycles(graph) == []


def test_a_planted_circle_is_caught():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
