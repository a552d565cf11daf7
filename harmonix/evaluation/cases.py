"""One test case under the scenarios: preprocessed from its present sequences only, and the
slices kept for FID and the sequence codes.

A scenario declares some sequences missing; a filled case must not depend on them in any way.
:class:`CaseVariants` therefore preprocesses the case (brain mask, intensity scaling, crop) from
the present sequences alone, as ``harmonix harmonize`` does with a case that lacks them, and
only the ``complete`` strategy uses the preparation from all four. The crops of two variants
lie on one voxel grid (same spacing and orientation) and differ by a whole-voxel shift at most;
:func:`on_grid` moves an array from one to the other (for scores against the real sequence and
the overlays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def grid_offset(source_affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray | None:
    """Whole-voxel offset ``o`` with ``target index = source index + o``; None unless the two
    grids share spacing and orientation and are shifted by whole voxels."""
    relative = np.linalg.inv(np.asarray(target_affine, float)) @ np.asarray(source_affine, float)
    offset = relative[:3, 3]
    if not np.allclose(relative[:3, :3], np.eye(3), atol=1e-4):
        return None
    if not np.allclose(offset, np.round(offset), atol=1e-3):
        return None
    return np.round(offset).astype(int)


def shift(array: np.ndarray, offset: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """``array`` moved by ``offset`` voxels (first axes) into a zero array of ``shape``."""
    out = np.zeros(tuple(shape) + array.shape[len(offset):], array.dtype)
    src, dst = [], []
    for o, n_in, n_out in zip(offset, array.shape, shape, strict=False):
        start, stop = max(0, -o), min(n_in, n_out - o)
        if stop <= start:
            return out
        src.append(slice(start, stop))
        dst.append(slice(start + o, stop + o))
    out[tuple(dst)] = array[tuple(src)]
    return out


def on_grid(array: np.ndarray, source, target) -> np.ndarray | None:
    """``array`` on the grid of ``source`` (a ``GridRecord``) moved onto ``target``'s; the same
    array when the grids are one; None when they are not a whole-voxel shift apart."""
    if source is target or (np.allclose(source.affine, target.affine, atol=1e-6)
                            and tuple(source.shape) == tuple(target.shape)):
        return array
    offset = grid_offset(source.affine, target.affine)
    if offset is None:
        return None
    return shift(array, offset, target.shape)


class CaseVariants:
    """A test case prepared once per set of present sequences (cached per case).

    ``full`` is the preparation from every sequence (the ``complete`` strategy);
    :meth:`present` prepares from the given sequences only: brain mask, intensity scaling and
    crop never see the missing ones. The label map is carried onto each variant's grid.
    """

    def __init__(self, case, full, config, sequences: Sequence[str]):
        self.case, self.full, self.config = case, full, config
        self.sequences = tuple(sequences)
        self._loaded = None
        self._variants: dict[frozenset, object] = {}

    def present(self, present: Sequence[str]):
        key = frozenset(present)
        if not key:
            raise ValueError("a scenario must keep at least one sequence")
        if key >= set(self.sequences):
            return self.full
        if key not in self._variants:
            from harmonix.data.load import load_case
            from harmonix.data.preprocess import preprocess_case

            if self._loaded is None:
                self._loaded = load_case(self.case)
            images = {s: self._loaded.images[s] for s in self.sequences if s in key}
            prepared = preprocess_case(
                images, self.config, label=self._loaded.label, case_id=self.case.id,
                label_convention=getattr(self.case, "label_convention", None),
            )
            self._variants[key] = prepared
        return self._variants[key]

    def to_full(self, array: np.ndarray, prepared) -> np.ndarray | None:
        """An array on ``prepared``'s grid moved onto the full preparation's grid."""
        return on_grid(array, prepared.record, self.full.record)

    def from_full(self, array: np.ndarray, prepared) -> np.ndarray | None:
        """An array on the full preparation's grid moved onto ``prepared``'s grid."""
        return on_grid(array, self.full.record, prepared.record)


# -- slices for FID and the sequence codes ---------------------------------------------------------
def fid_slice_indices(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` axial slice indices with at least a quarter of the largest brain area."""
    area = mask.reshape(-1, mask.shape[-1]).sum(axis=0)
    candidates = np.flatnonzero(area >= 0.25 * area.max()) if area.max() else np.array([], int)
    return np.sort(rng.choice(candidates, min(n, len(candidates)), replace=False))


