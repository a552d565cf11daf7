"""Site readers: layout detection, aliases, center/label resolution, per-case bad-input problems,
load_case (with and without resampling), label conventions and ``harmonix inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harmonix.data import checks as checks_module
from harmonix.data.labels import from_canonical, to_canonical
from harmonix.data.load import load_case
from harmonix.data.site import read_site
from harmonix.errors import InputError

SHAPE = (12, 12, 8)
RNG = np.random.default_rng(0)


def write(path: Path, data=None, affine=None) -> Path:
    """A small NIfTI file; random positive voxels unless ``data`` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = RNG.uniform(1, 100, SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def tumour(values=(1, 2, 4)) -> np.ndarray:
    """A label map with NCR, ED and ET written as ``values``."""
    label = np.zeros(SHAPE, np.int16)
    label[3:9, 3:9, 2:6] = values[1]
    label[4:8, 4:8, 3:5] = values[2]
    label[5:7, 5:7, 3:5] = values[0]
    return label


def brats2019_case(root: Path, case: str, sequences=("t1", "t1ce", "t2", "flair")) -> Path:
    for s in sequences:
        write(root / case / f"{case}_{s}.nii.gz")
    write(root / case / f"{case}_seg.nii.gz", tumour())
    return root / case


@pytest.fixture
def cli():
    """``harmonix`` in-process with only its ``inspect`` command loaded.

    (conftest's ``cli`` runs ``_load_commands()``, which loads every plugin; with MONAI imported
    by a backbone plugin that alone takes seconds on the 2-core sandbox.)
    """
    from typer.testing import CliRunner

    import harmonix.cli.inspect  # noqa: F401 - registers the command on the app
    from harmonix.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def problems_by_file(site) -> dict[str, list]:
    found: dict[str, list] = {}
    for problem in site.all_problems:
        found.setdefault(problem.path.name, []).append(problem)
    return found


# -- layouts -----------------------------------------------------------------------------------
def test_brats2019_layout(tmp_path):
    root = tmp_path / "brats"
    for case in ("BraTS19_2013_0_1", "BraTS19_CBICA_AAB_1"):
        brats2019_case(root, case)
    (root / "_truth").mkdir()
    write(root / "_truth" / "x_t1.nii.gz")  # ignored: folders starting with _ or .
    write(root / "BraTS19_2013_0_1" / ".tmp-1-BraTS19_2013_0_1_t2.nii.gz")  # ignored too
    (root / "BraTS19_2013_0_1" / "notes.txt").write_text("not an image")

    calls = []
    site = read_site(root, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert (site.layout, site.center, site.label_convention) == ("brats2019", "brats", "brats2019")
    assert [c.id for c in site.cases] == ["BraTS19_2013_0_1", "BraTS19_CBICA_AAB_1"]
    case = site.cases[0]
    assert case.ok and site.ok
    assert case.sequences == {
        s: root / case.id / f"{case.id}_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair")
    }
    assert case.label == root / case.id / f"{case.id}_seg.nii.gz"
    assert case.reference == "t1"
    info = case.info["t1"]
    assert info.shape == SHAPE and info.spacing == (1.0, 1.0, 1.0) and info.orientation == "RAS"


def test_brats2023_layout_means_brats2023_labels(tmp_path):
    root = tmp_path / "men"
    case = "BraTS-MEN-00004-000"
    for token in ("t1n", "t1c", "t2w", "t2f"):
        write(root / case / f"{case}-{token}.nii.gz")
    write(root / case / f"{case}-seg.nii.gz", tumour((1, 2, 3)))

    site = read_site(root)
    assert (site.layout, site.label_convention) == ("brats2023", "brats2023")
    assert set(site.cases[0].sequences) == {"t1", "t1ce", "t2", "flair"}
    assert site.cases[0].sequences["flair"].name == f"{case}-t2f.nii.gz"
    assert site.ok  # 3 is a valid ET value in brats2023


def test_bids_layout_with_sessions_ce_entity_and_derivative_labels(tmp_path):
    root = tmp_path / "hospital"
    anat = root / "sub-01" / "anat"
    write(anat / "sub-01_T1w.nii.gz")
    write(anat / "sub-01_ce-gadolinium_T1w.nii.gz")
    write(anat / "sub-01_T2w.nii.gz")
    write(anat / "sub-01_FLAIR.nii.gz")
    (anat / "sub-01_T1w.json").write_text("{}")
    write(root / "derivatives" / "manual" / "sub-01" / "anat" / "sub-01_dseg.nii.gz", tumour())
    for session in ("ses-1", "ses-2"):
        write(root / "sub-02" / session / "anat" / f"sub-02_{session}_T1w.nii.gz")
        write(root / "sub-02" / session / "anat" / f"sub-02_{session}_T2w.nii.gz")

    site = read_site(root, center="hospital-a")
    assert site.layout == "bids" and site.center == "hospital-a"
    assert [c.id for c in site.cases] == ["sub-01", "sub-02_ses-1", "sub-02_ses-2"]
    sub01 = site.cases[0]
    assert sub01.sequences["t1ce"].name == "sub-01_ce-gadolinium_T1w.nii.gz"
    assert sub01.sequences["t1"].name == "sub-01_T1w.nii.gz"
    assert sub01.label.name == "sub-01_dseg.nii.gz"
    assert set(site.cases[2].sequences) == {"t1", "t2"} and site.cases[2].label is None
    assert site.ok and all(c.center == "hospital-a" for c in site.cases)


def test_flat_layout_and_aliases(tmp_path):
    root = tmp_path / "flat"
    write(root / "p1_T1c.nii.gz")
    write(root / "p1_FLAIR.nii.gz")
    write(root / "p1_tumor_segmentation.nii.gz", tumour())
    write(root / "p2_t1w.nii")
    write(root / "p2_t2.nii.gz")

    site = read_site(root)
    assert site.layout == "flat"
    p1, p2 = site.cases
    assert (p1.id, p2.id) == ("p1", "p2")
    assert set(p1.sequences) == {"t1ce", "flair"}
    assert p1.label.name == "p1_tumor_segmentation.nii.gz"
    assert p2.sequences == {"t1": root / "p2_t1w.nii", "t2": root / "p2_t2.nii.gz"}
    assert p1.reference == "flair" and p2.reference == "t1"  # registry source_priority
    assert site.ok


def test_center_and_label_convention_resolution(tmp_path):
    # a registry target named like the folder decides the labels (brats-men: brats2023)
    root = tmp_path / "brats-men"
    brats2019_case(root, "c1")
    site = read_site(root)
    assert (site.center, site.label_convention) == ("brats-men", "brats2023")
    assert not site.ok  # its label map holds 4, which brats2023 does not know
    assert problems_by_file(site)["c1_seg.nii.gz"][0].kind == "labels"

    # harmonix-site.json beats the folder name; the explicit argument beats harmonix-site.json
    (root / "harmonix-site.json").write_text(json.dumps({"center": "mine", "labels": "brats2019"}))
    site = read_site(root)
    assert (site.center, site.label_convention) == ("mine", "brats2019") and site.ok
    assert read_site(root, center="other").center == "other"

    (root / "harmonix-site.json").write_text(json.dumps({"labels": "brats1999"}))
    with pytest.raises(InputError, match="brats1999") as err:
        read_site(root)
    assert err.value.path.name == "harmonix-site.json"


def test_files_outside_any_case_are_reported(tmp_path, cli):
    root = tmp_path / "site"
    brats2019_case(root, "c1")
    write(root / "loose_t1.nii.gz")
    site = read_site(root)
    assert site.cases[0].ok and not site.ok
    assert [(p.path.name, p.kind) for p in site.problems] == [("loose_t1.nii.gz", "ignored")]
    result = cli("inspect", root)
    assert result.exit_code == 1
    assert "loose_t1.nii.gz: ignored: not part of any case" in result.output


@pytest.mark.parametrize("make", ["missing", "file", "empty", "only-hidden"])
def test_missing_or_empty_site_names_the_folder(tmp_path, make):
    root = tmp_path / "site"
    if make == "file":
        root.write_text("x")
    elif make == "empty":
        root.mkdir()
    elif make == "only-hidden":
        write(root / "_cache" / "a_t1.nii.gz")
    with pytest.raises(InputError) as err:
        read_site(root)
    assert err.value.path == root


# -- bad input ---------------------------------------------------------------------------------
@pytest.fixture
def broken_site(tmp_path) -> Path:
    """Two good cases and one case per bad input."""
    root = tmp_path / "broken"
    for case in ("good1", "good2"):
        brats2019_case(root, case)
    # a trailing singleton 4th dimension is fine
    write(root / "good2" / "good2_t2.nii.gz", RNG.uniform(1, 9, (*SHAPE, 1)).astype(np.float32))

    brats2019_case(root, "garbage")
    (root / "garbage" / "garbage_t1.nii.gz").write_bytes(b"this is not a NIfTI file at all")
    brats2019_case(root, "gzcut")
    raw = (root / "gzcut" / "gzcut_t2.nii.gz").read_bytes()
    (root / "gzcut" / "gzcut_t2.nii.gz").write_bytes(raw[: len(raw) * 2 // 3])
    brats2019_case(root, "niicut", sequences=("t1ce",))
    raw = write(root / "niicut" / "niicut_t1.nii").read_bytes()
    (root / "niicut" / "niicut_t1.nii").write_bytes(raw[:-100])
    brats2019_case(root, "fourd")
    write(root / "fourd" / "fourd_flair.nii.gz", RNG.uniform(1, 9, (*SHAPE, 3)))
    brats2019_case(root, "nan")
    data = RNG.uniform(1, 9, SHAPE).astype(np.float32)
    data[11, 11, 7] = np.nan  # the very last voxel
    write(root / "nan" / "nan_t1ce.nii.gz", data)
    brats2019_case(root, "inf")
    data[11, 11, 7] = np.inf
    write(root / "inf" / "inf_t2.nii.gz", data)
    brats2019_case(root, "zero")
    write(root / "zero" / "zero_flair.nii.gz", np.zeros(SHAPE, np.int16))
    brats2019_case(root, "twice")
    write(root / "twice" / "twice_t1n.nii.gz")
    brats2019_case(root, "unknown")
    write(root / "unknown" / "unknown_t3.nii.gz")
    brats2019_case(root, "shape")
    write(root / "shape" / "shape_t2.nii.gz", RNG.uniform(1, 9, (12, 12, 10)))
    brats2019_case(root, "shifted")
    write(root / "shifted" / "shifted_flair.nii.gz", affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    brats2019_case(root, "labelgrid")
    write(root / "labelgrid" / "labelgrid_seg.nii.gz", np.zeros((10, 12, 8), np.int16))
    return root


EXPECTED = {  # file -> (problem kind, words its message must hold)
    "garbage_t1.nii.gz": ("unreadable", "cannot be read"),
    "gzcut_t2.nii.gz": ("unreadable", "truncated"),
    "niicut_t1.nii": ("unreadable", "truncated"),
    "fourd_flair.nii.gz": ("shape", "4D"),
    "nan_t1ce.nii.gz": ("voxels", "1 NaN"),
    "inf_t2.nii.gz": ("voxels", "1 Inf"),
    "zero_flair.nii.gz": ("voxels", "all voxels are zero"),
    "twice_t1n.nii.gz": ("duplicate", "twice_t1.nii.gz"),
    "unknown_t3.nii.gz": ("unknown", "'t3'"),
    "shape_t2.nii.gz": ("grid", "shape 12x12x10 vs 12x12x8"),
    "shifted_flair.nii.gz": ("grid", "spacing 1x1x2 vs 1x1x1"),
    "labelgrid_seg.nii.gz": ("label-grid", "shape 10x12x8"),
}


def test_every_bad_input_is_a_problem_of_its_own_case(broken_site):
    site = read_site(broken_site)
    found = problems_by_file(site)
    assert set(found) == set(EXPECTED)
    for name, (kind, words) in EXPECTED.items():
        (problem,) = found[name]
        assert problem.kind == kind and words in problem.message, (name, problem)
        assert problem.path.parent.name == name.split("_")[0]  # the problem names the file
    by_id = {c.id: c for c in site.cases}
    assert by_id["good1"].ok and by_id["good2"].ok
    assert sum(not c.ok for c in site.cases) == len(EXPECTED)
    unknown = found["unknown_t3.nii.gz"][0].message
    assert "t1ce (t1ce, t1c" in unknown and "flair (flair, t2f)" in unknown  # listed, not guessed
    assert "reference sequence t1" in found["shifted_flair.nii.gz"][0].message


def test_header_only_read_skips_voxel_checks_but_not_truncation(broken_site):
    found = problems_by_file(read_site(broken_site, check_voxels=False))
    assert {"nan_t1ce.nii.gz", "inf_t2.nii.gz", "zero_flair.nii.gz"}.isdisjoint(found)
    assert {"gzcut_t2.nii.gz", "niicut_t1.nii", "fourd_flair.nii.gz"} <= set(found)


def test_voxel_checks_stream_in_chunks(broken_site, monkeypatch):
    monkeypatch.setattr(checks_module, "CHUNK_BYTES", 100)  # many chunks; the NaN is in the last
    found = problems_by_file(read_site(broken_site))
    assert "1 NaN" in found["nan_t1ce.nii.gz"][0].message
    assert "all voxels are zero" in found["zero_flair.nii.gz"][0].message


# -- loading -----------------------------------------------------------------------------------
def test_load_case_returns_3d_float_volumes_and_the_label(broken_site):
    by_id = {c.id: c for c in read_site(broken_site).cases}
    loaded = load_case(by_id["good2"])
    assert set(loaded.images) == {"t1", "t1ce", "t2", "flair"} and loaded.resampled == ()
    assert loaded.images["t2"].shape == SHAPE  # trailing singleton dropped
    assert all(img.get_fdata().dtype == np.float64 for img in loaded.images.values())
    assert loaded.images["t1"].dataobj.dtype == np.float32
    assert set(np.unique(np.asarray(loaded.label.dataobj))) == {0, 1, 2, 4}
    assert loaded.id == "good2"


@pytest.mark.parametrize("case_id", sorted(n.split("_")[0] for n in EXPECTED))
def test_load_case_names_the_bad_file(broken_site, case_id):
    case = next(c for c in read_site(broken_site, check_voxels=False).cases if c.id == case_id)
    with pytest.raises(InputError) as err:
        load_case(case)
    expected = next(n for n in EXPECTED if n.startswith(case_id + "_"))
    assert err.value.path.name == expected


def test_resampling_onto_the_reference_only_when_asked(broken_site):
    by_id = {c.id: c for c in read_site(broken_site).cases}
    shifted = by_id["shifted"]
    with pytest.raises(InputError, match="different grid"):
        load_case(shifted)
    loaded = load_case(shifted, resample=True)
    assert loaded.resampled == ("flair",)
    reference = loaded.images["t1"]
    assert loaded.images["flair"].shape == reference.shape
    assert np.allclose(loaded.images["flair"].affine, reference.affine)
    # flair voxel k lies at z = 2k mm, which is reference voxel 2k: linear resampling is exact there
    flair = nib.load(shifted.sequences["flair"]).get_fdata()
    assert np.allclose(loaded.images["flair"].get_fdata()[:, :, 2], flair[:, :, 1], atol=1e-4)
    original = nib.load(shifted.sequences["t1"]).get_fdata()
    assert np.array_equal(loaded.images["t1"].get_fdata(), original)  # the reference is untouched

    loaded = load_case(by_id["labelgrid"], resample=True)
    assert loaded.resampled == ("label",) and loaded.label.shape == SHAPE
    assert np.asarray(loaded.label.dataobj).dtype == np.int16


def test_resampled_label_keeps_label_values(tmp_path):
    root = tmp_path / "site"
    case = brats2019_case(root, "c1")
    # the same tumour on a 2 mm grid covering the same space: nearest neighbour keeps 0/1/2/4
    coarse = tumour()[::2, ::2, ::2]
    write(case / "c1_seg.nii.gz", coarse, np.diag([2.0, 2.0, 2.0, 1.0]))
    loaded = load_case(read_site(root).cases[0], resample=True)
    label = np.asarray(loaded.label.dataobj)
    assert set(np.unique(label).tolist()) <= {0, 1, 2, 4}
    assert np.array_equal(label[::2, ::2, ::2], coarse)  # coarse voxel i sits on fine voxel 2i


# -- label conventions -------------------------------------------------------------------------
def test_label_conventions_convert_both_ways():
    brats2023 = tumour((1, 2, 3))
    canonical = to_canonical(brats2023, "brats2023")
    assert np.array_equal(canonical, tumour((1, 2, 4))) and canonical.dtype == brats2023.dtype
    assert np.array_equal(from_canonical(canonical, "brats2023"), brats2023)
    assert np.array_equal(to_canonical(canonical, "brats2019"), canonical)
    with pytest.raises(ValueError, match=r"\[4\]"):
        to_canonical(tumour((1, 2, 4)), "brats2023")  # 4 is not a brats2023 value
    with pytest.raises(ValueError, match=r"\[3\]"):
        from_canonical(brats2023, "brats2023")  # 3 is not canonical
    with pytest.raises(KeyError):
        to_canonical(brats2023, "brats1999")


# -- harmonix inspect --------------------------------------------------------------------------
def test_inspect_lists_good_cases_and_every_problem(broken_site, cli):
    result = cli("inspect", broken_site)
    assert result.exit_code == 1
    for case in ("good1", "good2", "shifted"):
        assert case in result.output
    for name in EXPECTED:
        line = next(line for line in result.output.splitlines() if name in line and "✗" in line)
        assert EXPECTED[name][1] in line
    assert f"{len(EXPECTED)} problems" in result.output


def test_inspect_a_clean_site(tmp_path, cli):
    root = tmp_path / "clean"
    brats2019_case(root, "c1")
    brats2019_case(root, "c2", sequences=("t1", "t2"))
    result = cli("inspect", root, "--center", "brats", "--quick")
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output and "missing" in result.output
    assert "12x12x8" in result.output and "RAS" in result.output and "center brats" in result.output
    assert "1 with every sequence" in result.output

    result = cli("inspect", tmp_path / "nowhere")
    assert result.exit_code == 1 and "nowhere" in result.output


# -- other image formats -------------------------------------------------------------------------
def dicom_file(path: Path) -> Path:
    """A file with the DICOM preamble and magic (``DICM`` at byte 128), no extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    return path


def test_other_image_formats_are_reported_with_what_to_do(tmp_path, cli):
    root = tmp_path / "site"
    brats2019_case(root, "c1")
    brats2019_case(root, "c2", sequences=("t1", "t1ce", "flair"))
    (root / "c2" / "c2_t2.mgz").write_bytes(b"\x1f\x8b not really")  # a real T2, in MGZ
    (root / "c1" / "brainmask.nrrd").write_text("NRRD0004")  # no sequence: the site's problem
    for n in range(3):
        dicom_file(root / "PATIENT_7" / "series1" / f"IM{n:04d}")  # a DICOM folder, no case
    (root / "atlas.mha").write_text("ObjectType = Image")
    dicom_file(root / "c1" / "scans" / "IM0001")  # a DICOM series nested in a case

    site = read_site(root)
    found = {p.path.relative_to(root).as_posix(): p for p in site.all_problems}
    assert set(found) == {"c2/c2_t2.mgz", "c1/brainmask.nrrd", "PATIENT_7", "atlas.mha",
                          "c1/scans"}
    assert {k: p.kind for k, p in found.items()} == {
        "c2/c2_t2.mgz": "mgz", "c1/brainmask.nrrd": "nrrd", "PATIENT_7": "dicom",
        "atlas.mha": "mha", "c1/scans": "dicom"}
    assert "dcm2niix" in found["PATIENT_7"].message and "dcm2niix" in found["c1/scans"].message
    assert "mri_convert" in found["c2/c2_t2.mgz"].message
    assert "SimpleITK" in found["atlas.mha"].message
    assert "Slicer" in found["c1/brainmask.nrrd"].message
    by_id = {c.id: c for c in site.cases}
    assert not by_id["c2"].ok  # its T2 would otherwise be missing and made synthetic
    assert "t2" not in by_id["c2"].sequences
    assert by_id["c1"].ok  # a file named like no sequence does not hold the case back
    with pytest.raises(InputError, match="mri_convert"):
        load_case(by_id["c2"])
    result = cli("inspect", root)
    assert result.exit_code == 1 and "dcm2niix" in result.output


def test_a_site_of_dicom_folders_says_to_convert(tmp_path):
    root = tmp_path / "dicom"
    for case in ("P1", "P2"):
        dicom_file(root / case / "IM0001.dcm")
    with pytest.raises(InputError, match="DICOM files: convert each series") as err:
        read_site(root)
    assert err.value.path == root


def test_bids_sourcedata_dicom_is_not_reported(tmp_path):
    root = tmp_path / "bids"
    write(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    dicom_file(root / "sourcedata" / "sub-01" / "IM0001")
    dicom_file(root / "sub-01" / "dicom" / "IM0001")  # beside anat/: reported
    site = read_site(root)
    assert [(p.path.name, p.kind) for p in site.problems] == [("dicom", "dicom")]


# -- warnings ------------------------------------------------------------------------------------
def test_warnings_for_unstripped_and_thick_scans_never_fail(tmp_path, cli):
    root = tmp_path / "site"
    stripped = np.zeros(SHAPE, np.float32)
    stripped[3:9, 3:9, 2:6] = RNG.uniform(1, 100, (6, 6, 4))  # zero background: stripped
    write(root / "c1" / "c1_t1.nii.gz", stripped)
    write(root / "c1" / "c1_t2.nii.gz", stripped)
    write(root / "c2" / "c2_t1.nii.gz")  # every voxel non-zero: a head, not a brain
    thick = np.diag([0.9, 0.9, 6.0, 1.0])
    write(root / "c3" / "c3_t1.nii.gz", stripped, thick)
    write(root / "c4" / "c4_t1.nii.gz", stripped, np.diag([1.0, 1.0, 3.0, 1.0]))  # ratio 3
    write(root / "c5" / "c5_t1.nii.gz", stripped, np.diag([1.0, 1.0, 2.5, 1.0]))  # fine

    site = read_site(root)
    assert site.ok and all(case.ok for case in site.cases)  # warnings are not problems
    warned = {(w.path.name, w.kind) for w in site.warnings}
    assert warned == {("c2_t1.nii.gz", "warning"), ("c3_t1.nii.gz", "warning"),
                      ("c4_t1.nii.gz", "warning")}
    by_file = {w.path.name: w.message for w in site.warnings}
    unstripped = by_file["c2_t1.nii.gz"]
    assert "does not look skull-stripped: 100% of its voxels are non-zero" in unstripped
    assert "head mask" in by_file["c2_t1.nii.gz"] and "HD-BET" in by_file["c2_t1.nii.gz"]
    assert "0.9x0.9x6 mm voxels, 6.7:1" in by_file["c3_t1.nii.gz"]
    assert "resamples every sequence" in by_file["c3_t1.nii.gz"]
    load_case(site.cases[1])  # a case with warnings loads
    quick = read_site(root, check_voxels=False)  # headers only: the slice warnings remain
    assert {w.path.name for w in quick.warnings} == {"c3_t1.nii.gz", "c4_t1.nii.gz"}

    result = cli("inspect", root)
    assert result.exit_code == 0, result.output  # warnings alone: success
    assert "3 warnings" in result.output and "no problems found" in result.output
    assert "c2/c2_t1.nii.gz: does not look skull-stripped" in " ".join(result.output.split())


def test_the_skull_stripping_rule_is_the_brain_mask_rule():
    import inspect

    from harmonix.data.preprocess import brain_mask

    default = inspect.signature(brain_mask).parameters["stripped_fraction"].default
    assert checks_module.HEAD_FRACTION == default


# -- BraTS 2021 ----------------------------------------------------------------------------------
def test_brats2021_is_read_with_2019_names_and_labels(tmp_path):
    root = tmp_path / "brats2021"
    case = "BraTS2021_00000"
    brats2019_case(root, case)  # _t1 _t1ce _t2 _flair, labels 1/2/4
    site = read_site(root)
    assert (site.layout, site.label_convention) == ("brats2019", "brats2019") and site.ok
    (root / "harmonix-site.json").write_text(json.dumps({"layout": "brats2021"}))
    site = read_site(root)
    assert (site.layout, site.label_convention) == ("brats2019", "brats2019") and site.ok
    assert set(site.cases[0].sequences) == {"t1", "t1ce", "t2", "flair"}
