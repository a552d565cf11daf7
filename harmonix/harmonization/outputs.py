"""What harmonize writes and owns: where a case goes and its file names (the target's layout or
BIDS, aligned volumes apart or merged), synthetic NIfTI and sidecars, the manifest, the case
record, and the rules that keep user data safe (an output folder apart from the site, only
harmonix's own case folders replaced, stale staging cleaned up). See docs/reliability.md.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from harmonix.data.labels import from_canonical, to_canonical
from harmonix.data.layouts import naming_for_labels
from harmonix.data.provenance import MANIFEST
from harmonix.errors import InputError
from harmonix.harmonization.bids import DATASET_DIR, DESC, case_folder, check_description
from harmonix.harmonization.bids import file_name as bids_file_name
from harmonix.harmonization.intensity import Scale, stored
from harmonix.harmonization.options import INTENSITY_MODES, OUTPUT_LAYOUTS
from harmonix.io import atomic_write_text, file_fingerprint, parse_temp_name, pid_alive, temp_name
from harmonix.registry import Target

MANIFEST_NAME = MANIFEST
MANIFEST_COLUMNS = ("case", "sequence", "status", "source", "message", "file", "coverage")
CASE_RECORD = ".harmonix-case.json"
STAGING_MARKER = ".harmonix-staging"  # in every staging folder: only these are cleaned up
ALIGNED_DIR = "_aligned"
ORIGINAL_DIR = "_original"  # --merge-aligned: the real copies that aligned volumes replace
CONFIDENCE_DIR = "_confidence"  # --confidence: the spread across fused sources
SHARED_GRACE_S = 3600  # remove_stale(shared=True) keeps unmarked leftovers younger than this
_PARTIAL = re.compile(r"^\.partial-.*-(\d+)$")  # a staging folder, OUT/.partial-CASE-PID


@dataclass(frozen=True)
class ManifestRow:
    """One line of ``manifest.csv``; ``status`` is real, generated, aligned or failed."""

    case: str
    sequence: str
    status: str
    source: str = ""
    message: str = ""
    file: str = ""
    coverage: str = ""  # generated/aligned: fraction of the input's brain in the model's crop



# -- output naming and files -----------------------------------------------------------------------
def nifti_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else ".nii"


def output_name(case_id: str, sequence: str, target: Target, suffix: str = ".nii.gz") -> str:
    """File name of ``sequence`` (or ``"seg"``) in the target's layout: BraTS 2023 naming for
    targets with BraTS 2023 labels (``CASE-t2f``), BraTS 2019 naming otherwise (``CASE_flair``)."""
    return naming_for_labels(target.labels).file_name(case_id, sequence, suffix)


@dataclass(frozen=True)
class CaseOutput:
    """Where one case goes under ``OUT`` and what its files are called.

    ``layout="target"``: ``OUT/CASE/`` in the target's naming, aligned volumes in
    ``OUT/_aligned/CASE/`` under the same names. ``layout="bids"``: ``OUT/derivatives/harmonix/
    sub-X[/ses-Y]/anat/`` (:mod:`harmonix.harmonization.bids`), aligned volumes beside the real ones
    with ``desc-aligned``. ``merge_aligned``: an aligned volume takes the real file's place in the
    case folder (target layout) and the real copy moves to the case's ``_original/`` folder.
    """

    case_id: str
    target: Target
    layout: str = "target"
    merge_aligned: bool = False
    # BIDS: the entities each input file keeps in its outputs (bids.input_entities)
    entities: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @property
    def folder(self) -> str:
        """The case folder, relative to ``OUT``."""
        return case_folder(self.case_id) if self.layout == "bids" else self.case_id

    @property
    def aligned_folder(self) -> str | None:
        """The folder of aligned volumes relative to ``OUT``; ``None``: in the case folder."""
        if self.layout == "bids" or self.merge_aligned:
            return None
        return f"{ALIGNED_DIR}/{self.case_id}"

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder harmonix may write this case into (a layout-target case also owns its
        ``_aligned`` folder from a run without ``--merge-aligned``)."""
        return (self.folder, *([] if self.layout == "bids" else [f"{ALIGNED_DIR}/{self.case_id}"]))

    def place(self, sequence: str, status: str, suffix: str) -> tuple[str, str]:
        """``("case" or "aligned", path inside that folder)`` of ``sequence`` (``"seg"``: the label
        map) with ``status`` real, original (a real copy displaced by --merge-aligned), generated,
        aligned or spread (``--confidence``: in the case's ``_confidence/``)."""
        if self.layout == "bids":
            name = bids_file_name(self.case_id, sequence, suffix, DESC.get(status),
                                  dict(dict(self.entities).get(sequence, ())))
            inside = f"anat/{name}"
        else:
            inside = output_name(self.case_id, sequence, self.target, suffix)
        if status == "original":
            return "case", f"{ORIGINAL_DIR}/{inside}"
        if status == "spread" and self.layout != "bids":
            return "case", f"{CONFIDENCE_DIR}/{inside}"
        if status == "aligned" and self.aligned_folder:
            return "aligned", inside
        return "case", inside

    def relative(self, part: str, inside: str) -> str:
        """``place``'s answer as a path relative to ``OUT`` (the manifest's ``file``)."""
        return f"{self.folder if part == 'case' else self.aligned_folder}/{inside}"


