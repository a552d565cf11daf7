"""Read a site: a folder of cases, each a set of NIfTI sequences and maybe a tumour label map.

Layouts (detected, or named in ``harmonix-site.json``):

* ``brats2019``: ``CASE/CASE_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``;
* ``brats2023``: ``CASE/CASE-t1n.nii.gz``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg`` (BraTS 2021/2023);
* ``bids``: ``sub-X[/ses-Y]/anat/sub-X_[ses-Y_]..._T1w.nii.gz``; each subject or session is a
  case; label maps (``_dseg``) in ``anat/`` or ``derivatives/*/sub-X[/ses-Y]/anat/``;
* ``flat``: one folder of ``CASE_sequence.nii.gz`` files.

Sequence names come from ``registry.yaml`` aliases; an unknown name is reported, never guessed.
Bad input becomes a :class:`Problem` of its case and never stops the other cases.
:func:`read_site` reads headers (cheap, nibabel loads lazily) and, with ``check_voxels``, streams
every file once for NaN/Inf/all-zero voxels without keeping volumes. :func:`load_case` loads one
case, checks it again and raises :class:`~harmonix.errors.InputError` for the first bad input.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError
from nibabel.volumeutils import apply_read_scaling

from harmonix.data.labels import from_canonical, to_canonical
from harmonix.errors import InputError
from harmonix.registry import NIFTI_SUFFIX, Registry, load_registry

SITE_FILE = "harmonix-site.json"
LAYOUTS = ("brats2019", "brats2023", "bids", "flat")
LAYOUT_ALIASES = {"brats2021": "brats2023", "folders": "brats2019"}
DEFAULT_LABELS = "brats2019"
BRATS2023_TOKENS = frozenset({"t1n", "t1c", "t2w", "t2f"})
AFFINE_TOLERANCE = 1e-3  # mm; float noise between sequences of one scan is not a grid change
CHUNK_BYTES = 16 << 20  # voxel checks stream files in chunks of this size

# problem kinds; load_case(resample=True) accepts the grid ones and resamples
GRID_KINDS = frozenset({"grid", "label-grid"})
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError)

__all__ = [
    "LAYOUTS",
    "SITE_FILE",
    "Case",
    "ImageInfo",
    "LoadedCase",
    "Problem",
    "Site",
    "from_canonical",
    "load_case",
    "read_site",
    "to_canonical",
]


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file (or a case folder)."""

    path: Path
    message: str
    kind: str = "error"  # unreadable, shape, voxels, labels, duplicate, unknown, empty, grid, ...

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


@dataclass
class Case:
    id: str
    root: Path
    center: str
    layout: str
    sequences: dict[str, Path]
    label: Path | None
    problems: list[Problem] = field(default_factory=list)
    label_convention: str = DEFAULT_LABELS
    reference: str | None = None  # the sequence whose grid the others must share
    info: dict[str, ImageInfo] = field(default_factory=dict)  # by sequence name and "label"

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Site:
    root: Path
    center: str
    layout: str
    label_convention: str
    cases: list[Case]
    problems: list[Problem] = field(default_factory=list)  # files that belong to no case

    @property
    def ok(self) -> bool:
        return not self.problems and all(case.ok for case in self.cases)

    @property
    def all_problems(self) -> list[Problem]:
        return [*self.problems, *(p for case in self.cases for p in case.problems)]

    def sequences(self, registry: Registry | None = None) -> list[str]:
        """Sequences present in any case, in registry order."""
        order = list((registry or load_registry()).sequences)
        present = {s for case in self.cases for s in case.sequences}
        return sorted(present, key=lambda s: (order.index(s) if s in order else len(order), s))


@dataclass
class LoadedCase:
    images: dict[str, nib.Nifti1Image]  # float32 3D volumes
    label: nib.Nifti1Image | None  # int16, in the site's label convention (see to_canonical)
    case: Case | None = None
    resampled: tuple[str, ...] = ()  # what load_case(resample=True) moved onto the reference

    @property
    def id(self) -> str | None:
        return self.case.id if self.case else None


