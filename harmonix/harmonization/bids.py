"""``harmonize --layout bids``: a BIDS derivatives dataset, ``OUT/derivatives/harmonix/``.

* ``dataset_description.json`` with the BIDS derivative fields (``Name``, ``BIDSVersion``,
  ``DatasetType: derivative``, ``GeneratedBy`` naming harmonix and its version); one that
  harmonix did not write is never replaced (:func:`check_description`).
* One folder per case: ``sub-X/`` or, for a BIDS session, ``sub-X/ses-Y/``, files in ``anat/``
  named with the BIDS suffixes of :data:`harmonix.data.layouts.NAMINGS` ``["bids"]``. A case id
  that is not a BIDS subject (``BraTS19_SYN_0001``) becomes the subject label of its letters and
  digits (``sub-BraTS19SYN0001``).
* Generated files carry ``desc-synthetic`` (``sub-01_desc-synthetic_T2w.nii.gz``), aligned ones
  ``desc-aligned``; real files keep the raw BIDS name.
* Output names keep every entity of the input file (``acq-``, ``run-``, ``rec-`` ...) in BIDS
  order; label maps (``_dseg``) get a lookup table ``_dseg.tsv`` of the target's label values.
* An aligned file's sidecar moves the input's scanner and acquisition fields to
  ``InputSidecar`` and says ``SyntheticDomain`` (:func:`aligned_sidecar`).
* Every file gets a JSON sidecar: the input's own sidecar (``sub-01_T1w.json`` beside the input)
  carried over for real and aligned files, extended with what harmonix records (see
  :mod:`harmonix.harmonization.pipeline`); a generated file's sidecar is harmonix's record only (the
  source's acquisition parameters describe another sequence) with ``Sources`` pointing at its
  source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harmonix.data.layouts import BIDS_ENTITY_ORDER, NAMINGS, bids_entities
from harmonix.errors import InputError
from harmonix.io import atomic_write_json
from harmonix.version import __version__

DATASET_DIR = "derivatives/harmonix"
DESCRIPTION = "dataset_description.json"
BIDS_VERSION = "1.9.0"
DESC = {"generated": "synthetic", "aligned": "aligned",  # the desc- entity of derived files
        "spread": "spread"}
_BIDS_CASE = re.compile(r"sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?")


def entities(case_id: str) -> tuple[str, str | None]:
    """``(subject, session)`` labels of a case: ``sub-02_ses-1`` -> ``("02", "1")``; another id
    keeps its letters and digits: ``BraTS19_SYN_0001`` -> ``("BraTS19SYN0001", None)``."""
    match = _BIDS_CASE.fullmatch(case_id)
    if match:
        return match.group(1), match.group(2)
    label = re.sub(r"[^A-Za-z0-9]", "", case_id)
    if not label:
        raise ValueError(f"case '{case_id}' has no letter or digit for a BIDS subject label")
    return label, None


def prefix(case_id: str) -> str:
    """The entities a case's file names start with: ``sub-02_ses-1``."""
    subject, session = entities(case_id)
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def file_name(case_id: str, sequence: str, suffix: str = ".nii.gz", desc: str | None = None,
              kept: Mapping[str, str] | None = None) -> str:
    """A case's BIDS file name of ``sequence`` (``"seg"``: ``_dseg``) with the entities ``kept``
    from its input (``acq``, ``run``, ``rec``, ``ce`` ...), in BIDS order:
    ``sub-01_acq-fast_run-2_desc-aligned_T2w.nii.gz``. The input's own ``sub``, ``ses`` and
    ``desc`` are replaced by the case's and harmonix's."""
    name = NAMINGS["bids"].file_name(prefix(case_id), sequence, suffix, desc)
    if not kept:
        return name
    stem = name[: -len(suffix)] if suffix else name
    ours = bids_entities(name)
    merged = {**ours, **{k: v for k, v in kept.items() if k not in ("sub", "ses", "desc")}}
    order = {k: i for i, k in enumerate(BIDS_ENTITY_ORDER)}
    keys = sorted(merged, key=lambda k: (order.get(k, order["desc"] - 0.5), k))
    return "_".join([*(f"{k}-{merged[k]}" for k in keys), stem.rpartition("_")[2]]) + suffix


