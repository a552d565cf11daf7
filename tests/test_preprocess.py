"""Preprocessing (torchio) and its exact inverse, on tiny phantoms at a coarse test config."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from harmonix.data.preprocess import (
    GridRecord,
    PreprocessConfig,
    brain_mask,
    preprocess_case,
    restore,
)
from harmonix.errors import InputError

CONFIG = PreprocessConfig(spacing=2.0, crop_shape=(40, 44, 28))
BRAIN_RADII = np.array([26.0, 32.0, 22.0])  # mm


def oblique_lps_affine(zooms=(1.2, 0.9, 3.0), shape=(64, 88, 22), angles=(8, -6, 12)):
    """An oblique LPS affine with anisotropic voxels whose grid is centred near (5, -10, 8)."""
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.0, -1.0, 1.0]) @ np.diag(zooms)
    affine[:3, 3] = np.array([5.0, -10.0, 8.0]) - affine[:3, :3] @ (np.array(shape) - 1) / 2
    # what a NIfTI file can hold, so that written and read affines compare exactly
    return affine.astype(np.float32).astype(np.float64)


def world(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def phantom(shape, affine, centre=(5.0, -10.0, 8.0)):
    """A textured ellipsoid "brain" (zero background), a tumour (NCR inside ED) and the truth."""
    xyz = world(shape, affine) - np.asarray(centre)
    brain = (((xyz / BRAIN_RADII) ** 2).sum(-1)) < 1
    texture = 100 + 40 * np.sin(xyz[..., 0] / 6) + 30 * np.cos(xyz[..., 1] / 8) + xyz[..., 2]
    t1 = np.where(brain, texture, 0).astype(np.float32)
    t2 = np.where(brain, 300 - texture, 0).astype(np.float32)
    distance = np.linalg.norm(xyz - [8.0, 6.0, 0.0], axis=-1)
    label = np.zeros(shape, np.int16)
    label[(distance < 11) & brain] = 2
    label[(distance < 5) & brain] = 1
    return {"t1": t1, "t2": t2}, label, brain


def nifti_case(tmp_path, shape, affine, **kw):
    """Write the phantom to disk and load it back, as a site would."""
    arrays, label, brain = phantom(shape, affine, **kw)
    images = {}
    for name, data in arrays.items():
        nib.save(nib.Nifti1Image(data, affine), tmp_path / f"case_{name}.nii.gz")
        images[name] = nib.load(tmp_path / f"case_{name}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "case_seg.nii.gz")
    return images, nib.load(tmp_path / "case_seg.nii.gz"), arrays, label, brain


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture
def oblique_case(tmp_path):
    shape = (64, 88, 22)
    affine = oblique_lps_affine(shape=shape)
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    images, label_image, arrays, label, brain = nifti_case(tmp_path, shape, affine)
    prepared = preprocess_case(images, CONFIG, label=label_image, case_id="oblique")
    return prepared, images, arrays, label, brain, affine


def test_round_trip_oblique_anisotropic_lps(oblique_case, tmp_path):
    prepared, images, arrays, _, brain, affine = oblique_case
    record = prepared.record
    # the processed grid: RAS, isotropic at the configured spacing, the configured shape
    assert nib.aff2axcodes(record.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.linalg.norm(record.affine[:3, :3], axis=0), CONFIG.spacing)
    assert record.orientation == "LPS" and record.reference == "t1"
    inner = ndimage.binary_erosion(brain, iterations=2)
    distance_outside = ndimage.distance_transform_edt(~brain, sampling=(1.2, 0.9, 3.0))
    for name, original in arrays.items():
        assert prepared.volumes[name].shape == CONFIG.crop_shape
        restored = restore(prepared.volumes[name], record)
        assert restored.shape == original.shape
        assert np.array_equal(restored.affine, images[name].affine)
        values = restored.get_fdata()
        assert np.corrcoef(values[inner], original[inner])[0, 1] > 0.97
        # intensities come back on the 0..255 scale: a linear map of the original ones
        slope, intercept = np.polyfit(original[inner], values[inner], 1)
        fitted = slope * original[inner] + intercept
        assert np.abs(values[inner] - fitted).mean() < 0.03 * 255
        # background stays 0 beyond interpolation reach (a processed voxel each way: 2 x 2 mm)
        assert not values[distance_outside > 2 * 2 * CONFIG.spacing].any()
    # written and read back, the file has the original grid
    nib.save(restore(prepared.volumes["t1"], record), tmp_path / "restored.nii.gz")
    reread = nib.load(tmp_path / "restored.nii.gz")
    assert reread.shape == arrays["t1"].shape
    np.testing.assert_allclose(reread.affine, affine, atol=1e-5)


def test_labels_round_trip_with_nearest_neighbour(oblique_case):
    prepared, _, _, label, _, _ = oblique_case
    assert set(np.unique(prepared.label)) == {0, 1, 2}
    restored = restore(prepared.label, prepared.record, is_label=True)
    values = np.asarray(restored.dataobj)
    assert values.dtype.kind in "iu" and set(np.unique(values)) <= {0, 1, 2}
    assert (values == label).mean() > 0.98
    for value in (1, 2):
        assert dice(values == value, label == value) > 0.75
    assert dice(values > 0, label > 0) > 0.85


def test_intensities_0_255_background_0(oblique_case):
    prepared, *_ = oblique_case
    mask = prepared.brain_mask
    assert mask.dtype == bool and mask.shape == CONFIG.crop_shape
    for volume in prepared.volumes.values():
        assert volume.dtype == np.float32
        assert volume.min() == 0 and volume.max() == 255
        assert not volume[~mask].any()
        inside = volume[mask]
        # robust percentiles: about 0.5 % of the brain is clipped at each end, not more
        assert 0.001 < (inside >= 255).mean() < 0.02
        assert np.median(inside) > 40


def test_crop_is_centred_on_the_brain(tmp_path):
    """The brain sits far off the field of view's centre; the crop centres it."""
    shape = (70, 90, 24)
    affine = oblique_lps_affine(zooms=(1.1, 1.0, 2.5), shape=shape, angles=(0, 0, 0))
    centre = world(shape, affine).reshape(-1, 3).mean(0) + [-14.0, 16.0, 6.0]
    images, *_ = nifti_case(tmp_path, shape, affine, centre=centre)
    for crop in [(24, 28, 20), (48, 60, 40)]:  # smaller than the brain (crop), larger (pad)
        prepared = preprocess_case(images, PreprocessConfig(spacing=2.0, crop_shape=crop))
        assert prepared.volumes["t1"].shape == crop
        mask = prepared.brain_mask
        for axis in range(3):
            present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            middle = (present[0] + present[-1]) / 2
            assert abs(middle - (crop[axis] - 1) / 2) <= 1.0, (crop, axis)
        # the brain's world centre maps to the crop's centre
        brain_world = prepared.record.affine[:3, :3] @ np.argwhere(mask).mean(0)
        brain_world += prepared.record.affine[:3, 3]
        assert np.linalg.norm(brain_world - centre) < 2 * CONFIG.spacing


