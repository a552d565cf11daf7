"""Which input files of a site are synthetic (made by ``harmonix harmonize``), never real scans.

Harmonize flags every synthetic volume three ways, and any one of them is enough here:

* the NIfTI header's ``descrip`` starts with ``harmonix SYNTHETIC``;
* its JSON sidecar (``CASE_t2.json`` next to ``CASE_t2.nii.gz``) says ``"synthetic": true``;
* the site's ``manifest.csv`` lists the file with status generated, aligned or spread.

:func:`synthetic_files` answers per case, :func:`synthetic_inputs` per site;
:func:`refuse_synthetic` is the check of ``harmonix train`` and ``harmonix segment train``
(``--allow-synthetic`` lifts it): a model trained on generated images learns the generator's
artefacts as if they were anatomy.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from harmonix.errors import InputError
from harmonix.registry import NIFTI_SUFFIX

#: the start of every synthetic volume's NIfTI ``descrip`` (written by harmonize's case files)
SYNTHETIC_FLAG = "harmonix SYNTHETIC"
DESCRIP_FLAG = SYNTHETIC_FLAG.encode()
#: harmonize's manifest of a site, and the statuses of its synthetic rows (outputs.py writes them)
MANIFEST = "manifest.csv"
SYNTHETIC_STATUSES = ("generated", "aligned", "spread")

WHY = ("a model trained on generated images learns the generator's artefacts as if they were "
       "anatomy, and its results cannot be compared with real data")


def _manifest_files(root: Path) -> dict[Path, str]:
    """``{resolved file: status}`` of the synthetic rows of ``root/manifest.csv`` (if any)."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return {(root / row["file"]).resolve(): row["status"] for row in rows
            if row.get("status") in SYNTHETIC_STATUSES and row.get("file")}


def file_flag(path: Path, manifest: dict[Path, str] | None = None) -> str:
    """Why ``path`` is synthetic (``"header"``, ``"sidecar"`` or ``"manifest"``), or ``""``."""
    path = Path(path)
    try:
        import nibabel as nib

        descrip = bytes(nib.load(path).header.get("descrip", b"") or b"")
        if bytes(descrip).startswith(DESCRIP_FLAG):
            return "header"
    except Exception:  # noqa: BLE001 - an unreadable file is the site reader's problem
        pass
    sidecar = path.with_name(NIFTI_SUFFIX.sub("", path.name) + ".json")
    if sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()).get("synthetic") is True:
                return "sidecar"
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            pass
    if manifest and path.resolve() in manifest:
        return "manifest"
    return ""


def synthetic_files(case, manifest: dict[Path, str] | None = None) -> dict[str, str]:
    """``{sequence or "label": flag}`` of the case's synthetic files (see :func:`file_flag`)."""
    named = [*case.sequences.items(), *([("label", case.label)] if case.label else [])]
    if manifest is None:
        manifest = _manifest_files(Path(case.root).parent) or _manifest_files(Path(case.root))
    return {key: flag for key, path in named if (flag := file_flag(path, manifest))}


def synthetic_inputs(site) -> dict[str, dict[str, str]]:
    """``{case id: {sequence: flag}}`` of every case of ``site`` with a synthetic file."""
    manifest = _manifest_files(Path(site.root))
    found = {case.id: synthetic_files(case, manifest) for case in site.cases}
    return {case_id: files for case_id, files in found.items() if files}


def describe(found: dict[str, dict[str, str]], limit: int = 5) -> str:
    """``case (t2, flair); ...`` of at most ``limit`` cases."""
    text = "; ".join(f"{case} ({', '.join(files)})" for case, files in list(found.items())[:limit])
    more = len(found) - limit
    return text + (f" and {more} more case(s)" if more > 0 else "")


def refuse_synthetic(sites: Iterable, *, allow: bool = False, what: str = "train") -> None:
    """Raise :class:`InputError` when any site (a folder or a read ``Site``) holds synthetic
    files, unless ``allow`` (``--allow-synthetic``)."""
    if allow:
        return
    from harmonix.data.site import read_site

    for site in sites:
        if not hasattr(site, "cases"):
            site = read_site(site, check_voxels=False)
        found = synthetic_inputs(site)
        if found:
            raise InputError(site.root, (
                f"holds synthetic images made by harmonix harmonize: {describe(found)}. "
                f"harmonix will not {what} on them: {WHY}. Train on the real scans; "
                "--allow-synthetic trains on them anyway (recorded in the model card)"))


__all__ = ["WHY", "describe", "file_flag", "refuse_synthetic", "synthetic_files",
           "synthetic_inputs"]
