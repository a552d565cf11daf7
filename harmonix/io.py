"""Atomic writes (a temporary file in the target folder, then ``os.replace``), the names of
temporary files, whether the process that left one is alive, and file digests.

An interrupted write (Ctrl-C, a crash) leaves at most a ``.tmp-PID-NAME`` file or folder, never a
half-written output under the final name. Every temporary name harmonix writes is made by
:func:`temp_name` and read back by :func:`parse_temp_name` (one name order: the process id first,
the final name last, so that its suffixes, ``.nii.gz``, stay at the end).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: the kinds of temporary name: ``tmp`` (being written) and ``old`` (being replaced)
TEMP_KINDS = ("tmp", "old")
_TEMP_NAME = re.compile(r"\.(tmp|old)-(\d+)(?:\.\d+)?-(.+)", re.DOTALL)
_SERIAL = itertools.count(1)  # threads share a pid: each name this process makes is its own


def temp_name(name: str, pid: int | None = None, *, kind: str = "tmp") -> str:
    """The temporary name of file or folder ``name`` of process ``pid``: ``.tmp-PID-NAME``
    (``kind="old"``: ``.old-PID-NAME``, a folder being swapped out). For this process (``pid``
    left out) the pid carries a serial, ``.tmp-PID.N-NAME``, so that two threads writing one file
    at once never share a temporary name."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"unknown kind of temporary name {kind!r}; use {', '.join(TEMP_KINDS)}")
    if not name:
        raise ValueError("a temporary name needs the final name")
    owner = f"{os.getpid()}.{next(_SERIAL)}" if pid is None else str(int(pid))
    return f".{kind}-{owner}-{name}"


def parse_temp_name(filename: str, kind: str = "tmp") -> tuple[str, int] | None:
    """``(name, pid)`` of a :func:`temp_name` of ``kind``, or ``None`` for any other name."""
    match = _TEMP_NAME.fullmatch(filename)
    if match is None or match.group(1) != kind:
        return None
    return match.group(3), int(match.group(2))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (one of another user counts as alive)."""
    if pid <= 0:  # 0 and negative numbers name process groups, never a process that wrote a file
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or larger than any process id
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the suffixes so that writers that look at them (nibabel: .nii.gz) behave the same
    tmp = path.with_name(temp_name(path.name))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_folder(path: str | Path):
    """Yield an empty temporary folder ``.tmp-PID-NAME`` next to ``path``; if the block succeeds
    it takes ``path``'s place (an existing ``path`` is swapped out, then removed), else it is
    removed. Readers see the old folder or the complete new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name))
    if tmp.exists():  # left by a dead process whose pid and serial this one has again
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.with_name(temp_name(path.name, kind="old"))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_nifti(path: str | Path, image) -> None:
    """Write a nibabel image atomically (``image.to_filename`` on a temporary name)."""
    atomic_write_with(path, lambda tmp: image.to_filename(str(tmp)))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (``hashlib.file_digest`` needs Python 3.11)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Size, modification time and SHA-256 of a file: a changed input is never mistaken for the
    one an output was made from."""
    stat = os.stat(path)
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_digest(path)}