def lesion_slice_indices(label: np.ndarray | None, n: int) -> np.ndarray:
    """Up to ``n`` axial slices with the largest lesion (label > 0) areas, in slice order."""
    if label is None or n <= 0:
        return np.array([], int)
    area = (label > 0).reshape(-1, label.shape[-1]).sum(axis=0)
    ks = np.argsort(-area, kind="stable")[:n]
    return np.sort(ks[area[ks] > 0])


def axial(volume: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """``(len(ks), X, Y)`` float32 axial slices."""
    return np.ascontiguousarray(np.moveaxis(volume[:, :, ks], -1, 0)).astype(np.float32)


def lesion_crops(slices: np.ndarray, lesions: np.ndarray, margin: int = 2) -> np.ndarray:
    """``(n, X, Y)``: per axial slice the square around its lesion (``lesions``, boolean, same
    shape; bounding box plus ``margin`` voxels) resized to the slice size: what lesion-region FID
    compares (the lesion's texture at the resolution of a whole slice, not a spot on black)."""
    out = np.zeros(slices.shape, np.float32)
    for i, (image, lesion) in enumerate(zip(slices, lesions, strict=True)):
        rows, cols = np.nonzero(lesion)
        if not len(rows):
            continue
        extent = max(np.ptp(rows), np.ptp(cols)) + 1 + 2 * margin
        x0 = rows.min() - (extent - np.ptp(rows) - 1) // 2
        y0 = cols.min() - (extent - np.ptp(cols) - 1) // 2
        box = np.zeros((extent, extent), np.float32)
        src = image[max(x0, 0):x0 + extent, max(y0, 0):y0 + extent]
        box[max(-x0, 0):max(-x0, 0) + src.shape[0], max(-y0, 0):max(-y0, 0) + src.shape[1]] = src
        crop = torch.from_numpy(box)[None, None]
        out[i] = F.interpolate(crop, size=slices.shape[1:], mode="bilinear",
                               align_corners=False)[0, 0].numpy()
    return out


class SliceBank:
    """Slices kept for FID and the sequence codes: real ones per half and sequence, generated
    ones per (generator, source, target) from half A; lesion-masked real and generated slices
    per target (and source) for the lesion codes; lesion crops (:func:`lesion_crops`) real per
    target and generated per (generator, source, target) for lesion-region FID; the
    cross-center T2 slices."""

    def __init__(self):
        self.real: dict[tuple[str, str], list[np.ndarray]] = {}
        self.generated: dict[tuple[str, str, str], list[np.ndarray]] = {}
        self.lesion_real: dict[str, list[np.ndarray]] = {}
        self.lesion_generated: dict[tuple[str, str], list[np.ndarray]] = {}
        self.crops_real: dict[str, list[np.ndarray]] = {}
        self.crops_generated: dict[tuple[str, str, str], list[np.ndarray]] = {}
        self.cross: tuple[str, np.ndarray, np.ndarray] | None = None  # center, local, aligned

    def add_real(self, half: str, sequence: str, slices: np.ndarray) -> None:
        self.real.setdefault((half, sequence), []).append(slices)

    def add_generated(self, label: str, source: str, target: str, slices: np.ndarray) -> None:
        self.generated.setdefault((label, source, target), []).append(slices)

    def add_lesion(self, target: str, source: str | None, slices: np.ndarray) -> None:
        """Lesion-masked slices of ``target``: real (``source`` None) or generated from it."""
        if source is None:
            self.lesion_real.setdefault(target, []).append(slices)
        else:
            self.lesion_generated.setdefault((source, target), []).append(slices)

    def add_crops(self, target: str, slices: np.ndarray, label: str | None = None,
                  source: str | None = None) -> None:
        """Lesion crops of ``target``: real (``label`` None) or by generator ``label`` from
        ``source``."""
        if label is None:
            self.crops_real.setdefault(target, []).append(slices)
        else:
            self.crops_generated.setdefault((label, source, target), []).append(slices)

    @staticmethod
    def stack(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, 1, 1), np.float32)


__all__ = ["CaseVariants", "SliceBank", "axial", "fid_slice_indices", "grid_offset",
           "lesion_crops", "lesion_slice_indices", "on_grid", "shift"]
