"""A trainer whose generator matches intensity moments: it learns the mean and spread of each
domain's brain voxels, and translates a slice by moving its brain intensities from the source's
moments to the target's. (A baseline, not a GAN; it shows the Trainer and Generator contracts.)"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmonix.sdk import (
    CARD_FILE,
    Generator,
    PreprocessConfig,
    Trainer,
    TrainRequest,
    preprocess_case,
    read_card,
    read_site,
    write_card,
)


class MomentsGenerator(Generator):
    """Translates 0..255 slices by matching each domain's brain mean and standard deviation."""

    def __init__(self, card: dict[str, Any]):
        self.card = card
        self.domains = list(card["domains"])
        self.image_size = int(card["image_size"])
        self.moments = {d: tuple(m) for d, m in card["moments"].items()}

    def translate(self, images, source, target, *, reference=None, seed=0):
        (mean_s, std_s), (mean_t, std_t) = self.moments[source], self.moments[target]
        if reference is not None:  # the style of the given target slices instead
            brain = reference[reference > 0]
            mean_t, std_t = float(brain.mean()), float(brain.std())
        moved = ((images - mean_s) / std_s * std_t + mean_t).clamp(0, 255)
        return torch.where(images > 0, moved, torch.zeros_like(images))

    def style_codes(self, images, domain, *, lesion=False):
        flat = images.flatten(1)
        return torch.stack([flat.mean(dim=1), flat.std(dim=1)], dim=1)  # (B, 2)


class MomentsTrainer(Trainer):
    """``harmonix train --trainer moments --data SITE ... --out RUN``."""

    name = "moments"

    def train(self, request: TrainRequest) -> Path:
        """Measure every domain on the first ``request.iters`` cases of each site (all of them
        when ``iters`` is not given). It has no network, so ``request.backbone`` is only
        recorded in the card; it has no options of its own, so any ``request.options`` key is
        an error naming it."""
        if request.options:
            raise ValueError(f"unknown options {sorted(request.options)} for the moments "
                             "trainer; it has none")
        spacing, size = request.spacing or 1.0, request.size or 176
        depth = request.depth or math.ceil(155 / spacing)
        config = PreprocessConfig(spacing=spacing, crop_shape=(size, size, depth))
        voxels: dict[str, list[np.ndarray]] = {}
        for folder in request.data:
            site = read_site(folder)
            for case in site.cases[:request.iters]:
                prepared = preprocess_case(case, config)
                for sequence, volume in prepared.volumes.items():
                    domain = f"{site.center}/{sequence}"
                    voxels.setdefault(domain, []).append(volume[prepared.brain_mask])
        moments = {d: [float(np.concatenate(v).mean()), float(np.concatenate(v).std())]
                   for d, v in voxels.items()}
        card = {"trainer": self.name, "domains": sorted(moments), "image_size": size,
                "preprocessing": config.to_dict(), "moments": moments,
                "request": {"iters": request.iters, "backbone": request.backbone}}
        write_card(request.out / CARD_FILE, card, "generator")  # checked, then written
        return request.out

    def load_generator(self, path: Path, device: str = "cpu") -> MomentsGenerator:
        return MomentsGenerator(read_card(path, "generator"))
