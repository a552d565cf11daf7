"""Issue 14's targets, checked on a finished report folder (docs/validation.md).

:func:`headline` turns a report's ``summary.csv`` (per scenario and region the median Dice of
complete, copy and generated and generated-vs-copy's Wilcoxon p) and ``fidelity.csv`` into the
handful of figures each target is judged on, so that every ablation row of docs/validation.md
is computed the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonix.evaluation.fidelity import VERDICT
from harmonix.evaluation.results import load_results
from harmonix.evaluation.stats import REGION_ORDER
from harmonix.io import atomic_write_text

FIDELITY_FILE = "fidelity.csv"
#: per scenario and region the median Dice of each strategy and generated-vs-copy's Wilcoxon p
SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("scenario", "region", "complete", "copy", "generated", "p_generated_vs_copy")
RANDOM, CROSS = "random", "cross-center"
SINGLE_SOURCE = "only "  # summary.csv's name prefix of the single-source scenarios


def _missing(scenario: str) -> list[str]:
    return scenario.removeprefix("missing ").split("+")


def headline(report: str | Path, region: str = "WT") -> dict[str, Any]:
    """The figures of issue 14's targets from ``report`` (a folder with ``summary.csv``):

    * ``fixed_ge_copy``: fixed scenarios with median generated >= copy, of ``fixed``;
    * ``random_generated`` / ``random_copy``: random missing's medians;
    * ``single_worst_gap``: the largest complete - generated where one sequence is missing
      (target <= 0.05), ``single_within``: how many are within 0.05;
    * ``multi_significant``: scenarios with two or more missing where generated > copy with
      p < 0.05, of ``multi``;
    * ``fidelity_wins``: (source, target) pairs where generated beats both baselines, of
      ``pairs`` (when the report has ``fidelity.csv``);
    * ``cross_aligned`` / ``cross_unaligned`` / ``cross_copy``: the cross-center medians;
    * ``lesion_fid_lam`` / ``lesion_fid_no_lam``: median lesion-region FID over the pairs and
      ``lesion_lam_lower`` the pairs where it is lower with LAM (with ``fid_lesion.csv``);
    * ``only_SEQ_generated`` / ``only_SEQ_copy``: the single-source scenarios' medians;
    * issue 20's lesion figures (:func:`_lesion_figures`).
    """
    report = Path(report)
    summary = pd.read_csv(report / SUMMARY_FILE)
    rows = summary[summary["region"] == region]
    fixed = rows[rows["scenario"].str.startswith("missing ")]
    gaps = [float(r.complete - r.generated) for r in fixed.itertuples()
            if len(_missing(r.scenario)) == 1]
    multi = fixed[[len(_missing(s)) > 1 for s in fixed["scenario"]]]
    out: dict[str, Any] = {
        "fixed_ge_copy": int((fixed["generated"] >= fixed["copy"]).sum()),
        "fixed": int(len(fixed)),
        "single_worst_gap": max(gaps) if gaps else np.nan,
        "single_within": int(sum(g <= 0.05 for g in gaps)),
        "multi_significant": int(((multi["generated"] > multi["copy"])
                                  & (multi["p_generated_vs_copy"] < 0.05)).sum()),
        "multi": int(len(multi)),
    }
    random = rows[rows["scenario"] == RANDOM]
    out["random_generated"] = float(random["generated"].iloc[0]) if len(random) else np.nan
    out["random_copy"] = float(random["copy"].iloc[0]) if len(random) else np.nan
    out.update(_cross_center(report, region))
    lesion = report / "fid_lesion.csv"
    if lesion.exists():
        table = pd.read_csv(lesion)
        if {"lam", "no-lam"} <= set(table.columns):
            out["lesion_fid_lam"] = float(table["lam"].median())
            out["lesion_fid_no_lam"] = float(table["no-lam"].median())
            out["lesion_lam_lower"] = int((table["lam"] < table["no-lam"]).sum())
    only = rows[rows["scenario"].str.startswith(SINGLE_SOURCE)]
    for r in only.itertuples():
        key = r.scenario.removeprefix(SINGLE_SOURCE)
        out[f"only_{key}_generated"], out[f"only_{key}_copy"] = r.generated, r.copy
    out.update(_lesion_figures(report))
    fidelity = report / FIDELITY_FILE
    if fidelity.exists():
        table = pd.read_csv(fidelity)
        if VERDICT in table:
            out["fidelity_wins"] = int((table[VERDICT].astype(str) == "yes").sum())
            out["pairs"] = int(len(table))
    return out


def _lesion_figures(report: Path) -> dict[str, Any]:
    """Issue 20's figures from ``lesion.csv`` and ``grid.csv``: pairs whose lesion contrast sign
    agrees, whose lesion SSIM beats both baselines, whose NMI ratio is at least 0.9 (of
    ``lesion_pairs``), and the largest grid ratio over target sequences."""
    out: dict[str, Any] = {}
    if (report / "lesion.csv").exists():
        table = pd.read_csv(report / "lesion.csv")
        out.update(lesion_pairs=int(len(table)),
                   contrast_sign_agrees=int((table["contrast_sign_agrees"] == 1).sum()),
                   lesion_ssim_wins=int((table["lesion_ssim_wins"] == 1).sum()),
                   nmi_kept=int((table["nmi_ratio"] >= 0.9).sum()))
    if (report / "grid.csv").exists():
        out["grid_ratio_max"] = float(pd.read_csv(report / "grid.csv")["ratio"].max())
    return out


def _cross_center(report: Path, region: str) -> dict[str, float]:
    """Median Dice of the local center aligned into the target domain (``cross_aligned``),
    left as it is (``cross_unaligned``; both with the other sequences generated from its T2) and
    its T2 copied everywhere (``cross_copy``)."""
    results = load_results(report)
    rows = results[(results["scenario"] == CROSS) & (results["metric"] == "dice")
                   & (results["region"] == region)]
    medians = rows.groupby("strategy")["value"].median()
    return {f"cross_{name}": float(medians.get(strategy, np.nan)) for name, strategy in
            (("aligned", "generated"), ("unaligned", "generated-noalign"), ("copy", "copy"))}




def validation_summary(report: str | Path) -> pd.DataFrame:
    """The table of docs/validation/summary.csv from a report folder: one row per scenario and
    region (the 14 fixed scenarios, random missing, cross-center; in report order), the median
    Dice over cases of complete, copy and generated (empty where a strategy has no case: the
    cross-center scenario has no complete data), and the two-sided Wilcoxon p of generated
    against copy (unadjusted; ``wilcoxon.csv`` also has the Holm-adjusted one)."""
    results = load_results(report)
    dice = results[(results["metric"] == "dice") & (results["region"] != "")].copy()
    dice["value"] = dice["value"].astype(float)
    medians = dice.groupby(["scenario", "region", "strategy"], sort=False)["value"].median()
    wilcoxon_file = Path(report) / "wilcoxon.csv"
    p_values = {}
    if wilcoxon_file.exists() and wilcoxon_file.stat().st_size > 1:
        wilcoxon = pd.read_csv(wilcoxon_file)
        p_values = {(str(r.scenario), str(r.region)): float(r.p_value)
                    for r in wilcoxon.itertuples()}
    rows = []
    for scenario in dict.fromkeys(dice["scenario"]):
        regions = set(dice.loc[dice["scenario"] == scenario, "region"])
        for region in [r for r in REGION_ORDER if r in regions]:
            rows.append({"scenario": scenario, "region": region,
                         **{s: medians.get((scenario, region, s), np.nan)
                            for s in ("complete", "copy", "generated")},
                         "p_generated_vs_copy": p_values.get((scenario, region), np.nan)})
    return pd.DataFrame(rows + single_source_rows(rows), columns=list(SUMMARY_COLUMNS))


def single_source_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenarios where one sequence is real and every other one is filled, again under the
    names ``only t1``, ``only t1ce``, ... (T2 only is the cross-center case inside BraTS)."""
    fixed = [r["scenario"] for r in rows if str(r["scenario"]).startswith("missing ")]
    sequences = list(dict.fromkeys(s for name in fixed for s in _missing(name)))
    by_present: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        name = str(row["scenario"])
        if name in fixed and len(_missing(name)) == len(sequences) - 1:
            (present,) = [s for s in sequences if s not in _missing(name)]
            by_present.setdefault(present, []).append({**row, "scenario": SINGLE_SOURCE + present})
    return [row for s in sequences for row in by_present.get(s, [])]


def write_summary(report: str | Path) -> Path:
    """Write :func:`validation_summary` as ``REPORT/summary.csv`` (atomically, last)."""
    path = Path(report) / SUMMARY_FILE
    atomic_write_text(path, validation_summary(report).to_csv(index=False))
    return path


__all__ = ["SUMMARY_COLUMNS", "SUMMARY_FILE", "headline", "validation_summary", "write_summary"]
