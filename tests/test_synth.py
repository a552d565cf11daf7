"""Built-in synthetic data: determinism, anatomy per patient, contrasts, labels, centers, layout."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from harmonix.data.anatomy import grid_affine, grid_shape
from harmonix.data.synth import PROFILES, SITE_FILE, synthesize_case, synthesize_site

SPACING = 4.0
CSF, GM, WM, TUMOUR = 1, 2, 3, 4


def _data(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def brats_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("brats")
    return synthesize_site(out, 2, center="brats", seed=3, spacing=SPACING, write_truth=True,
                           workers=1)


@pytest.fixture(scope="module")
def local_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return synthesize_site(out, 2, center="local", seed=3, spacing=SPACING, write_truth=True,
                           workers=1)


def _case(site, case_id: str, naming: dict[str, str], sep: str = "_"):
    """Images by sequence, the label map and the truth tissue map of one written case."""
    images = {s: _data(site / case_id / f"{case_id}{sep}{token}.nii.gz")
              for s, token in naming.items()}
    label = _data(site / case_id / f"{case_id}{sep}seg.nii.gz")
    truth = _data(site / "_truth" / f"{case_id}_tissue.nii.gz")
    return images, label, truth


BRATS_FILES = {s: s for s in ("t1", "t1ce", "t2", "flair")}


def test_same_seed_same_case_and_files_match(brats_site):
    first = synthesize_case(1, center="brats", seed=3, spacing=SPACING)
    again = synthesize_case(1, center="brats", seed=3, spacing=SPACING)
    for sequence in first.images:
        np.testing.assert_array_equal(first.images[sequence], again.images[sequence])
    np.testing.assert_array_equal(first.label, again.label)
    np.testing.assert_array_equal(first.tissue, again.tissue)
    # what synthesize_site wrote (same seed, case index 1) is exactly this case
    images, label, truth = _case(brats_site, "BraTS19_SYN_0002", BRATS_FILES)
    for sequence, data in images.items():
        np.testing.assert_array_equal(data, first.images[sequence])
    np.testing.assert_array_equal(label, first.label)
    np.testing.assert_array_equal(truth, first.tissue)


def test_patients_and_seeds_differ():
    a = synthesize_case(0, center="brats", seed=0, spacing=SPACING)
    b = synthesize_case(1, center="brats", seed=0, spacing=SPACING)
    c = synthesize_case(0, center="brats", seed=1, spacing=SPACING)
    for other in (b, c):
        wm_a, wm_o = a.tissue == WM, other.tissue == WM
        dice = 2 * (wm_a & wm_o).sum() / (wm_a.sum() + wm_o.sum())
        assert dice < 0.9, "two patients share their white matter"
        centroid = [np.argwhere(case.label > 0).mean(0) * SPACING for case in (a, other)]
        assert np.linalg.norm(centroid[0] - centroid[1]) > 5.0, "tumours at the same place"
        assert not np.array_equal(a.images["t1"], other.images["t1"])


def _means(image, truth, label):
    brain = truth > 0
    # at 4 mm most CSF voxels (thin sulci) are partial volume: take those inside CSF (ventricles)
    ventricles = ndi.binary_erosion(truth == CSF)
    return {
        "csf": image[ventricles].mean(), "gm": image[truth == GM].mean(),
        "wm": image[truth == WM].mean(), "tumour": image[label > 0].mean(),
        "ed": image[(label == 2) & brain].mean(), "et": image[label == 4].mean(),
        "ncr": image[label == 1].mean(),
    }


@pytest.mark.parametrize("case_id", ["BraTS19_SYN_0001", "BraTS19_SYN_0002"])
def test_contrasts_follow_the_literature(brats_site, case_id):
    images, label, truth = _case(brats_site, case_id, BRATS_FILES)
    t1, t1ce, t2, flair = (_means(images[s], truth, label) for s in ("t1", "t1ce", "t2", "flair"))
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t1["tumour"] < t1["wm"]  # tumour hypointense on T1
    assert t2["csf"] > t2["ed"] > t2["gm"] > t2["wm"]
    assert flair["csf"] < min(flair["gm"], flair["wm"])  # CSF suppressed
    assert flair["ed"] > max(flair["gm"], flair["wm"], flair["csf"])  # oedema bright
    assert t1ce["et"] > max(t1ce["wm"], t1ce["gm"])  # enhancing rim bright
    assert t1ce["ncr"] < t1ce["et"]  # dark necrosis inside it
    assert t1ce["et"] / t1ce["wm"] > 1.5 * t1["et"] / t1["wm"]  # the contrast agent did it


def test_labels_nested_in_the_center_convention(brats_site, tmp_path):
    for case_id in ("BraTS19_SYN_0001", "BraTS19_SYN_0002"):
        _, label, truth = _case(brats_site, case_id, BRATS_FILES)
        assert set(np.unique(label)) == {0, 1, 2, 4}
        assert ((label > 0) <= (truth > 0)).all()  # labels only inside the brain
        assert ((truth == TUMOUR) == (label > 0)).all()
        # necrosis is wrapped in enhancing tumour: its neighbours are NCR or ET, never ED/healthy
        around = ndi.binary_dilation(label == 1) & (truth > 0)
        assert np.isin(label[around], [1, 4]).all()

    men = synthesize_site(tmp_path / "men", 1, center="brats-men", seed=0, spacing=SPACING,
                          workers=1)
    case_id = "BraTS-MEN-SYN0001-000"
    files = sorted(p.name for p in (men / case_id).iterdir())
    assert files == sorted(f"{case_id}-{t}.nii.gz" for t in ("t1n", "t1c", "t2w", "t2f", "seg"))
    label = _data(men / case_id / f"{case_id}-seg.nii.gz")
    assert set(np.unique(label)) <= {0, 1, 2, 3} and 3 in label  # a meningioma always enhances
    assert json.loads((men / SITE_FILE).read_text())["labels"] == "brats2023"


def test_local_center_has_t1_t2_and_looks_different(brats_site, local_site):
    site = json.loads((local_site / SITE_FILE).read_text())
    assert site["center"] == "local" and site["generator"] == "harmonix synth"
    assert sorted(p.name for p in (local_site / "LOCAL_0001").iterdir()) == [
        "LOCAL_0001_seg.nii.gz", "LOCAL_0001_t1.nii.gz", "LOCAL_0001_t2.nii.gz",
    ]
    stats = {}
    for name, site_dir, case_id in (("brats", brats_site, "BraTS19_SYN_0001"),
                                    ("local", local_site, "LOCAL_0001")):
        images, label, truth = _case(site_dir, case_id, {"t1": "t1", "t2": "t2"})
        t1 = images["t1"].astype(float)
        wm = t1[truth == WM]
        stats[name] = {
            "wm_cv": wm.std() / wm.mean(),  # bias field + noise
            "wm_level": np.median(wm),  # intensity scale
        }
    assert stats["local"]["wm_cv"] > 1.5 * stats["brats"]["wm_cv"]
    assert stats["local"]["wm_level"] > 1.1 * stats["brats"]["wm_level"]


def test_site_reads_back_with_its_grid(brats_site, local_site):
    site_module = pytest.importorskip("harmonix.data.site")
    load_module = pytest.importorskip("harmonix.data.load")
    for root, center, sequences in ((brats_site, "brats", {"t1", "t1ce", "t2", "flair"}),
                                    (local_site, "local", {"t1", "t2"})):
        site = site_module.read_site(root)
        assert (site.center, site.layout, site.label_convention) == (center, "brats2019",
                                                                     "brats2019")
        assert len(site.cases) == 2 and all(case.ok for case in site.cases)
        for case in site.cases:
            assert set(case.sequences) == sequences and case.label is not None
        loaded = load_module.load_case(site.cases[0])
        for image in (*loaded.images.values(), loaded.label):
            assert image.shape == grid_shape(SPACING) == (60, 60, 39)
            np.testing.assert_allclose(image.affine, grid_affine(SPACING))
            assert nib.aff2axcodes(image.affine) == ("L", "P", "S")  # like the BraTS release


def test_full_size_grid_is_the_brats_grid():
    assert grid_shape(1.0) == (240, 240, 155)
    expected = np.array([[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    np.testing.assert_array_equal(grid_affine(1.0), expected)
    # every grid covers the same field of view: voxel centres of corner voxels agree within s/2
    for spacing in (2.0, 3.0, 4.0):
        corner = grid_affine(spacing) @ np.array([0, 0, 0, 1.0])
        np.testing.assert_allclose(corner[:3], [0 - (spacing - 1) / 2, 239 - (spacing - 1) / 2,
                                                (spacing - 1) / 2])


def test_workers_give_the_same_cases(tmp_path):
    serial = synthesize_site(tmp_path / "serial", 2, center="local", seed=7, spacing=SPACING,
                             workers=1)
    done = []
    parallel = synthesize_site(tmp_path / "parallel", 2, center="local", seed=7,
                               spacing=SPACING, workers=2, progress=done.append)
    assert sorted(done) == ["LOCAL_0001", "LOCAL_0002"]
    for case_id in done:
        for suffix in ("t1", "t2", "seg"):
            name = f"{case_id}/{case_id}_{suffix}.nii.gz"
            np.testing.assert_array_equal(_data(serial / name), _data(parallel / name))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown center 'nowhere'"):
        synthesize_site(tmp_path, 1, center="nowhere")
    with pytest.raises(ValueError, match="n_cases"):
        synthesize_site(tmp_path, 0)
    with pytest.raises(ValueError, match="spacing"):
        synthesize_case(0, spacing=0.5)
    assert set(PROFILES["ucsf-pdgm"].sequences) == {
        "t1", "t1ce", "t2", "flair", "swi", "dwi", "asl", "hardi"}


@pytest.fixture
def synth_cli():
    """``harmonix synth`` alone, in-process (without loading every other command and plugin)."""
    from typer.testing import CliRunner

    import harmonix.cli.synth  # noqa: F401 - adds the command
    from harmonix.cli.app import app

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_cli_writes_a_site(synth_cli, tmp_path):
    result = synth_cli("synth", tmp_path / "site", "--cases", "1", "--center", "ucsf-pdgm",
                 "--spacing", "4", "--seed", "2", "--workers", "1", "--truth")
    assert result.exit_code == 0, result.output
    case = tmp_path / "site" / "UCSF-PDGM-SYN0001"
    tokens = {"T1", "T1c", "T2", "FLAIR", "SWI", "DWI", "ASL", "HARDI", "tumor_segmentation"}
    assert {p.name for p in case.iterdir()} == {f"{case.name}_{t}.nii.gz" for t in tokens}
    assert (tmp_path / "site" / "_truth" / f"{case.name}_tissue.nii.gz").is_file()
    assert json.loads((tmp_path / "site" / SITE_FILE).read_text())["seed"] == 2

    bad = synth_cli("synth", tmp_path / "other", "--center", "nowhere")
    assert bad.exit_code != 0
    assert not (tmp_path / "other").exists()
