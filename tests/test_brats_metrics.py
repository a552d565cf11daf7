"""The official BraTS lesion-wise metrics (the ``brats`` extra) against harmonix's own Dice."""

from __future__ import annotations

import numpy as np
import pytest

from harmonix.extras import MissingExtraError
from harmonix_metrics import brats
from harmonix_metrics.segmentation import dice_scores


def one_lesion_case(seed: int):
    """A truth with one lesion per region and a prediction that misses part of it."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((32, 32, 16), np.uint8)
    truth[8:20, 8:20, 4:12] = 2  # ED
    truth[11:17, 11:17, 6:10] = 4  # ET
    truth[13:15, 13:15, 7:9] = 1  # NCR inside ET
    prediction = truth.copy()
    cut = int(rng.integers(8, 12))
    prediction[8:cut, 8:20, 4:12] = 0  # part of the oedema missed
    prediction[11:13, 11:17, 6:10] = 2  # part of ET called oedema
    return prediction, truth


def test_lesion_wise_dice_equals_voxel_dice_where_each_region_is_one_lesion():
    pytest.importorskip("brats_evaluation")
    metric = brats.LesionwiseDice()
    for seed in range(3):
        prediction, truth = one_lesion_case(seed)
        ours, official = dice_scores(prediction, truth), metric.compute(prediction, truth)
        assert set(official) == {"WT", "TC", "ET"}
        for region in ("WT", "TC", "ET"):
            assert official[region] == pytest.approx(ours[region], abs=1e-9), (seed, region)


def test_a_false_positive_lesion_changes_voxel_dice_but_not_the_matched_lesions_dice():
    """The package's lesion-wise Dice is the mean over matched lesions (panoptica's sq_dsc):
    an unmatched extra lesion lowers voxel Dice, not the matched lesions' mean."""
    pytest.importorskip("brats_evaluation")
    prediction, truth = one_lesion_case(0)
    before = brats.LesionwiseDice().compute(prediction, truth)["WT"]
    voxel_before = dice_scores(prediction, truth)["WT"]
    prediction[26:28, 26:28, 1:3] = 2  # a small second lesion that is not there
    assert dice_scores(prediction, truth)["WT"] < voxel_before
    assert brats.LesionwiseDice().compute(prediction, truth)["WT"] == pytest.approx(before)
    hd95 = brats.LesionwiseHD95().compute(prediction, truth, spacing=3.0)["WT"]
    assert 0 < hd95 < brats.HD95_PENALTY


def test_without_the_extra_the_metric_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(brats._Evaluator, "_shared", None)

    def missing(module, purpose):
        raise MissingExtraError(f"{purpose} needs the package 'brats-evaluation', which is not "
                                "installed; pip install 'harmonix[brats]' (or 'harmonix[all]')")

    monkeypatch.setattr(brats, "require", missing)
    with pytest.raises(MissingExtraError, match=r"harmonix\[brats\]"):
        brats.LesionwiseDice()
