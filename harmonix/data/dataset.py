"""2D axial slice training data: a disk cache of prepared cases, unpaired / all-sequence datasets.

``SliceCache.build`` preprocesses every usable case once and writes, per case, its volumes'
brain-containing axial slices as ``.npy`` files (``(n_slices, H, W)``, float16 0..255, read back
through ``np.load(mmap_mode="r")``) plus lesion masks (label > 0), and a JSON index. A second
build with the same inputs and config finds the index's key and reuses it, so an epoch never
re-reads NIfTI.

``SliceDataset`` turns the cache into items ``{"image": (1, H, W) float32 0..255, "domain": int,
"lesion": (1, H, W) float32 0/1}``; a domain is ``"center/sequence"``. ``pairing="unpaired"``
(the default, the paper's hardest setting) gives each patient exactly one sequence, drawn with the
seed; ``"all"`` uses every sequence. ``ReferenceSampler`` draws two reference slices per requested
target domain, as StarGAN-v2 does.

Randomness is a function of ``(seed, epoch, index)`` (flips) or of a seeded ``torch.Generator``
(references, with ``state_dict`` for resuming), so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harmonix.data.preprocess import PreparedCase, PreprocessConfig, preprocess_case
from harmonix.errors import InputError
from harmonix.io import atomic_write_json
from harmonix.progress import progress_task
from harmonix.registry import Registry, load_registry

CACHE_VERSION = 1
INDEX_NAME = "index.json"
MIN_BRAIN_FRACTION = 0.01  # an axial slice "has brain" when at least this much of it is brain
PAIRINGS = ("unpaired", "all")


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
        return sorted({f"{c.center}/{s}" for c in self.cases for s in c.sequences})

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

        from harmonix.data.site import read_site

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


# -- pairing -------------------------------------------------------------------------------------
def unpaired_assignment(cases: Sequence[CachedCase], seed: int) -> list[str]:
    """One sequence per patient, drawn with ``seed``; every ``center/sequence`` keeps a patient.

    When the draw leaves a domain without a patient, patients are moved along the shortest
    chain that ends at a domain with patients to spare (deterministic: lowest case first).
    """
    rng = np.random.default_rng(seed)
    choice = [sorted(c.sequences)[int(rng.integers(len(c.sequences)))] for c in cases]
    for center in sorted({c.center for c in cases}):
        members = [i for i, c in enumerate(cases) if c.center == center]
        for sequence in sorted({s for i in members for s in cases[i].sequences}):
            if not any(choice[i] == sequence for i in members):
                _fill(sequence, members, cases, choice, center)
    return choice


def _fill(empty: str, members: list[int], cases, choice: list[str], center: str) -> None:
    counts = Counter(choice[i] for i in members)
    sequences = {s for i in members for s in cases[i].sequences}
    # emptied[s] = (patient, destination): s loses its only patient, who moves to destination
    emptied: dict[str, tuple[int, str] | None] = {empty: None}
    queue = deque([empty])
    while queue:
        need = queue.popleft()
        for i in members:
            current = choice[i]
            if need not in cases[i].sequences or current in emptied:
                continue
            if counts[current] > 1:
                choice[i] = need
                while emptied[need] is not None:
                    patient, need = emptied[need]
                    choice[patient] = need
                return
            emptied[current] = (i, need)
            queue.append(current)
    raise ValueError(
        f"pairing='unpaired' cannot give domain '{center}/{empty}' a patient: center '{center}' "
        f"has {len(members)} patient(s) for {len(sequences)} sequences; add cases or use "
        "pairing='all'"
    )


# -- datasets ------------------------------------------------------------------------------------
class SliceDataset(Dataset):
    """Axial slices of a ``SliceCache``: ``{"image", "domain", "lesion"}`` items.

    ``pairing="unpaired"``: each patient contributes one sequence (``assignment``); ``"all"``:
    every sequence. With ``flip``, an item is mirrored left-right (the x axis, dim 1 of the
    ``(1, H, W)`` slice; image and lesion together) when a generator seeded with
    ``(seed, epoch, index)`` says so; call ``set_epoch`` to vary it per epoch.
    """

    def __init__(
        self,
        cache: SliceCache | str | Path,
        *,
        pairing: str = "unpaired",
        seed: int = 0,
        flip: bool = True,
    ):
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got '{pairing}'")
        self.cache = cache if isinstance(cache, SliceCache) else SliceCache(cache)
        self.pairing, self.seed, self.flip, self.epoch = pairing, int(seed), bool(flip), 0
        self.domains: list[str] = self.cache.domains
        cases = self.cache.cases
        if pairing == "unpaired":
            chosen = unpaired_assignment(cases, self.seed)
            self.pairs = [(i, s) for i, s in enumerate(chosen)]
        else:
            self.pairs = [(i, s) for i, c in enumerate(cases) for s in sorted(c.sequences)]
        index = {d: k for k, d in enumerate(self.domains)}
        self.pair_domains = np.array(
            [index[f"{cases[i].center}/{s}"] for i, s in self.pairs], dtype=np.int64
        )
        counts = [len(cases[i].slices) for i, _ in self.pairs]
        self._pair = np.repeat(np.arange(len(self.pairs)), counts)
        self._row = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, int)
        self.item_domains = self.pair_domains[self._pair]

    @property
    def assignment(self) -> dict[str, list[str]]:
        """``"center/case"`` -> the sequences it contributes."""
        out: dict[str, list[str]] = {}
        for i, sequence in self.pairs:
            out.setdefault(self.cache.cases[i].patient, []).append(sequence)
        return out

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._pair)

    def flipped(self, index: int) -> bool:
        if not self.flip:
            return False
        return bool(np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5)

    def load(self, index: int, *, flip: bool = False) -> dict[str, Any]:
        """Item ``index``, mirrored left-right if ``flip``."""
        pair = int(self._pair[index])
        case, sequence = self.pairs[pair]
        row = int(self._row[index])
        image = np.asarray(self.cache.slices(case, sequence)[row], dtype=np.float32)
        lesions = self.cache.lesions(case)
        lesion = np.zeros_like(image) if lesions is None else lesions[row].astype(np.float32)
        if flip:
            image, lesion = image[::-1], lesion[::-1]
        return {
            "image": torch.from_numpy(image.copy())[None],
            "domain": int(self.pair_domains[pair]),
            "lesion": torch.from_numpy(lesion.copy())[None],
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        return self.load(index, flip=self.flipped(index))

    def summary(self) -> dict[str, dict[str, int]]:
        """Per domain: patients and slices (for a model card)."""
        out = {d: {"patients": 0, "slices": 0} for d in self.domains}
        for (case, _), domain in zip(self.pairs, self.pair_domains, strict=True):
            out[self.domains[domain]]["patients"] += 1
            out[self.domains[domain]]["slices"] += len(self.cache.cases[case].slices)
        return out


class ReferenceSampler:
    """Two reference slices (and their lesion masks) per requested target domain."""

    def __init__(self, dataset: SliceDataset, seed: int = 0):
        self.dataset = dataset
        self._pools = [
            np.flatnonzero(dataset.item_domains == d) for d in range(len(dataset.domains))
        ]
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample(self, domain_indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(ref1, ref2, lesion1, lesion2)``, each ``(B, 1, H, W)``, for ``B`` domain indices."""
        drawn: list[list[dict[str, Any]]] = [[], []]
        for domain in torch.as_tensor(domain_indices).reshape(-1).tolist():
            pool = self._pools[domain]
            if len(pool) == 0:
                raise ValueError(f"no slices of domain '{self.dataset.domains[domain]}'")
            picks = torch.randint(len(pool), (2,), generator=self.generator).tolist()
            flips = (torch.rand(2, generator=self.generator) < 0.5).tolist()
            for k in range(2):
                flip = self.dataset.flip and flips[k]
                drawn[k].append(self.dataset.load(int(pool[picks[k]]), flip=flip))
        ref1, ref2 = (torch.stack([d["image"] for d in items]) for items in drawn)
        lesion1, lesion2 = (torch.stack([d["lesion"] for d in items]) for items in drawn)
        return ref1, ref2, lesion1, lesion2

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


def make_training_data(
    site_dirs: str | Path | Sequence[str | Path],
    cache_dir: str | Path,
    config: PreprocessConfig | None = None,
    *,
    pairing: str = "unpaired",
    seed: int = 0,
    centers: Sequence[str | None] | None = None,
    flip: bool = True,
    registry: Registry | None = None,
    progress: bool = True,
) -> SliceDataset:
    """Read sites, skip cases with problems (warning), preprocess, cache, and open a dataset."""
    if isinstance(site_dirs, (str, Path)):
        site_dirs = [site_dirs]
    cache = SliceCache.build(
        list(site_dirs), cache_dir, config, centers=centers, registry=registry, progress=progress
    )
    return SliceDataset(cache, pairing=pairing, seed=seed, flip=flip)