# -- files and names ---------------------------------------------------------------------------
def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _visible(p)
                  and NIFTI_SUFFIX.search(p.name))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _stem(path: Path) -> str:
    return NIFTI_SUFFIX.sub("", path.name)


def _is_brats2023_name(path: Path) -> bool:
    head, sep, token = _stem(path).rpartition("-")
    return bool(sep and head) and token.lower() in BRATS2023_TOKENS


def _flat_case_id(path: Path, registry: Registry) -> str:
    """``CASE_t1.nii.gz`` -> ``CASE`` (label aliases may hold a ``_``: ``_tumor_segmentation``)."""
    stem = _stem(path)
    for alias in sorted(registry.label_aliases, key=len, reverse=True):
        for sep in "_-":
            if stem.lower().endswith(sep + alias.lower()) and len(stem) > len(alias) + 1:
                return stem[: -len(alias) - 1]
    return re.split(r"[-_](?=[^-_]*$)", stem, maxsplit=1)[0]


def _known_names(registry: Registry) -> str:
    return "; ".join(f"{s.name} ({', '.join(s.aliases)})" for s in registry.sequences.values())


# -- site description --------------------------------------------------------------------------
def _read_site_file(root: Path, registry: Registry) -> dict[str, str]:
    path = root / SITE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, 'must be a JSON object like {"center": ..., "labels": ...}')
    labels = data.get("labels")
    if labels is not None and (not isinstance(labels, str)
                               or labels not in registry.label_conventions):
        known = ", ".join(registry.label_conventions)
        raise InputError(path, f"'labels': unknown label convention '{labels}'; known: {known}")
    layout = data.get("layout")
    if layout is not None and (not isinstance(layout, str)
                               or LAYOUT_ALIASES.get(layout, layout) not in LAYOUTS):
        raise InputError(path, f"'layout': unknown layout '{layout}'; known: {', '.join(LAYOUTS)}")
    center = data.get("center")
    if center is not None and (not isinstance(center, str) or not center or "/" in center):
        raise InputError(path, "'center' must be a non-empty name without '/'")
    return {k: v for k, v in data.items() if k in ("center", "labels", "layout") and v}


def _detect_layout(root: Path) -> str:
    dirs = _subdirs(root)
    if any(d.name.startswith("sub-") for d in dirs):
        return "bids"
    case_files = [f for d in dirs for f in _nifti_files(d)]
    if case_files:
        brats2023 = sum(_is_brats2023_name(f) for f in case_files)
        return "brats2023" if brats2023 * 2 > len(case_files) else "brats2019"
    if _nifti_files(root):
        return "flat"
    raise InputError(
        root,
        "no cases found: expected case folders (CASE/CASE_t1.nii.gz, CASE/CASE-t1n.nii.gz), "
        "BIDS subjects (sub-X/anat/sub-X_T1w.nii.gz) or a flat folder of CASE_t1.nii.gz files",
    )


def _label_convention(
    site_file: dict[str, str], files: list[Path], center: str, registry: Registry
) -> str:
    """harmonix-site.json > BraTS 2023 naming > the registry target of the center > brats2019."""
    if "labels" in site_file:
        return site_file["labels"]
    sequence_files = [f for f in files if registry.classify_file(f)[0] == "sequence"]
    if sequence_files and sum(map(_is_brats2023_name, sequence_files)) * 2 > len(sequence_files):
        return "brats2023"
    for target in registry.targets.values():
        if center in (target.center, target.name):
            return target.labels
    return DEFAULT_LABELS


