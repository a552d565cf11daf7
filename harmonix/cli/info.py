"""``harmonix plugins`` and ``harmonix registry``: what is installed and what is declared."""

from __future__ import annotations

from rich.table import Table

from harmonix.cli.app import app, console, fail
from harmonix.errors import HarmonixError


@app.command()
def plugins() -> None:
    """List installed plugins: kind, name, distribution, version and status."""
    from harmonix.plugins import get_host

    host = get_host()
    try:
        rows = host.plugin_rows()
    except HarmonixError as exc:
        fail(str(exc))
    table = Table(title="harmonix plugins")
    for column in ("kind", "name", "distribution", "version", "status"):
        table.add_column(column)
    for row in rows:
        status = "[green]ok[/]" if row["status"] == "ok" else f"[red]{row['status']}[/]"
        table.add_row(row["kind"], row["name"], row["distribution"], row["version"], status)
    console.print(table)


@app.command()
def registry() -> None:
    """Show sequences with their file-name aliases, targets and label conventions."""
    from harmonix.registry import load_registry

    try:
        reg = load_registry()
    except HarmonixError as exc:
        fail(str(exc))
    sources = ", ".join(str(s) for s in reg.sources)
    seq_table = Table(title=f"sequences ({sources})")
    seq_table.add_column("sequence")
    seq_table.add_column("aliases")
    seq_table.add_column("description")
    for spec in reg.sequences.values():
        aliases = ", ".join(spec.aliases)
        if spec.bids_ce_of:
            aliases += f" (BIDS: ce-* on {spec.bids_ce_of})"
        seq_table.add_row(spec.name, aliases, spec.description)
    console.print(seq_table)

    target_table = Table(title="targets")
    for column in ("target", "domains", "labels", "description"):
        target_table.add_column(column)
    for target in reg.targets.values():
        target_table.add_row(
            target.name, ", ".join(target.domains), target.labels, target.description
        )
    console.print(target_table)

    label_table = Table(title="label conventions and regions")
    label_table.add_column("convention")
    label_table.add_column("NCR / ED / ET")
    for name, values in reg.label_conventions.items():
        label_table.add_row(name, f"{values['NCR']} / {values['ED']} / {values['ET']}")
    console.print(label_table)
    regions = "; ".join(f"{k} = {' + '.join(v)}" for k, v in reg.regions.items())
    console.print(f"regions: {regions}")
    console.print(f"defaults: {reg.defaults}")
