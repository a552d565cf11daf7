"""Statistics of an evaluation, from a long table: one row per (case, scenario, strategy, region).

* :func:`median_table` — per-scenario medians laid out like the paper's Table 1
  (rows: scenarios; columns: strategy x region).
* :func:`wilcoxon_table` — Wilcoxon signed-rank test, paired by case, ``generated`` versus
  ``copy`` per scenario and region, with Holm-adjusted p-values and a plain-words verdict.
* :func:`friedman_table` / :func:`dunn_table` — Friedman test across strategies (cases are the
  blocks) and Dunn's post hoc test between every pair of strategies, per scenario and region,
  in the within-case (blocked) form that belongs to Friedman's test (:func:`dunn_blocked`),
  Bonferroni-adjusted as in the paper;
* :func:`block_statistics` — the same tests and Cohen's d on any blocks x groups table (the
  FID per sequence pair: pairs are the blocks).

Only cases that have a value for every strategy compared are used (complete blocks). For the
Friedman test every strategy must appear in every scenario: repeat the ``complete`` rows
(which do not depend on the scenario) under each scenario.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import friedmanchisquare, norm, wilcoxon

KEYS = ("case", "scenario", "strategy", "region")
REGION_ORDER = ("WT", "TC", "ET")


def check_long(df: pd.DataFrame, value: str = "dice") -> None:
    """Raise ``ValueError`` naming the columns a long table lacks."""
    missing = [c for c in (*KEYS, value) if c not in df.columns]
    if missing:
        raise ValueError(f"long table lacks columns {missing}; has {list(df.columns)}")


def _order(values: pd.Series, preferred: Sequence[str] | None = None) -> list[str]:
    seen = list(dict.fromkeys(values))
    if preferred is None:
        return seen
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def _groups(df: pd.DataFrame):
    """(scenario, region, rows) in order of first appearance, regions WT, TC, ET first."""
    regions = _order(df["region"], REGION_ORDER)
    for scenario in _order(df["scenario"]):
        in_scenario = df[df["scenario"] == scenario]
        for region in regions:
            rows = in_scenario[in_scenario["region"] == region]
            if len(rows):
                yield scenario, region, rows


def _blocks(rows: pd.DataFrame, strategies: Sequence[str], value: str) -> pd.DataFrame:
    """case x strategy values, only cases that have every strategy."""
    wide = rows.pivot_table(index="case", columns="strategy", values=value, aggfunc="mean")
    return wide.reindex(columns=list(strategies)).dropna()


def adjust_pvalues(p: np.ndarray, method: str | None = "holm") -> np.ndarray:
    """Family-wise adjusted p-values: "holm" (step-down), "bonferroni" or None (unchanged).

    (statsmodels' ``multipletests`` would do, but it runs a full ``gc.collect()`` per call.)
    """
    p = np.asarray(p, np.float64)
    if method is None or len(p) == 0:
        return p.copy()
    m = len(p)
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "holm":
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out = np.empty_like(p)
        out[order] = np.minimum(stepped, 1.0)
        return out
    raise ValueError(f"unknown p-value adjustment '{method}'; use 'holm', 'bonferroni' or None")


# -- Table 1 -----------------------------------------------------------------------------------
def median_table(
    df: pd.DataFrame,
    *,
    value: str = "dice",
    strategies: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Median ``value`` per scenario (rows) and (strategy, region) (two-level columns).

    Orders default to first appearance (regions: WT, TC, ET first); combinations that never
    occur are dropped, cells missing in one scenario only stay NaN.
    """
    check_long(df, value)
    strategies = _order(df["strategy"], strategies)
    regions = _order(df["region"], regions or REGION_ORDER)
    scenarios = _order(df["scenario"], scenarios)
    table = df.pivot_table(
        index="scenario", columns=["strategy", "region"], values=value, aggfunc="median"
    )
    columns = pd.MultiIndex.from_product([strategies, regions], names=["strategy", "region"])
    table = table.reindex(index=scenarios, columns=columns).dropna(axis=1, how="all")
    table.index.name = "scenario"
    return table


# -- Wilcoxon ----------------------------------------------------------------------------------
def wilcoxon_table(
    df: pd.DataFrame,
    *,
    a: str = "generated",
    b: str = "copy",
    value: str = "dice",
    alpha: float = 0.05,
    higher_is_better: bool = True,
    zero_method: str = "wilcox",
) -> pd.DataFrame:
    """Paired two-sided Wilcoxon signed-rank test of strategy ``a`` against ``b``.

    One row per (scenario, region): ``n`` pairs, medians of ``a``, ``b`` and of the paired
    differences ``a - b``, the test's statistic and p-value, ``p_holm`` (Holm over all rows) and
    ``verdict``: "<a> better", "<b> better" or "no significant difference" at ``alpha`` after
    Holm. When every difference is zero the test is not run: p = 1, noted in ``note``.
    """
    check_long(df, value)
    rows, directions = [], []
    for scenario, region, group in _groups(df):
        pairs = _blocks(group, (a, b), value)
        if pairs.empty:
            continue
        diff = (pairs[a] - pairs[b]).to_numpy()
        median = float(np.median(diff))
        row = {
            "scenario": scenario, "region": region, "n": len(diff),
            f"median_{a}": float(pairs[a].median()), f"median_{b}": float(pairs[b].median()),
            "median_difference": median, "statistic": np.nan, "p_value": 1.0, "note": "",
        }
        if not np.any(diff):
            row["note"] = "all differences are zero"
        else:
            result = wilcoxon(pairs[a], pairs[b], zero_method=zero_method)
            row.update(statistic=float(result.statistic), p_value=float(result.pvalue))
        rows.append(row)
        # direction of the effect: the median difference, or the mean one when the median is 0
        directions.append(np.sign(median) if median else np.sign(diff.mean()))
    columns = ["scenario", "region", "n", f"median_{a}", f"median_{b}", "median_difference",
               "statistic", "p_value", "p_holm", "verdict", "note"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    table["p_holm"] = adjust_pvalues(table["p_value"].to_numpy(), "holm")
    table["verdict"] = [
        _verdict(d, p, a, b, alpha, higher_is_better)
        for d, p in zip(directions, table["p_holm"], strict=True)
    ]
    return table[columns]


def _verdict(direction, p, a, b, alpha, higher_is_better) -> str:
    if not p < alpha or direction == 0:
        return "no significant difference"
    a_wins = (direction > 0) == higher_is_better
    return f"{a} better" if a_wins else f"{b} better"


# -- Friedman + Dunn ---------------------------------------------------------------------------
def block_ranks(wide: pd.DataFrame) -> pd.DataFrame:
    """Ranks within each block (row) of a blocks x groups table, ties averaged (rank 1: lowest)."""
    return wide.rank(axis=1, method="average")


def friedman_blocked(wide: pd.DataFrame) -> tuple[float, float]:
    """Friedman's chi-square and p-value of a blocks x groups table (scipy's, tie-corrected);
    ``(0, 1)`` when every block scores all groups alike."""
    values = wide.to_numpy(np.float64)
    if np.all(values == values[:, :1]):
        return 0.0, 1.0
    result = friedmanchisquare(*(values[:, j] for j in range(values.shape[1])))
    return float(result.statistic), float(result.pvalue)


def dunn_blocked(wide: pd.DataFrame, p_adjust: str | None = "bonferroni") -> pd.DataFrame:
    """Dunn's post hoc test after Friedman, in the within-block form (as GraphPad Prism does).

    Values are ranked within each block (row); for groups i and j with mean ranks R_i and R_j
    over the n blocks, ``z = (R_i - R_j) / sqrt(k (k + 1) / (6 n))`` (k groups) and the two-sided
    p-value is ``2 (1 - Phi(|z|))``, adjusted over the k (k - 1) / 2 pairs (``p_adjust``:
    "bonferroni", "holm" or None). ``rank_sum_difference`` (n (R_i - R_j)) is the number
    GraphPad reports. Unlike the pooled (Kruskal-Wallis) form, this respects the pairing.
    """
    names = list(wide.columns)
    n, k = wide.shape
    ranks = block_ranks(wide).mean(axis=0) if n else pd.Series(np.nan, index=names)
    se = math.sqrt(k * (k + 1) / (6.0 * n)) if n else np.nan
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    rows = []
    for a, b in pairs:
        difference = float(ranks[a] - ranks[b])
        z = difference / se if n else np.nan
        rows.append(dict(group_a=a, group_b=b, mean_rank_a=float(ranks[a]),
                         mean_rank_b=float(ranks[b]), rank_sum_difference=difference * n,
                         z=z, p_unadjusted=float(2.0 * norm.sf(abs(z))) if n else np.nan))
    table = pd.DataFrame(rows, columns=["group_a", "group_b", "mean_rank_a", "mean_rank_b",
                                        "rank_sum_difference", "z", "p_unadjusted"])
    table["p_value"] = adjust_pvalues(table["p_unadjusted"].to_numpy(), p_adjust)
    return table


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d of ``a`` against ``b``: (mean a - mean b) / sqrt((var a + var b) / 2), the
    sample variances (ddof 1); NaN when both are constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def pooled_sd(sds: Sequence[float]) -> float:
    """The standard deviation pooled over equal-sized groups: ``sqrt(mean of the variances)``."""
    sds = np.asarray(sds, np.float64)
    return float(math.sqrt(np.mean(sds**2))) if len(sds) else float("nan")


def cohens_d_groups(mean_a: float, mean_b: float, sds: Sequence[float]) -> float:
    """Cohen's d of two groups with the SD pooled over *all* groups of the test (``sds``), as
    the UMMGAT paper computes it (its Fig. 4: real 542.21 +- 310.09, without LAM 310.96 +-
    166.15, with LAM 258.21 +- 129.04 give -1.07, -1.31 and -0.24)."""
    sd = pooled_sd(sds)
    return float((mean_a - mean_b) / sd) if sd > 0 else float("nan")


def cohens_dz(a: Sequence[float], b: Sequence[float]) -> float:
    """Paired Cohen's d_z: mean of ``a - b`` over its standard deviation (ddof 1)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    sd = diff.std(ddof=1)
    return float(diff.mean() / sd) if sd > 0 else float("nan")


def block_statistics(
    wide: pd.DataFrame, p_adjust: str | None = "bonferroni"
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Friedman across the groups (columns) of a blocks x groups table, then Dunn (within-block)
    per pair with the mean difference, Cohen's d with the SD pooled over all groups
    (``cohen_d``, the paper's), with the SD pooled over the pair only (``cohen_d_pair``) and
    d_z (paired); incomplete blocks are dropped.

    Returns ``({"n", "k", "statistic", "p_value", "note"}, pairs table)``; Friedman needs 3
    groups and 2 blocks (else p = NaN and a note); the pairs table needs 2 blocks.
    """
    wide = wide.dropna()
    n, k = wide.shape
    friedman = dict(n=n, k=k, statistic=np.nan, p_value=np.nan, note="")
    if k < 3 or n < 2:
        friedman["note"] = "Friedman needs at least 3 groups and 2 complete blocks"
    else:
        friedman["statistic"], friedman["p_value"] = friedman_blocked(wide)
    if n < 2 or k < 2:
        return friedman, pd.DataFrame()
    pairs = dunn_blocked(wide, p_adjust)
    pairs["mean_difference"] = [float(wide[a].mean() - wide[b].mean())
                                for a, b in zip(pairs.group_a, pairs.group_b, strict=True)]
    sds = [float(wide[g].std(ddof=1)) for g in wide.columns]
    pairs["cohen_d"] = [cohens_d_groups(float(wide[a].mean()), float(wide[b].mean()), sds)
                        for a, b in zip(pairs.group_a, pairs.group_b, strict=True)]
    pairs["cohen_d_pair"] = [cohens_d(wide[a], wide[b])
                             for a, b in zip(pairs.group_a, pairs.group_b, strict=True)]
    pairs["cohen_dz"] = [cohens_dz(wide[a], wide[b])
                         for a, b in zip(pairs.group_a, pairs.group_b, strict=True)]
    return friedman, pairs


def _strategy_names(group: pd.DataFrame, strategies: Sequence[str] | None) -> list[str]:
    names = _order(group["strategy"], strategies)
    return [s for s in names if strategies is None or s in strategies]


def friedman_table(
    df: pd.DataFrame, *, value: str = "dice", strategies: Sequence[str] | None = None
) -> pd.DataFrame:
    """Friedman test across ``strategies`` (default: all), cases as blocks, per scenario/region.

    Groups with fewer than 3 strategies or 2 complete cases are reported with p = NaN and a
    note; groups where every case scores all strategies alike get statistic 0 and p = 1.
    """
    check_long(df, value)
    rows = []
    for scenario, region, group in _groups(df):
        names = _strategy_names(group, strategies)
        wide = _blocks(group, names, value)
        row = dict(scenario=scenario, region=region, n=len(wide), k=len(names),
                   statistic=np.nan, p_value=np.nan, note="")
        if len(names) < 3 or len(wide) < 2:
            row["note"] = "needs at least 3 strategies and 2 complete cases"
        else:
            row["statistic"], row["p_value"] = friedman_blocked(wide)
            if row["statistic"] == 0.0 and row["p_value"] == 1.0:
                row["note"] = "no differences between strategies"
        rows.append(row)
    return pd.DataFrame(rows, columns=["scenario", "region", "n", "k", "statistic", "p_value",
                                       "note"])


DUNN_COLUMNS = ["scenario", "region", "strategy_a", "strategy_b", "n", "mean_rank_a",
                "mean_rank_b", "z", "p_unadjusted", "p_value"]


def dunn_table(
    df: pd.DataFrame,
    *,
    value: str = "dice",
    strategies: Sequence[str] | None = None,
    p_adjust: str | None = "bonferroni",
) -> pd.DataFrame:
    """Dunn's post hoc test between every pair of strategies after the Friedman test, in the
    within-case form (:func:`dunn_blocked`): one row per (scenario, region, strategy_a,
    strategy_b), p adjusted within the group (``p_adjust``: "bonferroni" as in the paper,
    "holm" or None). Uses the Friedman test's complete cases.
    """
    check_long(df, value)
    rows = []
    for scenario, region, group in _groups(df):
        names = _strategy_names(group, strategies)
        wide = _blocks(group, names, value)
        if len(names) < 2 or len(wide) < 2:
            continue
        pairs = dunn_blocked(wide, p_adjust)
        for pair in pairs.itertuples(index=False):
            rows.append(dict(scenario=scenario, region=region, strategy_a=pair.group_a,
                             strategy_b=pair.group_b, n=len(wide), mean_rank_a=pair.mean_rank_a,
                             mean_rank_b=pair.mean_rank_b, z=pair.z,
                             p_unadjusted=pair.p_unadjusted, p_value=float(pair.p_value)))
    return pd.DataFrame(rows, columns=DUNN_COLUMNS)


def all_statistics(
    df: pd.DataFrame,
    *,
    value: str = "dice",
    a: str = "generated",
    b: str = "copy",
    strategies: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    p_adjust: str | None = "bonferroni",
) -> dict[str, pd.DataFrame]:
    """Every table above: ``{"medians", "wilcoxon", "friedman", "dunn"}`` (``wilcoxon`` only
    when both ``a`` and ``b`` occur). ``strategies``, ``regions`` and ``scenarios`` order the
    medians; ``p_adjust`` is Dunn's adjustment."""
    check_long(df, value)
    out = {"medians": median_table(df, value=value, strategies=strategies, regions=regions,
                                   scenarios=scenarios)}
    if {a, b} <= set(df["strategy"]):
        out["wilcoxon"] = wilcoxon_table(df, a=a, b=b, value=value)
    out["friedman"] = friedman_table(df, value=value)
    out["dunn"] = dunn_table(df, value=value, p_adjust=p_adjust)
    return out