def input_entities(files: Mapping[str, Any]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """``((sequence, ((key, value), ...)), ...)``: the BIDS entities of each input file (a
    case's ``{sequence or "seg": path}``) other than ``sub``, ``ses`` and ``desc``."""
    kept = []
    for sequence, path in files.items():
        pairs = tuple((k, v) for k, v in bids_entities(path).items()
                      if k not in ("sub", "ses", "desc"))
        if pairs:
            kept.append((sequence, pairs))
    return tuple(kept)


def case_folder(case_id: str) -> str:
    """The case's folder relative to ``OUT``: ``derivatives/harmonix/sub-02/ses-1``."""
    subject, session = entities(case_id)
    return f"{DATASET_DIR}/sub-{subject}" + (f"/ses-{session}" if session else "")


def description(site_name: str) -> dict[str, Any]:
    return {
        "Name": f"{site_name} completed by harmonix",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "harmonix",
            "Version": __version__,
            "Description": "missing sequences generated (desc-synthetic) and present ones "
                           "translated into a target domain (desc-aligned) by a generative "
                           "model; never read them as real scans",
        }],
    }


def is_harmonix_description(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
        return data["GeneratedBy"][0]["Name"] == "harmonix"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def check_description(out: Path) -> None:
    """Refuse an ``OUT/derivatives/harmonix/dataset_description.json`` harmonix did not write."""
    path = out / DATASET_DIR / DESCRIPTION
    if (path.exists() or path.is_symlink()) and not is_harmonix_description(path):
        raise InputError(path, "exists and was not written by harmonix; harmonix will not "
                               "replace it: move it away or choose another --out")


def write_description(out: Path, site_name: str) -> None:
    check_description(out)
    atomic_write_json(out / DATASET_DIR / DESCRIPTION, description(site_name))


def input_sidecar(json_path: Path) -> tuple[dict[str, Any], str]:
    """The JSON object in ``json_path`` (an input's sidecar) and ``""``; ``{}`` and ``""`` when
    there is none; ``{}`` and why when it cannot be carried over."""
    if not json_path.is_file():
        return {}, ""
    try:
        data = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, f"input sidecar {json_path.name} not carried over: {exc}"
    if not isinstance(data, dict):
        return {}, f"input sidecar {json_path.name} not carried over: not a JSON object"
    return data, ""


# fields of an input's sidecar that still describe its aligned (translated) image: its content
STILL_TRUE = ("ContrastBolusIngredient", "ContrastBolusVolume", "ContrastBolusRoute", "BodyPart")


def aligned_sidecar(carried: Mapping[str, Any], target_domain: str) -> dict[str, Any]:
    """The input's sidecar rewritten for its aligned volume: the scanner, site and acquisition
    fields (``MagneticFieldStrength``, ``Manufacturer``, ``EchoTime`` ...) describe the local
    scan, not a translation into ``target_domain``, so they move to ``InputSidecar`` (what the
    source scan was) and the top level says the image is synthetic in the target domain."""
    kept = {k: v for k, v in carried.items() if k in STILL_TRUE}
    moved = {k: v for k, v in carried.items() if k not in STILL_TRUE}
    return {**kept, "SyntheticDomain": target_domain,
            **({"InputSidecar": moved} if moved else {})}


def dseg_table(values: Mapping[str, int]) -> str:
    """A BIDS segmentation lookup table (``_dseg.tsv``) for a label convention's values."""
    names = {"NCR": "necrotic tumour core", "ED": "peritumoural edema", "ET": "enhancing tumour"}
    rows = ["index\tname\tabbreviation", "0\tbackground\tBG"]
    rows += [f"{v}\t{names.get(k, k)}\t{k}" for k, v in sorted(values.items(), key=lambda x: x[1])]
    return "\n".join(rows) + "\n"
