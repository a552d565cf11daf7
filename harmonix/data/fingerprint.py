"""Fingerprints of the cases a model was trained on, and overlap with the cases it is tested on.

A *training record* (``{"version", "cases": [{"id", "center", "site", "files"}]}``) lists each
training case's id and the content hash of each of its input files (sequences and label map);
``site`` is the site folder's name only (records travel in model cards, which hold no local
path: :func:`harmonix.cards.portable_path`), and a file that cannot be read is left out.
Trainers store it in their model card; ``harmonix evaluate`` compares the test cases with it
(:func:`find_overlap`) by id and by content, so a renamed copy of a training case is caught too.

The content hash (:func:`content_hash`) is SHA-256 of the *uncompressed* bytes: ``.nii`` and
``.nii.gz`` of the same image, or two gzip files that differ only in their gzip header (name,
time), hash alike. (Unlike :func:`harmonix.io.file_fingerprint`, which tells whether one file
changed, this tells whether two files hold the same image.)
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonix.cards import portable_path
from harmonix.data.site import read_site

RECORD_VERSION = 1
RECORD_KEY = "data_record"  # in a card's ``training`` (segmenter) or ``data`` (generator)
_BLOCK = 1 << 20


def content_hash(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's content, decompressed if it is gzip."""
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def case_record(case, site: str | Path | None = None) -> dict[str, Any]:
    """One site ``Case``: id, center, the site folder's name and the content hash of each input
    file that can be read (a truncated or unreadable file is left out)."""
    paths = dict(sorted(case.sequences.items()))
    if case.label is not None:
        paths["label"] = case.label
    files = {}
    for name, path in paths.items():
        try:
            files[name] = content_hash(path)
        except (OSError, EOFError, zlib.error):
            continue
    return {"id": str(case.id), "center": case.center,
            "site": portable_path(Path(site).resolve()) if site is not None else "",
            "files": files}


def training_record(
    sites: Sequence[str | Path] = (), *, cases: Iterable | None = None
) -> dict[str, Any]:
    """The record of the cases of ``sites`` (every case read by ``read_site``) or of the site
    ``Case``\\ s given as ``cases``; trainers call it with what they trained on."""

    if cases is not None:
        records = [case_record(c) for c in cases]
    else:
        records = []
        for folder in sites:
            site = read_site(folder, check_voxels=False)
            records += [case_record(c, site.root) for c in site.cases]
    return {"version": RECORD_VERSION, "cases": records}


def merge_records(*records: Mapping[str, Any] | None) -> dict[str, Any]:
    """One training record of the cases of ``records`` (``None`` ones are skipped), in order,
    each case once (the same id with the same file hashes): the record of a run resumed on
    other data, which was trained on both."""
    merged, seen = [], set()
    for record in records:
        for case in (record or {}).get("cases") or []:
            key = (case.get("id"), tuple(sorted((case.get("files") or {}).items())))
            if key not in seen:
                seen.add(key)
                merged.append(case)
    return {"version": RECORD_VERSION, "cases": merged}


@dataclass(frozen=True)
class Overlap:
    """A test case found in a training record: ``how`` is "id", "content" or "id and content"."""

    test_case: str
    training_case: str
    how: str
    record: str  # whose record: "segmenter", "generator", ...
    files: tuple[str, ...] = ()  # the test files whose content matched

    def __str__(self) -> str:
        same = f" (same content: {', '.join(self.files)})" if self.files else ""
        name = (f"'{self.test_case}'" if self.test_case == self.training_case
                else f"'{self.test_case}' (training case '{self.training_case}')")
        return f"test case {name} is in the {self.record}'s training data by {self.how}{same}"


def find_overlap(
    test: Iterable[Mapping[str, Any]], training: Mapping[str, Any], record: str = "training"
) -> list[Overlap]:
    """Test cases (``case_record``\\ s) that share an id, or any input file's content, with a
    case of the ``training`` record."""
    by_id = {c["id"]: c for c in training.get("cases", [])}
    by_hash: dict[str, str] = {}
    for c in training.get("cases", []):
        for value in (c.get("files") or {}).values():
            by_hash.setdefault(value, c["id"])
    found = []
    for case in test:
        same = {name: by_hash[h] for name, h in (case.get("files") or {}).items() if h in by_hash}
        if case["id"] in by_id:
            how = "id and content" if same else "id"
            found.append(Overlap(case["id"], case["id"], how, record, tuple(sorted(same))))
        elif same:
            other = sorted(set(same.values()))[0]
            found.append(Overlap(case["id"], other, "content", record, tuple(sorted(same))))
    return found


def ids_only_record(case_ids: Iterable[str]) -> dict[str, Any]:
    """A record of case ids without file hashes (what older model cards hold)."""
    return {"version": RECORD_VERSION, "cases": [{"id": str(c), "files": {}} for c in case_ids]}


__all__ = ["RECORD_KEY", "RECORD_VERSION", "Overlap", "case_record", "content_hash",
           "find_overlap", "ids_only_record", "merge_records", "training_record"]
