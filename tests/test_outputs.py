"""What harmonize writes: synthetic volumes on their real counterpart's intensity scale and dtype
(docs/data.md), the input's extension, a BIDS derivatives dataset (--layout bids) and aligned
volumes merged into the case folders (--merge-aligned)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from harmonix.api import harmonize
from harmonix.data.load import load_case
from harmonix.data.preprocess import PreprocessConfig, preprocess_case
from harmonix.data.site import read_site
from harmonix.errors import InputError
from harmonix.harmonization.bids import DATASET_DIR
from harmonix.harmonization.case_files import brain_on_input_grid
from harmonix.harmonization.outputs import CASE_RECORD, read_manifest
from harmonix.interfaces import Generator

CONFIG = PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 40))
BRATS = tuple(f"brats/{s}" for s in ("t1", "t1ce", "t2", "flair"))
LOCAL = ("local/t1", "local/t2")
# BIDS file names: sub-<label>[_ses-<label>][_<key>-<value>...]_<suffix>.<extension>
BIDS_NAME = re.compile(
    r"^sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?((_(ce|acq|rec|run|desc)-[A-Za-z0-9]+)*)"
    r"_(T1w|T2w|FLAIR|PDw|T2starw|dseg)\.(nii\.gz|nii|json)$")
ENTITY_ORDER = ("ce", "acq", "rec", "run", "desc")  # the BIDS order of the entities used here


class IdentityGenerator(Generator):
    """A stand-in model that returns its input: a generated volume is its source, exactly."""

    def __init__(self, domains=BRATS):
        self.domains = tuple(domains)
        self.image_size = CONFIG.crop_shape[0]
        self.card = {"trainer": "fake", "preprocess": CONFIG.to_dict(), "domains": self.domains}

    def translate(self, images, source, target, *, reference=None, seed=0):
        return images.clone()

    def style_codes(self, images, domain, *, lesion=False):
        return torch.zeros(images.shape[0], 4)


@pytest.fixture(scope="module")
def built_in(tmp_path_factory) -> Path:
    """Built-in data at 4 mm (60x60x39, LPS, int16): 2 ``brats`` cases and 1 ``local`` case."""
    from harmonix.data.synth import synthesize_site

    root = tmp_path_factory.mktemp("outputs")
    synthesize_site(root / "brats", 2, center="brats", spacing=4.0, workers=1)
    synthesize_site(root / "local", 1, center="local", spacing=4.0, workers=1)
    return root


def cases(site: Path) -> list[Path]:
    return sorted(p for p in site.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def one_case(built_in: Path, dest: Path, drop=("t2",)) -> tuple[Path, str]:
    """The first built-in brats case, without the ``drop`` sequences."""
    case = cases(built_in / "brats")[0]
    shutil.copytree(case, dest / case.name)
    for seq in drop:
        (dest / case.name / f"{case.name}_{seq}.nii.gz").unlink()
    return dest, case.name


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_from(site: Path, source: str):
    """What the identity model gives back for ``source`` on its own scale: the percentile
    clipped real voxels inside the brain, 0 outside; and the (low, high) of the source."""
    case = read_site(site).cases[0]
    prepared = preprocess_case(dict(load_case(case).images), CONFIG, case_id=case.id)
    low, high = prepared.record.intensity[source]
    real = np.asarray(nib.load(case.sequences[source]).dataobj, np.float64)
    brain = brain_on_input_grid(prepared)
    return np.where(brain, np.clip(real, low, high), 0.0), (low, high), brain


# -- intensities -----------------------------------------------------------------------------------
def test_generated_volume_is_on_its_source_scale_and_dtype(built_in, tmp_path):
    site, case_id = one_case(built_in, tmp_path / "site")
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=IdentityGenerator(), out=out,
                            sources=["t1"])
    assert result.ok, result.rows
    generated = nib.load(out / case_id / f"{case_id}_t2.nii.gz")
    source = nib.load(site / case_id / f"{case_id}_t1.nii.gz")
    assert generated.get_data_dtype() == source.get_data_dtype() == np.int16
    assert (generated.dataobj.slope, generated.dataobj.inter) == (1.0, 0.0)  # as its source
    expected, (low, high), brain = expected_from(site, "t1")
    data = np.asarray(generated.dataobj)
    assert not data[~brain].any()  # the background is 0, not `low`
    assert np.abs(data - np.rint(expected)).max() <= 1
    assert data[brain].min() >= np.floor(low) and data.max() <= np.ceil(high)
    meta = json.loads((out / case_id / f"{case_id}_t2.json").read_text())
    scale = meta["intensity"]
    assert (scale["scale"], scale["like_sequence"], scale["dtype"]) == ("input", "t1", "int16")
    assert scale["like_file"] == f"{case_id}_t1.nii.gz"
    assert scale["low"] == pytest.approx(low) and scale["high"] == pytest.approx(high)

    model = harmonize(site, target="brats", model=IdentityGenerator(), out=tmp_path / "m",
                           sources=["t1"], intensity="model")
    assert model.ok
    on_model = nib.load(tmp_path / "m" / case_id / f"{case_id}_t2.nii.gz")
    v = np.asarray(on_model.dataobj)
    assert v.dtype == np.float32 and v.min() >= 0 and v.max() == pytest.approx(255, abs=1e-3)
    # the documented inverse: x = v * (high - low) / 255 + low inside the brain
    np.testing.assert_allclose(v[brain] * (high - low) / 255 + low, expected[brain], atol=1e-2)
    meta = json.loads((tmp_path / "m" / case_id / f"{case_id}_t2.json").read_text())
    assert meta["intensity"]["scale"] == "model"


@pytest.mark.parametrize("kind", ["scaled-int16", "uint8", "float32"])
def test_dtype_and_scaling_follow_the_source_file(built_in, tmp_path, kind):
    site, case_id = one_case(built_in, tmp_path / "site")
    path = site / case_id / f"{case_id}_t1.nii.gz"
    original = nib.load(path)
    x = np.asarray(original.dataobj, np.float64)
    if kind == "scaled-int16":  # stored 2x + 200, read back as 0.5 * stored - 100 = x
        image = nib.Nifti1Image((2 * x + 200).astype(np.int16), original.affine, original.header)
        image.header.set_slope_inter(0.5, -100.0)
    elif kind == "uint8":
        image = nib.Nifti1Image(np.rint(x * 255 / x.max()).astype(np.uint8), original.affine,
                                original.header)
        image.set_data_dtype(np.uint8)
    else:
        image = nib.Nifti1Image((x * 0.37).astype(np.float32), original.affine, original.header)
        image.set_data_dtype(np.float32)
    image.to_filename(path)
    out = tmp_path / "out"
    assert harmonize(site, target="brats", model=IdentityGenerator(), out=out,
                          sources=["t1"]).ok
    generated = nib.load(out / case_id / f"{case_id}_t2.nii.gz")
    expected, _, brain = expected_from(site, "t1")
    values = np.asarray(generated.dataobj, np.float64)  # scaled as any reader would
    if kind == "scaled-int16":
        assert generated.get_data_dtype() == np.int16
        assert (generated.dataobj.slope, generated.dataobj.inter) == (0.5, -100.0)
        assert np.abs(values - expected).max() <= 0.5 + 1e-6  # rounded to the 0.5 steps
    elif kind == "uint8":
        assert generated.get_data_dtype() == np.uint8
        assert np.abs(values - np.rint(expected)).max() <= 1
    else:
        assert generated.get_data_dtype() == np.float32
        np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-3)  # not rounded
        assert not np.allclose(values[brain], np.rint(values[brain]))
    assert not values[~brain].any()


def test_the_input_extension_is_kept(built_in, tmp_path):
    site, case_id = one_case(built_in, tmp_path / "site", drop=("t2", "flair"))
    for path in (site / case_id).glob("*.nii.gz"):
        nib.save(nib.load(path), path.with_name(path.name[:-3]))  # .nii.gz -> .nii
        path.unlink()
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=IdentityGenerator(), out=out)
    assert result.ok
    written = sorted(p.name for p in (out / case_id).iterdir() if not p.name.startswith("."))
    assert written == sorted([
        *(f"{case_id}_{s}.nii" for s in ("t1", "t1ce", "t2", "flair", "seg")),
        f"{case_id}_t2.json", f"{case_id}_flair.json"])
    assert {r.file.rsplit(".", 1)[-1] for r in read_manifest(result.manifest)} == {"nii"}
    again = harmonize(site, target="brats", model=IdentityGenerator(), out=out)
    assert again.count("skipped") == 1


# -- BIDS ------------------------------------------------------------------------------------------
def bids_site(built_in: Path, root: Path) -> Path:
    """sub-01 (T1w with a sidecar, T2w) and sub-02/ses-1 (T1w only) from built-in cases."""
    first, second = (c.name for c in cases(built_in / "brats"))
    files = {
        root / "sub-01" / "anat" / "sub-01_T1w.nii.gz": built_in / "brats" / first / f"{first}_t1",
        root / "sub-01" / "anat" / "sub-01_T2w.nii.gz": built_in / "brats" / first / f"{first}_t2",
        root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz":
            built_in / "brats" / second / f"{second}_t1",
    }
    for dest, src in files.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src.with_name(src.name + ".nii.gz"), dest)
    (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text(
        json.dumps({"EchoTime": 0.0025, "MagneticFieldStrength": 3}))
    return root


def check_bids_name(path: Path) -> None:
    assert BIDS_NAME.match(path.name), path.name
    keys = [part.split("-")[0] for part in path.name.split("_")[1:-1] if "-" in part]
    keys = [k for k in keys if k != "ses"]
    assert keys == sorted(keys, key=ENTITY_ORDER.index), path.name  # BIDS entity order


def test_bids_layout_is_a_derivatives_dataset(built_in, tmp_path):
    site = bids_site(built_in, tmp_path / "site")
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=IdentityGenerator(), out=out,
                            layout="bids")
    assert result.ok, result.rows
    dataset = out / DATASET_DIR
    description = json.loads((dataset / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["Name"] and description["GeneratedBy"][0]["Name"] == "harmonix"
    assert description["GeneratedBy"][0]["Version"]

    anat = dataset / "sub-01" / "anat"
    names = sorted(p.name for p in anat.iterdir())
    assert names == sorted([
        "sub-01_T1w.nii.gz", "sub-01_T1w.json", "sub-01_T2w.nii.gz", "sub-01_T2w.json",
        "sub-01_ce-gadolinium_desc-synthetic_T1w.nii.gz",
        "sub-01_ce-gadolinium_desc-synthetic_T1w.json",
        "sub-01_desc-synthetic_FLAIR.nii.gz", "sub-01_desc-synthetic_FLAIR.json"])
    session = dataset / "sub-02" / "ses-1" / "anat"
    assert (session / "sub-02_ses-1_desc-synthetic_T2w.nii.gz").is_file()
    files = [p for p in dataset.rglob("*") if p.is_file() and not p.name.startswith(".")]
    for path in files:
        if path.name != "dataset_description.json":
            check_bids_name(path)
    try:  # the official BIDS validator's name rules, where installed: raw names are valid
        from bids_validator import BIDSValidator
    except ImportError:
        BIDSValidator = None
    if BIDSValidator is not None:
        validator = BIDSValidator()
        for path in files:
            raw = "/" + re.sub(r"_desc-[A-Za-z0-9]+", "", path.relative_to(dataset).as_posix())
            assert validator.is_bids(raw), raw

    real = json.loads((anat / "sub-01_T1w.json").read_text())  # carried over and extended
    assert real["EchoTime"] == 0.0025 and real["MagneticFieldStrength"] == 3
    assert real["status"] == "real" and real["synthetic"] is False
    assert digest(anat / "sub-01_T1w.nii.gz") == digest(site / "sub-01/anat/sub-01_T1w.nii.gz")
    generated = json.loads((anat / "sub-01_desc-synthetic_FLAIR.json").read_text())
    assert generated["synthetic"] is True and "EchoTime" not in generated  # not T1's parameters
    assert generated["Sources"] == ["bids::sub-01/anat/sub-01_T1w.nii.gz"]
    assert "SYNTHETIC" in generated["Description"] and generated["intensity"]["scale"] == "input"
    assert (dataset / "sub-01" / CASE_RECORD).is_file()

    # the dataset reads back as a site of complete cases, and a re-run skips every case
    back = read_site(dataset)
    assert [c.id for c in back.cases] == ["sub-01", "sub-02_ses-1"] and back.ok
    assert all(set(c.sequences) == {"t1", "t1ce", "t2", "flair"} for c in back.cases)
    again = harmonize(site, target="brats", model=IdentityGenerator(), out=out,
                           layout="bids")
    assert again.count("skipped") == 2


def test_bids_layout_from_a_brats_site_and_a_foreign_description(built_in, tmp_path):
    site, case_id = one_case(built_in, tmp_path / "site")
    out = tmp_path / "out"
    assert harmonize(site, target="brats", model=IdentityGenerator(), out=out,
                          layout="bids").ok
    subject = "sub-" + case_id.replace("_", "")
    anat = out / DATASET_DIR / subject / "anat"
    assert (anat / f"{subject}_dseg.nii.gz").is_file()
    assert (anat / f"{subject}_desc-synthetic_T2w.nii.gz").is_file()
    assert json.loads((anat / f"{subject}_T1w.json").read_text())["input_file"] == (
        f"{case_id}_t1.nii.gz")

    other = tmp_path / "other"
    (other / DATASET_DIR).mkdir(parents=True)
    mine = other / DATASET_DIR / "dataset_description.json"
    mine.write_text(json.dumps({"Name": "mine", "BIDSVersion": "1.9.0"}))
    with pytest.raises(InputError, match="not written by harmonix") as err:
        harmonize(site, target="brats", model=IdentityGenerator(), out=other,
                       layout="bids")
    assert err.value.path == mine and json.loads(mine.read_text())["Name"] == "mine"
    assert sorted(p.name for p in other.rglob("*")) == sorted(
        ["derivatives", "harmonix", "dataset_description.json"])  # nothing written


# -- --merge-aligned -------------------------------------------------------------------------------
def test_merge_aligned_gives_one_harmonized_site(built_in, tmp_path):
    site = tmp_path / "local"
    shutil.copytree(built_in / "local", site)
    case_id = cases(site)[0].name
    generator = IdentityGenerator(domains=(*BRATS, *LOCAL))
    out = tmp_path / "out"
    apart = harmonize(site, target="brats", model=generator, out=out, align=True)
    assert apart.ok and (out / "_aligned" / case_id / f"{case_id}_t1.nii.gz").is_file()

    merged = harmonize(site, target="brats", model=generator, out=out, merge_aligned=True)
    assert merged.ok and merged.count("done") == 1  # other settings: redone
    assert not (out / "_aligned" / case_id).exists()  # harmonix's own, from the first run
    rows = {(r.sequence, r.status): r.file for r in merged.rows}
    for seq in ("t1", "t2"):
        aligned = out / case_id / f"{case_id}_{seq}.nii.gz"
        assert rows[(seq, "aligned")] == f"{case_id}/{case_id}_{seq}.nii.gz"
        assert b"SYNTHETIC aligned" in nib.load(aligned).header["descrip"].tobytes()
        assert json.loads(aligned.with_suffix("").with_suffix(".json").read_text())[
            "status"] == "aligned"
        original = out / case_id / "_original" / f"{case_id}_{seq}.nii.gz"
        assert rows[(seq, "real")] == f"{case_id}/_original/{case_id}_{seq}.nii.gz"
        assert digest(original) == digest(site / case_id / original.name)
    harmonized = read_site(out)  # one site: every sequence in the case folder, no problems
    assert [c.id for c in harmonized.cases] == [case_id] and harmonized.ok
    assert set(harmonized.cases[0].sequences) == {"t1", "t1ce", "t2", "flair"}

    (out / case_id / "_original" / "notes.txt").write_text("mine")
    blocked = harmonize(site, target="brats", model=generator, out=out, merge_aligned=True,
                             overwrite=True)
    assert blocked.failed == [case_id] and "notes.txt" in blocked.rows[0].message
    assert (out / case_id / "_original" / "notes.txt").read_text() == "mine"


def test_cli_layout_intensity_and_merge_options(built_in, tmp_path, cli, monkeypatch):
    import harmonix.harmonization.pipeline

    generator = IdentityGenerator(domains=(*BRATS, *LOCAL))
    monkeypatch.setattr(harmonix.harmonization.pipeline,
                        "as_generator", lambda model, device="cpu": generator)
    site = tmp_path / "local"
    shutil.copytree(built_in / "local", site)
    case_id = cases(site)[0].name
    out = tmp_path / "out"
    result = cli("harmonize", site, "--model", tmp_path / "run", "--out", out, "--layout", "bids",
                 "--intensity", "model", "--merge-aligned")
    assert result.exit_code == 0, result.output
    subject = "sub-" + case_id.replace("_", "")
    anat = out / DATASET_DIR / subject / "anat"
    aligned = nib.load(anat / f"{subject}_desc-aligned_T2w.nii.gz")
    assert aligned.get_data_dtype() == np.float32  # --intensity model
    assert (out / DATASET_DIR / subject / "_original" / "anat" / f"{subject}_T2w.nii.gz").is_file()
    assert not (anat / f"{subject}_T2w.nii.gz").exists()
    bad = cli("harmonize", site, "--model", tmp_path / "run", "--out", out, "--layout", "nifti")
    assert bad.exit_code == 2
