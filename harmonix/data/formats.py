"""Image formats harmonix does not read (DICOM, MGH/MGZ, NRRD, MetaImage): found in a site,
they are reported with what to do, never skipped in silence.
"""

from __future__ import annotations

from pathlib import Path

from harmonix.data.checks import Problem
from harmonix.registry import NIFTI_SUFFIX, Registry

# image formats harmonix does not read: the problem kind, a name and what to do
FORMATS = {
    "dicom": ("DICOM", "convert each series to NIfTI with dcm2niix (dcm2niix -z y -o OUT_FOLDER "
                       "DICOM_FOLDER) and name the files like CASE_t1.nii.gz"),
    "mgz": ("FreeSurfer MGH/MGZ", "convert it to NIfTI with FreeSurfer's mri_convert (mri_convert "
                                  "in.mgz out.nii.gz) or nibabel (nib.save(nib.load('in.mgz'), "
                                  "'out.nii.gz'))"),
    "nrrd": ("NRRD", "convert it to NIfTI with SimpleITK (sitk.WriteImage(sitk.ReadImage("
                     "'in.nrrd'), 'out.nii.gz')) or 3D Slicer (save as .nii.gz)"),
    "mha": ("MetaImage (.mha/.mhd)", "convert it to NIfTI with SimpleITK (sitk.WriteImage("
                                     "sitk.ReadImage('in.mha'), 'out.nii.gz')) or 3D Slicer "
                                     "(save as .nii.gz)"),
}
_FORMAT_SUFFIXES = {".dcm": "dicom", ".ima": "dicom", ".mgz": "mgz", ".mgh": "mgz",
                    ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}
DICOM_MAGIC = b"DICM"  # at byte 128, after the preamble
FORMAT_SCAN_LIMIT = 2000  # files looked at per folder when telling what a folder holds


def visible(path: Path) -> bool:
    """Entries starting with ``.`` or ``_`` are not part of a site (harmonix's own, or hidden)."""
    return not path.name.startswith((".", "_"))


def ignored_problem(path: Path, why: str) -> Problem:
    return Problem(path, f"ignored: {why}", "ignored")


def _file_format(path: Path) -> str | None:
    """``"dicom"``, ``"mgz"``, ``"nrrd"`` or ``"mha"`` for an image file harmonix does not read
    (by extension; DICOM also by the ``DICM`` magic at byte 128), else ``None``."""
    kind = _FORMAT_SUFFIXES.get(path.suffix.lower())
    if kind or not path.is_file():
        return kind
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return "dicom" if handle.read(4) == DICOM_MAGIC else None
    except OSError:
        return None


def folder_format(folder: Path) -> str | None:
    """The first such format found in ``folder`` or below (looking at a bounded number of
    files), else ``None``."""
    seen = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and visible(path):
            kind = _file_format(path)
            if kind:
                return kind
            seen += 1
            if seen >= FORMAT_SCAN_LIMIT:
                break
    return None


def _format_problem(path: Path, kind: str, what: str) -> Problem:
    """``ignored: {what} {format} format; harmonix reads NIfTI only: {what to do}``."""
    name, todo = FORMATS[kind]
    return Problem(path, f"ignored: {what} {name} format; harmonix reads NIfTI only: {todo}",
                   kind)


def _foreign_files(folder: Path) -> list[tuple[Path, str]]:
    """Visible files of ``folder`` in a format harmonix does not read, with the format."""
    found = []
    for path in sorted(folder.iterdir()):
        if visible(path) and not NIFTI_SUFFIX.search(path.name) and path.is_file():
            kind = _file_format(path)
            if kind:
                found.append((path, kind))
    return found


def foreign_problems(folder: Path, registry: Registry, case_of=None):
    """Problems for the files of ``folder`` in other formats: ``(by case id, site-level)``.

    A file named like a sequence or label map of a case (``case_of(stem) -> case id``) is a
    problem of that case, which is then not harmonized: its scan would otherwise be missing and a
    synthetic one made in its place. Other files are reported once per folder and format."""
    by_case: dict[str, list[Problem]] = {}
    loose: dict[str, list[Path]] = {}
    for path, kind in _foreign_files(folder):
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        named = registry.classify_file(stem + ".nii.gz")[0] in ("sequence", "label")
        case_id = case_of(stem) if (case_of and named) else None
        if case_id is not None:
            name, todo = FORMATS[kind]
            by_case.setdefault(case_id, []).append(Problem(path, (
                f"a {name} file named like a sequence of this case; harmonix reads NIfTI only, "
                "so the case is held back until the file is converted or moved away (a real "
                f"scan is never replaced by a synthetic one): {todo}"), kind))
        else:
            loose.setdefault(kind, []).append(path)
    site_level = []
    for kind, paths in loose.items():
        where = paths[0] if len(paths) == 1 else folder
        what = (f"{len(paths)} files ({paths[0].name}, ...) in" if len(paths) > 1 else "a file in")
        site_level.append(_format_problem(where, kind, what))
    return by_case, site_level


def folder_problem(folder: Path, why: str) -> Problem:
    """A folder that is no case: named after the image format it holds, when it holds one."""
    kind = folder_format(folder)
    if kind:
        return _format_problem(folder, kind, "a folder of files in")
    return ignored_problem(folder, why)
