"""harmonix.evaluate.stats against scipy / scikit-posthocs called directly on known data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy.stats import friedmanchisquare, wilcoxon

from harmonix.evaluate.stats import (
    all_statistics,
    dunn_table,
    friedman_table,
    median_table,
    wilcoxon_table,
)

N_CASES = 12


def _long_table() -> pd.DataFrame:
    """Scenario "t1": generated clearly beats copy; "t2": copy beats generated; "flair": the
    two strategies are identical. ``complete`` beats both everywhere."""
    rng = np.random.default_rng(0)
    rows = []
    for scenario, shift in (("t1", 0.15), ("t2", -0.15), ("flair", 0.0)):
        for region, base in (("WT", 0.8), ("TC", 0.7), ("ET", 0.6)):
            copy = np.clip(base - 0.2 + rng.normal(0, 0.05, N_CASES), 0, 1)
            noise = rng.normal(0, 0.03, N_CASES) if shift else 0.0
            values = {
                "complete": np.clip(base + 0.1 + rng.normal(0, 0.02, N_CASES), 0, 1),
                "copy": copy,
                "generated": copy + shift + noise,
            }
            for strategy, scores in values.items():
                for case, score in enumerate(scores):
                    rows.append(dict(case=f"c{case:02d}", scenario=scenario,
                                     strategy=strategy, region=region, dice=float(score)))
    return pd.DataFrame(rows)


def _values(df, scenario, region, strategy) -> np.ndarray:
    rows = df[(df.scenario == scenario) & (df.region == region) & (df.strategy == strategy)]
    return rows.sort_values("case")["dice"].to_numpy()


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment, from statsmodels (an independent implementation)."""
    from statsmodels.stats.multitest import multipletests

    return multipletests(p, method="holm")[1]


def test_wilcoxon_agrees_with_scipy_and_states_the_winner():
    df = _long_table()
    table = wilcoxon_table(df)
    assert list(table[["scenario", "region"]].itertuples(index=False, name=None)) == [
        (s, r) for s in ("t1", "t2", "flair") for r in ("WT", "TC", "ET")
    ]
    for row in table.itertuples():
        generated = _values(df, row.scenario, row.region, "generated")
        copy = _values(df, row.scenario, row.region, "copy")
        assert row.n == N_CASES
        assert row.median_generated == pytest.approx(np.median(generated))
        assert row.median_copy == pytest.approx(np.median(copy))
        if row.scenario == "flair":  # every difference is zero: not tested, p = 1
            assert np.isnan(row.statistic) and row.p_value == 1.0
            assert "zero" in row.note and row.verdict == "no significant difference"
            continue
        expected = wilcoxon(generated, copy)
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.p_value == pytest.approx(expected.pvalue)
        assert row.verdict == ("generated better" if row.scenario == "t1" else "copy better")
    np.testing.assert_allclose(table["p_holm"], _holm(table["p_value"].to_numpy()))


def test_wilcoxon_verdict_follows_lower_is_better_metrics():
    df = _long_table()
    table = wilcoxon_table(df, higher_is_better=False)  # e.g. HD95: a larger value is worse
    verdicts = dict(zip(table.scenario + "/" + table.region, table.verdict, strict=True))
    assert verdicts["t1/WT"] == "copy better" and verdicts["t2/WT"] == "generated better"


def test_friedman_and_dunn_agree_with_scipy_and_scikit_posthocs():
    df = _long_table()
    friedman = friedman_table(df)
    dunn = dunn_table(df, p_adjust="bonferroni")
    for row in friedman.itertuples():
        strategies = ("complete", "copy", "generated")
        groups = [_values(df, row.scenario, row.region, s) for s in strategies]
        expected = friedmanchisquare(*groups)
        assert (row.n, row.k) == (N_CASES, 3)
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.p_value == pytest.approx(expected.pvalue)
        assert row.p_value < 0.01  # complete is always best: a clear effect
        long = pd.DataFrame(
            {"dice": np.concatenate(groups), "strategy": np.repeat(["complete", "copy",
                                                                    "generated"], N_CASES)}
        )
        matrix = sp.posthoc_dunn(long, val_col="dice", group_col="strategy",
                                 p_adjust="bonferroni")
        pairs = dunn[(dunn.scenario == row.scenario) & (dunn.region == row.region)]
        assert len(pairs) == 3
        for pair in pairs.itertuples():
            assert pair.p_value == pytest.approx(matrix.loc[pair.strategy_a, pair.strategy_b])
        complete_vs_copy = pairs[(pairs.strategy_a == "complete") & (pairs.strategy_b == "copy")]
        assert complete_vs_copy.p_value.item() < 0.05
    # the default Holm adjustment, checked on the last group
    holm = sp.posthoc_dunn(long, val_col="dice", group_col="strategy", p_adjust="holm")
    last = dunn_table(df[(df.scenario == row.scenario) & (df.region == row.region)])
    for pair in last.itertuples():
        assert pair.p_value == pytest.approx(holm.loc[pair.strategy_a, pair.strategy_b])


def test_friedman_needs_three_strategies_and_handles_no_variation():
    df = _long_table()
    two = friedman_table(df[df.strategy != "complete"])
    assert two["p_value"].isna().all() and two["note"].str.contains("3 strategies").all()
    flat = df.assign(dice=0.5)
    table = friedman_table(flat)
    assert (table["p_value"] == 1.0).all() and (table["statistic"] == 0.0).all()
    assert (dunn_table(flat)["p_value"] == 1.0).all()


def test_median_table_is_laid_out_like_table_1():
    df = _long_table()
    # cross-center scenario: WT only, generated and copy only
    extra = df[(df.scenario == "t1") & (df.region == "WT") & (df.strategy != "complete")]
    df = pd.concat([df, extra.assign(scenario="cross-center")], ignore_index=True)
    table = median_table(df, strategies=["complete", "copy", "generated"])
    assert list(table.index) == ["t1", "t2", "flair", "cross-center"]
    assert table.columns.names == ["strategy", "region"]
    assert list(table.columns) == [
        (s, r) for s in ("complete", "copy", "generated") for r in ("WT", "TC", "ET")
    ]
    assert table.loc["t2", ("generated", "TC")] == pytest.approx(
        np.median(_values(df, "t2", "TC", "generated"))
    )
    assert np.isnan(table.loc["cross-center", ("copy", "TC")])
    assert np.isnan(table.loc["cross-center", ("complete", "WT")])
    assert not np.isnan(table.loc["cross-center", ("generated", "WT")])


def test_all_statistics_and_column_check():
    df = _long_table()
    tables = all_statistics(df)
    assert set(tables) == {"medians", "wilcoxon", "friedman", "dunn"}
    assert len(tables["dunn"]) == 9 * 3
    with pytest.raises(ValueError, match="scenario"):
        median_table(df.drop(columns="scenario"))
