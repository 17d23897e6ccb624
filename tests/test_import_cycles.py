"""No two medscale modules import each other, directly or through others.

The import graph is read from the source (`ast`), so an import inside a function counts as
much as one at the top: a lazy import hides a cycle from a plain `import` test until the day
someone moves it up. Imports under ``if TYPE_CHECKING:`` are left out (they never run).
Cycles are found with the standard library's `graphlib`.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import medscale

PACKAGE = Path(medscale.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package in folder ``root`` -> the package's modules it imports."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and _is_type_checking(node)
            for inner in ast.walk(node)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in files)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, base] if base else parents)
                deps.update(
                    m
                    for m in (base, *(f"{base}.{alias.name}" for alias in node.names))
                    if m in files
                )
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_medscale_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "medscale.io.signals" in graph  # it read the real package
    assert graph["medscale.io.signals"] >= {"medscale.io.edf", "medscale.io.mne_raw"}  # lazy
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_check_finds_a_lazy_cycle_and_ignores_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert find_cycle(graph) is None  # the TYPE_CHECKING import does not count

    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    assert find_cycle(import_graph(pkg)) in (
        ["pkg.a", "pkg.sub.b", "pkg.a"],
        ["pkg.sub.b", "pkg.a", "pkg.sub.b"],
    )
