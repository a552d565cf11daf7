"""Report tables of the metrics beyond the paper's Dice and FID (HD95, a plugin's metric).

Each segmentation metric gets its median per scenario in the Table 1 layout
(``median_NAME.csv``); each image-set metric its source x target matrices as FID has
(``pairs_NAME.csv`` holds its rows). Image metrics need nothing here: ``image_quality.csv`` has
a column per image metric.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harmonix.evaluation.figures import REGIONS, fid_matrix, metric_long
from harmonix.evaluation.results import GENERATOR_LABELS, MAIN, NO_LAM
from harmonix.evaluation.stats import median_table
from harmonix.evaluation.strategies import STRATEGIES
from harmonix.io import atomic_write_text

PAPER_METRICS = ("dice", "fid")  # reported in their own sections, with the paper's statistics


@dataclass
class MetricSection:
    """One section of ``report.md``: a title, a sentence, tables and the file behind them."""

    key: str  # the key of the file in EvaluationResult.files (and of the table in .statistics)
    title: str
    intro: str
    file: Path
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # caption, table
    statistic: pd.DataFrame | None = None


def _file_name(prefix: str, metric: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', metric)}.csv"


def segmentation_metrics(results: pd.DataFrame) -> list[str]:
    """Names of the metrics with per-case, per-region rows, in order of first appearance."""
    rows = results[(results["case"] != "") & (results["region"] != "")]
    return list(dict.fromkeys(rows["metric"]))


def image_set_metrics(results: pd.DataFrame) -> list[str]:
    """Names of the metrics with per-pair set rows (kind ``fid``)."""
    return list(dict.fromkeys(results.loc[results["kind"] == "fid", "metric"]))


def metric_sections(results: pd.DataFrame, scenarios: Sequence[str], sequences: Sequence[str],
                    out: Path) -> list[MetricSection]:
    """Write the tables of every metric but Dice and FID into ``out`` and describe them."""
    sections = []
    for name in [m for m in segmentation_metrics(results) if m not in PAPER_METRICS]:
        long = metric_long(results, name)
        strategies = [s for s in (*STRATEGIES, "generated-noalign")
                      if s in set(long["strategy"])]
        order = [s for s in scenarios if s in set(long["scenario"])]
        table = median_table(long, value=name, strategies=strategies, regions=REGIONS,
                             scenarios=order or None)
        file = out / _file_name("median", name)
        atomic_write_text(file, table.to_csv())
        sections.append(MetricSection(
            f"median_{name}", f"Median {name} per scenario",
            f"Median over cases of `{name}` per scenario, strategy and region (Table 1 layout).",
            file, [("", table)], statistic=table))
    for name in [m for m in image_set_metrics(results) if m not in PAPER_METRICS]:
        rows = results[results["metric"] == name]
        file = out / _file_name("pairs", name)
        atomic_write_text(file, rows.to_csv(index=False))
        pairs = rows[rows["kind"] == "fid"]
        tables = []
        for label in ("real", NO_LAM, MAIN):
            has = ((pairs["strategy"] == "copy").any() if label == "real"
                   else (pairs["generator"] == label).any())
            if has:
                title = ("real source vs real target" if label == "real"
                         else GENERATOR_LABELS[label])
                tables.append((f"{title} (rows: source, columns: target)",
                               fid_matrix(pairs, label, sequences)))
        sections.append(MetricSection(
            f"pairs_{name}", f"{name} per (source, target) pair",
            f"`{name}` on the slice sets of the FID section (generated from the source, half A, "
            "against the real target, half B; the diagonal is real vs real).", file, tables))
    return sections


__all__ = ["PAPER_METRICS", "MetricSection", "image_set_metrics", "metric_sections",
           "segmentation_metrics"]
