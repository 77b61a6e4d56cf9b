"""The shape of the code, as ../shared/DESIGN.md draws it: arrows point down (no import cycle; the lowest modules
import nothing of the domain), one module knows Ray, the library never reads params.yaml, and stages are recipes
that leave model calls and caches to the library. Imports inside functions count: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import need

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"pipeline": "pairforge.pipeline", "stages": "pairforge"}  # folder -> the name it is installed under
LIBRARY = PACKAGES["pipeline"]


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = (package, *path.relative_to(REPO / folder).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def is_stage(name: str) -> bool:
    """The stage entry points, the command line and the Python API: everything of `pairforge` but the library."""
    return not name.startswith(LIBRARY)


MODULES = modules()


def imports(path: Path) -> set[str]:
    """The project modules `path` imports, anywhere in it (`from pairforge.pipeline import x` names module
    pairforge.pipeline.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def cycles() -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), i.e. every import cycle."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return groups


def test_the_walk_sees_the_project():
    assert {
        "pairforge.pipeline.work",
        "pairforge.pipeline.runtime",
        "pairforge.pipeline.filtering.judges",
        "pairforge.filter",
    } <= set(MODULES)
    assert (
        "pairforge.pipeline.runtime" in GRAPH["pairforge.pipeline.work"]
        and "pairforge.pipeline.params" in GRAPH["pairforge.pipeline.filtering.judges"]
    )


def test_no_import_cycle():
    assert cycles() == []


@pytest.mark.parametrize(
    ("low", "allowed"),
    [
        ("pairforge.pipeline.vocabulary", set()),
        ("pairforge.pipeline.schema", set()),
        ("pairforge.pipeline.params", {"pairforge.pipeline.schema", "pairforge.pipeline.vocabulary"}),
    ],
)
def test_the_lowest_modules_import_nothing_of_the_domain(low, allowed):
    assert GRAPH[low] <= allowed, GRAPH[low] - allowed


def test_the_library_never_imports_the_stages():
    assert not [name for name, targets in GRAPH.items() if name.startswith(LIBRARY) and any(
        is_stage(t) for t in targets
    )]  # fmt: skip


def test_only_runtime_imports_ray():
    importers = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.add(name)
    assert importers == {"pairforge.pipeline.runtime"}


def calls(path: Path) -> list[tuple[ast.Call, list[str]]]:
    """Every call in `path` with the names of the functions it sits in, outermost first."""
    found = []

    def walk(node: ast.AST, within: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                walk(child, [*within, child.name])
                continue
            if isinstance(child, ast.Call):
                found.append((child, within))
            walk(child, within)

    walk(ast.parse(path.read_text()), [])
    return found


def reads_params(call: ast.Call) -> bool:
    return (
        isinstance(call.func, ast.Attribute) and call.func.attr == "load" and ast.unparse(call.func.value) == "params"
    )


def test_params_are_read_only_in_a_stages_main():
    for name, path in MODULES.items():
        for call, within in calls(path):
            if reads_params(call):
                assert name.startswith("pairforge.") and within == ["main"], (
                    f"{name}: params.load in {within or 'module'}"
                )


def test_stages_leave_model_calls_and_caches_to_the_library():
    """No cache, cache driver or actor pool is named in a stage: those are `pipeline.work`'s."""
    for name, path in MODULES.items():
        if is_stage(name):
            source = path.read_text()
            for word in ("TableCache", "EmbeddingCache", "cached(", "fill(", "map_batches", "runtime."):
                assert word not in source, f"{name} uses {word}"


def test_stages_decide_nothing():
    """A reason code, a decision or a threshold is the library's: no stage imports the vocabulary of codes."""
    assert not [
        name for name, targets in GRAPH.items() if is_stage(name) and "pairforge.pipeline.vocabulary" in targets
    ]


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_dataset_fails_under_ci_and_skips_elsewhere(tmp_path, monkeypatch, ci, outcome):
    # CI always has ../shared/datasets: without it a run passed with ~73 end-to-end tests skipped.
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="SciFact not found at"):
        need(tmp_path / "nowhere", "SciFact")
    need(tmp_path, "a folder that is here")  # neither
