"""Words and Markdown of the report: tables, p-values and one honest sentence per scenario."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    if index:
        table = table.reset_index()
    header = [" / ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c)
              for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def _p(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"



def verdict_lines(
    wilcoxon: pd.DataFrame, scenarios: Sequence[str], alpha: float = 0.05
) -> list[str]:
    """One honest sentence per scenario: per region, does generated beat copy, with p-values."""
    lines = []
    for scenario in scenarios:
        rows = wilcoxon[wilcoxon["scenario"] == scenario]
        if rows.empty:
            continue
        parts = []
        for row in rows.itertuples(index=False):
            verdict = row.verdict
            if verdict == "generated better":
                verdict = "**generated beats copy**"
            elif verdict == "copy better":
                verdict = "**copy beats generated**"
            parts.append(
                f"{row.region}: {verdict} (median Dice {_fmt(row.median_generated)} vs "
                f"{_fmt(row.median_copy)}, n = {row.n}, p = {_p(row.p_value)}, "
                f"Holm p = {_p(row.p_holm)}{'; ' + row.note if row.note else ''})"
            )
        wins = (rows["verdict"] == "generated better").sum()
        losses = (rows["verdict"] == "copy better").sum()
        if wins and not losses:
            summary = "generated beats copy"
        elif losses and not wins:
            summary = "generated does not beat copy; copy is better"
        elif wins and losses:
            summary = "mixed: generated wins some regions and loses others"
        else:
            summary = "generated does not beat copy significantly after Holm's correction"
            raw = rows[rows["p_value"] < alpha]
            higher = [r.region for r in raw.itertuples() if r.median_difference > 0]
            lower = [r.region for r in raw.itertuples() if r.median_difference < 0]
            hints = ([f"generated higher in {', '.join(higher)}"] if higher else []) + (
                [f"copy higher in {', '.join(lower)}"] if lower else [])
            if hints:
                summary += f" (uncorrected p < {alpha}: {'; '.join(hints)})"
        lines.append(f"- **{scenario}** — {summary}. " + "; ".join(parts) + ".")
    return lines


def power_note(wilcoxon: pd.DataFrame, alpha: float = 0.05) -> str:
    """Whether any Holm-corrected verdict is reachable with this many cases and tests."""
    tested = wilcoxon[wilcoxon["note"] == ""]
    if tested.empty:
        return ""
    n, m = int(tested["n"].max()), len(wilcoxon)
    smallest = 2.0 / 2**n  # the exact two-sided signed-rank test's smallest p-value
    if smallest * m < alpha:
        return ""
    needed = math.floor(math.log2(2 * m / alpha)) + 1
    return (f"With n = {n} cases the smallest possible p-value is 2/2^{n} = {smallest:.2g}, so "
            f"after Holm's correction over {m} tests no difference can be significant; "
            f"about {needed} or more cases are needed. Uncorrected p-values are shown.")
