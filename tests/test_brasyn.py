"""The BraSyn protocol: a seeded, recorded drop per case; BraSyn's image scores; its table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmonix.evaluation import brasyn
from harmonix.evaluation.scenarios import parse_kinds

SEQUENCES = ("t1", "t1ce", "t2", "flair")


def test_the_drop_is_one_sequence_per_case_seeded_and_independent_of_random_missing():
    cases = [f"c{i}" for i in range(40)]
    first, again = brasyn.drops(cases, SEQUENCES, seed=3), brasyn.drops(cases, SEQUENCES, seed=3)
    assert first == again and all(len(m) == 1 for m in first.values())
    assert {next(iter(m)) for m in first.values()} == set(SEQUENCES)  # all four get dropped
    assert brasyn.drops(cases, SEQUENCES, seed=4) != first
    assert "brasyn" in parse_kinds("all") and parse_kinds("brasyn") == ["brasyn"]


def box():
    brain = np.zeros((24, 24, 10), bool)
    brain[2:22, 2:22, 1:9] = True
    label = np.zeros(brain.shape, np.uint8)
    label[10:16, 10:16, 3:7] = 2
    rng = np.random.default_rng(0)
    real = (rng.uniform(40, 60, brain.shape) + 100 * (label > 0)) * brain
    return real, brain, label


def test_image_rows_score_a_perfect_fill_above_the_copied_source():
    real, brain, label = box()
    copied = (255 - real) * brain  # the source: the inverse contrast
    rows = pd.DataFrame(brasyn.image_rows(real, copied, real, label, brain))
    value = {(r.strategy, r.metric): r.value for r in rows.itertuples()}
    assert value[("generated", "ssim_lesion")] == pytest.approx(1.0)
    assert value[("generated", "psnr")] == np.inf
    assert value[("copy", "ssim_lesion")] < 0.5
    # remapping the inverted source (its better direction) recovers much of the real one
    assert value[("remapped", "ssim_lesion")] > value[("copy", "ssim_lesion")]
    assert brasyn.unit_psnr(real + 1.0, real, brain) == np.inf  # same after the scaling


def test_brasyn_table_means_images_and_medians_dice():
    rows = [("a", "generated", "ssim_lesion", "", 0.6), ("b", "generated", "ssim_lesion", "", 0.8),
            ("a", "copy", "ssim_lesion", "", 0.2), ("b", "copy", "ssim_lesion", "", 0.4),
            ("a", "generated", "dice", "WT", 0.7), ("b", "generated", "dice", "WT", 0.9),
            ("c", "generated", "dice", "WT", 0.1), ("a", "complete", "dice", "WT", 0.95)]
    frame = pd.DataFrame(rows, columns=["case", "strategy", "metric", "region", "value"])
    frame["kind"] = brasyn.KIND
    table = brasyn.brasyn_table(frame).set_index("strategy")
    assert table.loc["generated", "ssim_lesion"] == pytest.approx(0.7)
    assert table.loc["copy", "ssim_lesion"] == pytest.approx(0.3)
    assert table.loc["generated", "dice_WT"] == pytest.approx(0.7)  # median of 0.7, 0.9, 0.1
    assert table.loc["generated", "cases"] == 3 and table.loc["complete", "dice_WT"] == 0.95