def _group_files(root: Path, layout: str, registry: Registry):
    """``{case_id: (case_root, [files])}`` plus files that belong to no case."""
    groups: dict[str, tuple[Path, list[Path]]] = {}
    stray: list[Path] = []
    if layout == "flat":
        for f in _nifti_files(root):
            groups.setdefault(_flat_case_id(f, registry), (root, []))[1].append(f)
        return groups, stray
    stray = _nifti_files(root)
    if layout in ("brats2019", "brats2023"):
        for d in _subdirs(root):
            files = _nifti_files(d)
            if files:
                groups[d.name] = (d, files)
        return groups, stray
    # BIDS: each subject, or each session of a subject, is a case
    for sub in (d for d in _subdirs(root) if d.name.startswith("sub-")):
        sessions = [d for d in _subdirs(sub) if d.name.startswith("ses-")]
        for folder in sessions or [sub]:
            case_id = sub.name if folder == sub else f"{sub.name}_{folder.name}"
            anat = folder / "anat"
            groups[case_id] = (folder, _nifti_files(anat) if anat.is_dir() else [])
    # label maps of a derivatives pipeline: derivatives/<pipeline>/sub-X[/ses-Y]/anat/*_dseg
    derivatives = _subdirs(root / "derivatives") if (root / "derivatives").is_dir() else []
    for pipeline in derivatives:
        for folder, files in groups.values():
            anat = pipeline / folder.relative_to(root) / "anat"
            if anat.is_dir():
                files += [f for f in _nifti_files(anat) if registry.classify_file(f)[0] == "label"]
    return groups, stray


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


