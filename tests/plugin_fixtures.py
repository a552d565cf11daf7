"""Make throw-away plugin distributions on ``sys.path`` that importlib.metadata discovers."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def make_distribution(
    root: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Write ``modules`` (name -> source) and a ``dist-info`` with ``harmonix`` entry points."""
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[harmonix]\n{lines}\n")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


BACKBONE_PLUGIN = """
import harmonix
from torch import nn


class Echo(harmonix.Backbone):
    def __init__(self, **options):
        super().__init__()
        self.scale = nn.Parameter(nn.init.ones_(__import__('torch').empty(1)))

    def forward(self, x, style):
        return x * self.scale


@harmonix.hookimpl
def register_backbones(register):
    register("{name}", Echo)
"""

# Broken plugins: each must be recorded as failed and skipped, never break harmonix.
HOOK_RAISES = """
import harmonix


@harmonix.hookimpl
def register_backbones(register):
    register("half-done", "os:getcwd")
    raise ValueError("hook exploded")
"""

BAD_SIGNATURE = """
import harmonix


@harmonix.hookimpl
def register_backbones(register, extra):
    register("never", "os:getcwd")
"""

UNKNOWN_HOOK = """
import harmonix


@harmonix.hookimpl
def register_backbone(register):
    register("typo", "os:getcwd")
"""

EXITS_ON_IMPORT = "import sys\nsys.exit('plugin gave up')\n"

COMMANDS_RAISE = """
import harmonix


@harmonix.hookimpl
def register_commands(cli):
    @cli.command()
    def leftover() -> None:
        print("must not stay")

    raise RuntimeError("commands exploded")
"""

COMMAND_PLUGIN = """
import harmonix


@harmonix.hookimpl
def register_commands(cli):
    @cli.command("{name}")
    def command() -> None:
        print("{name} from a plugin")
"""