def test_record_serialises_to_json(oblique_case):
    prepared, images, *_ = oblique_case
    record = GridRecord.from_dict(json.loads(json.dumps(prepared.record.to_dict())))
    assert np.array_equal(record.affine, prepared.record.affine)
    assert np.array_equal(record.original_affine, images["t1"].affine)
    assert record.intensity == prepared.record.intensity
    direct = restore(prepared.volumes["t2"], prepared.record).get_fdata()
    via_json = restore(prepared.volumes["t2"], record).get_fdata()
    assert np.array_equal(direct, via_json)
    with pytest.raises(ValueError, match="shape"):
        restore(prepared.volumes["t2"][:-1], record)
    with pytest.raises(ValueError, match="grid record"):
        GridRecord.from_dict({"shape": [1, 2, 3]})


def test_labels_are_made_canonical():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    arrays, label, _ = phantom((30, 34, 24), affine, centre=(45, 50, 35))
    brats2023 = np.where(label == 1, 3, label)  # NCR 1 -> ET 3 in BraTS 2023 terms
    images = {k: nib.Nifti1Image(v, affine) for k, v in arrays.items()}
    config = PreprocessConfig(spacing=3.0, crop_shape=(24, 28, 20))
    prepared = preprocess_case(
        images, config, label=nib.Nifti1Image(brats2023, affine), label_convention="brats2023"
    )
    assert set(np.unique(prepared.label)) == {0, 2, 4}
    # already at the target spacing and axis-aligned: the round trip is exact
    restored = np.asarray(restore(prepared.label, prepared.record, is_label=True).dataobj)
    assert np.array_equal(restored, np.where(label == 1, 4, label))
    with pytest.raises(InputError, match="label values"):
        preprocess_case(images, config, label=nib.Nifti1Image(brats2023, affine))


