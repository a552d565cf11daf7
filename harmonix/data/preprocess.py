"""Prepare a case for the 2D generator (torchio) and map results back onto the case's own grid.

``preprocess_case`` reorients to RAS (``tio.ToCanonical``), resamples to ``config.spacing`` mm
isotropic (``tio.Resample``; labels nearest neighbour), rescales each sequence to 0..255 between
robust percentiles inside the brain (``tio.RescaleIntensity``; background 0) and crops/pads to
``config.crop_shape`` around the brain's bounding box (``tio.CropOrPad`` with the brain mask).

Every voxel of the result has a known position: the processed grid's affine. A ``GridRecord``
keeps it together with the original shape and affine, so ``restore`` resamples any
crop-shaped array (a generated sequence, a segmentation) back onto the original grid. Like
torchio, the processed grid keeps the original axes' directions (only flipped/permuted to the
nearest RAS), so an oblique acquisition is not rotated and no corner is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torchio as tio
from scipy import ndimage
from skimage.filters import threshold_otsu

from harmonix.data.labels import to_canonical
from harmonix.data.load import load_case
from harmonix.errors import InputError
from harmonix.registry import Registry, load_registry

CANONICAL_LABELS = "brats2019"  # the convention of labels inside harmonix (NCR 1, ED 2, ET 4)
GRID_ATOL = 1e-3  # mm; affines closer than this describe the same grid
_BRAIN = "_brain"
_LABEL = "_label"


@dataclass(frozen=True)
class PreprocessConfig:
    """Output spacing (mm, isotropic), output shape (x, y, z) and intensity percentiles."""

    spacing: float = 1.0
    crop_shape: tuple[int, int, int] = (176, 176, 155)
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self):
        object.__setattr__(self, "spacing", float(self.spacing))
        object.__setattr__(self, "crop_shape", tuple(int(n) for n in self.crop_shape))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if self.spacing <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if len(self.crop_shape) != 3 or min(self.crop_shape) < 1:
            raise ValueError(f"crop_shape must be three positive sizes, got {self.crop_shape}")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low, high}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class GridRecord:
    """What ``preprocess_case`` did to a case's grid, enough to map results back exactly."""

    original_shape: tuple[int, int, int]
    original_affine: np.ndarray  # 4x4, the case's reference grid
    shape: tuple[int, int, int]  # the processed (crop) grid
    affine: np.ndarray  # 4x4, RAS-ordered axes, isotropic spacing, origin after the crop
    reference: str = ""  # the sequence whose grid is the case's grid
    orientation: str = ""  # axis codes of the original grid, e.g. "LPS"
    xform_codes: tuple[int, int] = (1, 1)  # the original header's qform and sform codes
    # input intensities mapped to 0 and 255, per sequence
    intensity: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_shape": list(self.original_shape),
            "original_affine": np.asarray(self.original_affine, float).tolist(),
            "shape": list(self.shape),
            "affine": np.asarray(self.affine, float).tolist(),
            "reference": self.reference,
            "orientation": self.orientation,
            "xform_codes": list(self.xform_codes),
            "intensity": {k: [float(v) for v in lh] for k, lh in self.intensity.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridRecord:
        try:
            record = cls(
                original_shape=tuple(int(n) for n in data["original_shape"]),
                original_affine=np.array(data["original_affine"], dtype=float),
                shape=tuple(int(n) for n in data["shape"]),
                affine=np.array(data["affine"], dtype=float),
                reference=str(data.get("reference", "")),
                orientation=str(data.get("orientation", "")),
                xform_codes=tuple(int(c) for c in data.get("xform_codes", (1, 1))),
                intensity={
                    k: (float(v[0]), float(v[1])) for k, v in data.get("intensity", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"not a valid grid record: {exc!r}") from None
        for name in ("original_affine", "affine"):
            if getattr(record, name).shape != (4, 4):
                raise ValueError(f"not a valid grid record: {name} must be 4x4")
        if len(record.original_shape) != 3 or len(record.shape) != 3:
            raise ValueError("not a valid grid record: shapes must have three sizes")
        return record


@dataclass
class PreparedCase:
    """A case on the processed grid: volumes 0..255, brain mask, canonical labels (0/1/2/4)."""

    case_id: str
    volumes: dict[str, np.ndarray]
    brain_mask: np.ndarray
    label: np.ndarray | None
    record: GridRecord
    coverage: float = 1.0  # fraction of the brain (at config.spacing) inside the crop


# -- brain mask ----------------------------------------------------------------------------------
def _close(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Morphological closing that does not erode at the array's border."""
    pad = iterations + 1
    padded = np.pad(mask, pad)
    structure = ndimage.generate_binary_structure(3, 1)
    closed = ndimage.binary_closing(padded, structure, iterations=iterations)
    return closed[pad:-pad, pad:-pad, pad:-pad]


def brain_mask(
    arrays: list[np.ndarray], *, stripped_fraction: float = 0.95, spacing: float = 1.0
) -> np.ndarray:
    """The brain (or, without skull stripping, head) mask of co-registered volumes.

    Skull-stripped data has an exactly zero background: the mask is where any sequence is
    nonzero, closed over gaps of about 3 mm, since a brain-extracted scan may store CSF
    (ventricles, sulci) as exact zeros, which are brain. Otherwise (nonzero almost everywhere)
    Otsu's threshold on the mean of the sequences, each scaled by its 99th percentile. Either
    way the largest connected component, with the holes of the volume and of every axial slice
    filled.
    """
    nonzero = np.zeros(arrays[0].shape, bool)
    for array in arrays:
        nonzero |= array != 0
    if nonzero.mean() < stripped_fraction:
        mask = _close(nonzero, max(1, round(3.0 / spacing)))
    else:
        mean = np.zeros(arrays[0].shape, np.float32)
        for array in arrays:
            scale = np.percentile(array, 99) - array.min()
            mean += (array - array.min()) / (scale if scale > 0 else 1.0)
        mask = mean > threshold_otsu(mean)
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        mask = components == sizes.argmax()
    mask = ndimage.binary_fill_holes(mask)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


# -- inputs --------------------------------------------------------------------------------------
def _name(image: nib.Nifti1Image, fallback: str) -> Path:
    return Path(image.get_filename() or fallback)


def _voxels(image: nib.Nifti1Image, fallback: str, dtype=np.float32) -> np.ndarray:
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(_name(image, fallback), f"expected a 3D image, got shape {image.shape}")
    data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    if not np.isfinite(data).all():
        raise InputError(_name(image, fallback), "contains NaN or Inf voxels")
    return data.astype(dtype, copy=False)


def _check_affine(image: nib.Nifti1Image, fallback: str) -> None:
    columns = image.affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if not (norms > 0).all():
        raise InputError(_name(image, fallback), "affine has a zero voxel size")
    unit = columns / norms
    if np.abs(unit.T @ unit - np.eye(3)).max() > 1e-4:
        raise InputError(_name(image, fallback), "affine has shear, which is not supported")


def _same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=GRID_ATOL)


def _reference_order(sequences, registry: Registry) -> list[str]:
    """Sequences in the order the site reader picks a case's reference: source priority first."""
    order = [*registry.source_priority, *registry.sequences]
    return sorted(sequences, key=lambda s: (order.index(s) if s in order else len(order), s))


def _canonical_labels(label: np.ndarray, convention: str, registry: Registry, path: Path):
    try:
        return to_canonical(label, convention, registry).astype(np.uint8)
    except (KeyError, ValueError) as exc:
        raise InputError(path, str(exc.args[0])) from None


def _unpack(case_or_loaded, label, resample: bool, registry: Registry):
    """``(case_id, images, label image, label convention)`` from a Case, LoadedCase or dict."""
    if hasattr(case_or_loaded, "sequences") and hasattr(case_or_loaded, "problems"):  # a Case
        loaded = load_case(case_or_loaded, resample=resample, registry=registry)
        return (
            str(case_or_loaded.id),
            dict(loaded.images),
            loaded.label,
            getattr(case_or_loaded, "label_convention", None),
        )
    if hasattr(case_or_loaded, "images"):  # a LoadedCase
        images = dict(case_or_loaded.images)
        label = case_or_loaded.label if label is None else label
        case = getattr(case_or_loaded, "case", None)
        convention = getattr(case, "label_convention", None)
        return getattr(case_or_loaded, "id", None), images, label, convention
    if isinstance(case_or_loaded, Mapping):
        return None, dict(case_or_loaded), label, None
    raise TypeError(f"expected a Case, a LoadedCase or a dict of images, got {case_or_loaded!r}")


# -- forward -------------------------------------------------------------------------------------
def preprocess_case(
    case_or_loaded,
    config: PreprocessConfig | None = None,
    *,
    resample: bool = False,
    label: nib.Nifti1Image | None = None,
    label_convention: str | None = None,
    case_id: str | None = None,
    registry: Registry | None = None,
) -> PreparedCase:
    """Prepare one case (a site ``Case``, a ``LoadedCase`` or ``{sequence: image}``).

    All sequences (and the label map) must share one grid; with ``resample=True`` the others
    are resampled onto the reference sequence's grid (the first present one in the registry's
    ``source_priority``) instead of raising ``InputError``. Labels are converted from
    ``label_convention`` (default: the case's, else BraTS 2019) to canonical 1/2/4.
    """
    config = config or PreprocessConfig()
    registry = registry or load_registry()
    found_id, images, label_image, found_convention = _unpack(
        case_or_loaded, label, resample, registry
    )
    case_id = case_id or found_id or "case"
    convention = label_convention or found_convention or CANONICAL_LABELS
    if not images:
        raise ValueError(f"case '{case_id}' has no sequences")

    order = _reference_order(images, registry)
    reference = images[order[0]]
    _check_affine(reference, order[0])
    subject_images: dict[str, tio.Image] = {}
    for name in order:
        data = _voxels(images[name], name)
        subject_images[name] = tio.ScalarImage(
            tensor=torch.from_numpy(data)[None], affine=images[name].affine
        )
    if label_image is not None:
        path = _name(label_image, "label")
        voxels = np.rint(_voxels(label_image, "label")).astype(np.int16)
        data = _canonical_labels(voxels, convention, registry, path)
        subject_images[_LABEL] = tio.LabelMap(
            tensor=torch.from_numpy(data)[None], affine=label_image.affine
        )
    sources = {**images, **({_LABEL: label_image} if label_image is not None else {})}
    for name in [n for n in sources if n != order[0]]:
        image = sources[name]
        if not _same_grid(image, reference):
            if not resample:
                raise InputError(
                    _name(image, name),
                    f"grid {image.shape[:3]} differs from the reference sequence '{order[0]}' "
                    f"({_name(reference, order[0])}); pass resample=True to resample it",
                )
            to_reference = tio.Resample((reference.shape[:3], reference.affine), copy=False)
            subject_images[name] = to_reference(subject_images[name])
        subject_images[name].affine = reference.affine  # one grid, not just close ones

    subject = tio.Subject(subject_images)
    subject = tio.ToCanonical(copy=False)(subject)
    if not np.allclose(subject[order[0]].spacing, config.spacing, rtol=0, atol=1e-6):
        # (at the target spacing already, torchio's Resample would be the identity)
        subject = tio.Resample(config.spacing, copy=False)(subject)

    arrays = [subject[name].data[0].numpy() for name in order]
    brain = brain_mask(arrays, spacing=config.spacing)
    brain_voxels = int(brain.sum())
    if not brain.any():
        raise InputError(_name(reference, order[0]), "no brain found (the image is empty)")
    intensity: dict[str, tuple[float, float]] = {}
    for name, array in zip(order, arrays, strict=True):
        low, high = np.percentile(array[brain], config.percentiles)
        if not high > low:
            problem = "intensities are constant inside the brain"
            raise InputError(_name(images[name], name), problem)
        intensity[name] = (float(low), float(high))
    brain_tensor = torch.from_numpy(brain.astype(np.uint8))[None]
    subject.add_image(tio.LabelMap(tensor=brain_tensor, affine=subject[order[0]].affine), _BRAIN)
    subject = tio.RescaleIntensity(
        out_min_max=(0, 255), percentiles=config.percentiles, masking_method=_BRAIN, copy=False
    )(subject)
    subject = tio.CropOrPad(config.crop_shape, mask_name=_BRAIN, copy=False)(subject)

    brain = subject[_BRAIN].data[0].numpy().astype(bool)
    coverage = float(brain.sum()) / brain_voxels
    volumes = {}
    for name in order:
        volume = subject[name].data[0].numpy().astype(np.float32)
        volume[~brain] = 0
        volumes[name] = np.clip(volume, 0, 255, out=volume)
    header = reference.header
    record = GridRecord(
        original_shape=tuple(int(n) for n in reference.shape[:3]),
        original_affine=np.array(reference.affine, dtype=float),
        shape=tuple(int(n) for n in config.crop_shape),
        affine=np.array(subject[order[0]].affine, dtype=float),
        reference=order[0],
        orientation="".join(nib.aff2axcodes(reference.affine)),
        xform_codes=(int(header.get("qform_code", 1)), int(header.get("sform_code", 1)))
        if isinstance(header, nib.Nifti1Header)
        else (1, 1),
        intensity=intensity,
    )
    prepared_label = None
    if label_image is not None:
        prepared_label = subject[_LABEL].data[0].numpy().astype(np.uint8)
    return PreparedCase(case_id, volumes, brain, prepared_label, record, coverage)


# -- inverse -------------------------------------------------------------------------------------
def restore(volume: np.ndarray, record: GridRecord, *, is_label: bool = False) -> nib.Nifti1Image:
    """Map a processed-grid array back onto the case's original grid (shape and affine).

    Intensities: linear interpolation; labels (``is_label=True``): nearest neighbour, integer
    type kept. Voxels outside the processed grid's field of view are 0.
    """
    volume = np.asarray(volume)
    if volume.shape != tuple(record.shape):
        raise ValueError(f"expected an array of shape {tuple(record.shape)}, got {volume.shape}")
    if is_label:
        dtype = np.uint8 if volume.min() >= 0 and volume.max() <= 255 else np.int16
        tensor = torch.from_numpy(volume.astype(dtype))[None]
        image = tio.LabelMap(tensor=tensor, affine=record.affine)
    else:
        data = volume.astype(np.float32)
        image = tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=record.affine)
    target = (tuple(record.original_shape), np.asarray(record.original_affine, dtype=float))
    resampled = tio.Resample(target, copy=False)(image).data[0].numpy()
    if is_label:
        resampled = resampled.astype(dtype)
    else:
        resampled = resampled.astype(np.float32)
    affine = np.array(record.original_affine, dtype=float)
    out = nib.Nifti1Image(resampled, affine)
    # the original codes where set, else both: tools that read only the qform or only the sform
    # find the same affine (set on the header: the image itself keeps the float64 affine)
    qform_code, sform_code = (int(c) for c in record.xform_codes)
    sform_code = sform_code or qform_code or 1
    out.header.set_qform(affine, code=qform_code or sform_code)
    out.header.set_sform(affine, code=sform_code)
    return out
