"""harmonize --layout bids for BIDS users: every input entity (acq-, run- ...) kept in output
names, a _dseg.tsv for label maps, aligned sidecars that no longer claim the local scanner,
--run to choose between runs, and --resample for grids that differ within a case."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_outputs import (
    BRATS,
    LOCAL,
    IdentityGenerator,
    built_in,  # noqa: F401 - the module fixture
    cases,
    one_case,
)

from harmonix.api import harmonize
from harmonix.data.site import read_site
from harmonix.harmonization.bids import DATASET_DIR, file_name
from harmonix.harmonization.outputs import read_manifest


def runs_site(built_in: Path, root: Path) -> Path:  # noqa: F811
    """sub-01: two runs of an acq-fast T1w, a T2w with a 1.5 T scanner's sidecar, a dseg."""
    first = cases(built_in / "brats")[0]
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for name, src in {"sub-01_acq-fast_run-1_T1w": "t1", "sub-01_acq-fast_run-2_T1w": "t1",
                      "sub-01_rec-norm_T2w": "t2", "sub-01_dseg": "seg"}.items():
        shutil.copy(first / f"{first.name}_{src}.nii.gz", anat / f"{name}.nii.gz")
    (anat / "sub-01_rec-norm_T2w.json").write_text(json.dumps(
        {"MagneticFieldStrength": 1.5, "Manufacturer": "Local", "EchoTime": 0.09,
         "ContrastBolusIngredient": "GADOLINIUM"}))
    return root


def test_file_names_keep_input_entities_in_bids_order():
    assert file_name("sub-01", "t2", desc="aligned", kept={"run": "2", "acq": "fast"}) == (
        "sub-01_acq-fast_run-2_desc-aligned_T2w.nii.gz")
    assert file_name("sub-01_ses-1", "t1ce", kept={"run": "1", "sub": "x", "desc": "y"}) == (
        "sub-01_ses-1_ce-gadolinium_run-1_T1w.nii.gz")


def test_two_runs_need_run_and_entities_are_kept(built_in, tmp_path):  # noqa: F811
    site = runs_site(built_in, tmp_path / "site")
    [case] = read_site(site).cases
    assert any("--run" in p.message for p in case.problems)  # a hard error, with the way out
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=IdentityGenerator(), out=out, layout="bids",
                       run="2")
    assert result.ok, result.rows
    anat = out / DATASET_DIR / "sub-01" / "anat"
    names = sorted(p.name for p in anat.iterdir())
    assert "sub-01_acq-fast_run-2_T1w.nii.gz" in names and "sub-01_rec-norm_T2w.nii.gz" in names
    assert not any("run-1" in n for n in names)
    assert {"sub-01_dseg.nii.gz", "sub-01_dseg.json", "sub-01_dseg.tsv"} <= set(names)
    table = (anat / "sub-01_dseg.tsv").read_text().splitlines()
    assert table[0] == "index\tname\tabbreviation"
    assert {line.split("\t")[2]: int(line.split("\t")[0]) for line in table[1:]} == {
        "BG": 0, "NCR": 1, "ED": 2, "ET": 4}  # the brats target's labels
    from bids_validator import BIDSValidator  # the official validator's name rules

    validator = BIDSValidator()
    for name in names:
        if name.endswith((".nii.gz", ".json")) and "dseg" not in name:  # raw rules: no dseg
            raw = re.sub(r"_desc-[A-Za-z0-9]+", "", f"/sub-01/anat/{name}")
            assert validator.is_bids(raw), raw
    again = harmonize(site, target="brats", model=IdentityGenerator(), out=out, layout="bids",
                      run="2")
    assert again.count("skipped") == 1  # the .tsv is harmonix's own


def test_aligned_sidecar_no_longer_claims_the_local_scanner(built_in, tmp_path):  # noqa: F811
    site = runs_site(built_in, tmp_path / "site")
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=IdentityGenerator((*BRATS, *LOCAL)), out=out,
                       layout="bids", run="1", align=True, center="local")
    assert result.ok, result.rows
    anat = out / DATASET_DIR / "sub-01" / "anat"
    aligned = json.loads((anat / "sub-01_rec-norm_desc-aligned_T2w.json").read_text())
    assert "MagneticFieldStrength" not in aligned and "Manufacturer" not in aligned
    assert aligned["InputSidecar"]["MagneticFieldStrength"] == 1.5
    assert aligned["SyntheticDomain"] == "brats/t2" and aligned["synthetic"] is True
    assert aligned["ContrastBolusIngredient"] == "GADOLINIUM"  # still describes the content
    real = json.loads((anat / "sub-01_rec-norm_T2w.json").read_text())
    assert real["MagneticFieldStrength"] == 1.5  # the real copy keeps its scanner


def test_resample_for_grids_that_differ_within_a_case(built_in, tmp_path):  # noqa: F811
    site, case_id = one_case(built_in, tmp_path / "site", drop=("t2",))
    flair = site / case_id / f"{case_id}_flair.nii.gz"
    img = nib.load(flair)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::2, ::2], img.affine @ np.diag([2, 2, 1, 1]),
                             img.header), flair)
    refused = harmonize(site, target="brats", model=IdentityGenerator(), out=tmp_path / "a",
                        sources=["flair"])
    assert not refused.ok and "different grid" in " ".join(r.message for r in refused.rows)
    out = tmp_path / "b"
    result = harmonize(site, target="brats", model=IdentityGenerator(), out=out,
                       sources=["flair"], resample=True)
    assert result.ok, result.rows
    t1 = nib.load(site / case_id / f"{case_id}_t1.nii.gz")
    t2 = nib.load(out / case_id / f"{case_id}_t2.nii.gz")  # from the resampled FLAIR
    assert t2.shape == t1.shape and np.allclose(t2.affine, t1.affine)
    assert {r.sequence for r in read_manifest(result.manifest) if r.status == "generated"} == {"t2"}


@pytest.mark.parametrize("option", ["--resample", "--run"])
def test_harmonize_cli_has_resample_and_run(option):
    from typer.testing import CliRunner

    import harmonix.cli.harmonize  # noqa: F401 - registers the command
    from harmonix.cli import app

    result = CliRunner().invoke(app, ["harmonize", "--help"], env={"COLUMNS": "200"})
    assert option in result.output
