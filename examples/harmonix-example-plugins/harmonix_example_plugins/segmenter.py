"""The smallest segmenter that learns: each brain voxel takes the label whose mean intensities
(over the training cases, one value per input sequence) are nearest to its own."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harmonix.sdk import CARD_FILE, Segmenter, atomic_write_json

LABELS = (0, 1, 2, 4)  # background (brain), NCR, ED, ET: harmonix's canonical values
CENTROIDS_FILE = "centroids.json"


class CentroidSegmenter(Segmenter):
    """Nearest class centroid of each voxel's intensities (one per input sequence)."""

    name = "centroid"

    def __init__(self, sequences: Sequence[str], *, device: str = "cpu", **options: Any):
        super().__init__(sequences, device=device, **options)  # unknown options: ValueError
        self.centroids: dict[int, list[float]] = {}

    def fit(self, cases, out_dir, *, iters=1, batch_size=None, lr=None, seed=0, resume=False,
            preprocess=None, checkpoint_every=1, progress=True) -> None:
        out_dir = Path(out_dir)
        if (out_dir / CARD_FILE).exists() and not resume:
            raise ValueError(f"{out_dir} already holds a segmenter; resume it or choose another")
        sums, counts = np.zeros((len(LABELS), len(self.sequences))), np.zeros(len(LABELS))
        for case in cases:  # complete, labelled PreparedCases
            inside = case.brain_mask
            voxels = np.stack([case.volumes[s][inside] for s in self.sequences], axis=1)
            labels = case.label[inside]
            for i, label in enumerate(LABELS):
                sums[i] += voxels[labels == label].sum(axis=0)
                counts[i] += (labels == label).sum()
        self.centroids = {label: (sums[i] / counts[i]).tolist()
                          for i, label in enumerate(LABELS) if counts[i]}
        atomic_write_json(out_dir / CENTROIDS_FILE, self.centroids)
        self.write_card(out_dir, preprocess, iteration=1)  # model_card.json, checked

    def predict(self, volumes: Mapping[str, np.ndarray]) -> np.ndarray:
        image = np.stack([np.asarray(volumes[s], np.float32) for s in self.sequences], axis=-1)
        labels = np.array(list(self.centroids), np.uint8)
        centroids = np.array(list(self.centroids.values()), np.float32)
        distance = ((image[..., None, :] - centroids) ** 2).sum(axis=-1)
        prediction = labels[distance.argmin(axis=-1)]
        prediction[image.max(axis=-1) <= 0] = 0  # outside the brain
        return prediction

    @classmethod
    def load(cls, path, device: str = "cpu") -> CentroidSegmenter:
        card = cls.read_card(path)
        segmenter = cls(card["sequences"], device=device)
        stored = json.loads((Path(path) / CENTROIDS_FILE).read_text())
        segmenter.centroids = {int(label): values for label, values in stored.items()}
        segmenter.card = card
        return segmenter
