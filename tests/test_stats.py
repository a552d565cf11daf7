"""harmonix.evaluation.stats against scipy / scikit-posthocs called directly on known data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy.stats import friedmanchisquare, rankdata, wilcoxon

from harmonix.evaluation.stats import (
    all_statistics,
    block_statistics,
    cohens_d,
    cohens_d_groups,
    cohens_dz,
    dunn_blocked,
    dunn_table,
    friedman_table,
    median_table,
    pooled_sd,
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


def test_friedman_agrees_with_scipy_and_dunn_uses_within_case_ranks():
    df = _long_table()
    friedman = friedman_table(df)
    dunn = dunn_table(df, p_adjust=None)
    strategies = ("complete", "copy", "generated")
    for row in friedman.itertuples():
        groups = [_values(df, row.scenario, row.region, s) for s in strategies]
        expected = friedmanchisquare(*groups)
        assert (row.n, row.k) == (N_CASES, 3)
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.p_value == pytest.approx(expected.pvalue)
        assert row.p_value < 0.01  # complete is always best: a clear effect
        # within-case ranks, recomputed with scipy's rankdata per case
        ranks = np.apply_along_axis(rankdata, 1, np.column_stack(groups)).mean(axis=0)
        se = np.sqrt(3 * 4 / (6 * N_CASES))
        pairs = dunn[(dunn.scenario == row.scenario) & (dunn.region == row.region)]
        assert len(pairs) == 3
        for pair in pairs.itertuples():
            i, j = strategies.index(pair.strategy_a), strategies.index(pair.strategy_b)
            z = (ranks[i] - ranks[j]) / se
            assert pair.z == pytest.approx(z)
            assert pair.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def _worked_example() -> pd.DataFrame:
    """Issue 13's example: 30 cases, strategies shifted by 0.00, 0.02 and 0.04 Dice, a spread
    between cases (0.35 to 0.95) far larger than the shifts."""
    base = 0.35 + 0.6 * ((np.arange(30) * 7) % 30) / 29  # every case a different level
    rows = [dict(case=f"c{i:02d}", scenario="s", strategy=name, region="WT", dice=b + shift)
            for i, b in enumerate(base)
            for name, shift in (("a", 0.0), ("b", 0.02), ("c", 0.04))]
    return pd.DataFrame(rows)


def test_dunn_after_friedman_respects_the_pairing_on_the_worked_example():
    df = _worked_example()
    friedman = friedman_table(df).iloc[0]
    # every case ranks a < b < c: chi2 = 2n = 60, p = exp(-30) ~ 9e-14
    assert friedman.statistic == pytest.approx(60.0)
    assert friedman.p_value == pytest.approx(math.exp(-30), rel=1e-6)
    assert 8e-14 < friedman.p_value < 1e-13
    dunn = dunn_table(df).set_index(["strategy_a", "strategy_b"])  # Bonferroni by default
    se = math.sqrt(3 * 4 / (6 * 30))  # mean ranks 1, 2, 3
    for (a, b), steps in ((("a", "b"), 1), (("a", "c"), 2), (("b", "c"), 1)):
        assert dunn.loc[(a, b), "z"] == pytest.approx(-steps / se)
        assert dunn.loc[(a, b), "p_value"] == pytest.approx(
            3 * math.erfc(steps / se / math.sqrt(2)))
    assert 2e-14 < dunn.loc[("a", "c"), "p_value"] < 4e-14
    assert 2e-4 < dunn.loc[("a", "b"), "p_value"] < 4e-4
    assert 2e-4 < dunn.loc[("b", "c"), "p_value"] < 4e-4
    # the pooled (Kruskal-Wallis) form, which ignores the pairing, sees no difference at all
    pooled = sp.posthoc_dunn(df, val_col="dice", group_col="strategy", p_adjust="bonferroni")
    assert min(pooled.loc["a", "b"], pooled.loc["a", "c"], pooled.loc["b", "c"]) > 0.5
    # Holm as an option: step-down over the same raw p-values
    holm = dunn_table(df, p_adjust="holm").set_index(["strategy_a", "strategy_b"])
    np.testing.assert_allclose(holm["p_value"], _holm(dunn["p_unadjusted"].to_numpy()))


def test_dunn_on_a_hand_computed_table():
    # ranks per case (ties averaged):  A    B    C
    #   c1: 0.1 0.2 0.3                1    2    3
    #   c2: 0.5 0.4 0.6                2    1    3
    #   c3: 0.2 0.2 0.1                2.5  2.5  1
    #   c4: 0.3 0.5 0.9                1    2    3
    # rank sums 6.5, 7.5, 10 -> mean ranks 1.625, 1.875, 2.5; se = sqrt(3*4/(6*4)) = sqrt(0.5)
    values = {"A": [0.1, 0.5, 0.2, 0.3], "B": [0.2, 0.4, 0.2, 0.5], "C": [0.3, 0.6, 0.1, 0.9]}
    wide = pd.DataFrame(values, index=["c1", "c2", "c3", "c4"])
    table = dunn_blocked(wide, p_adjust=None).set_index(["group_a", "group_b"])
    expected_z = {("A", "B"): -0.25 / math.sqrt(0.5), ("A", "C"): -0.875 / math.sqrt(0.5),
                  ("B", "C"): -0.625 / math.sqrt(0.5)}
    for pair, z in expected_z.items():
        assert table.loc[pair, "z"] == pytest.approx(z)
        assert table.loc[pair, "p_unadjusted"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert table.loc[("A", "C"), "rank_sum_difference"] == pytest.approx(6.5 - 10)
    assert list(table["mean_rank_a"]) == pytest.approx([1.625, 1.625, 1.875])
    bonferroni = dunn_blocked(wide).set_index(["group_a", "group_b"])["p_value"]
    assert bonferroni[("A", "B")] == 1.0  # 3 x 0.72 capped at 1
    assert bonferroni[("A", "C")] == pytest.approx(3 * math.erfc(0.875 / math.sqrt(0.5)
                                                                  / math.sqrt(2)))


def test_dunn_agrees_in_direction_with_nemenyi_friedman():
    df = _long_table()
    for scenario, region in (("t1", "WT"), ("t2", "TC"), ("flair", "ET")):
        rows = df[(df.scenario == scenario) & (df.region == region)]
        wide = rows.pivot(index="case", columns="strategy", values="dice")
        ours = dunn_blocked(wide, p_adjust=None)
        nemenyi = sp.posthoc_nemenyi_friedman(wide.to_numpy())
        theirs = [nemenyi.iloc[list(wide.columns).index(a), list(wide.columns).index(b)]
                  for a, b in zip(ours.group_a, ours.group_b, strict=True)]
        # the same |mean-rank difference| orders both: the same pairs are most different
        assert np.array_equal(np.argsort(ours["p_unadjusted"].to_numpy(), kind="stable"),
                              np.argsort(theirs, kind="stable"))
        assert ((ours["p_unadjusted"] < 0.05).to_numpy() == (np.array(theirs) < 0.05)).all()
    worked = _worked_example().pivot(index="case", columns="strategy", values="dice")
    nemenyi = sp.posthoc_nemenyi_friedman(worked.to_numpy())
    ours = dunn_blocked(worked)
    assert (ours["p_value"] < 0.05).all()
    assert (nemenyi.to_numpy()[np.triu_indices(3, 1)] < 0.05).all()


def test_block_statistics_on_a_fid_table_with_a_known_answer():
    # 12 sequence pairs; within every pair with LAM < without LAM < real (FID), by 50 and 100
    level = 10.0 * np.arange(12)
    wide = pd.DataFrame({"real": 300 + level, "no-lam": 200 + level, "lam": 150 + level})
    friedman, pairs = block_statistics(wide)
    # ranks 3, 2, 1 in every block: chi2 = 2n = 24, p = exp(-12)
    assert (friedman["n"], friedman["k"]) == (12, 3)
    assert friedman["statistic"] == pytest.approx(24.0)
    assert friedman["p_value"] == pytest.approx(math.exp(-12), rel=1e-6)
    pairs = pairs.set_index(["group_a", "group_b"])
    se = math.sqrt(3 * 4 / (6 * 12))
    sd = np.std(level, ddof=1)  # every column has the spread of ``level``
    for pair, steps, shift in ((("real", "no-lam"), 1, 100), (("real", "lam"), 2, 150),
                               (("no-lam", "lam"), 1, 50)):
        assert pairs.loc[pair, "z"] == pytest.approx(steps / se)
        assert pairs.loc[pair, "rank_sum_difference"] == pytest.approx(12 * steps)
        assert pairs.loc[pair, "p_value"] == pytest.approx(
            min(1.0, 3 * math.erfc(steps / se / math.sqrt(2))))
        assert pairs.loc[pair, "mean_difference"] == pytest.approx(shift)
        assert pairs.loc[pair, "cohen_d"] == pytest.approx(shift / sd)
        assert pairs.loc[pair, "cohen_d_pair"] == pytest.approx(shift / sd)  # equal SDs
        assert np.isnan(pairs.loc[pair, "cohen_dz"])  # constant differences: no spread
    two, only = block_statistics(wide[["real", "lam"]])
    assert np.isnan(two["p_value"]) and "3 groups" in two["note"] and len(only) == 1


def test_cohens_d_pooled_over_all_groups_reproduces_the_papers_fig4():
    """The paper's d values come from its means and SDs with the SD pooled over all three
    groups: sqrt((310.09^2 + 166.15^2 + 129.04^2) / 3) = 216.3."""
    means = {"real": 542.21, "no-lam": 310.96, "lam": 258.21}
    sds = [310.09, 166.15, 129.04]
    assert pooled_sd(sds) == pytest.approx(216.3, abs=0.05)
    for (a, b), paper in ((("no-lam", "real"), -1.07), (("lam", "real"), -1.31),
                          (("lam", "no-lam"), -0.24)):
        assert round(cohens_d_groups(means[a], means[b], sds), 2) == paper
    # per pair (the other form, cohen_d_pair) the same summaries give other values
    pair = (310.96 - 542.21) / math.sqrt((166.15**2 + 310.09**2) / 2)
    assert round(pair, 2) == -0.93


def test_cohens_d_against_hand_computed_values():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    # means 2.5, 5; variances 5/3, 20/3 -> pooled sd sqrt(25/6)
    assert cohens_d(a, b) == pytest.approx(-2.5 / math.sqrt(25 / 6))
    # differences -1, -2, -3, -4: mean -2.5, sd sqrt(5/3)
    assert cohens_dz(a, b) == pytest.approx(-2.5 / math.sqrt(5 / 3))


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
