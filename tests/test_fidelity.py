"""Image fidelity against trivial baselines (issue 14) on synthetic volumes with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmonix.evaluation.fidelity import (
    BASELINES,
    METRICS,
    VERDICT,
    fidelity_table,
    pair_scores,
    remapped,
    scores,
)
from harmonix.evaluation.results import Evaluation


def _volumes(seed: int = 0):
    """A smooth brain-like source in 0..255, a spherical mask, and a target whose contrast is the
    exact inverse of the source (T1 vs T2-like) through a monotone curve."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, 24),) * 3, indexing="ij")
    mask = x**2 + y**2 + z**2 < 0.8
    source = 120 + 60 * np.sin(3 * x) * np.cos(2 * y) + 20 * z + rng.normal(0, 2, x.shape)
    source = np.clip(source, 1, 254) * mask
    target = ((255 - source) ** 1.3 / 255**0.3) * mask  # monotone decreasing in the source
    return source, target, mask


def test_an_inverse_contrast_target_is_recovered_by_the_remapped_baseline_not_by_copying():
    source, target, mask = _volumes()
    result = pair_scores(source, source, target, mask)  # "generated" = the copy here
    assert result["remapped"]["inverse"] == 1.0
    assert result["remapped"]["pearson_r"] > 0.99
    assert result["copy"]["pearson_r"] < -0.9
    for metric in METRICS:
        assert result["remapped"][metric] > result["copy"][metric]


def test_an_exact_monotone_target_ties_generated_with_the_remapping():
    source, target, mask = _volumes()
    result = pair_scores(target, source, target, mask)
    assert result["remapped"]["psnr"] == result["generated"]["psnr"] == np.inf


def test_a_perfect_generated_volume_beats_both_baselines_and_a_copy_does_not():
    source, target, mask = _volumes()
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, 24),) * 3, indexing="ij")
    # a lesion only the target shows: no remapping of the source can make it
    target = np.clip(target + 90 * np.exp(-((x - 0.3) ** 2 + y**2 + z**2) / 0.05), 0, 255) * mask
    perfect = pair_scores(target, source, target, mask)
    assert perfect["generated"]["psnr"] == np.inf
    assert perfect["generated"]["ssim"] == pytest.approx(1.0)
    assert perfect["generated"]["pearson_r"] == pytest.approx(1.0)
    ev = Evaluation(rows=[], settings={})
    for case, generated in (("a", target), ("b", target + 0.5 * mask)):
        for name, values in pair_scores(generated, source, target, mask).items():
            for metric in (*METRICS, "inverse"):
                if metric in values:
                    ev.add(case=case, scenario="fidelity", kind="fidelity", strategy=name,
                           metric=metric, sequence="t2", source="t1", value=values[metric])
        # a copy posing as "generated" (source t2 -> target flair) loses to the remapping
        for name, values in pair_scores(source, source, target, mask).items():
            for metric in METRICS:
                ev.add(case=case, scenario="fidelity", kind="fidelity", strategy=name,
                       metric=metric, sequence="flair", source="t2", value=values[metric])
    table = fidelity_table(ev.frame()).set_index(["source", "target"])
    assert list(table.index) == [("t1", "t2"), ("t2", "flair")]  # in order of appearance
    assert table.loc[("t1", "t2"), "remapped_inverted"] == 1.0
    assert (table["cases"] == 2).all()
    assert table.loc[("t1", "t2"), VERDICT] == "yes"
    assert table.loc[("t2", "flair"), VERDICT].startswith("no (")
    for metric in METRICS:
        for baseline in BASELINES:
            assert f"{metric}_{baseline}" in table.columns


def test_remapping_matches_the_target_histogram_inside_the_mask_only():
    source, target, mask = _volumes(1)
    out = remapped(source, target, mask)
    assert np.all(out[~mask] == 0)
    np.testing.assert_allclose(np.sort(out[mask]), np.sort(target[mask]), atol=1e-6)


def test_scores_refuse_mismatched_shapes_and_empty_masks():
    source, target, mask = _volumes()
    with pytest.raises(ValueError, match="shapes differ"):
        scores(source[:-1], target, mask)
    with pytest.raises(ValueError, match="empty"):
        scores(source, target, np.zeros_like(mask))


def test_no_fidelity_rows_give_an_empty_table():
    assert fidelity_table(pd.DataFrame({"kind": ["pairs"], "value": [1.0]})).empty
