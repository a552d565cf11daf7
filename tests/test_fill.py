"""``harmonix.fill_case``: one case in memory, completed exactly as ``harmonize`` completes it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from tiny_runs import train_tiny_run

import harmonix
from harmonix.harmonization.fusion import FillPolicy
from harmonix.interfaces import Generator

SPACING, SIZE = 6.0, 32
CASE = "BraTS19_SYN_0001"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 2-case built-in BraTS site at 6 mm, a UMMGAT run trained on it for one iteration, and
    an incomplete copy of the first case (t1 and t2 only) harmonized with that run, on the
    input's intensity scale (the default) and on the model's."""

    from harmonix.cli import _load_commands
    from harmonix.data.synth import synthesize_site

    root = tmp_path_factory.mktemp("fill")
    site = synthesize_site(root / "brats", 2, center="brats", spacing=SPACING, workers=1)
    _load_commands()
    run = train_tiny_run(site, root / "run")
    incomplete = root / "incomplete"
    (incomplete / CASE).mkdir(parents=True)
    for seq in ("t1", "t2"):
        shutil.copy(site / CASE / f"{CASE}_{seq}.nii.gz", incomplete / CASE)
    for intensity in ("input", "model"):
        done = harmonix.harmonize(incomplete, target="brats", model=run, center="brats", seed=3,
                                  out=root / f"harmonized-{intensity}", intensity=intensity)
        assert done.ok and {r.sequence for r in done.rows if r.status == "generated"} == {
            "t1ce", "flair"}
    return root, run, incomplete / CASE, root / "harmonized-{}" / CASE


def inputs(case: Path, keys=("t1", "t2")) -> dict[str, nib.Nifti1Image]:
    return {key: nib.load(case / f"{CASE}_{key.lower()}.nii.gz") for key in keys}


@pytest.mark.parametrize("intensity, dtype", [("input", np.int16), ("model", np.float32)])
def test_fill_case_equals_harmonize_on_the_same_case(built, intensity, dtype):
    _, run, case, written = built
    written = Path(str(written).format(intensity))
    images = inputs(case, keys=("T1", "t2"))  # a sequence alias as key, as users write them
    assert images["T1"].get_data_dtype() == np.int16  # the built-in data's scanner type
    filled = harmonix.fill_case(images, run, "brats", seed=3, intensity=intensity)
    assert list(filled) == ["t1", "t1ce", "t2", "flair"]  # the target's sequences, in order
    assert filled["t1"] is images["T1"] and filled["t2"] is images["t2"]  # real: unchanged
    for seq in ("t1ce", "flair"):
        image, on_disk = filled[seq], nib.load(written / f"{CASE}_{seq}.nii.gz")
        generated = np.asarray(image.dataobj)
        assert generated.dtype == dtype and generated.max() > 0
        assert np.array_equal(generated, np.asarray(on_disk.dataobj)), seq  # voxel-identical
        # on the input's grid, flagged synthetic like the file harmonize writes
        assert image.shape == images["t2"].shape
        assert np.allclose(image.affine, images["t2"].affine)
        # the model card's default policy: the most correlated present source
        assert re.fullmatch(rb"harmonix SYNTHETIC generated from (t1|t2)",
                            image.header["descrip"].tobytes().rstrip(b"\0"))
        assert image.header["descrip"] == on_disk.header["descrip"]
        assert image.header.get_sform(coded=True)[1] == on_disk.header.get_sform(coded=True)[1]
    other_seed = harmonix.fill_case(images, run, "brats", seed=4, intensity=intensity)
    assert not np.array_equal(other_seed["t1ce"].dataobj, filled["t1ce"].dataobj)


def test_fill_case_takes_an_installed_model_name(built, tmp_path, monkeypatch):
    from harmonix.models.packages import export_model, install_model

    root, run, case, _ = built
    monkeypatch.setenv("HARMONIX_MODELS", str(tmp_path / "models"))
    install_model(export_model(run, tmp_path / "tiny-gen.zip").archive)
    by_name = harmonix.fill_case(inputs(case), "tiny-gen", sources=["t2"])
    by_path = harmonix.fill_case(inputs(case), run, sources=["t2"])
    assert by_name["flair"].header["descrip"].tobytes().rstrip(b"\0").endswith(b"from t2")
    assert np.array_equal(by_name["flair"].dataobj, by_path["flair"].dataobj)


class Inverting(Generator):
    """255 - image on the processed grid; records every call."""

    def __init__(self, domains=("brats/t1", "brats/t1ce", "brats/t2", "brats/flair")):
        self.domains = list(domains)
        self.image_size = 24
        self.card = {"trainer": "fake", "domains": self.domains,
                     "preprocessing": {"spacing": 8.0, "crop_shape": [24, 24, 20]}}
        self.calls = []

    def translate(self, images, source, target, *, reference=None, seed=0):
        self.calls.append((source, target))
        return 255.0 - images

    def style_codes(self, images, domain, *, lesion=False):
        return torch.zeros(images.shape[0], 4)


def test_complete_case_is_returned_without_generating(built):
    _, _, case, _ = built
    images = inputs(case.parent.parent / "brats" / CASE, ("t1", "t1ce", "t2", "flair"))
    model = Inverting()
    filled = harmonix.fill_case(images, model)
    assert model.calls == [] and all(filled[s] is images[s] for s in images)


