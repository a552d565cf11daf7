"""The slice cache: every usable case preprocessed once, its brain-containing axial slices on disk.

``SliceCache.build`` preprocesses every usable case once and writes, per case, its volumes'
brain-containing axial slices as ``.npy`` files (``(n_slices, H, W)``, float16 0..255, read back
through ``np.load(mmap_mode="r")``) plus lesion masks (label > 0), and a JSON index. A second
build with the same inputs and config finds the index's key and reuses it, so an epoch never
re-reads NIfTI. The datasets over it are in :mod:`harmonix.data.dataset`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harmonix.data.preprocess import PreparedCase, PreprocessConfig, preprocess_case
from harmonix.data.site import read_site
from harmonix.errors import InputError
from harmonix.io import atomic_write_json
from harmonix.progress import progress_task
from harmonix.registry import Registry, load_registry, make_domain

CACHE_VERSION = 1
INDEX_NAME = "index.json"
MIN_BRAIN_FRACTION = 0.01  # an axial slice "has brain" when at least this much of it is brain


@dataclass(frozen=True)
class CachedCase:
    """One case in the cache: where its slices are and which axial indices they came from."""

    center: str
    case: str
    sequences: dict[str, str]  # sequence -> .npy file, relative to the cache folder
    lesion: str | None  # lesion mask .npy (label > 0), None without a label map
    slices: tuple[int, ...]  # the axial indices (z) kept: the slices with brain

    @property
    def patient(self) -> str:
        return f"{self.center}/{self.case}"


def valid_slices(brain_mask: np.ndarray, min_fraction: float = MIN_BRAIN_FRACTION) -> list[int]:
    """Axial indices ``k`` whose slice ``brain_mask[:, :, k]`` holds enough brain."""
    fraction = brain_mask.reshape(-1, brain_mask.shape[2]).mean(axis=0)
    return [int(k) for k in np.flatnonzero(fraction >= min_fraction)]


# -- cache keys ----------------------------------------------------------------------------------
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _files_fingerprint(root: Path, exclude: Path) -> list[tuple[str, int, int]]:
    """Path, size and mtime of every visible file under ``root`` but not under ``exclude`` (a
    cache inside a site folder); no file is opened."""
    found = []
    exclude = exclude.resolve()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith((".", "_")) for part in relative.parts) or not path.is_file():
            continue
        if path.resolve().is_relative_to(exclude):
            continue
        stat = path.stat()
        found.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    return found


def _registry_fingerprint(registry: Registry) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in registry.sources]


def _prepared_digest(center: str, prepared: PreparedCase) -> str:
    h = hashlib.sha256(json.dumps([center, prepared.case_id, prepared.record.to_dict()]).encode())
    for name in sorted(prepared.volumes):
        h.update(name.encode())
        h.update(np.ascontiguousarray(prepared.volumes[name]).tobytes())
    h.update(np.ascontiguousarray(prepared.brain_mask).tobytes())
    if prepared.label is not None:
        h.update(np.ascontiguousarray(prepared.label).tobytes())
    return h.hexdigest()


# -- the cache -----------------------------------------------------------------------------------
class SliceCache:
    """A built slice cache (open an existing one with ``SliceCache(cache_dir)``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        try:
            index = json.loads(index_path.read_text())
        except FileNotFoundError:
            raise InputError(
                self.root, "no slice cache here; build one with SliceCache.build"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(index_path, f"unreadable slice-cache index: {exc}") from None
        if index.get("version") != CACHE_VERSION:
            raise InputError(index_path, "made by another harmonix version; build it again")
        self.key: str = index["key"]
        self.config = PreprocessConfig.from_dict(index["config"])
        self.cases = [
            CachedCase(c["center"], c["case"], c["sequences"], c["lesion"], tuple(c["slices"]))
            for c in index["cases"]
        ]
        self.skipped: list[dict[str, str]] = index.get("skipped", [])
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def domains(self) -> list[str]:
        """Every ``center/sequence`` in the cache, sorted."""
        return sorted({make_domain(c.center, s) for c in self.cases for s in c.sequences})

    def __len__(self) -> int:
        return len(self.cases)

    def _array(self, relative: str) -> np.ndarray:
        if relative not in self._arrays:
            self._arrays[relative] = np.load(self.root / relative, mmap_mode="r")
        return self._arrays[relative]

    def slices(self, case: int, sequence: str) -> np.ndarray:
        """``(n_slices, H, W)`` float16 memmap of one case's sequence."""
        return self._array(self.cases[case].sequences[sequence])

    def lesions(self, case: int) -> np.ndarray | None:
        """``(n_slices, H, W)`` uint8 memmap of the lesion mask, None without a label map."""
        relative = self.cases[case].lesion
        return None if relative is None else self._array(relative)

    def __getstate__(self):  # DataLoader workers open their own memmaps
        return {**self.__dict__, "_arrays": {}}

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def _current(cls, cache_dir: Path, key: str) -> SliceCache | None:
        try:
            cache = cls(cache_dir)
        except InputError:
            return None
        if cache.key != key:
            return None
        files = [f for c in cache.cases for f in (*c.sequences.values(), c.lesion) if f]
        return cache if all((cache_dir / f).is_file() for f in files) else None

    @classmethod
    def build(
        cls,
        source: Mapping[str, Iterable[PreparedCase]] | Sequence[Any] | str | Path,
        cache_dir: str | Path,
        config: PreprocessConfig | None = None,
        *,
        centers: Sequence[str | None] | None = None,
        registry: Registry | None = None,
        progress: bool = True,
    ) -> SliceCache:
        """Build (or reuse) the cache in ``cache_dir``.

        ``source`` is ``{center: [PreparedCase, ...]}`` or site folders / ``Site`` objects
        (``centers`` optionally overrides each folder's center). Cases with problems are skipped
        with a warning listing them. An existing cache is reused when its key matches: for
        sites, the files' names, sizes and modification times (nothing is opened), the centers,
        the config and the registry; for prepared cases, their content.
        """
        config = config or PreprocessConfig()
        registry = registry or load_registry()
        cache_dir = Path(cache_dir)
        if isinstance(source, Mapping):
            prepared = {str(center): list(cases) for center, cases in source.items()}
            key = _digest(
                {
                    "version": CACHE_VERSION,
                    "config": config.to_dict(),
                    "prepared": [
                        _prepared_digest(c, p) for c, cases in prepared.items() for p in cases
                    ],
                }
            )
            if (cache := cls._current(cache_dir, key)) is not None:
                _warn_skipped(cache.skipped)
                return cache
            total = sum(len(cases) for cases in prepared.values())
            items = ((c, p) for c, cases in prepared.items() for p in cases)
            return cls._write(cache_dir, key, config, items, total, [], progress)

        sites = [source] if isinstance(source, (str, Path)) or hasattr(source, "cases") else source
        sites = list(sites)
        centers = list(centers) if centers is not None else [None] * len(sites)
        if len(centers) != len(sites):
            raise ValueError(f"got {len(centers)} centers for {len(sites)} sites")
        described = []
        for site, center in zip(sites, centers, strict=True):
            root = Path(site.root if hasattr(site, "cases") else site)
            center = center or (site.center if hasattr(site, "cases") else None)
            described.append([str(root.resolve()), center, _files_fingerprint(root, cache_dir)])
        key = _digest(
            {
                "version": CACHE_VERSION,
                "config": config.to_dict(),
                "registry": _registry_fingerprint(registry),
                "sites": described,
            }
        )
        if (cache := cls._current(cache_dir, key)) is not None:
            _warn_skipped(cache.skipped)  # the same inputs, the same messages
            return cache


        read = [
            site
            if hasattr(site, "cases") and center in (None, site.center)
            else read_site(
                site.root if hasattr(site, "cases") else site,
                center=center,
                registry=registry,
                check_voxels=False,
            )
            for site, center in zip(sites, centers, strict=True)
        ]
        skipped = [
            {"center": site.center, "case": case.id, "problem": "; ".join(map(str, case.problems))}
            for site in read
            for case in site.cases
            if not case.ok
        ]
        usable = [(site, case) for site in read for case in site.cases if case.ok]

        def prepare() -> Iterator[tuple[str, PreparedCase | dict[str, str]]]:
            for site, case in usable:
                try:
                    yield (
                        site.center,
                        preprocess_case(
                            case, config, label_convention=site.label_convention, registry=registry
                        ),
                    )
                except InputError as exc:
                    yield site.center, {"center": site.center, "case": case.id, "problem": str(exc)}

        return cls._write(cache_dir, key, config, prepare(), len(usable), skipped, progress)

    @classmethod
    def _write(cls, cache_dir, key, config, items, total, skipped, progress) -> SliceCache:
        data_dir = cache_dir / f"data-{key[:16]}"
        if data_dir.exists():  # left by an interrupted build
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        cases = []
        with progress_task("caching slices", total=total, quiet=not progress) as advance:
            for center, prepared in items:
                advance(1)
                if isinstance(prepared, dict):
                    skipped.append(prepared)
                    continue
                entry = _write_case(data_dir, len(cases), center, prepared, config, cache_dir)
                if entry is None:
                    skipped.append(
                        {
                            "center": center,
                            "case": prepared.case_id,
                            "problem": "no axial slice contains brain",
                        }
                    )
                else:
                    cases.append(entry)
        _warn_skipped(skipped, stacklevel=4)
        if not cases:
            raise ValueError("no usable case to build a slice cache from")
        atomic_write_json(
            cache_dir / INDEX_NAME,
            {
                "version": CACHE_VERSION,
                "key": key,
                "config": config.to_dict(),
                "cases": cases,
                "skipped": skipped,
            },
        )
        for old in cache_dir.glob("data-*"):
            if old.is_dir() and old != data_dir:
                shutil.rmtree(old)
        return cls(cache_dir)


def _warn_skipped(skipped: list[dict[str, str]], stacklevel: int = 3) -> None:
    if skipped:
        listed = "\n".join(f"  {s['center']}/{s['case']}: {s['problem']}" for s in skipped)
        warnings.warn(
            f"skipped {len(skipped)} case(s) with problems:\n{listed}", stacklevel=stacklevel
        )


def _write_case(
    data_dir: Path,
    number: int,
    center: str,
    prepared: PreparedCase,
    config: PreprocessConfig,
    cache_dir: Path,
) -> dict[str, Any] | None:
    shapes = {v.shape for v in prepared.volumes.values()}
    if shapes != {tuple(config.crop_shape)}:
        raise ValueError(
            f"case {prepared.case_id}: volumes of shape {shapes}, expected "
            f"{tuple(config.crop_shape)} (prepared with another config?)"
        )
    slices = valid_slices(prepared.brain_mask)
    if not slices:
        return None
    folder = data_dir / f"{number:05d}"
    folder.mkdir()

    def save(name: str, volume: np.ndarray, dtype) -> str:
        path = folder / f"{name}.npy"
        np.save(path, np.ascontiguousarray(volume[:, :, slices].transpose(2, 0, 1), dtype=dtype))
        return path.relative_to(cache_dir).as_posix()

    sequences = {s: save(s, v, np.float16) for s, v in sorted(prepared.volumes.items())}
    lesion = None if prepared.label is None else save("lesion", prepared.label > 0, np.uint8)
    return {
        "center": center,
        "case": prepared.case_id,
        "sequences": sequences,
        "lesion": lesion,
        "slices": slices,
    }


