"""Segmenter plugins (SegResNet, 2D U-Net): labels, fit/predict/save/load/resume, the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from harmonix.data.labels import from_canonical
from harmonix.data.preprocess import PreprocessConfig, preprocess_case, restore
from harmonix.data.site import read_site
from harmonix.data.synth import synthesize_site
from harmonix.errors import CheckpointError
from harmonix.plugins import build_segmenter, get_segmenter
from harmonix_segmenters.labels import (
    classes_to_labels,
    labels_to_classes,
    region_masks,
    regions_to_labels,
)

SEQUENCES = ("t1", "t1ce", "t2", "flair")
CONFIG = PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 40))
TINY = {
    "unet2d": dict(channels=(4, 8, 16), dropout=0.0),
    "segresnet": dict(init_filters=8, blocks_down=(1, 1), blocks_up=(1,), patch=(16, 16, 16),
                      dropout=0.0),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return synthesize_site(tmp_path_factory.mktemp("seg") / "brats", 2, center="brats", seed=3,
                           spacing=4.0, workers=1)


@pytest.fixture(scope="module")
def prepared(site):
    return [preprocess_case(case, CONFIG) for case in read_site(site).cases]


# -- labels ------------------------------------------------------------------------------------
def test_regions_to_labels_follows_the_nesting():
    wt = np.array([1, 1, 1, 0, 0, 1, 0], bool)
    tc = np.array([1, 1, 0, 0, 0, 0, 1], bool)
    et = np.array([1, 0, 0, 0, 1, 0, 0], bool)
    # ET where ET; NCR where TC and not ET; ED where WT and not TC
    assert regions_to_labels(wt, tc, et).tolist() == [4, 1, 2, 0, 4, 2, 1]


def test_region_masks_match_their_definition_and_round_trip():
    labels = np.random.default_rng(0).choice([0, 1, 2, 4], size=(6, 5, 4)).astype(np.uint8)
    wt, tc, et = region_masks(labels)
    assert np.array_equal(wt, labels > 0)
    assert np.array_equal(tc, (labels == 1) | (labels == 4))
    assert np.array_equal(et, labels == 4)
    assert np.array_equal(regions_to_labels(wt, tc, et), labels)
    assert np.array_equal(classes_to_labels(labels_to_classes(labels)), labels)
    assert labels_to_classes(np.array([0, 1, 2, 4])).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="3"):
        labels_to_classes(np.array([0, 3]))


# -- fit, predict, save, load, resume ----------------------------------------------------------
@pytest.mark.parametrize("name", ["unet2d", "segresnet"])
def test_fit_predict_save_load_round_trip(name, prepared, tmp_path):
    out = tmp_path / name
    segmenter = build_segmenter(name, SEQUENCES, **TINY[name])
    segmenter.fit(prepared, out, iters=2, batch_size=2, preprocess=CONFIG, progress=False)
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model_card.json",
                                               "training_state.pt"}
    card = json.loads((out / "model_card.json").read_text())
    assert card["segmenter"] == name and card["sequences"] == list(SEQUENCES)
    assert card["iteration"] == 2 and card["preprocessing"] == CONFIG.to_dict()
    assert card["training"]["cases"] == [c.case_id for c in prepared]

    labels = segmenter.predict(prepared[0].volumes)
    assert labels.shape == CONFIG.crop_shape and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}

    loaded = get_segmenter(name).load(out)
    assert loaded.options == segmenter.options
    for key, value in segmenter.network.state_dict().items():
        assert torch.equal(value, loaded.network.state_dict()[key]), key
    assert np.array_equal(loaded.predict(prepared[0].volumes), labels)


@pytest.mark.parametrize("name", ["unet2d", "segresnet"])
def test_resume_continues_where_an_uninterrupted_run_would_be(name, prepared, tmp_path):
    cls = get_segmenter(name)
    torch.manual_seed(0)
    straight = cls(SEQUENCES, **TINY[name])
    straight.fit(prepared, tmp_path / "straight", iters=4, seed=1, progress=False)

    def interrupt(iteration: int, loss: float) -> None:
        if iteration == 2:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        cls(SEQUENCES, **TINY[name]).fit(prepared, tmp_path / "split", iters=4, seed=1,
                                         checkpoint_every=2, on_iteration=interrupt,
                                         progress=False)
    assert json.loads((tmp_path / "split" / "model_card.json").read_text())["iteration"] == 2
    torch.manual_seed(123)  # a different init: resuming must load the checkpoint's weights
    resumed = cls(SEQUENCES, **TINY[name])
    resumed.fit(prepared, tmp_path / "split", iters=4, seed=1, resume=True, progress=False)
    assert resumed.card["iteration"] == 4
    for key, value in straight.network.state_dict().items():
        assert torch.allclose(value, resumed.network.state_dict()[key], atol=1e-6), key

    fresh = cls(SEQUENCES, **TINY[name])  # resume with nothing to resume starts a run
    fresh.fit(prepared, tmp_path / "fresh", iters=1, resume=True, progress=False)
    assert fresh.card["iteration"] == 1 and (tmp_path / "fresh" / "model.safetensors").exists()

    with pytest.raises(CheckpointError, match="resume"):
        cls(SEQUENCES, **TINY[name]).fit(prepared, tmp_path / "split", iters=5, progress=False)
    other = {**TINY[name], "dropout": 0.3}
    with pytest.raises(CheckpointError, match="options"):
        cls(SEQUENCES, **other).fit(prepared, tmp_path / "split", iters=5, resume=True,
                                    progress=False)


def test_bad_inputs_are_named(prepared, tmp_path):
    segmenter = build_segmenter("unet2d", SEQUENCES, **TINY["unet2d"])
    volumes = {s: v for s, v in prepared[0].volumes.items() if s != "flair"}
    with pytest.raises(ValueError, match="flair"):
        segmenter.predict(volumes)
    with pytest.raises(ValueError, match="channels"):
        build_segmenter("unet2d", SEQUENCES, chanels=(4, 8))
    with pytest.raises(ValueError, match="patch"):
        build_segmenter("segresnet", SEQUENCES, patch=(20, 16, 16))


# -- CLI ---------------------------------------------------------------------------------------
def test_the_segment_commands_load_the_workflow_only_when_run():
    """``harmonix segment`` is harmonix.segmentation (no longer in evaluate); its command module
    imports neither the workflow nor torch, so starting the CLI stays light."""
    assert importlib.util.find_spec("harmonix.evaluation.segmentation") is None
    code = ("import sys, harmonix.cli.segment; loaded = [m for m in "
            "('torch', 'harmonix.segmentation', 'pandas') if m in sys.modules]; "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr


def test_segment_cli_writes_labels_on_the_case_grid_in_the_site_convention(cli, site, tmp_path):
    seg_dir = tmp_path / "seg"
    result = cli("segment", "train", "--data", site, "--out", seg_dir, "--segmenter", "unet2d",
                 "--iters", "2", "--spacing", "4", "--size", "48", "--option",
                 "channels=4,8,16")
    assert result.exit_code == 0, result.output
    card = json.loads((seg_dir / "model_card.json").read_text())
    assert card["preprocessing"]["crop_shape"] == [48, 48, 39]
    assert card["options"]["channels"] == [4, 8, 16]
    assert card["training"]["data"] == [site.name]  # cards travel: the folder's name only

    # a BraTS 2023 site (labels 1/2/3, CASE-seg.nii.gz naming)
    men = synthesize_site(tmp_path / "men", 1, center="brats-men", seed=4, spacing=4.0,
                          workers=1)
    out = tmp_path / "pred"
    result = cli("segment", "predict", men, "--model", seg_dir, "--out", out)
    assert result.exit_code == 0, result.output
    case = read_site(men).cases[0]
    written = nib.load(out / case.id / f"{case.id}-seg.nii.gz")
    reference = nib.load(case.label)
    assert written.shape == reference.shape
    assert np.allclose(written.affine, reference.affine)
    values = np.asarray(written.dataobj)
    assert set(np.unique(values).tolist()) <= {0, 1, 2, 3}

    segmenter = get_segmenter("unet2d").load(seg_dir)
    prepared = preprocess_case(case, PreprocessConfig.from_dict(card["preprocessing"]))
    canonical = restore(segmenter.predict(prepared.volumes), prepared.record, is_label=True)
    expected = from_canonical(np.asarray(canonical.dataobj), "brats2023")
    assert np.array_equal(values, expected)
    assert "done" in (out / "predictions.csv").read_text()


def test_segment_predict_reports_cases_that_lack_a_sequence(cli, prepared, tmp_path):
    seg_dir = tmp_path / "seg"
    build_segmenter("unet2d", SEQUENCES, **TINY["unet2d"]).fit(
        prepared, seg_dir, iters=1, preprocess=CONFIG, progress=False)
    local = synthesize_site(tmp_path / "local", 1, center="local", seed=5, spacing=4.0,
                            workers=1)
    result = cli("segment", "predict", local, "--model", seg_dir, "--out", tmp_path / "pred")
    assert result.exit_code == 1
    assert "t1ce" in result.output and "harmonize" in result.output