def test_fill_case_plans_like_harmonize(built):
    _, _, case, _ = built
    model = Inverting()
    filled = harmonix.fill_case(inputs(case), model, sources=["t2", "t1"])
    assert set(model.calls) == {("brats/t2", "brats/flair"), ("brats/t2", "brats/t1ce")}
    assert all(b"from t2" in filled[s].header["descrip"].tobytes() for s in ("t1ce", "flair"))


@pytest.mark.parametrize("images, match", [
    ({"t1": 42}, "expected a nibabel image"),
    ({"bogus": None}, "not a sequence name or alias"),
    ({}, "non-empty dict"),
])
def test_bad_inputs_are_value_errors(images, match):
    with pytest.raises(ValueError, match=match):
        harmonix.fill_case(images, Inverting())


def test_same_sequence_twice_and_unmakeable_sequence(built):
    _, _, case, _ = built
    t1 = inputs(case)["t1"]
    with pytest.raises(ValueError, match=r"images\['t1'\] and images\['T1'\] are both t1"):
        harmonix.fill_case({"t1": t1, "T1": t1}, Inverting())
    with pytest.raises(ValueError, match="flair: missing, and the model has no domain "
                                         "brats/flair"):
        harmonix.fill_case({"t1": t1}, Inverting(domains=("brats/t1", "brats/t1ce",
                                                          "brats/t2")))


# -- fill policy: one source or every present source, fused (harmonix.harmonization.fusion) --
def test_the_trainer_records_its_fill_policy_with_the_correlations(built):
    _, run, _, _ = built
    card = json.loads(next(Path(run).glob("checkpoints/*/model_card.json")).read_text())
    policy = FillPolicy.from_card(card)
    assert policy.policy == "single" and policy.cases == 2  # DEFAULT_POLICY
    assert set(policy.correlations) == {"t1", "t1ce", "t2", "flair"}
    assert policy.correlations["t1"]["t1"] == pytest.approx(1.0)


def test_fused_with_one_present_source_equals_the_single_source_output(built):
    _, run, case, _ = built
    only_t2 = {"t2": inputs(case)["t2"]}
    fused = harmonix.fill_case(only_t2, run, fill="fused", intensity="model")
    single = harmonix.fill_case(only_t2, run, fill="single", intensity="model")
    for seq in ("t1", "t1ce", "flair"):
        assert np.array_equal(fused[seq].dataobj, single[seq].dataobj), seq
    both = harmonix.fill_case(inputs(case), run, fill="fused", intensity="model")
    one = harmonix.fill_case(inputs(case), run, fill="single", intensity="model")
    assert not np.array_equal(both["flair"].dataobj, one["flair"].dataobj)


@pytest.mark.parametrize("fill", [None, "fused"])
def test_harmonize_fill_case_and_evaluate_fill_identical_voxels(built, fill):
    """One case, the card's policy (single) or fused: harmonize's file, fill_case's image and
    the evaluation's filler (on the preprocessed grid, restored) hold the same voxels."""
    from harmonix.data.preprocess import preprocess_case, restore
    from harmonix.evaluation.strategies import GeneratedFiller
    from harmonix.harmonization.translate import preprocess_config_from_card, resolve_target
    from harmonix.models.checkpoints import load_generator

    root, run, case, _ = built
    out = root / f"identical-{fill}"
    harmonix.harmonize(case.parent, target="brats", model=run, center="brats", seed=3, out=out,
                       intensity="model", fill=fill)
    written = out / CASE
    filled = harmonix.fill_case(inputs(case), run, "brats", seed=3, intensity="model",
                                fill=fill)
    generator = load_generator(run)
    prepared = preprocess_case(inputs(case), preprocess_config_from_card(generator))
    policy = FillPolicy.from_card(generator.card).with_policy(fill)
    filler = GeneratedFiller(generator, resolve_target("brats"), ("t1", "t1ce", "t2", "flair"),
                             center="brats", seed=3, policy=policy)
    volumes, sources = filler.fill(prepared, ["t1", "t2"])
    assert len(sources["flair"].split("+")) == (2 if fill == "fused" else 1)
    for seq in ("t1ce", "flair"):
        from_eval = np.asarray(restore(volumes[seq], prepared.record).dataobj, np.float32)
        on_disk = np.asarray(nib.load(written / f"{CASE}_{seq}.nii.gz").dataobj)
        assert np.array_equal(np.asarray(filled[seq].dataobj), on_disk), seq
        assert np.array_equal(from_eval, on_disk), seq


def test_confidence_writes_the_spread_on_the_input_grid_flagged_synthetic(built):
    root, run, case, _ = built
    out = root / "confidence"
    done = harmonix.harmonize(case.parent, target="brats", model=run, center="brats", seed=3,
                              out=out, confidence=True, fill="fused")
    spread_rows = [r for r in done.rows if r.status == "spread"]
    assert {r.sequence for r in spread_rows} == {"t1ce", "flair"}
    t2 = nib.load(case / f"{CASE}_t2.nii.gz")
    for row in spread_rows:
        path = out / row.file
        assert path.parent.name == "_confidence"
        image = nib.load(path)
        assert image.shape == t2.shape and np.allclose(image.affine, t2.affine)
        assert b"SYNTHETIC" in image.header["descrip"].tobytes()
        data = np.asarray(image.dataobj)
        assert data.min() >= 0 and data.max() > 0  # the sources disagree somewhere
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["synthetic"] is True and sidecar["status"] == "spread"
        assert "not a calibrated probability" in sidecar["meaning"]
    assert done.ok
