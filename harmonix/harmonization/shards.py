"""One site harmonized by several processes: ``harmonize --shard K/N`` and ``manifest merge``.

Shard ``K/N`` (``K`` counts from 1 to ``N``) takes the cases whose position in the sorted case
ids, counted from 0, is ``K - 1`` modulo ``N``: shards ``1/N`` .. ``N/N`` together take every case
exactly once, whatever machine runs them, and each writes its own manifest part,
``OUT/manifest.shard-K-of-N.csv``, instead of ``OUT/manifest.csv``. :func:`merge_manifest` joins
the ``N`` parts into ``OUT/manifest.csv`` (rows sorted by case, as an unsharded run writes them);
the shard that writes the last part does it itself (:func:`write_run_manifest`). Parts are
written and merged under a lock on ``OUT/.harmonix-manifest.lock``, so the last shard to finish
merges every part, including those written a moment before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harmonix.errors import HarmonixError, InputError
from harmonix.harmonization.outputs import (
    MANIFEST_NAME,
    ManifestRow,
    is_manifest,
    read_manifest,
    write_manifest,
)

try:  # POSIX; elsewhere parts are merged without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

PART_PATTERN = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.csv$")
LOCK_NAME = ".harmonix-manifest.lock"
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``1 <= index <= count``)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` -> ``Shard(K, N)``; a ``ValueError`` saying what is wrong otherwise."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise ValueError(f"'{text}' is not K/N (shard K of N, K from 1 to N, e.g. 2/8)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1:
            raise ValueError(f"'{text}': the number of shards N must be at least 1")
        if not 1 <= index <= count:
            raise ValueError(f"'{text}': K counts from 1 to N={count} (for a 0-based task id "
                             f"I, give $((I + 1))/{count})")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def part_name(self) -> str:
        """This shard's manifest part, ``manifest.shard-K-of-N.csv``."""
        return f"manifest.shard-{self.index}-of-{self.count}.csv"

    def select(self, items: Iterable[T], key=lambda item: item.id) -> list[T]:
        """This shard's items: position ``i`` in ``sorted(items, key=key)`` for ``i % N == K-1``."""
        ordered = sorted(items, key=key)
        return [item for i, item in enumerate(ordered) if i % self.count == self.index - 1]


@dataclass
class Merged:
    """What :func:`merge_manifest` wrote."""

    manifest: Path
    parts: list[Path]
    rows: list[ManifestRow]

    @property
    def cases(self) -> list[str]:
        return list(dict.fromkeys(row.case for row in self.rows))

    @property
    def failed(self) -> list[str]:
        return list(dict.fromkeys(row.case for row in self.rows if row.status == "failed"))


def find_parts(out: Path) -> dict[tuple[int, int], Path]:
    """The manifest parts in ``out`` by ``(K, N)``."""
    found = {}
    for path in sorted(Path(out).iterdir()) if Path(out).is_dir() else []:
        match = PART_PATTERN.match(path.name)
        if match:
            found[(int(match.group(1)), int(match.group(2)))] = path
    return found


def merge_manifest(out: str | Path) -> Merged:
    """Join ``OUT/manifest.shard-K-of-N.csv`` for ``K = 1..N`` into ``OUT/manifest.csv``.

    Refuses (:class:`~harmonix.errors.InputError`, nothing written) when ``out`` holds no part,
    parts of different ``N``, a missing part (named, with the ``--shard`` that writes it), a part
    that is not a harmonix manifest, a case in two parts, or a ``manifest.csv`` harmonix did not
    write."""
    out = Path(out)
    if not out.is_dir():
        raise InputError(out, "is not a folder (give the --out folder of the sharded runs)")
    parts = find_parts(out)
    if not parts:
        raise InputError(out, "holds no manifest part (manifest.shard-K-of-N.csv); run "
                              "'harmonix harmonize --shard K/N' for K = 1..N first")
    counts = sorted({n for _, n in parts})
    if len(counts) > 1:
        listing = "; ".join(f"N={n}: " + ", ".join(p.name for (_, m), p in parts.items() if m == n)
                            for n in counts)
        raise InputError(out, f"the manifest parts disagree on the number of shards ({listing}); "
                              "remove the parts of the older run and merge again")
    count = counts[0]
    beyond = [p.name for (k, _), p in parts.items() if not 1 <= k <= count]
    if beyond:
        raise InputError(out / beyond[0], f"is not a shard of 1..{count}; remove it")
    missing = [k for k in range(1, count + 1) if (k, count) not in parts]
    if missing:
        names = ", ".join(Shard(k, count).part_name for k in missing)
        shards = ", ".join(f"--shard {k}/{count}" for k in missing)
        raise InputError(out, f"{len(missing)} of {count} manifest parts missing ({names}): "
                              f"those shards have not finished; run harmonize with {shards}")
    rows: list[ManifestRow] = []
    owner: dict[str, Path] = {}
    ordered = [parts[(k, count)] for k in range(1, count + 1)]
    for part in ordered:
        if not is_manifest(part):
            raise InputError(part, "is not a harmonix manifest; move it away")
        part_rows = read_manifest(part)
        for case in dict.fromkeys(row.case for row in part_rows):
            if case in owner:
                raise InputError(part, f"case '{case}' is also in {owner[case].name}; remove the "
                                       "parts of the older run and run its shards again")
            owner[case] = part
        rows.extend(part_rows)
    manifest = out / MANIFEST_NAME
    if (manifest.exists() or manifest.is_symlink()) and not is_manifest(manifest):
        raise InputError(manifest, "exists and is not a harmonix manifest; harmonix will not "
                                   "replace it: move it away")
    rows.sort(key=lambda row: row.case)  # stable: a case's rows keep their order
    write_manifest(manifest, rows)
    return Merged(manifest, ordered, rows)


@contextmanager
def manifest_lock(out: Path):
    """An exclusive lock on ``OUT/.harmonix-manifest.lock`` (for writing and merging parts)."""
    if fcntl is None:
        yield
        return
    with open(out / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_run_manifest(out: Path, rows: Sequence[ManifestRow], shard: Shard | None,
                       merge: bool = True) -> Merged | None:
    """Write a run's manifest: ``OUT/manifest.csv``, or a shard's part; then, with ``merge``,
    merge the parts when all ``N`` are there (returned; ``None`` when they are not, or the
    merge is refused: ``harmonix manifest merge`` says why)."""
    if shard is None:
        write_manifest(out / MANIFEST_NAME, rows)
        return None
    with manifest_lock(out):
        write_manifest(out / shard.part_name, rows)
        parts = find_parts(out)
        if not merge or any((k, shard.count) not in parts for k in range(1, shard.count + 1)):
            return None
        try:
            return merge_manifest(out)
        except (HarmonixError, OSError):
            return None


def check_part(out: Path, shard: Shard | None) -> None:
    """Refuse a shard whose part file is in ``out`` and is not a harmonix manifest."""
    part = out / shard.part_name if shard else None
    if part is not None and (part.exists() or part.is_symlink()) and not is_manifest(part):
        raise InputError(part, "exists and is not a harmonix manifest; harmonix will not "
                               "replace it: move it away or choose another --out")


def shard_of(value: Any) -> Shard | None:
    """``None``, a :class:`Shard` or ``"K/N"`` -> ``Shard | None``."""
    if value is None or isinstance(value, Shard):
        return value
    return Shard.parse(value)


__all__ = ["Merged", "Shard", "check_part", "find_parts", "manifest_lock", "merge_manifest",
           "shard_of", "write_run_manifest"]
