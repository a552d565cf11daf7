"""Training batches from a slice dataset, each a pure function of ``(seed, iteration, rank)``.

Deriving every iteration's randomness (source slices, flips, target domains, references, latents)
from ``(seed, iteration, rank)`` makes a killed-then-resumed run identical to an uninterrupted
one without saving any data-iterator or RNG state.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from harmonix_ummgat.networks import to_unit
from harmonix_ummgat.solver import Batch


def iteration_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for one iteration of one process."""
    state = np.random.SeedSequence([seed, iteration, rank]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (dataset flips, dropout, ... become reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def indices_by_domain(dataset) -> list[np.ndarray]:
    """For each of ``dataset.domains``, the indices of its slices."""
    labels = getattr(dataset, "item_domains", None)
    if labels is None:
        labels = [int(dataset[i]["domain"]) for i in range(len(dataset))]
    labels = np.asarray(labels, dtype=np.int64)
    return [np.flatnonzero(labels == k) for k in range(len(dataset.domains))]


#: a slice counts as a lesion slice for LAM's real lesions from this many lesion pixels
MIN_LESION_PIXELS = 16


def lesion_pools(dataset, by_domain: list[np.ndarray]) -> list[np.ndarray]:
    """Per domain, its slices with at least :data:`MIN_LESION_PIXELS` lesion pixels (empty for
    a domain without lesions or a dataset without ``lesion_areas``)."""
    if not hasattr(dataset, "lesion_areas"):
        return [pool[:0] for pool in by_domain]
    areas = dataset.lesion_areas()
    return [pool[areas[pool] >= MIN_LESION_PIXELS] for pool in by_domain]


class BatchSource:
    """Draws StarGAN-v2 batches from a ``SliceDataset``: sources balanced over domains (with
    random flips), a target domain per source drawn uniformly among the *other* domains, two
    references per target domain (the dataset's ``ReferenceSampler``), two latents and, for
    LAM, a lesion slice of each target domain.

    Unlike StarGAN-v2, a target never equals its source: with few domains (a T1 + T2 center),
    same-domain "translations" make half of D's fakes indistinguishable from real images, and
    the contrast is learned far more slowly (measured: a T1 -> T2 run that learns CSF > WM in
    50 iterations did not in 1500 with same-domain targets).
    """

    def __init__(self, dataset, *, latent_dim: int, seed: int = 0, rank: int = 0):
        from harmonix.sdk import ReferenceSampler

        self.dataset = dataset
        self.domains: list[str] = list(dataset.domains)
        self.by_domain = indices_by_domain(dataset)
        self.present = torch.tensor([k for k, ix in enumerate(self.by_domain) if len(ix)])
        if len(self.present) < 2:
            raise ValueError(f"training needs slices of at least 2 domains; have {self.counts()}")
        self.references = ReferenceSampler(dataset, seed)
        self.lesion_pools = lesion_pools(dataset, self.by_domain)
        self.latent_dim = latent_dim
        self.seed = seed
        self.rank = rank

    def counts(self) -> dict[str, int]:
        return {d: int(len(ix)) for d, ix in zip(self.domains, self.by_domain, strict=True)}

    def _sources(self, domains: torch.Tensor, gen: torch.Generator,
                 pools: list[np.ndarray] | None = None) -> tuple[torch.Tensor, ...]:
        flip = bool(getattr(self.dataset, "flip", False))
        images, lesions = [], []
        for k in domains.tolist():
            pool = (pools or self.by_domain)[k]
            index = int(pool[torch.randint(len(pool), (1,), generator=gen).item()])
            flipped = bool(torch.rand(1, generator=gen).item() < 0.5) and flip
            item = self.dataset.load(index, flip=flipped)
            images.append(item["image"])
            lesions.append(item["lesion"])
        return torch.stack(images).float(), torch.stack(lesions).float()

    def batch(self, iteration: int, size: int) -> Batch:
        seed = iteration_seed(self.seed, iteration, self.rank)
        seed_everything(seed)
        gen = torch.Generator().manual_seed(seed)
        self.references.generator.manual_seed(seed + 1)
        n = len(self.present)
        org = torch.randint(n, (size,), generator=gen)
        trg = (org + torch.randint(1, n, (size,), generator=gen)) % n  # another domain
        y_org, y_trg = self.present[org], self.present[trg]
        x_real, lesion = self._sources(y_org, gen)
        x_ref, x_ref2, _, _ = self.references.sample(y_trg)
        z_trg = torch.randn(size, self.latent_dim, generator=gen)
        z_trg2 = torch.randn(size, self.latent_dim, generator=gen)
        # a domain without lesion slices gives any slice of its own (its lesion terms count 0)
        pools = [ix if len(ix) else whole for ix, whole in zip(self.lesion_pools, self.by_domain,
                                                                strict=True)]
        x_lesion_ref, lesion_ref = self._sources(y_trg, gen, pools)
        return Batch(to_unit(x_real), y_org, (lesion > 0).float(), y_trg, to_unit(x_ref.float()),
                     to_unit(x_ref2.float()), z_trg, z_trg2, to_unit(x_lesion_ref),
                     (lesion_ref > 0).float())

    def lesion_slices(self, per_domain: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Up to ``per_domain`` evenly spaced real lesion slices of each domain (not flipped):
        ``(images in [-1, 1], lesion masks, domain indices)``, for the lesion-code spread."""
        images, masks, domains = [], [], []
        for k in self.present.tolist():
            pool = self.lesion_pools[k]
            if not len(pool):
                continue
            picks = np.linspace(0, len(pool) - 1, min(per_domain, len(pool))).astype(int)
            for i in np.unique(picks):
                item = self.dataset.load(int(pool[i]), flip=False)
                images.append(item["image"])
                masks.append((item["lesion"] > 0).float())
                domains.append(k)
        if not images:
            return torch.zeros(0, 1, 1, 1), torch.zeros(0, 1, 1, 1), []
        return to_unit(torch.stack(images).float()), torch.stack(masks), domains

    def fixed_sources(self) -> tuple[torch.Tensor, list[str]]:
        """One slice per domain (not flipped), 0..255, for sample grids: of up to 32 evenly
        spaced candidates, the one with the most brain, so that grids show whole slices."""
        images, names = [], []
        for k in self.present.tolist():
            pool = self.by_domain[k]
            picks = np.unique(np.linspace(0, len(pool) - 1, min(32, len(pool))).astype(int))
            candidates = [self.dataset.load(int(pool[i]), flip=False)["image"] for i in picks]
            images.append(max(candidates, key=lambda image: int((image > 0).sum())))
            names.append(self.domains[k])
        return torch.stack(images).float(), names
