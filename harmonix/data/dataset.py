"""2D axial slice training data over a :class:`~harmonix.data.cache.SliceCache`: unpaired or
all-sequence datasets and reference sampling.

``SliceDataset`` turns the cache into items ``{"image": (1, H, W) float32 0..255, "domain": int,
"lesion": (1, H, W) float32 0/1}``; a domain is ``"center/sequence"``. ``pairing="unpaired"``
(the default, the paper's hardest setting) gives each patient exactly one sequence, drawn with the
seed; ``"all"`` uses every sequence. ``ReferenceSampler`` draws two reference slices per requested
target domain, as StarGAN-v2 does.

Randomness is a function of ``(seed, epoch, index)`` (flips) or of a seeded ``torch.Generator``
(references, with ``state_dict`` for resuming), so runs are reproducible.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harmonix.data.cache import CachedCase, SliceCache
from harmonix.data.preprocess import PreprocessConfig
from harmonix.registry import Registry

PAIRINGS = ("unpaired", "all")


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

    def lesion_areas(self) -> np.ndarray:
        """Per item, the number of lesion pixels of its slice (0 without a label map)."""
        areas = np.zeros(len(self), dtype=np.int64)
        for pair, (case, _) in enumerate(self.pairs):
            lesions = self.cache.lesions(case)
            if lesions is not None:
                rows = self._pair == pair
                per_slice = np.asarray(lesions).reshape(len(lesions), -1).sum(1)
                areas[rows] = per_slice[self._row[rows]]
        return areas

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

