"""The shape of the code base (docs/architecture.md): no import cycle inside ``harmonix``, no
module importing the package ``__init__``, no callable-module tricks, modules of a readable size."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import harmonix

ROOT = Path(harmonix.__file__).parent
REPO = ROOT.parent
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


# -- the documented layers (docs/architecture.md) ------------------------------------------------
#: lowest first: a module imports modules of its own layer or of a layer below, never above
LAYERS = ("core", "data", "models", "steps", "workflows", "cli")
#: module -> layer. ``NAME.*`` covers a package and every module under it; an exact name wins
#: over a ``.*`` entry, and a longer ``.*`` over a shorter one.
LAYER_OF = {
    "harmonix": "core",
    "harmonix.version": "core",
    "harmonix.errors": "core",
    "harmonix.io": "core",
    "harmonix.extras": "core",
    "harmonix.device": "core",
    "harmonix.progress": "core",
    "harmonix.registry": "core",
    "harmonix.nn": "core",
    "harmonix.backbones": "core",
    "harmonix.cards": "core",
    "harmonix.interfaces": "core",
    "harmonix.plugins": "core",
    "harmonix.requests": "core",
    "harmonix.lazy": "core",
    "harmonix.data.*": "data",
    "harmonix.models": "models",
    "harmonix.models.checkpoints": "models",
    "harmonix.models.installed": "models",
    "harmonix.harmonization.*": "steps",
    "harmonix.harmonization.pipeline": "workflows",
    "harmonix.evaluation.*": "workflows",
    "harmonix.demo": "workflows",
    "harmonix.models.packages": "workflows",
    "harmonix.models.model_card": "workflows",
    "harmonix.segmentation": "workflows",
    "harmonix.cli.*": "cli",
}
#: facades outside the layers: neither checked nor counted. ``harmonix.sdk`` is for plugins only
#: (no harmonix module imports it, checked below); ``harmonix.api`` is the package's lazy facade.
OUTSIDE_LAYERS = {"harmonix.api", "harmonix.sdk"}


def layer_of(name: str) -> str | None:
    if name in LAYER_OF:
        return LAYER_OF[name]
    packages = [p[:-2] for p in LAYER_OF if p.endswith(".*")]
    covering = [p for p in packages if name == p or name.startswith(p + ".")]
    return LAYER_OF[max(covering, key=len) + ".*"] if covering else None


def test_every_module_has_a_layer():
    unplaced = [name for name in modules() if name not in OUTSIDE_LAYERS and not layer_of(name)]
    assert not unplaced, f"add these modules to LAYER_OF (and docs/architecture.md): {unplaced}"


def test_no_module_imports_a_layer_above_it():
    mods = modules()
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = []
    for name, path in sorted(mods.items()):
        if name in OUTSIDE_LAYERS or not layer_of(name):
            continue
        for dep in sorted(imported(name, path, set(mods)) - OUTSIDE_LAYERS):
            if layer_of(dep) and rank[layer_of(dep)] > rank[layer_of(name)]:
                upward.append(f"{name} ({layer_of(name)}) imports {dep} ({layer_of(dep)})")
    assert not upward, "\n".join(upward)


def test_every_sdk_name_resolves():
    """``harmonix.sdk.__all__`` is its table of homes, and every name is found in its home."""
    import harmonix.sdk as sdk

    homes = {name for names in sdk.EXPORTS.values() for name in names}
    assert sorted(sdk.__all__) == sorted(homes)
    missing = [f"{module}.{name}" for module, names in sdk.EXPORTS.items() for name in names
               if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"harmonix.sdk exports names its homes no longer have: {missing}"


def test_nothing_in_harmonix_imports_the_sdk():
    mods = modules()
    users = [name for name, path in mods.items()
             if name != "harmonix.sdk" and "harmonix.sdk" in imported(name, path, set(mods))]
    assert not users, f"harmonix.sdk is for plugins only; imported by {users}"


# -- plugins import only the SDK -----------------------------------------------------------------
#: modules allowed to import more of harmonix than harmonix.sdk, with the reason
BEYOND_SDK: dict[str, str] = {}  # plugin module -> why it may import more (none today)


def plugin_modules() -> dict[Path, str]:
    """Every module of the built-in plugins and the example packages, with its top package."""
    found = {}
    for folder in [REPO / "plugins", *sorted((REPO / "examples").iterdir())]:
        for path in sorted(folder.glob("*/**/*.py")):
            parts = path.relative_to(folder).parts
            if parts[0] not in ("build", "tests") and not parts[0].endswith(".egg-info"):
                found[path] = parts[0]
    return found


def test_plugins_import_only_the_sdk_and_their_own_package():
    found = plugin_modules()
    packages = set(found.values())
    assert {"harmonix_ummgat", "harmonix_swin", "harmonix_example_plugins"} <= packages
    offenders = []
    for path, own in found.items():
        where = path.relative_to(REPO).as_posix()
        if where in BEYOND_SDK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:  # relative: own package
                base = node.module or ""
                names = [f"{base}.{a.name}" for a in node.names] if base == "harmonix" else [base]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "harmonix" and name != "harmonix.sdk" and not name.startswith(
                        "harmonix.sdk."):
                    offenders.append(f"{where}:{node.lineno} imports {name} (use harmonix.sdk)")
                elif top in packages and top != own:
                    offenders.append(f"{where}:{node.lineno} imports the plugin {top} (reach "
                                     "another plugin through the registry: get_backbone(name))")
    assert not offenders, "\n".join(offenders)


# -- a light start: no torch for the package, the CLI's help, version and listings ---------------
#: run in a fresh interpreter: ``CODE`` then report the harmonix modules that imported torch
_WATCH = """
import importlib.abc, sys, traceback
chains = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and not chains:
            chains.append([f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                           if "harmonix" in f.filename and "importlib" not in f.filename])
sys.meta_path.insert(0, Watch())
try:
    exec(sys.argv[1])
except SystemExit:
    pass
sys.stderr.write("\\n@@torch " + (" <- ".join(reversed(chains[0])) if chains else "no") + "\\n")
"""

_CLI = "import sys; from harmonix.cli import main; sys.argv = ['harmonix', {}]; main()"


@pytest.mark.parametrize("code", [
    "import harmonix; dir(harmonix); harmonix.__version__",
    "import harmonix.cli",
    "from harmonix.sdk import hookimpl",
    _CLI.format("'--version'"),
    _CLI.format("'--help'"),
    _CLI.format("'registry'"),
    _CLI.format("'plugins'"),
], ids=["import harmonix", "import harmonix.cli", "sdk hookimpl", "harmonix --version",
        "harmonix --help", "harmonix registry", "harmonix plugins"])
def test_a_light_start_does_not_import_torch(code):
    done = subprocess.run([sys.executable, "-c", _WATCH, code], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    report = done.stderr.rpartition("@@torch ")[2].strip().replace(f"{REPO}/", "")
    assert report == "no", f"torch imported by {report}\n{done.stderr[-2000:]}"
