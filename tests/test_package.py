"""The shape of the ``workers`` package itself: small modules, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import workers

PACKAGE = Path(workers.__file__).parent
#: Most lines a module of the package may have; split a longer one by concept.
MAX_MODULE_LINES = 400


def test_no_module_of_the_workers_package_is_longer_than_400_lines() -> None:
    # Given every Python module of the package
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
               for p in PACKAGE.rglob("*.py")}
    # Then none is longer than the limit
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in it (in a function too: a late import
    still ties the two modules together)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # `from package import module` imports the module; `from module import name`, the module
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {module for module in found if module in modules and module != name}


def test_no_module_of_the_workers_package_imports_itself_through_others() -> None:
    # Given every module of the package and the package's modules each imports
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(name, path, set(paths)) for name, path in paths.items()}
    # When the imports are followed from every module
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, (start,))], set()
        while stack:
            module, trail = stack.pop()
            for imported in sorted(graph[module]):
                if imported == start:
                    cycles.append(" -> ".join((*trail, start)))
                elif imported not in seen:
                    seen.add(imported)
                    stack.append((imported, (*trail, imported)))
    # Then none leads back to where it started
    assert cycles == []


def test_the_tests_mirror_the_package_a_folder_for_each_of_its_packages() -> None:
    # Given every package (folder of modules) of workers
    packages = {p.parent.relative_to(PACKAGE) for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    tests = Path(__file__).parent
    # Then each has its tests in the same place under tests/
    assert sorted(str(p) for p in packages if not (tests / p / "__init__.py").is_file()) == []
