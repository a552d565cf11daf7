"""Split a site into training and test sites (the paper's 4:1 split), recorded in ``split.json``.

``split_site(SITE, OUT, test=0.2, seed=0)`` writes

* ``OUT/train/`` and ``OUT/test/``: sites holding the cases of each part, every input file
  (sequences and label map) at its path relative to ``SITE``, as a symbolic link to the
  original (default) or a copy (``copy=True``); each with a ``harmonix-site.json`` naming the
  source site's center, layout and label convention, so both read as ``SITE`` does;
* ``OUT/split.json``: the source, the settings, the case ids of each part and the content hash
  of every file (:mod:`harmonix.data.fingerprint`).

The input site is only read. ``OUT`` must not exist, be empty, or hold a split this function
wrote with the same settings (then nothing is redone, so a re-run resumes); anything else is
refused. The parts are built in a hidden folder next to ``OUT`` and moved into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harmonix.data.fingerprint import case_record
from harmonix.data.layouts import SITE_FILE
from harmonix.data.site import read_site
from harmonix.errors import InputError
from harmonix.io import atomic_write_json
from harmonix.version import __version__

SPLIT_FILE = "split.json"
PARTS = ("train", "test")


@dataclass(frozen=True)
class SplitResult:
    out: Path
    train: Path
    test: Path
    record: dict[str, Any]
    reused: bool = False


def count_test_cases(n_cases: int, test: float) -> int:
    """How many of ``n_cases`` go to the test part: ``test`` is a fraction (0 < test < 1, rounded,
    at least 1) or a number of cases (an integer >= 1); the training part keeps at least one."""
    if n_cases < 2:
        raise ValueError(f"a split needs at least 2 cases, the site has {n_cases}")
    if 0 < test < 1:
        count = max(1, round(test * n_cases))
    elif test >= 1 and float(test).is_integer():
        count = int(test)
    else:
        raise ValueError(f"test must be a fraction in (0, 1) or a whole number of cases, got "
                         f"{test}")
    if count >= n_cases:
        raise ValueError(f"test = {test} leaves no training case of {n_cases}")
    return count


def plan_split(case_ids: list[str], test: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train ids, test ids)``, each sorted: a seeded permutation of the sorted ids
    (``numpy.random.default_rng(seed)``), its first ``count_test_cases`` cases for testing."""
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("case ids are not unique")
    order = np.random.default_rng(seed).permutation(len(ids))
    count = count_test_cases(len(ids), test)
    test_ids = sorted(ids[i] for i in order[:count])
    return sorted(set(ids) - set(test_ids)), test_ids


def _case_files(case) -> list[Path]:
    files = [Path(p) for _, p in sorted(case.sequences.items())]
    return files + ([Path(case.label)] if case.label is not None else [])


def _settings(site, test: float, seed: int, copy: bool) -> dict[str, Any]:
    return {"source": str(site.root.resolve()), "test_size": test, "seed": seed,
            "mode": "copy" if copy else "symlink"}


def _existing(out: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a split already in ``out`` with these settings; None if ``out`` is absent
    or empty; ``InputError`` if it holds anything else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if not any(out.iterdir()):
        return None
    record_file = out / SPLIT_FILE
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        raise InputError(out, "is not empty and holds no harmonix split; choose another "
                              "--out (harmonix split never writes into a folder it did not "
                              "make)") from None
    if not isinstance(record, dict) or record.get("tool") != "harmonix split":
        raise InputError(out, f"{SPLIT_FILE} there was not written by harmonix split")
    found = {k: record.get(k) for k in settings}
    if found != settings:
        raise InputError(out, f"holds a split with other settings ({found}); choose another "
                              "--out")
    return record


def split_site(
    site_dir: str | Path,
    out: str | Path,
    *,
    test: float = 0.2,
    seed: int = 0,
    copy: bool = False,
    center: str | None = None,
) -> SplitResult:
    """Split the cases of ``site_dir`` into ``out/train`` and ``out/test`` (see the module)."""

    site = read_site(site_dir, center=center, check_voxels=False)
    out = Path(out)
    root, target = site.root.resolve(), out.resolve()
    if target == root or root in target.parents or target in root.parents:
        raise InputError(out, f"must be outside the site {root} (and not contain it)")
    settings = _settings(site, test, seed, copy)
    if (record := _existing(out, settings)) is not None:
        return SplitResult(out, out / "train", out / "test", record, reused=True)
    train_ids, test_ids = plan_split([c.id for c in site.cases], test, seed)

    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    by_id = {c.id: c for c in site.cases}
    files: dict[str, dict[str, str]] = {}
    try:
        for part, ids in zip(PARTS, (train_ids, test_ids), strict=True):
            folder = stage / part
            folder.mkdir(parents=True)
            for case_id in ids:
                case = by_id[case_id]
                for src in _case_files(case):
                    dst = folder / src.relative_to(site.root)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if copy:
                        shutil.copy2(src, dst)
                    else:
                        os.symlink(src.resolve(), dst)
                files[case_id] = case_record(case, root)["files"]
            atomic_write_json(folder / SITE_FILE, {"center": site.center, "layout": site.layout,
                                                   "labels": site.label_convention})
            if site.layout == "nnunet":  # its channel names: each part reads as the site does
                shutil.copy2(site.root / "dataset.json", folder / "dataset.json")
        record = {
            "tool": "harmonix split", **settings, "center": site.center,
            "layout": site.layout, "labels": site.label_convention,
            "train": train_ids, "test": test_ids, "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "harmonix_version": __version__,
        }
        atomic_write_json(stage / SPLIT_FILE, record)
        if out.exists():
            out.rmdir()  # empty (checked above)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return SplitResult(out, out / "train", out / "test", record)


def split_of(test_site: str | Path) -> dict[str, Any] | None:
    """The ``split.json`` record whose test part is ``test_site``, None if it is not one."""
    folder = Path(test_site).resolve()
    record_file = folder.parent / SPLIT_FILE
    if folder.name != "test" or not record_file.is_file():
        return None
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("tool") == "harmonix split" else None


__all__ = ["SPLIT_FILE", "SplitResult", "plan_split", "split_of", "split_site", "count_test_cases"]
