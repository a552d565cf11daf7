"""Checkpoints: one folder per saved iteration, written atomically, and ``load_generator``.

Layout of a run directory::

    RUN_DIR/checkpoints/iter_000100/model.safetensors   weights (networks and their EMA copies)
                                   /model_card.json     readable: trainer, domains, backbone, ...
                                   /training_state.pt   optimisers + RNG (torch.load weights_only)
    RUN_DIR/checkpoints/latest.json                     {"checkpoint": "iter_000100", ...}

A checkpoint folder is written under a temporary name (``.tmp-PID-iter_000100``,
:func:`harmonix.io.temp_name`) and renamed when complete; what a killed run left is removed by
:func:`remove_stale_temporaries`. The model card
records the size and SHA-256 of every file, so a truncated or corrupt file is reported as a
:class:`~harmonix.errors.CheckpointError` naming it. ``load_generator`` accepts a run directory,
a checkpoint folder, its ``model.safetensors`` or its ``model_card.json``, or the name of a model
installed with ``harmonix models install`` (:func:`resolve_checkpoint`, for every command), and
asks the trainer plugin named in the card to rebuild the generator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from harmonix.cards import CARD_FILE, load_card, validate_card, write_card
from harmonix.errors import CheckpointError, did_you_mean
from harmonix.interfaces import Generator
from harmonix.io import (
    atomic_folder,
    atomic_write_json,
    atomic_write_with,
    file_digest,
    parse_temp_name,
    pid_alive,
)
from harmonix.models.installed import hidden_model, installed_model, is_model_name, models_dir
from harmonix.plugins import build_trainer

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "training_state.pt"
_ITER_DIR = re.compile(r"^iter_(\d+)$")


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` as safetensors to ``path`` atomically, readable like any file the user
    writes (0644 under the usual umask; safetensors alone creates it private, 0600)."""

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        os.chmod(tmp, _FILE_MODE)

    atomic_write_with(path, write)


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:06d}"


