"""Model cards: the one schema for generator and segmenter ``model_card.json`` files.

A card is JSON. A *generator* card names its ``trainer`` plugin and the ``domains`` it
translates; a *segmenter* card names its ``segmenter`` plugin and its input ``sequences``. Both
may record the ``PreprocessConfig`` they were trained with under ``"preprocessing"``; cards
written before the key was unified say ``"preprocess"`` and are read the same.

:func:`load_card` is the one reader (``harmonix.models.checkpoints.read_card`` finds the file of a
run or checkpoint folder first) and :func:`write_card` the one writer: both check the card
against the schema (:func:`validate_card`). A missing or mistyped field is a
:class:`~harmonix.errors.CheckpointError` naming the card file and the field.

Cards travel (``harmonix models export``), so they hold no absolute local path: a card writer
records a folder as :func:`portable_path` (its name only), and :func:`portable_card` rewrites
every absolute path left in an older card the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harmonix.errors import CheckpointError
from harmonix.io import atomic_write_json

CARD_FILE = "model_card.json"
PREPROCESSING = "preprocessing"
LEGACY_PREPROCESSING = ("preprocess",)  # segmenter cards before harmonix unified the key
KINDS = ("generator", "segmenter")
_KIND_FIELD = {"generator": "trainer", "segmenter": "segmenter"}

Check = Callable[[Any], str | None]  # a problem description, or None when the value is fine


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _texts(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
    return None if ok else "must be a non-empty list of strings"


def _domains(value: Any) -> str | None:
    if _texts(value) or not all(v.count("/") == 1 and "" not in v.split("/") for v in value):
        return "must be a non-empty list of 'center/sequence' strings"
    return None


def _count(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be a whole number >= 0"


def _size(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return None if ok else "must be a positive whole number"


def _number(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return None if ok else "must be a number"


def _positive(value: Any) -> str | None:
    return _number(value) or (None if value > 0 else "must be positive")


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


def _optional_mapping(value: Any) -> str | None:
    return None if value is None else _mapping(value)


def _crop(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 3 and not any(_size(v) for v in value)
    return None if ok else "must be three positive whole numbers"


# field -> (required, check); "a.b" checks key b of the object a when both are present
SCHEMA: dict[str, dict[str, tuple[bool, Check]]] = {
    "generator": {
        "trainer": (True, _text),
        "domains": (True, _domains),
        "image_size": (False, _size),
        "lesion_domains": (False, _texts),
        "style_dim": (False, _size),
        "latent_dim": (False, _size),
        "iteration": (False, _count),
        "seed": (False, _count),
        "model": (False, _mapping),
        "model.domains": (False, _domains),
        "model.image_size": (False, _size),
        "backbone": (False, _mapping),
        "recipe": (False, _mapping),
        "files": (False, _mapping),
        "data": (False, _mapping),
        "training": (False, _mapping),
    },
    "segmenter": {
        "segmenter": (True, _text),
        "sequences": (True, _texts),
        "options": (False, _mapping),
        "iteration": (False, _count),
        "iters": (False, _count),
        "loss": (False, _number),
        "seconds": (False, _number),
        "training": (False, _mapping),
    },
}
_COMMON: dict[str, tuple[bool, Check]] = {
    PREPROCESSING: (False, _optional_mapping),
    f"{PREPROCESSING}.spacing": (False, _positive),
    f"{PREPROCESSING}.crop_shape": (False, _crop),
}


def card_kind(card: Mapping[str, Any]) -> str | None:
    """``"generator"``, ``"segmenter"`` or ``None`` from the field that names the plugin."""
    for kind, field in _KIND_FIELD.items():
        if field in card:
            return kind
    return None


def normalize_card(card: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the preprocessing under ``"preprocessing"`` (old keys moved there)."""
    out = dict(card)
    for old in LEGACY_PREPROCESSING:
        if old in out:
            value = out.pop(old)
            out.setdefault(PREPROCESSING, value)
    return out