def test_grids_must_match_unless_resampling_is_asked_for(tmp_path):
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    arrays, _, _ = phantom((30, 34, 24), affine, centre=(45, 50, 35))
    shifted = affine.copy()
    shifted[:3, 3] = [1.5, 0, 0]
    path = tmp_path / "case_t2.nii.gz"
    nib.save(nib.Nifti1Image(arrays["t2"], shifted), path)
    images = {"t1": nib.Nifti1Image(arrays["t1"], affine), "t2": nib.load(path)}
    config = PreprocessConfig(spacing=3.0, crop_shape=(24, 28, 20))
    with pytest.raises(InputError) as error:
        preprocess_case(images, config)
    assert error.value.path == path and "reference sequence 't1'" in error.value.problem
    prepared = preprocess_case(images, config, resample=True)
    assert np.array_equal(prepared.record.original_affine, affine)


def test_brain_mask_without_skull_stripping():
    """A noisy, non-zero background: Otsu + largest component + holes filled."""
    rng = np.random.default_rng(0)
    shape = (40, 44, 36)
    xyz = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    brain = ((((xyz - [20, 22, 18]) / [14, 16, 12]) ** 2).sum(-1)) < 1
    image = np.where(brain, 200.0, 0.0) + rng.normal(30, 10, shape)
    image[brain & (np.linalg.norm(xyz - [20, 22, 18], axis=-1) < 4)] = 10  # a dark core
    image[2:5, 2:5, 2:5] = 400  # a bright speck outside the brain
    mask = brain_mask([image.astype(np.float32)])
    assert dice(mask, brain) > 0.95
    assert not mask[2:5, 2:5, 2:5].any()
    # skull-stripped data: exactly the non-zero region
    stripped = np.where(brain, image, 0).astype(np.float32)
    assert np.array_equal(brain_mask([stripped]), ndimage.binary_fill_holes(brain))


def test_preprocess_a_site_case(tmp_path):
    """A case read by the site reader: labels converted from the site's convention."""
    from harmonix.data.site import read_site

    affine = np.diag([-3.0, -3.0, 3.0, 1.0])
    arrays, label, _ = phantom((30, 34, 24), affine, centre=(-45, -50, 35))
    folder = tmp_path / "site" / "P001"
    folder.mkdir(parents=True)
    for name, suffix in (("t1", "t1n"), ("t2", "t2w")):  # BraTS 2023 naming
        nib.save(nib.Nifti1Image(arrays[name], affine), folder / f"P001-{suffix}.nii.gz")
    nib.save(nib.Nifti1Image(np.where(label == 1, 3, label), affine), folder / "P001-seg.nii.gz")
    (tmp_path / "site" / "harmonix-site.json").write_text('{"labels": "brats2023"}')
    case = read_site(tmp_path / "site").cases[0]
    assert case.ok, case.problems
    prepared = preprocess_case(case, PreprocessConfig(spacing=3.0, crop_shape=(24, 28, 20)))
    assert prepared.case_id == "P001" and set(prepared.volumes) == {"t1", "t2"}
    assert set(np.unique(prepared.label)) == {0, 2, 4}


def test_brain_mask_keeps_csf_stored_as_zero():
    """A brain-extracted scan whose ventricles and sulci are exact zeros: they are brain."""
    shape = (48, 48, 40)
    xyz = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    brain = ((((xyz - [24, 24, 20]) / [18, 20, 15]) ** 2).sum(-1)) < 1
    ventricles = ((((xyz - [24, 24, 20]) / [3, 8, 4]) ** 2).sum(-1)) < 1
    sulcus = brain & (np.abs(xyz[..., 0] - 12) <= 1) & (xyz[..., 2] > 24)  # open to the surface
    image = np.where(brain & ~ventricles & ~sulcus, 100.0, 0.0).astype(np.float32)
    mask = brain_mask([image], spacing=1.0)
    assert mask[ventricles].all()
    deep = ndimage.binary_erosion(brain, iterations=4)  # the sulcus away from the surface
    assert mask[sulcus & deep].all()
    assert dice(mask, brain) > 0.97
