"""The package's shape, read from its source: no import cycle, no borrowed private name.

docs/design.md promises that data flows one way and that the imports
follow it, and that no module reaches for another module's private name.
These tests parse every module with `ast` (nothing is imported or run), so
the promise is checked against the code as written, lazy imports inside
functions included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sandbox_exporter", "sandbox_emulator")


@dataclass(frozen=True)
class Module:
    name: str  # dotted: sandbox_exporter.config.models
    path: Path
    is_package: bool  # an __init__.py

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def modules(directory: Path) -> dict[str, Module]:
    """The modules of the package in `directory`, by dotted name."""
    found = {}
    for path in sorted(directory.rglob("*.py")):
        parts = path.relative_to(directory.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = Module(name, path, is_package)
    return found


def absolute(module: Module, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(module: Module, known: dict[str, Module]) -> set[str]:
    """The modules of `known` that `module` imports, anywhere in its code."""
    found = set()
    for node in ast.walk(ast.parse(module.path.read_text(), str(module.path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for alias in node.names:
                # `from . import pages` imports a module, not a name of the package.
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return (found & known.keys()) - {module.name}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: Module, known: dict[str, Module]) -> Iterator[str]:
    """`from .x import _y`, and `x._y` where `x` names one of our modules."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    module_aliases[alias.asname or alias.name] = submodule
                elif source in known and source != module.name and is_private(alias.name):
                    yield f"{module.name}:{node.lineno} imports {source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and is_private(node.attr)
        ):
            target = module_aliases[node.value.id]
            yield f"{module.name}:{node.lineno} uses {target}.{node.attr}"


def import_graph(known: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (a package's own __init__ too)."""
    return {name: imported_modules(module, known) for name, module in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the path that closes it, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for child in sorted(graph[node]):
            cycle = visit(child)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


# ----------------------------------------------------------- the checks


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    known = modules(ROOT / package)
    assert len(known) > 5, f"{package}: modules not found"
    cycle = find_cycle(import_graph(known))
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_uses_another_modules_private_name(package: str) -> None:
    known = modules(ROOT / package)
    assert len(known) > 5, f"{package}: modules not found"
    found = [use for module in known.values() for use in private_uses(module, known)]
    assert found == []


# ------------------------------------------- the checks can see what they look for


def write_package(tmp_path: Path, tree: str) -> dict[str, Module]:
    """The package `pkg` that `tree` writes out: each file's text follows a line `== path`."""
    for block in tree.split("== ")[1:]:
        relative, _, text = block.partition("\n")
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(tmp_path / "pkg")


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    known = write_package(
        tmp_path,
        """
== __init__.py
== a.py
from .b import run
== b.py
def run():
    from . import c
== c.py
from .sub.d import x
== sub/__init__.py
== sub/d.py
from ..a import y
""",
    )
    assert find_cycle(import_graph(known)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg.a"]


def test_a_one_way_graph_has_no_cycle(tmp_path: Path) -> None:
    # The package imports b; b imports its sibling c, not the package.
    known = write_package(
        tmp_path,
        """
== __init__.py
from .b import x
== a.py
import json
from .b import x
== b.py
from . import c
x = c.y
== c.py
y = 1
""",
    )
    graph = import_graph(known)
    assert graph == {"pkg": {"pkg.b"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert find_cycle(graph) is None


def test_private_names_borrowed_either_way_are_found(tmp_path: Path) -> None:
    known = write_package(
        tmp_path,
        """
== __init__.py
== a.py
_mine = 1
from .b import _theirs, public
from . import c
c._hidden()
== b.py
_theirs = public = 1
from .errors import __all__ as _names
== c.py
def _hidden(): pass
== errors.py
__all__ = []
""",
    )
    found = [use for module in known.values() for use in private_uses(module, known)]
    assert found == ["pkg.a:2 imports pkg.b._theirs", "pkg.a:4 uses pkg.c._hidden"]