def _read_header(path: Path) -> tuple[nib.spatialimages.SpatialImage | None, Problem | None]:
    """Load the header only; a Problem for unreadable, truncated, non-3D or odd-typed files."""
    try:
        img = nib.load(path)
        header = img.header
        shape = tuple(int(s) for s in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
    except _READ_ERRORS as exc:
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


def _info(img) -> ImageInfo:
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


def _grid_difference(info: ImageInfo, ref: ImageInfo) -> str | None:
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
class _VoxelCheck:
    """Accumulates NaN/Inf counts, whether anything is non-zero and (for labels) the values."""

    def __init__(self, path: Path, label_values: dict[str, int] | None = None):
        self.path = path
        self.label_values = label_values  # None for images
        self.nan = self.inf = 0
        self.nonzero = False
        self.values: set[float] = set()

    def update(self, chunk: np.ndarray) -> None:
        if chunk.dtype.kind == "f":
            finite = np.isfinite(chunk)
            if not finite.all():
                self.nan += int(np.isnan(chunk).sum())
                self.inf += int(np.isinf(chunk).sum())
                chunk = chunk[finite]
        self.nonzero = self.nonzero or bool(np.any(chunk))
        if self.label_values is not None and len(self.values) < 256:
            self.values.update(np.unique(chunk).tolist())

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


def _check_voxels(path: Path, img, label_values, convention: str) -> list[Problem]:
    check = _VoxelCheck(path, label_values)
    try:
        for chunk in _stream(path, img.dataobj):
            check.update(chunk)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        return [Problem(path, f"truncated or corrupt image data: {exc}", "unreadable")]
    return check.problems(convention)


# -- cases -------------------------------------------------------------------------------------
def _reference(sequences, registry: Registry) -> str | None:
    order = [*registry.source_priority, *registry.sequences]
    present = sorted(sequences, key=lambda s: (order.index(s) if s in order else len(order), s))
    return present[0] if present else None


def _read_case(
    case_id: str, case_root: Path, files: list[Path], *, center: str, layout: str,
    convention: str, registry: Registry, check_voxels: bool,
) -> Case:
    case = Case(case_id, case_root, center, layout, {}, None, [], convention)
    for f in files:
        kind, value = registry.classify_file(f)
        if kind == "unknown":
            case.problems.append(Problem(
                f, f"unknown sequence name '{value}'; known names: {_known_names(registry)} "
                "(add an alias in a user registry.yaml to map it)", "unknown"))
            continue
        key = value if kind == "sequence" else "label"
        first = case.sequences.get(key) if kind == "sequence" else case.label
        if first is not None:
            what = f"sequence '{key}'" if kind == "sequence" else "the label map"
            case.problems.append(Problem(
                f, f"maps to {what} like {first.name}; keep one of the two", "duplicate"))
            continue
        if kind == "sequence":
            case.sequences[key] = f
        else:
            case.label = f
    if not case.sequences:
        case.problems.append(Problem(case_root, "no image sequence in this case", "empty"))
    case.reference = _reference(case.sequences, registry)

    label_values = registry.label_values(convention)
    named = [*case.sequences.items(), *([("label", case.label)] if case.label else [])]
    for key, path in named:
        img, problem = _read_header(path)
        if problem:
            case.problems.append(problem)
            continue
        case.info[key] = _info(img)
        if check_voxels:
            values = label_values if key == "label" else None
            case.problems += _check_voxels(path, img, values, convention)

    ref = case.info.get(case.reference)
    for key, info in case.info.items():
        if ref is None or key == case.reference:
            continue
        difference = _grid_difference(info, ref)
        if difference:
            what = "label map" if key == "label" else f"sequence {key}"
            case.problems.append(Problem(
                case.sequences.get(key, case.label),
                f"{what} is on a different grid from the reference sequence {case.reference} "
                f"({case.sequences[case.reference].name}): {difference}; "
                "resample only on request (load_case(resample=True))",
                "label-grid" if key == "label" else "grid",
            ))
    return case


def read_site(
    root: str | Path,
    *,
    center: str | None = None,
    registry: Registry | None = None,
    check_voxels: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Site:
    """Read every case of the site at ``root``; bad input becomes per-case :class:`Problem`\\ s.

    ``check_voxels`` streams each file once for NaN/Inf/all-zero voxels (and label values);
    without it only headers are read. ``progress(done, total)`` is called after each case.
    Raises :class:`InputError` if ``root`` is missing, not a folder, or holds no case.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "site folder not found")
    if not root.is_dir():
        raise InputError(root, "not a folder; a site is a folder of cases")
    registry = registry or load_registry()
    site_file = _read_site_file(root, registry)
    center = center or site_file.get("center") or root.resolve().name
    layout = LAYOUT_ALIASES.get(site_file.get("layout", ""), site_file.get("layout"))
    layout = layout or _detect_layout(root)
    groups, stray = _group_files(root, layout, registry)
    if not groups:
        raise InputError(root, f"no cases found for layout '{layout}'")
    all_files = [f for _, files in groups.values() for f in files]
    convention = _label_convention(site_file, all_files, center, registry)

    cases = []
    for done, (case_id, (case_root, files)) in enumerate(sorted(groups.items()), start=1):
        cases.append(_read_case(
            case_id, case_root, files, center=center, layout=layout, convention=convention,
            registry=registry, check_voxels=check_voxels,
        ))
        if progress:
            progress(done, len(groups))
    problems = [Problem(f, f"not part of any case in a '{layout}' site; move it into a case "
                           "folder", "stray") for f in stray]
    return Site(root, center, layout, convention, cases, problems)


# -- loading -----------------------------------------------------------------------------------
def _load_volume(path: Path, label_values, convention: str) -> nib.Nifti1Image:
    img, problem = _read_header(path)
    if problem:
        raise InputError(problem.path, problem.message)
    try:
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise InputError(path, f"truncated or corrupt image data: {exc}") from None
    data = data.reshape(data.shape[:3])  # drop a trailing singleton 4th dimension
    check = _VoxelCheck(path, label_values)
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
    import torch
    import torchio as tio

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

    reference = case.reference or _reference(case.sequences, registry)
    ref = images[reference]
    ref_info = _info(ref)
    resampled = []
    named = [*images.items(), *([("label", label)] if label is not None else [])]
    for key, img in named:
        difference = _grid_difference(_info(img), ref_info)
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