def preprocessing_of(card: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The recorded ``PreprocessConfig`` fields of a card (either key), or ``None``."""
    return normalize_card(card or {}).get(PREPROCESSING)


def validate_card(card: Any, file: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The normalised card, checked against the schema of ``kind`` (or of the kind it names);
    raises :class:`CheckpointError` naming ``file`` and the first bad field."""
    file = Path(file)
    if not isinstance(card, dict):
        raise CheckpointError(file, "not a harmonix model card (not a JSON object)")
    found = card_kind(card)
    if found is None:
        raise CheckpointError(file, "not a harmonix model card (no 'trainer' or 'segmenter')")
    if kind is not None and found != kind:
        raise CheckpointError(file, f"is a {found}'s model card, not a {kind}'s")
    card = normalize_card(card)
    for field, (required, check) in {**SCHEMA[found], **_COMMON}.items():
        parent, _, child = field.rpartition(".")
        holder = card.get(parent) if parent else card
        if not isinstance(holder, dict) or child not in holder:
            if required:
                needed = ", ".join(f for f, (r, _) in SCHEMA[found].items() if r)
                raise CheckpointError(file, f"model card field '{field}' is missing (a {found} "
                                            f"card needs {needed})")
            continue
        problem = check(holder[child])
        if problem:
            raise CheckpointError(file, f"model card field '{field}' {problem}, got "
                                        f"{json.dumps(holder[child])[:60]}")
    return card


def load_card(file: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read and validate the card ``file`` (see :func:`validate_card`)."""
    file = Path(file)
    try:
        card = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(file, "no model card here") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(file, f"unreadable model card: {exc}") from None
    return validate_card(card, file, kind)


def write_card(
    file: str | Path, card: Mapping[str, Any], kind: str | None = None
) -> dict[str, Any]:
    """Check ``card`` (as JSON: tuples become lists) against the schema of ``kind`` (or of the
    kind it names) and write it to ``file`` atomically; returns the card as written. A bad card
    raises :class:`CheckpointError` and leaves ``file`` as it was."""
    file = Path(file)
    card = validate_card(json.loads(json.dumps(card, default=str)), file, kind)
    atomic_write_json(file, card)
    return card


# -- no local paths in cards -----------------------------------------------------------------------
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def portable_path(path: str | Path | None) -> str:
    """What a card records of a local file or folder: its name only (``/data/sites/brats`` ->
    ``brats``), so that a card names no folder of the machine it was written on; ``""`` for
    ``None`` or an empty path."""
    if path is None:
        return ""
    name = re.split(r"[\\/]", str(path).rstrip("/\\"))[-1]
    if name in (".", ".."):  # a relative folder: the name it has here
        name = Path(path).resolve().name
    return name


def is_local_path(value: Any) -> bool:
    """Whether a card value is an absolute local path (POSIX, Windows or ``~``)."""
    return isinstance(value, str) and (
        value.startswith(("/", "~/")) or bool(_WINDOWS_ABSOLUTE.match(value)))


def local_paths(card: Any, where: str = "") -> list[str]:
    """The keys (``data.sites[0]``) of a card that hold an absolute local path."""
    if isinstance(card, Mapping):
        return [k for key, value in card.items()
                for k in local_paths(value, f"{where}.{key}" if where else str(key))]
    if isinstance(card, (list, tuple)):
        return [k for i, value in enumerate(card) for k in local_paths(value, f"{where}[{i}]")]
    return [where] if is_local_path(card) else []


def portable_card(card: Any) -> Any:
    """A copy of ``card`` with every absolute local path replaced by :func:`portable_path`."""
    if isinstance(card, Mapping):
        return {key: portable_card(value) for key, value in card.items()}
    if isinstance(card, (list, tuple)):
        return [portable_card(value) for value in card]
    return portable_path(card) if is_local_path(card) else card