def save_checkpoint(
    run_dir: str | Path,
    iteration: int,
    *,
    tensors: dict[str, torch.Tensor],
    card: dict[str, Any],
    training_state: dict[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write ``RUN_DIR/checkpoints/iter_<iteration>/`` atomically and point ``latest.json`` at it.

    ``card`` (a generator card, checked against the schema before anything is written) gets
    ``"iteration"`` and ``"files"`` (bytes and SHA-256 of each file) added. With ``keep``, only
    the newest ``keep`` checkpoints are kept.
    """

    root = Path(run_dir) / CHECKPOINTS_DIR
    name = checkpoint_name(iteration)
    final = root / name
    card = validate_card(card, final / CARD_FILE, "generator")
    with atomic_folder(final) as tmp:  # a resumed run saving the same iteration replaces it
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / MODEL_FILE))
        os.chmod(tmp / MODEL_FILE, _FILE_MODE)  # safetensors creates it private (0600)
        files = [MODEL_FILE]
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
            files.append(STATE_FILE)
        card = {**card, "iteration": iteration, "files": {
            f: {"bytes": (tmp / f).stat().st_size, "sha256": file_digest(tmp / f)} for f in files
        }}
        write_card(tmp / CARD_FILE, card, "generator")
    atomic_write_json(root / LATEST_FILE, {"checkpoint": name, "iteration": iteration})
    if keep is not None:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old)
    return final


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove the temporary checkpoint folders (``.tmp-PID-iter_N``) that a killed run left in
    ``RUN_DIR/checkpoints/``: those of this process or of a process that is gone, never a live
    process's, never a symbolic link. Returns the removed folders."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        parsed = parse_temp_name(path.name)
        if parsed is None or not _ITER_DIR.match(parsed[0]):
            continue
        pid = parsed[1]
        if path.is_dir() and not path.is_symlink() and (pid == os.getpid() or not pid_alive(pid)):
            shutil.rmtree(path)
            removed.append(path)
    return removed


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if p.is_dir() and (m := _ITER_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder ``latest.json`` names (or the newest one if it is missing); ``None`` if none."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    latest = root / LATEST_FILE
    if latest.is_file():
        try:
            name = json.loads(latest.read_text())["checkpoint"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(latest, f"unreadable: {exc}") from None
        folder = root / str(name)
        if not (folder / CARD_FILE).is_file():
            raise CheckpointError(latest, f"points at '{name}', which has no {CARD_FILE}")
        return folder
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


_WANTED = {
    "generator": "a run directory (with checkpoints/) or a checkpoint folder",
    "segmenter": "a 'harmonix segment train' folder",
    None: "a run directory, checkpoint folder or 'harmonix segment train' folder",
}


def resolve_checkpoint(path: str | Path, kind: str | None = None) -> Path:
    """The checkpoint folder for a run directory, a checkpoint folder or a file inside one
    (a segmenter's folder is its own checkpoint folder), or for the name of a model installed
    with ``harmonix models install`` (a plain name that is no file or folder here; see
    :func:`harmonix.models.installed_model`); errors say what ``kind`` needs."""
    installed = _installed_model(path)
    if installed is not None:
        return installed
    hidden = hidden_model(path)  # a local NAME that is an installed model's name too
    path = Path(path)
    if path.is_file() and path.name in (MODEL_FILE, CARD_FILE, STATE_FILE):
        path = path.parent
    if (path / CARD_FILE).is_file():
        if hidden:
            warnings.warn(f"using the local folder: {hidden}", UserWarning, stacklevel=2)
        return path
    wanted = _WANTED.get(kind, _WANTED[None])
    hint = f"; {hidden}" if hidden else ""
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            if hidden:
                warnings.warn(f"using the local folder: {hidden}", UserWarning, stacklevel=2)
            return found
        raise CheckpointError(path, f"no checkpoint here (no {CARD_FILE}, no {CHECKPOINTS_DIR}/);"
                                    f" give {wanted}{hint}")
    if path.exists():
        raise CheckpointError(path, f"is a file, not {wanted}{hint}")
    if is_model_name(str(path)):
        folder = models_dir()
        names = [p.name for p in folder.iterdir() if (p / CARD_FILE).is_file()] if (
            folder.is_dir()) else []
        raise CheckpointError(path, f"no such file or folder; give {wanted}, or the name of an "
                                    f"installed model (none is named '{path}' in {folder};"
                                    f" see harmonix models list){did_you_mean(str(path), names)}")
    raise CheckpointError(path, f"no such file or folder; give {wanted}")


def _installed_model(path: str | Path) -> Path | None:
    """The folder of the installed model ``path`` names, when it is a plain name and no file or
    folder of that name exists here (a local path always wins)."""
    if Path(path).exists():
        return None
    return installed_model(str(path))


def read_card(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The model card of the checkpoint at ``path`` (any form :func:`resolve_checkpoint`
    takes), validated against the schema of ``kind`` ("generator", "segmenter", or the kind
    the card names) and normalised (:func:`harmonix.cards.validate_card`)."""
    return load_card(resolve_checkpoint(path, kind) / CARD_FILE, kind)


def verify_file(folder: Path, name: str, card: dict[str, Any]) -> Path:
    """Check a checkpoint file against the size and SHA-256 in its model card."""
    path = folder / name
    if not path.is_file():
        raise CheckpointError(path, "missing")
    expected = card.get("files", {}).get(name)
    if expected is None:
        raise CheckpointError(folder / CARD_FILE, f"does not list {name}")
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise CheckpointError(path, f"truncated or wrong size: {size} bytes, expected "
                                    f"{expected['bytes']}")
    if file_digest(path) != expected["sha256"]:
        raise CheckpointError(path, "corrupt: SHA-256 does not match the model card")
    return path


def load_tensors(
    path: str | Path, prefixes: Iterable[str] | None = None, *, verify: bool = True
) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint (only keys starting with one of ``prefixes``, if given)."""

    folder = resolve_checkpoint(path)
    card = read_card(folder)
    file = verify_file(folder, MODEL_FILE, card) if verify else folder / MODEL_FILE
    prefixes = tuple(prefixes) if prefixes is not None else ("",)
    try:
        with safe_open(str(file), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefixes)}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(file, f"unreadable weights: {exc}") from None


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The resumable state (optimisers, RNG, ...) loaded with ``torch.load(weights_only=True)``."""
    folder = resolve_checkpoint(path)
    file = verify_file(folder, STATE_FILE, read_card(folder))
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(file, f"unreadable training state: {exc}") from None


def load_generator(path: str | Path, device: str = "auto") -> Generator:
    """Rebuild the (EMA) generator of a run directory or checkpoint via its trainer plugin, on
    ``device`` as ``--device`` takes it (``auto``: CUDA when present; a device this machine
    lacks is a :class:`~harmonix.device.DeviceError`, not torch's own error)."""
    from harmonix.device import resolve_device

    device = resolve_device(device)

    folder = resolve_checkpoint(path, "generator")
    card = read_card(folder, "generator")
    return build_trainer(card["trainer"]).load_generator(folder, device=device)


def as_generator(model: str | Path | Generator, device: str = "cpu") -> Generator:
    """``model`` itself when it is a loaded :class:`Generator`, else :func:`load_generator` of
    the run directory or checkpoint it names."""
    return model if isinstance(model, Generator) else load_generator(model, device=device)
