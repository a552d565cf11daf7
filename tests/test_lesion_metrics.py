"""Lesion preservation and grid metrics on hand-built volumes whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harmonix.evaluation import artifacts, lesion


def phantom(shape=(24, 24, 8)):
    """A box brain: WM 100, GM 60, CSF 20 in bands; a tumour with NCR 1, ED 2 and ET 4."""
    brain = np.zeros(shape, bool)
    brain[2:22, 2:22, :] = True
    tissue = np.zeros(shape, np.uint8)
    tissue[brain] = 3
    tissue[2:6, 2:22, :] = 2  # GM band
    tissue[2:4, 2:22, :] = 1  # CSF band
    label = np.zeros(shape, np.uint8)
    label[12:20, 12:20, 2:6] = 2  # ED
    label[14:18, 14:18, 2:6] = 4  # ET
    label[15:17, 15:17, 2:6] = 1  # NCR
    values = {0: 0.0, 1: 20.0, 2: 60.0, 3: 100.0}
    image = np.vectorize(values.get)(tissue).astype(np.float64)
    return image, brain, tissue, label


def paint(image, label, ncr, ed, et):
    out = image.copy()
    for value, intensity in ((1, ncr), (2, ed), (4, et)):
        out[label == value] = intensity
    return out


def test_contrast_ratios_and_signs_worked_by_hand():
    image, brain, tissue, label = phantom()
    real = paint(image, label, ncr=50, ed=150, et=200)  # over WM 100: 0.5, 1.5, 2.0
    masks = {name: label == value for name, value in lesion.REGIONS.items()}
    reference = lesion.normal_reference(label, brain, tissue)
    assert not reference[label > 0].any() and (tissue[reference] == 3).all()
    ratios = lesion.contrast_ratios(real, masks, reference)
    assert ratios == pytest.approx({"NCR": 0.5, "ED": 1.5, "ET": 2.0})
    dark_oedema = paint(image, label, ncr=50, ed=40, et=200)  # ED 0.4: the "black hole"
    flipped = lesion.contrast_ratios(dark_oedema, masks, reference)
    assert lesion.signs_agree(ratios, ratios) == 1.0
    assert lesion.signs_agree(flipped, ratios) == 0.0
    assert math.isnan(lesion.signs_agree({"ED": float("nan")}, {"ED": float("nan")}))


def test_pair_rows_tissue_contrast_and_structure():
    image, brain, tissue, label = phantom()
    real = paint(image, label, ncr=50, ed=150, et=200)
    rows = pd.DataFrame(lesion.pair_rows(real, image, real, label, brain, tissue))
    value = {(r.strategy, r.metric): r.value for r in rows.itertuples()}
    assert value[("real", "tissue_CSF")] == pytest.approx(0.2)  # CSF 20 / WM 100
    assert value[("real", "tissue_GM")] == pytest.approx(0.6)
    assert value[("generated", "contrast_sign_agrees")] == 1.0
    assert value[("generated", "ssim_lesion")] == pytest.approx(1.0)  # generated == real
    assert value[("copy", "ssim_lesion")] < 0.9  # the source has no tumour at all
    assert value[("generated", "nmi")] == pytest.approx(value[("real", "nmi")])
    # a T2 with CSF darker than WM is wrong, and shows as such
    bad = image.copy()
    bad[tissue == 1] = 10
    rows = pd.DataFrame(lesion.pair_rows(bad, image, real, label, brain, tissue))
    bad_value = {(r.strategy, r.metric): r.value for r in rows.itertuples()}
    assert bad_value[("generated", "tissue_CSF")] == pytest.approx(0.1)


def test_brasyn_ssim_scales_to_unit_range_and_splits_inside_and_outside():
    image, brain, _, label = phantom()
    real = paint(image, label, ncr=50, ed=150, et=200)
    scaled = lesion.unit_scaled(real, brain)
    assert scaled.min() == 0.0 and scaled.max() == 1.0 and (scaled[~brain] == 0).all()
    # a positive linear map of the image is the same image after the percentile scaling
    same = lesion.brasyn_ssim(3 * real + 7, real, label > 0, brain)
    assert same["ssim_lesion"] == pytest.approx(1.0) and same["ssim_outside"] == pytest.approx(1.0)
    wrong_lesion = paint(image, label, ncr=200, ed=40, et=50)  # same range, contrasts swapped
    scores = lesion.brasyn_ssim(wrong_lesion, real, label > 0, brain)
    assert scores["ssim_lesion"] < 0.8 and scores["ssim_lesion"] < scores["ssim_outside"]


def test_structure_falls_when_anatomy_is_lost():
    image, brain, tissue, label = phantom()
    rng = np.random.default_rng(0)
    blobs = rng.uniform(0, 255, image.shape)
    assert (lesion.brain_nmi(image, blobs, brain) < 0.9 * lesion.brain_nmi(image, image, brain))


def test_lesion_table_reads_medians_and_sign_per_pair():
    rows = []
    for case, ed in (("a", 1.5), ("b", 1.7), ("c", 0.8)):
        for strategy, values in (("generated", {"ED": ed, "ET": 2.0}),
                                 ("real", {"ED": 1.6, "ET": 2.1})):
            for region, v in values.items():
                rows.append((case, strategy, f"contrast_{region}", v))
        rows += [(case, "generated", "ssim_lesion", 0.6), (case, "copy", "ssim_lesion", 0.4),
                 (case, "remapped", "ssim_lesion", 0.5), (case, "generated", "nmi", 1.1),
                 (case, "real", "nmi", 1.2), (case, "generated", "contrast_sign_agrees",
                                              float(ed > 1))]
    frame = pd.DataFrame(rows, columns=["case", "strategy", "metric", "value"])
    frame["kind"], frame["source"], frame["sequence"] = lesion.KIND, "t1", "flair"
    table = lesion.lesion_table(frame)
    row = table.iloc[0]
    assert row["contrast_ED_generated"] == pytest.approx(1.5)  # median of 1.5, 1.7, 0.8
    assert row["contrast_sign_agrees"] == 1.0
    assert row["contrast_sign_share"] == pytest.approx(1.0)  # median of 1, 1, 0
    assert row["lesion_ssim_wins"] == 1.0
    assert row["nmi_ratio"] == pytest.approx(1.1 / 1.2)


def test_grid_power_finds_a_checkerboard_at_the_patch_period():
    image, brain, _, _ = phantom((32, 32, 4))
    smooth = image + np.linspace(0, 10, 32)[:, None, None]
    checker = smooth + 20 * ((np.indices((32, 32)).sum(0) % 2)[:, :, None] - 0.5)
    clean, gridded = (artifacts.grid_power(v, brain, 2) for v in (smooth, checker))
    assert gridded > 100 * clean and gridded > 0.01
    assert artifacts.grid_power(checker, brain, 1) == 0.0
    frame = pd.DataFrame([("a", "generated", gridded), ("a", "real", clean)],
                         columns=["case", "strategy", "value"])
    frame["kind"], frame["sequence"], frame["metric"] = artifacts.KIND, "t2", "grid_period_2"
    table = artifacts.grid_table(frame)
    assert table.loc[0, "ratio"] == pytest.approx(gridded / clean)
    assert table.loc[0, "period"] == "2"


def test_through_plane_measure_sees_per_slice_offsets():
    image, brain, _, _ = phantom((24, 24, 12))
    smooth = image + np.linspace(0, 5, 12)[None, None, :]
    rng = np.random.default_rng(0)
    striped = smooth + rng.normal(0, 15, 12)[None, None, :] * brain  # an offset per slice
    assert artifacts.through_plane(striped, brain) > 5 * artifacts.through_plane(smooth, brain)
    frame = pd.DataFrame([("a", "generated", 0.4), ("a", "real", 0.1), ("b", "generated", 0.6),
                          ("b", "real", 0.1)], columns=["case", "strategy", "value"])
    frame["kind"], frame["sequence"] = artifacts.THROUGH_PLANE, "flair"
    table = artifacts.through_plane_table(frame)
    assert table.loc[0, "ratio"] == pytest.approx(5.0)  # median 0.5 over 0.1
