"""The shape of the code base (docs/architecture.md): no import cycle inside ``harmonix``, no
module importing the package ``__init__``, no callable-module tricks, modules of a readable size."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import harmonix

ROOT = Path(harmonix.__file__).parent
MAX_LINES = 450
# modules allowed past MAX_LINES, with the reason
LARGE = {
    "harmonix.data.synth": "the built-in data generator: anatomy, tumour and scanner models",
    "harmonix.data.site": "every layout reader and per-file check in one place",
}


def modules() -> dict[str, Path]:
    found = {"harmonix": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="harmonix."):
        if info.name.endswith(".__main__"):  # runs the CLI when imported
            continue
        spec = importlib.util.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``harmonix`` modules that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m in known}


def test_no_import_cycle_inside_harmonix():
    mods = modules()
    graph = {name: imported(name, path, set(mods)) - {"harmonix"} for name, path in mods.items()}
    # a module may import its own package's __init__ (a sibling re-export is not a cycle)
    graph = {n: {d for d in deps if not n.startswith(d + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_no_module_imports_the_package_init():
    mods = modules()
    offenders = [name for name, path in mods.items()
                 if name != "harmonix" and "harmonix" in imported(name, path, set(mods))]
    assert not offenders, offenders


def test_no_callable_module():
    for name in modules():
        module = importlib.import_module(name)
        assert type(module) is types.ModuleType, name
    assert isinstance(harmonix.harmonize, types.FunctionType)


def test_modules_are_of_a_readable_size():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    large = {name for name, n in sizes.items() if n > MAX_LINES}
    assert large <= set(LARGE), {name: sizes[name] for name in large - set(LARGE)}
