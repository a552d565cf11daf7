"""The installed models folder: where ``harmonix models install`` puts a model, and the lookup
of an installed model by its name.

:func:`models_dir` is ``$HARMONIX_MODELS``, else the platform's user data folder
(``~/.local/share/harmonix/models`` on Linux). :func:`installed_model` is what
:func:`harmonix.models.checkpoints.resolve_checkpoint` asks when it is given a plain name that is no
file or folder here, so every command that takes a run or segmenter folder also takes the name of an
installed model. Packages themselves (export, install, list) are :mod:`harmonix.models.packages`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from platformdirs import user_data_dir

from harmonix.cards import CARD_FILE

MODELS_ENV = "HARMONIX_MODELS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def models_dir() -> Path:
    """Where installed models live: ``$HARMONIX_MODELS``, else ``<user data dir>/harmonix/models``
    (platformdirs: ``~/.local/share/harmonix/models`` on Linux)."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    return Path(user_data_dir("harmonix", appauthor=False)) / "models"


def is_model_name(text: str) -> bool:
    """A plain model name: letters, digits, ``.``, ``_``, ``-``; no folder separator."""
    return bool(_NAME.match(text)) and text not in (".", "..")


def installed_model(name: str) -> Path | None:
    """The folder of the installed model ``name``, or ``None`` (not a plain name, or none such)."""
    if not is_model_name(name):
        return None
    folder = models_dir() / name
    return folder if (folder / CARD_FILE).is_file() else None


def hidden_model(path: str | Path) -> str:
    """When ``path`` is a plain name that is a local file or folder *and* an installed model (the
    local one wins), what to say about it: a hint naming both; else ``""``."""
    text = str(path)
    if not Path(text).exists() or installed_model(text) is None:
        return ""
    return (f"the local '{text}' hides the installed model '{text}' "
            f"({installed_model(text)}); give ./{text} for the local one, or the installed "
            "folder's full path for the installed one (or rename the local one)")


__all__ = ["MODELS_ENV", "hidden_model", "installed_model", "is_model_name", "models_dir"]
