"""SegResNet: the 3D network of MONAI's BraTS bundle (``brats_mri_segmentation``).

As the bundle: four z-scored input sequences, three sigmoid output channels WT, TC, ET, Dice
loss (``smooth_nr=0, smooth_dr=1e-5, squared_pred=True``), Adam 1e-4 with weight decay 1e-5
and cosine decay, random flips and intensity scale/shift, sliding-window inference with
overlap 0.5 and a 0.5 threshold. Patches are smaller than the bundle's 224x224x144 by default
and centred on tumour half of the time, so that short CPU runs see tumour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceLoss
from monai.networks.nets import SegResNet
from torch import nn

from harmonix_segmenters.base import (
    TorchSegmenter,
    TrainingCase,
    crop,
    random_flips,
    sample_centers,
    scale_shift,
)
from harmonix_segmenters.labels import region_masks, regions_to_labels


@dataclass
class SegResNetOptions:
    """Network and inference options; ``patch`` sides must be multiples of
    ``2 ** (len(blocks_down) - 1)`` and ``init_filters`` a multiple of 8 (group norm)."""

    init_filters: int = 16
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    dropout: float = 0.2
    patch: tuple[int, int, int] = (96, 96, 96)
    tumour_fraction: float = 0.5
    sw_batch_size: int = 2
    overlap: float = 0.5

    def __post_init__(self):
        self.blocks_down, self.blocks_up = tuple(self.blocks_down), tuple(self.blocks_up)
        self.patch = tuple(int(p) for p in self.patch)
        multiple = 2 ** (len(self.blocks_down) - 1)
        if len(self.patch) != 3 or any(p % multiple for p in self.patch):
            raise ValueError(f"patch {self.patch} must be 3 sides, multiples of {multiple}")
        if len(self.blocks_up) != len(self.blocks_down) - 1:
            raise ValueError("blocks_up needs one entry fewer than blocks_down")
        if self.init_filters % 8:
            raise ValueError(f"init_filters must be a multiple of 8, got {self.init_filters}")


class SegResNetSegmenter(TorchSegmenter):
    """MONAI SegResNet on 3D patches, WT/TC/ET sigmoid channels."""

    name = "segresnet"
    Options = SegResNetOptions
    default_lr = 1e-4  # the bundle's
    default_batch_size = 2

    def build_network(self) -> nn.Module:
        o = self.options
        self._dice = DiceLoss(smooth_nr=0, smooth_dr=1e-5, squared_pred=True, sigmoid=True)
        return SegResNet(
            spatial_dims=3, init_filters=o.init_filters, in_channels=len(self.sequences),
            out_channels=3, dropout_prob=o.dropout, blocks_down=o.blocks_down,
            blocks_up=o.blocks_up,
        )

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._dice(output, target)

    def sample(self, data: list[TrainingCase], rng: np.random.Generator, batch_size: int):
        images, targets = [], []
        for case, center in sample_centers(data, rng, batch_size, self.options.tumour_fraction):
            image = crop(case.image, center, self.options.patch)
            target = region_masks(crop(case.label, center, self.options.patch))
            flips = tuple(a + 1 for a in random_flips(rng, 3))
            images.append(scale_shift(np.flip(image, flips), rng))
            targets.append(np.flip(target, flips))
        return np.stack(images).astype(np.float32), np.stack(targets).astype(np.float32)

    def infer(self, image: torch.Tensor) -> np.ndarray:
        o = self.options
        logits = sliding_window_inference(
            image[None], roi_size=o.patch, sw_batch_size=o.sw_batch_size,
            predictor=self.network, overlap=o.overlap,
        )
        wt, tc, et = (torch.sigmoid(logits[0]) > 0.5).cpu().numpy()
        return regions_to_labels(wt, tc, et)
