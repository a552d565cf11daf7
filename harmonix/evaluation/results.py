"""What an evaluation measured: the long table's columns, the records that :mod:`run` fills and
:mod:`report` writes, and readers of a report folder (shared by both, so neither imports the
other)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ("case", "scenario", "kind", "missing", "strategy", "generator", "metric", "region",
           "sequence", "source", "value")
MAIN, NO_LAM = "lam", "no-lam"  # generator labels: --generator and --generator-no-lam
GENERATOR_LABELS = {MAIN: "generator (with LAM)", NO_LAM: "generator without LAM"}
CROSS = "cross-center"


@dataclass
class Provenance:
    """Where the test cases and the copy mapping come from, stated at the top of the report."""

    split: str = ""  # how the test site was split off
    overlap: str = ""  # the result of the training/test overlap check
    overlaps: list[str] = field(default_factory=list)  # each overlapping case (allowed)
    overlap_allowed: bool = False
    copy_mapping: str = ""  # where the copy strategy's mapping came from

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "overlap": self.overlap, "overlaps": self.overlaps,
                "overlap_allowed": self.overlap_allowed, "copy_mapping": self.copy_mapping}


@dataclass
class EvaluationResult:
    """What :func:`harmonix.evaluation.run.run_evaluation` measured and wrote."""

    out: Path
    results: pd.DataFrame  # long table, the content of results.csv
    statistics: dict[str, pd.DataFrame]
    report: Path
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """Everything measured, handed to :mod:`harmonix.evaluation.report`."""

    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    correlations: pd.DataFrame | None = None  # the copy mapping's table (r, or a ranking)
    correlation_source: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    random_assignment: dict[str, frozenset[str]] = field(default_factory=dict)
    brasyn_assignment: dict[str, frozenset[str]] = field(default_factory=dict)  # one per case
    sequences: tuple[str, ...] = ()
    scenarios: list = field(default_factory=list)  # Scenario
    codes: pd.DataFrame | None = None  # UMAP: target, kind, source, region, x, y
    overlays: list[dict[str, Any]] = field(default_factory=list)
    planes: dict[str, Any] | None = None  # coronal and sagittal panels of one case (planes.py)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append({c: row.get(c, "") for c in COLUMNS})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(COLUMNS))


def load_results(out: str | Path) -> pd.DataFrame:
    """``results.csv`` of a report folder (empty strings kept as such)."""
    return pd.read_csv(Path(out) / "results.csv", keep_default_na=False,
                       dtype={c: str for c in COLUMNS if c != "value"},
                       float_precision="round_trip")  # the values as written, to the last bit


def report_settings(out: str | Path) -> dict[str, Any]:
    """``evaluation.json`` of a report folder."""
    return json.loads((Path(out) / "evaluation.json").read_text())


__all__ = ["COLUMNS", "CROSS", "GENERATOR_LABELS", "MAIN", "NO_LAM", "Evaluation",
           "EvaluationResult", "Provenance", "load_results", "report_settings"]
