"""Per-file checks of a site: the header (readable, 3D, not truncated), the grid, the voxels
(NaN/Inf, all-zero, label values) streamed without keeping volumes, and warnings (not
skull-stripped, thick slices). Every finding is a :class:`Problem` naming the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError
from nibabel.volumeutils import apply_read_scaling

AFFINE_TOLERANCE = 1e-3  # mm; float noise between sequences of one scan is not a grid change
CHUNK_BYTES = 16 << 20  # voxel checks stream files in chunks of this size
# warnings: a volume with at least this fraction of non-zero voxels is not skull-stripped; the
# same rule as harmonix.data.preprocess.brain_mask's stripped_fraction (a head mask is used then)
HEAD_FRACTION = 0.95
THICK_MM, ANISOTROPY = 5.0, 3.0  # slices this thick, or voxels this elongated, are flagged
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError)


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file (or a case folder)."""

    path: Path
    message: str
    kind: str = "error"  # unreadable, shape, voxels, labels, duplicate, unknown, empty, grid,
    # ignored, dicom, mgz, nrrd, mha (other formats); "warning" only in Case.warnings

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ImageInfo:
    """A file's grid, read from its header."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    dtype: str

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))


# -- header checks -----------------------------------------------------------------------------
def _gzip_size_mismatch(path: Path, needed: int) -> bool:
    """Cheap truncation hint: a gzip trailer holds the uncompressed size modulo 2**32."""
    with open(path, "rb") as f:
        f.seek(-4, 2)
        (isize,) = struct.unpack("<I", f.read(4))
    return isize != needed % 2**32


def _gzip_payload(path: Path) -> int:
    """Decompress ``path`` to the end (raises on a truncated or corrupt stream)."""
    size = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            size += len(chunk)
    return size


def _truncation(path: Path, needed: int) -> str | None:
    if path.name.lower().endswith(".gz"):
        if not _gzip_size_mismatch(path, needed):
            return None
        try:
            size = _gzip_payload(path)
        except (EOFError, OSError, zlib.error) as exc:
            return f"truncated or corrupt gzip file ({exc})"
    else:
        size = path.stat().st_size
    if size < needed:
        return f"truncated: {size} bytes of image data where the header needs {needed}"
    return None


def read_header(path: Path) -> tuple[nib.spatialimages.SpatialImage | None, Problem | None]:
    """Load the header only; a Problem for unreadable, truncated, non-3D or odd-typed files."""
    try:
        img = nib.load(path)
        header = img.header
        shape = tuple(int(s) for s in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
    except READ_ERRORS as exc:
        return None, Problem(path, f"cannot be read as NIfTI: {exc}", "unreadable")
    if len(shape) < 3:
        return None, Problem(path, f"not a 3D image (shape {_fmt(shape)})", "shape")
    if any(s != 1 for s in shape[3:]):
        return None, Problem(
            path, f"{len(shape)}D image (shape {_fmt(shape)}); one 3D volume per file, please",
            "shape",
        )
    if dtype.kind not in "biuf":
        return None, Problem(path, f"unsupported voxel type {dtype}", "unreadable")
    try:
        needed = int(img.dataobj.offset) + prod(shape) * dtype.itemsize
        problem = _truncation(path, needed)
    except OSError as exc:
        problem = f"cannot be read: {exc}"
    if problem:
        return None, Problem(path, problem, "unreadable")
    return img, None


def image_info(img) -> ImageInfo:
    header = img.header
    return ImageInfo(
        shape=tuple(int(s) for s in header.get_data_shape()[:3]),
        spacing=tuple(float(z) for z in header.get_zooms()[:3]),
        affine=np.asarray(img.affine, dtype=np.float64),
        dtype=str(header.get_data_dtype()),
    )


def _fmt(values, precision: int | None = None) -> str:
    if precision is None:
        return "x".join(str(v) for v in values)
    return "x".join(f"{v:.{precision}g}" for v in values)


def grid_difference(info: ImageInfo, ref: ImageInfo) -> str | None:
    differences = []
    if info.shape != ref.shape:
        differences.append(f"shape {_fmt(info.shape)} vs {_fmt(ref.shape)}")
    gap = float(np.abs(info.affine - ref.affine).max())
    if gap > AFFINE_TOLERANCE:
        what = f"affine differs by up to {gap:.3g}"
        if not np.allclose(info.spacing, ref.spacing, atol=AFFINE_TOLERANCE):
            what += f" (spacing {_fmt(info.spacing, 3)} vs {_fmt(ref.spacing, 3)} mm)"
        if info.orientation != ref.orientation:
            what += f" (orientation {info.orientation} vs {ref.orientation})"
        differences.append(what)
    return "; ".join(differences) or None


# -- voxel checks ------------------------------------------------------------------------------
class VoxelCheck:
    """Accumulates NaN/Inf counts, whether anything is non-zero and (for labels) the values."""

    def __init__(self, path: Path, label_values: dict[str, int] | None = None):
        self.path = path
        self.label_values = label_values  # None for images
        self.nan = self.inf = 0
        self.nonzero = False
        self.n_nonzero = self.n_total = 0
        self.values: set[float] = set()

    def update(self, chunk: np.ndarray) -> None:
        if chunk.dtype.kind == "f":
            finite = np.isfinite(chunk)
            if not finite.all():
                self.nan += int(np.isnan(chunk).sum())
                self.inf += int(np.isinf(chunk).sum())
                chunk = chunk[finite]
        count = int(np.count_nonzero(chunk))
        self.nonzero = self.nonzero or count > 0
        self.n_nonzero += count
        self.n_total += int(chunk.size)
        if self.label_values is not None and len(self.values) < 256:
            self.values.update(np.unique(chunk).tolist())

    def warnings(self) -> list[Problem]:
        """A volume that does not look skull-stripped (the background is not zero)."""
        if self.label_values is not None or not self.n_total:
            return []
        fraction = self.n_nonzero / self.n_total
        if fraction < HEAD_FRACTION:
            return []
        return [Problem(self.path, (
            f"does not look skull-stripped: {fraction:.0%} of its voxels are non-zero (a "
            "brain-extracted scan has an exactly-zero background). harmonix will use a head "
            "mask (Otsu threshold) instead of a brain mask: intensities are rescaled over the "
            "whole head, scalp and skull are generated too, and the model's crop is centred on "
            "the head, which can cut the bottom of the brain (see the coverage in manifest.csv). "
            "For results like the paper's, skull-strip first (HD-BET or SynthStrip; "
            "docs/data.md)"), "warning")]

    def problems(self, convention: str) -> list[Problem]:
        found = []
        if self.nan or self.inf:
            message = f"NaN or Inf voxels ({self.nan} NaN, {self.inf} Inf)"
            found.append(Problem(self.path, message, "voxels"))
        if self.label_values is None:
            if not self.nonzero and not (self.nan or self.inf):
                found.append(Problem(self.path, "all voxels are zero (empty image)", "voxels"))
            return found
        allowed = {0, *self.label_values.values()}
        bad = sorted(v for v in self.values if v != int(v) or int(v) not in allowed)
        if bad:
            shown = ", ".join(f"{v:g}" for v in bad[:10])
            found.append(Problem(
                self.path,
                f"label values {shown} are not in label convention '{convention}' "
                f"(0 and {', '.join(f'{k} {v}' for k, v in self.label_values.items())})",
                "labels",
            ))
        return found


def _stream(path: Path, proxy) -> Iterator[np.ndarray]:
    """The voxels behind nibabel's array ``proxy`` (scaled as nibabel would), chunk by chunk."""
    dtype = np.dtype(proxy.dtype)
    total = prod(proxy.shape)
    step = max(1, CHUNK_BYTES // dtype.itemsize)
    with ImageOpener(str(path)) as f:
        f.seek(int(proxy.offset))
        for start in range(0, total, step):
            count = min(step, total - start)
            buffer = f.read(count * dtype.itemsize)
            if len(buffer) < count * dtype.itemsize:
                raise EOFError(f"the file ends after {start + len(buffer) // dtype.itemsize} "
                               f"of {total} voxels")
            yield apply_read_scaling(np.frombuffer(buffer, dtype), proxy.slope, proxy.inter)


def scan_voxels(path: Path, img, label_values, convention: str):
    """``(problems, warnings)`` of one file's voxels, streamed."""
    check = VoxelCheck(path, label_values)
    try:
        for chunk in _stream(path, img.dataobj):
            check.update(chunk)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        return [Problem(path, f"truncated or corrupt image data: {exc}", "unreadable")], []
    return check.problems(convention), check.warnings()


def slice_warning(path: Path, info: ImageInfo) -> Problem | None:
    """Thick (>= THICK_MM) or strongly anisotropic (ratio >= ANISOTROPY) voxels."""
    spacing = [abs(z) for z in info.spacing]
    thickest, finest = max(spacing), min(spacing)
    ratio = thickest / finest if finest > 0 else float("inf")
    if thickest < THICK_MM and ratio < ANISOTROPY:
        return None
    return Problem(path, (
        f"thick or anisotropic slices ({_fmt(spacing, 3)} mm voxels, {ratio:.1f}:1): harmonix "
        "resamples every sequence to the model's isotropic grid (the spacing in its model card; "
        "1 mm for models like the paper's) with linear interpolation before generating, and "
        "maps the result back onto this grid, so detail between slices is interpolated, not "
        "recovered"), "warning")
