"""Regenerate docs/cli.md from the typer app: ``python docs/make_cli_reference.py``."""

from pathlib import Path

from harmonix.cli import reference_markdown

target = Path(__file__).with_name("cli.md")
target.write_text(reference_markdown())
print(f"wrote {target}")