def sidecar_path(nifti: Path) -> Path:
    """``CASE_t2.nii.gz`` -> ``CASE_t2.json``."""
    return nifti.with_name(nifti.name[: -len(nifti_suffix(nifti))] + ".json")


def card_hash(card: Mapping[str, Any]) -> str:
    """sha256 of the model card as canonical JSON (sorted keys)."""
    text = json.dumps(card, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_image(data: np.ndarray, like: nib.Nifti1Image, descrip: str,
                    scale: Scale | None = None) -> nib.Nifti1Image:
    """A NIfTI of ``data`` on ``like``'s grid (affine, qform/sform codes, units): float32, or
    with ``scale`` (``data`` already on it, see :mod:`harmonix.harmonization.intensity`) in the
    scale's dtype with its ``scl_slope``/``scl_inter``."""
    if tuple(data.shape) != tuple(like.shape[:3]):
        raise ValueError(f"volume of shape {data.shape} does not fit the grid {like.shape}")
    voxels = np.asarray(data, np.float32) if scale is None else stored(data, scale)
    image = nib.Nifti1Image(voxels, like.affine)
    header = like.header
    if hasattr(header, "get_qform"):  # keep the file's qform/sform and their codes exactly
        qform, qcode = header.get_qform(coded=True)
        sform, scode = header.get_sform(coded=True)
        image.set_qform(qform if qcode else like.affine, code=int(qcode or 0))
        image.set_sform(sform if scode else like.affine, code=int(scode or 0))
    image.header.set_xyzt_units(*header.get_xyzt_units())
    image.header["descrip"] = descrip.encode("ascii", "replace")[:79]
    if scale is not None and scale.slope is not None:  # kept on save: the data is stored already
        image.header.set_slope_inter(scale.slope, scale.inter)
    return image


def convert_labels(image: nib.Nifti1Image, source: str, target: str) -> nib.Nifti1Image:
    """The label map rewritten from convention ``source`` to ``target`` (same dtype and grid)."""
    data = np.asanyarray(image.dataobj)
    converted = from_canonical(to_canonical(data, source), target)
    return nib.Nifti1Image(converted, image.affine, image.header.copy())


def input_fingerprints(case) -> dict[str, dict[str, Any]]:
    """Size, mtime and SHA-256 of every input file of a case, by path."""
    files = [*case.sequences.values(), *([case.label] if case.label is not None else [])]
    return {str(Path(f).resolve()): file_fingerprint(f) for f in files}


def read_record(case_dir: Path, case_id: str) -> dict[str, Any] | None:
    try:
        record = json.loads((case_dir / CASE_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("case") != case_id:
        return None
    return record


def record_rows(record: Mapping[str, Any]) -> list[ManifestRow]:
    names = {f.name for f in dataclasses.fields(ManifestRow)}
    return [ManifestRow(**{k: v for k, v in row.items() if k in names})
            for row in record.get("rows", [])]


def record_ok(case_dir: Path, case_id: str, settings: Mapping[str, Any],
               inputs: Mapping[str, Any], out: Path | None = None) -> list[ManifestRow] | None:
    """The rows of a finished case made with the same settings from the same input files
    (fingerprints match), else ``None``. Row files are relative to ``out`` (default: the
    parent of ``case_dir``)."""
    record = read_record(case_dir, case_id)
    if record is None or record.get("settings") != settings or record.get("inputs") != inputs:
        return None
    rows = record_rows(record)
    out = case_dir.parent if out is None else out
    if not all((out / r.file).exists() for r in rows if r.file):
        return None
    return rows


def _where(case_id: str, where: CaseOutput | None) -> tuple[str, ...]:
    return where.folders if where is not None else (case_id, f"{ALIGNED_DIR}/{case_id}")


def foreign(out: Path, case_id: str, where: CaseOutput | None = None) -> str | None:
    """Why the case's folders (``OUT/CASE`` and ``OUT/_aligned/CASE``, or those of ``where``)
    may not be replaced, or ``None`` when there is nothing in the way or everything there is
    what harmonix's record of the case lists."""
    folders = _where(case_id, where)
    final = out / folders[0]
    present = [out / f for f in folders if (out / f).exists() or (out / f).is_symlink()]
    if not present:
        return None
    record = read_record(final, case_id) if final.is_dir() and not final.is_symlink() else None
    if record is None:
        return (f"{present[0]} is in the way and was not written by harmonix (no {CASE_RECORD} "
                "naming this case); move it away or choose another --out")
    owned = {f"{folder}/{CASE_RECORD}" for folder in folders} | {
        name for row in record_rows(record) if row.file
        for name in (row.file, sidecar_path(Path(row.file)).as_posix(),
                     sidecar_path(Path(row.file)).with_suffix(".tsv").as_posix())  # BIDS _dseg.tsv
    }
    for folder in present:
        if folder.is_symlink() or not folder.is_dir():
            return f"{folder} is in the way and was not written by harmonix"
        for path in sorted(folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            if path.relative_to(out).as_posix() not in owned:
                return (f"{path} was not written by harmonix; harmonix will not replace "
                        f"{folder}: move the file away or choose another --out")
    return None


def commit_case(stage: Path, out: Path, case_id: str, where: CaseOutput | None = None) -> None:
    """Move a staged case into ``out``, replacing only harmonix's own older one (checked by
    :func:`foreign` just before); aligned volumes first. A folder the staged case does not have
    (``_aligned/CASE`` after --merge-aligned) is removed: it is harmonix's, from another run."""
    folders = _where(case_id, where)
    problem = foreign(out, case_id, where)
    if problem:
        raise InputError(out / folders[0], problem)
    moves = [(stage / "case", out / folders[0])]
    if len(folders) > 1:
        moves.insert(0, (stage / "aligned", out / folders[1]))
    for staged, final in moves:
        old = final.with_name(temp_name(case_id, kind="old"))
        if final.exists():
            os.replace(final, old)
        if staged.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
        if old.exists():
            shutil.rmtree(old)


def mark_staging(stage: Path) -> None:
    """Mark ``stage`` as a staging folder of this process on this machine."""
    (stage / STAGING_MARKER).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def _other_machine(stage: Path) -> bool:
    """Whether a staging folder's mark names another machine, whose processes cannot be checked
    from here (an empty mark, from an older harmonix, counts as this machine's)."""
    try:
        owner = (stage / STAGING_MARKER).read_text().split()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(owner) and owner[0] != socket.gethostname()


def remove_stale(out: Path, shared: bool = False) -> None:
    """Remove what a run killed outright (not by Ctrl-C) left: its staging folders (marked),
    the case folders it was replacing (with harmonix's record) and temporary files; only those
    of processes of this machine that are gone. Staging folders marked by another machine are
    left alone. ``shared`` (``--shard``: other machines may write into ``out`` now) also leaves
    unmarked leftovers (``.old-``, ``.tmp-``) younger than :data:`SHARED_GRACE_S` alone."""
    dataset = out / DATASET_DIR  # BIDS case folders are replaced inside subject folders
    subjects = sorted(dataset.glob("sub-*")) if dataset.is_dir() else []
    for folder in (out, out / ALIGNED_DIR, dataset, *subjects):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in folder.iterdir():
            if path.is_symlink():
                continue
            partial = _PARTIAL.match(path.name)
            old = parse_temp_name(path.name, "old")  # a case folder being replaced
            tmp = parse_temp_name(path.name, "tmp")  # a file being written
            if partial:
                pid = int(partial.group(1))
            elif old or tmp:
                pid = (old or tmp)[1]
            else:
                continue
            if pid_alive(pid) or (shared and not partial
                                  and time.time() - path.lstat().st_mtime < SHARED_GRACE_S):
                continue
            if tmp and path.is_file():
                path.unlink()
            elif path.is_dir() and (
                ((path / STAGING_MARKER).is_file() and not _other_machine(path))
                or (old and (path / CASE_RECORD).is_file())
            ):
                shutil.rmtree(path, ignore_errors=True)


# -- the site --------------------------------------------------------------------------------------
def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, c) for c in MANIFEST_COLUMNS])
    atomic_write_text(path, buffer.getvalue())


def read_manifest(path: str | Path) -> list[ManifestRow]:
    names = {f.name for f in dataclasses.fields(ManifestRow)}
    with open(path, newline="") as handle:
        return [ManifestRow(**{k: v for k, v in row.items() if k in names})
                for row in csv.DictReader(handle)]


def is_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest harmonix wrote (its header is harmonix's columns)."""
    try:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(header[:6]) == MANIFEST_COLUMNS[:6]


def check_out_folder(out: Path, site_root: Path) -> None:
    """Refuse an ``--out`` that is, holds or lies inside the input site (through links and
    ``..`` too), that sits under a file, that cannot be written, or whose manifest.csv is not
    harmonix's; before any model is loaded."""
    resolved, site = out.resolve(), site_root.resolve()
    if resolved == site or site in resolved.parents:
        raise InputError(out, f"the output folder must not be the input site {site_root} or "
                              "lie inside it")
    if resolved in site.parents:
        raise InputError(out, f"the output folder must not contain the input site {site_root}")
    for folder in (resolved, *resolved.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(folder, "is a file, not a folder; choose another --out")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise InputError(folder, "is not writable; choose another --out")
            break
    manifest = out / MANIFEST_NAME
    if (manifest.exists() or manifest.is_symlink()) and not is_manifest(manifest):
        raise InputError(manifest, "exists and is not a harmonix manifest; harmonix will not "
                                   "replace it: move it away or choose another --out")


def check_output_options(out: Path, intensity: str, layout: str, case_ids: Iterable[str]) -> None:
    """Refuse an unknown intensity mode or layout and, for BIDS, a ``dataset_description.json``
    that harmonix did not write or two cases that would share one subject folder; before any
    model is loaded."""
    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {', '.join(INTENSITY_MODES)}, got "
                         f"'{intensity}'")
    if layout not in OUTPUT_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(OUTPUT_LAYOUTS)}, got '{layout}'")
    if layout != "bids":
        return
    check_description(out)
    seen: dict[str, str] = {}
    for case_id in case_ids:
        folder = case_folder(case_id)
        if folder in seen:
            raise InputError(out, f"cases '{seen[folder]}' and '{case_id}' would both be "
                                  f"written to {folder} in BIDS; rename one of them")
        seen[folder] = case_id
