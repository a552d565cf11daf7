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


class BatchSource:
    """Draws StarGAN-v2 batches from a ``SliceDataset``: sources balanced over domains (with
    random flips), a target domain per source drawn uniformly among the *other* domains, two
    references per target domain (the dataset's ``ReferenceSampler``) and two latents.

    Unlike StarGAN-v2, a target never equals its source: with few domains (a T1 + T2 center),
    same-domain "translations" make half of D's fakes indistinguishable from real images, and
    the contrast is learned far more slowly (measured: a T1 -> T2 run that learns CSF > WM in
    50 iterations did not in 1500 with same-domain targets).
    """

    def __init__(self, dataset, *, latent_dim: int, seed: int = 0, rank: int = 0):
        from harmonix.data.dataset import ReferenceSampler

        self.dataset = dataset
        self.domains: list[str] = list(dataset.domains)
        self.by_domain = indices_by_domain(dataset)
        self.present = torch.tensor([k for k, ix in enumerate(self.by_domain) if len(ix)])
        if len(self.present) < 2:
            raise ValueError(f"training needs slices of at least 2 domains; have {self.counts()}")
        self.references = ReferenceSampler(dataset, seed)
        self.latent_dim = latent_dim
        self.seed = seed
        self.rank = rank

    def counts(self) -> dict[str, int]:
        return {d: int(len(ix)) for d, ix in zip(self.domains, self.by_domain, strict=True)}

    def _sources(self, domains: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        flip = bool(getattr(self.dataset, "flip", False))
        images, lesions = [], []
        for k in domains.tolist():
            pool = self.by_domain[k]
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
        x_ref, x_ref2, lesion_ref, lesion_ref2 = self.references.sample(y_trg)
        z_trg = torch.randn(size, self.latent_dim, generator=gen)
        z_trg2 = torch.randn(size, self.latent_dim, generator=gen)
        binary = [(m > 0).float() for m in (lesion, lesion_ref, lesion_ref2)]
        return Batch(to_unit(x_real), y_org, binary[0], y_trg, to_unit(x_ref.float()),
                     to_unit(x_ref2.float()), binary[1], binary[2], z_trg, z_trg2)

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
