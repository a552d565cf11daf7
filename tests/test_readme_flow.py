"""The README's "Using it" block runs as written, at smoke size: every command of the block, in
its order and with its own arguments, with size options appended (fewer cases, 6 mm voxels, one
training iteration); ``--option`` values a command repeats win over the README's where both
name one (click keeps the last)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

README = Path(__file__).parents[1] / "README.md"
#: what makes each command small, appended to the README's own arguments
SMOKE = {
    "synth": ["--cases", "4", "--spacing", "6", "-j", "1"],
    "train": ["--iters", "1", "--batch-size", "2", "--size", "32", "--spacing", "6",
              "--no-lam", "--device", "cpu", "--checkpoint-every", "1", "--sample-every", "1000",
              "--backbone-option", "preset=tiny"],
    "harmonize": ["--device", "cpu"],
    "segment train": ["--iters", "1", "--spacing", "6", "--size", "32", "--device", "cpu",
                      "--option", "patch=32,32,32", "--option", "init_filters=8"],
    "evaluate": ["--scenarios", "single", "--max-cases", "2", "--fid-slices", "0", "--no-umap",
                 "--overlays", "0", "--device", "cpu"],
}


def using_it() -> list[list[str]]:
    """The commands of the README's first bash block under "## Using it", without comments."""
    section = README.read_text().split("## Using it", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [c for c in commands if c]


def test_the_block_is_what_this_test_runs():
    commands = using_it()
    assert all(c[0] == "harmonix" for c in commands)
    names = [" ".join(c[1:3]) if c[1] == "segment" else c[1] for c in commands]
    assert names[:3] == ["synth", "synth", "synth"] and "evaluate" in names
    made = {c[2] for c in commands if c[1] == "synth"}
    used = {c[c.index("--data") + 1] for c in commands if "--data" in c}
    assert used <= made, f"the README reads sites it never makes: {used - made}"


def test_the_readme_usage_block_runs_as_written(tmp_path, monkeypatch):
    from harmonix.cli import _load_commands, app

    _load_commands()
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for command in using_it():
        args = command[1:]
        name = " ".join(args[:2]) if args[0] == "segment" else args[0]
        result = runner.invoke(app, [*args, *SMOKE.get(name, [])], catch_exceptions=False)
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
    assert (tmp_path / "report" / "report.md").is_file()
    assert (tmp_path / "data" / "local-harmonized" / "manifest.csv").is_file()
