"""Load a case read by :func:`harmonix.data.site.read_site`: its volumes (float32) and label map
(int16, the site's convention), checked again, resampled onto the reference grid on request.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torchio as tio

from harmonix.data.checks import VoxelCheck, grid_difference, image_info, read_header
from harmonix.data.site import GRID_KINDS, Case, reference_sequence
from harmonix.errors import InputError
from harmonix.registry import Registry, load_registry


@dataclass
class LoadedCase:
    images: dict[str, nib.Nifti1Image]  # float32 3D volumes
    label: nib.Nifti1Image | None  # int16, in the site's label convention (see to_canonical)
    case: Case | None = None
    resampled: tuple[str, ...] = ()  # what load_case(resample=True) moved onto the reference

    @property
    def id(self) -> str | None:
        return self.case.id if self.case else None


def _load_volume(path: Path, label_values, convention: str) -> nib.Nifti1Image:
    img, problem = read_header(path)
    if problem:
        raise InputError(problem.path, problem.message)
    try:
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise InputError(path, f"truncated or corrupt image data: {exc}") from None
    data = data.reshape(data.shape[:3])  # drop a trailing singleton 4th dimension
    check = VoxelCheck(path, label_values)
    check.update(data)
    for problem in check.problems(convention):
        raise InputError(problem.path, problem.message)
    data = np.rint(data).astype(np.int16) if label_values is not None else data.astype(np.float32)
    header = img.header if type(img.header) is nib.Nifti1Header else None  # not NIfTI-2
    out = nib.Nifti1Image(data, img.affine, header=header)  # keeps codes, units, descrip
    out.set_data_dtype(data.dtype)
    out.header.set_slope_inter(None, None)  # the data is already scaled
    return out


def _resample(img: nib.Nifti1Image, ref: nib.Nifti1Image, *, is_label: bool) -> nib.Nifti1Image:
    """torchio's Resample onto the reference grid (linear for images, nearest for labels)."""
    kind = tio.LabelMap if is_label else tio.ScalarImage
    image = kind(tensor=torch.from_numpy(np.asarray(img.dataobj)[None]), affine=img.affine)
    resampled = tio.Resample((ref.shape[:3], ref.affine))(image)
    data = resampled.data[0].numpy().astype(np.int16 if is_label else np.float32)
    return nib.Nifti1Image(data, ref.affine)


def load_case(
    case: Case, *, resample: bool = False, registry: Registry | None = None
) -> LoadedCase:
    """Load a case's volumes (float32) and label map (int16, the site's convention).

    Raises :class:`InputError` naming the file for the first bad input. Sequences or a label map
    on a grid other than the reference sequence's are an error unless ``resample=True``, which
    resamples them onto the reference with torchio (recorded in ``LoadedCase.resampled``).
    """
    registry = registry or load_registry()
    tolerated = GRID_KINDS if resample else frozenset()
    for problem in case.problems:
        if problem.kind not in tolerated:
            raise InputError(problem.path, problem.message)
    if not case.sequences:
        raise InputError(case.root, "no image sequence in this case")
    label_values = registry.label_values(case.label_convention)
    images = {s: _load_volume(p, None, case.label_convention) for s, p in case.sequences.items()}
    label = _load_volume(case.label, label_values, case.label_convention) if case.label else None

    reference = case.reference or reference_sequence(case.sequences, registry)
    ref = images[reference]
    ref_info = image_info(ref)
    resampled = []
    named = [*images.items(), *([("label", label)] if label is not None else [])]
    for key, img in named:
        difference = grid_difference(image_info(img), ref_info)
        if key == reference or difference is None:
            continue
        path = case.label if key == "label" else case.sequences[key]
        if not resample:
            raise InputError(path, f"on a different grid from the reference sequence {reference} "
                                   f"({case.sequences[reference].name}): {difference}")
        moved = _resample(img, ref, is_label=key == "label")
        if key == "label":
            label = moved
        else:
            images[key] = moved
        resampled.append(key)
    return LoadedCase(images, label, case, tuple(resampled))
