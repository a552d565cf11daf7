"""``harmonix plugins`` and ``harmonix registry``: what is installed and what is declared."""

from __future__ import annotations

from rich.table import Table

from harmonix.cli.app import app, conclude, console, emit_json, fail, json_option
from harmonix.errors import HarmonixError
from harmonix.plugins import get_host
from harmonix.registry import load_registry


@app.command()
def plugins(as_json: bool = json_option()) -> None:
    """List installed plugins: kind, name, distribution, version and status."""

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
    emit_json(plugins_document(rows))
    bad = sum(row["status"] != "ok" for row in rows)
    conclude(f"{len(rows)} plugin component(s): {len(rows) - bad} ok, {bad} not ok")


def plugins_document(rows: list[dict[str, str]]) -> dict:
    """``harmonix plugins --json`` (docs/cli.md, Output for scripts)."""
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    ok = sum(row["status"] == "ok" for row in rows)
    return {
        "exit_code": 0,
        "counts": {"plugins": len(rows), "ok": ok, "not_ok": len(rows) - ok, "by_kind": kinds},
        "plugins": [{key: row.get(key, "") for key in
                     ("kind", "name", "plugin", "distribution", "version", "status")}
                    for row in rows],
    }


@app.command()
def registry() -> None:
    """Show sequences with their file-name aliases, targets and label conventions."""

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
    conclude(f"{len(reg.sequences)} sequences, {len(reg.targets)} targets, "
             f"{len(reg.label_conventions)} label conventions ({sources})")
