"""Read an nnU-Net v2 raw dataset as a site (layout ``nnunet``).

nnU-Net v2 documents its raw layout as::

    Dataset001_NAME/
        dataset.json      {"channel_names": {"0": "T1", "1": "T1ce", ...}, "labels": {...},
                           "numTraining": N, "file_ending": ".nii.gz"}
        imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz, ...   one file per channel
        imagesTs/CASE_0000.nii.gz, ...                       (optional) test cases
        labelsTr/CASE.nii.gz                                  label maps of the training cases

Channels are mapped to sequences through the registry's names and aliases (``"T1ce"`` -> t1ce,
``"Flair"`` -> flair); a channel name the registry does not know is reported on each of its files
("unknown sequence name"), with a "did you mean" when one is close. Each case of ``imagesTr`` and
``imagesTs`` is a case of the site; ``labelsTr`` (and a ``labelsTs`` folder if present) give the
label maps. nnU-Net's label values are its own (its BraTS conversion writes 1 = edema,
2 = non-enhancing, 3 = enhancing): the label convention is taken from ``harmonix-site.json``, or
from ``dataset.json`` ``labels`` when they name NCR, ED and ET with the values of a registry
convention, else the default (docs/data.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harmonix.data.checks import Problem
from harmonix.data.formats import ignored_problem, visible
from harmonix.errors import InputError
from harmonix.registry import Registry

DATASET_JSON = "dataset.json"
IMAGE_FOLDERS = ("imagesTr", "imagesTs")
LABEL_FOLDERS = {"imagesTr": "labelsTr", "imagesTs": "labelsTs"}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
# dataset.json label names read as the canonical tumour regions
_LABEL_NAMES = {"NCR": ("ncr", "necrosis", "necrotic", "non-enhancing", "necrotic core",
                        "non-enhancing tumor", "ncr/net"),
                "ED": ("ed", "edema", "oedema", "peritumoral edema"),
                "ET": ("et", "enhancing", "enhancing tumor", "enhancing tumour")}


def is_nnunet(root: Path) -> bool:
    """A ``dataset.json`` with ``channel_names`` next to ``imagesTr`` or ``imagesTs``."""
    if not (root / DATASET_JSON).is_file() or not any((root / f).is_dir() for f in IMAGE_FOLDERS):
        return False
    try:
        data = json.loads((root / DATASET_JSON).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True  # reported by read_dataset_json
    return isinstance(data, dict) and ("channel_names" in data or "modality" in data)


def read_dataset_json(root: Path) -> dict:
    path = root / DATASET_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not readable JSON: {exc}") from None
    # nnU-Net v1 called it "modality"; v2 reads both
    channels = data.get("channel_names", data.get("modality")) if isinstance(data, dict) else None
    if not isinstance(channels, dict) or not channels:
        raise InputError(path, "needs 'channel_names' like {\"0\": \"T1\", \"1\": \"T1ce\"} "
                               "(nnU-Net v2 raw dataset)")
    ending = data.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not re.fullmatch(r"\.nii(\.gz)?", ending, re.IGNORECASE):
        raise InputError(path, f"'file_ending' is {ending!r}: harmonix reads NIfTI "
                               "(.nii.gz or .nii) nnU-Net datasets only; convert the images")
    for key in channels:
        if not str(key).isdigit():
            raise InputError(path, f"'channel_names': key {key!r} is not a channel number")
    return data


def channel_sequences(data: dict, registry: Registry) -> dict[str, str | None]:
    """``{"0000": "t1", ...}``: each channel's sequence, ``None`` for names the registry lacks."""
    channels = data.get("channel_names", data.get("modality"))
    aliases = {a.lower(): s.name for s in registry.sequences.values() for a in (s.name, *s.aliases)}
    return {f"{int(k):04d}": aliases.get(str(v).strip().lower())
            or registry.resolve_sequence(str(v)) for k, v in channels.items()}


def label_convention(data: dict, registry: Registry) -> str | None:
    """The registry convention whose NCR/ED/ET values match ``dataset.json`` ``labels``."""
    labels = data.get("labels")
    if not isinstance(labels, dict):
        return None
    regions = {str(k).strip().lower(): v for k, v in labels.items()}
    if (regions.get("whole tumor") == [1, 2, 3] and regions.get("tumor core") == [2, 3]
            and regions.get("enhancing tumor") in ([3], 3)):
        return "nnunet-brats" if "nnunet-brats" in registry.label_conventions else None
    values = {}
    for name, value in labels.items():
        for region, names in _LABEL_NAMES.items():
            if str(name).strip().lower() in names and isinstance(value, int):
                values[region] = value
    for convention, table in registry.label_conventions.items():
        if values and values == {k: table[k] for k in values} and len(values) == len(table):
            return convention
    return None


def group_files(root: Path, registry: Registry):
    """``(groups, ignored, classify)`` like the site reader's grouping: ``{case_id: (folder,
    [files])}``, problems for files that belong to no case, and ``classify(path) -> (kind,
    value)`` for the grouped files."""
    data = read_dataset_json(root)
    channels = channel_sequences(data, registry)
    names = {f"{int(k):04d}": str(v)
             for k, v in data.get("channel_names", data.get("modality")).items()}
    ending = data["file_ending"] if "file_ending" in data else ".nii.gz"
    groups: dict[str, tuple[Path, list[Path]]] = {}
    ignored: list[Problem] = []
    table: dict[Path, tuple[str, str | None]] = {}
    for folder_name in IMAGE_FOLDERS:
        folder = root / folder_name
        if not folder.is_dir():
            continue
        for f in sorted(p for p in folder.iterdir() if visible(p)):
            stem = f.name[: -len(ending)] if f.name.lower().endswith(ending.lower()) else None
            match = _CHANNEL.match(stem) if stem else None
            if not match:
                ignored.append(ignored_problem(
                    f, f"not an nnU-Net image (CASE_XXXX{ending}) of {DATASET_JSON}"))
                continue
            case_id, channel = match["case"], match["channel"]
            if channel not in channels:
                ignored.append(ignored_problem(
                    f, f"channel {channel} is not in {DATASET_JSON} 'channel_names' "
                       f"({', '.join(sorted(channels))})"))
                continue
            if case_id in groups and groups[case_id][0] != folder:
                ignored.append(ignored_problem(
                    f, f"case {case_id} is in both imagesTr and imagesTs; rename one"))
                continue
            groups.setdefault(case_id, (folder, []))[1].append(f)
            sequence = channels[channel]
            table[f] = ("unknown", names[channel]) if sequence is None else ("sequence", sequence)
        labels = root / LABEL_FOLDERS[folder_name]
        if labels.is_dir():
            for f in sorted(p for p in labels.iterdir() if visible(p)):
                case_id = f.name[: -len(ending)] if f.name.lower().endswith(ending.lower()) else ""
                if case_id in groups and groups[case_id][0] == folder:
                    groups[case_id][1].append(f)
                    table[f] = ("label", None)
                else:
                    ignored.append(ignored_problem(
                        f, f"no case {case_id or f.name} in {folder_name} for this label map"))
    return groups, ignored, lambda path: table[path]
