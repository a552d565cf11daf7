"""Statistics of an evaluation, from a long table: one row per (case, scenario, strategy, region).

* :func:`median_table` — per-scenario medians laid out like the paper's Table 1
  (rows: scenarios; columns: strategy x region).
* :func:`wilcoxon_table` — Wilcoxon signed-rank test, paired by case, ``generated`` versus
  ``copy`` per scenario and region, with Holm-adjusted p-values and a plain-words verdict.
* :func:`friedman_table` / :func:`dunn_table` — Friedman test across strategies (cases are the
  blocks) and Dunn's post hoc test between every pair of strategies, per scenario and region.

Only cases that have a value for every strategy compared are used (complete blocks). For the
Friedman test every strategy must appear in every scenario: repeat the ``complete`` rows
(which do not depend on the scenario) under each scenario.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy.stats import friedmanchisquare, wilcoxon

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
        names = _order(group["strategy"], strategies)
        if strategies is not None:
            names = [s for s in names if s in strategies]
        wide = _blocks(group, names, value)
        row = dict(scenario=scenario, region=region, n=len(wide), k=len(names),
                   statistic=np.nan, p_value=np.nan, note="")
        if len(names) < 3 or len(wide) < 2:
            row["note"] = "needs at least 3 strategies and 2 complete cases"
        elif np.all(wide.to_numpy() == wide.to_numpy()[:, :1]):
            row.update(statistic=0.0, p_value=1.0, note="no differences between strategies")
        else:
            result = friedmanchisquare(*(wide[s].to_numpy() for s in names))
            row.update(statistic=float(result.statistic), p_value=float(result.pvalue))
        rows.append(row)
    return pd.DataFrame(rows, columns=["scenario", "region", "n", "k", "statistic", "p_value",
                                       "note"])


def dunn_table(
    df: pd.DataFrame,
    *,
    value: str = "dice",
    strategies: Sequence[str] | None = None,
    p_adjust: str = "holm",
) -> pd.DataFrame:
    """Dunn's post hoc test (scikit-posthocs) between every pair of strategies.

    One row per (scenario, region, strategy_a, strategy_b) with the p-value adjusted within the
    group (``p_adjust``: "holm", "bonferroni" or None). Dunn's test ranks the pooled values, as
    in the paper; it uses the Friedman test's complete cases.
    """
    check_long(df, value)
    rows = []
    for scenario, region, group in _groups(df):
        names = _order(group["strategy"], strategies)
        if strategies is not None:
            names = [s for s in names if s in strategies]
        wide = _blocks(group, names, value)
        if len(names) < 2 or len(wide) < 2:
            continue
        pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]
        values = wide.to_numpy()
        if np.all(values == values.flat[0]):
            p = np.ones(len(pairs))
        else:
            long = wide.melt(var_name="strategy", value_name=value)
            matrix = sp.posthoc_dunn(long, val_col=value, group_col="strategy")
            p = adjust_pvalues(np.array([matrix.loc[x, y] for x, y in pairs]), p_adjust)
        for (first, second), p_value in zip(pairs, p, strict=True):
            rows.append(dict(scenario=scenario, region=region, strategy_a=first,
                             strategy_b=second, p_value=float(p_value)))
    return pd.DataFrame(rows, columns=["scenario", "region", "strategy_a", "strategy_b",
                                       "p_value"])


def all_statistics(
    df: pd.DataFrame, *, value: str = "dice", a: str = "generated", b: str = "copy"
) -> dict[str, pd.DataFrame]:
    """Every table above: ``{"medians", "wilcoxon", "friedman", "dunn"}``."""
    return dict(
        medians=median_table(df, value=value),
        wilcoxon=wilcoxon_table(df, a=a, b=b, value=value),
        friedman=friedman_table(df, value=value),
        dunn=dunn_table(df, value=value),
    )
