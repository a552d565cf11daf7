"""A small 2D U-Net (MONAI ``UNet``) on axial slices: the CPU-friendly segmenter.

Input: the four z-scored sequences of one axial slice; output: softmax over background, NCR,
ED, ET; Dice + cross-entropy loss. Slices are padded to a multiple of the network's total
stride. Training slices go through a tumour voxel half of the time; prediction runs the slices
that hold brain, ``batch_size`` at a time, and leaves the others background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from harmonix_segmenters.base import (
    TorchSegmenter,
    TrainingCase,
    pad_to,
    random_flips,
    sample_centers,
    scale_shift,
)
from harmonix_segmenters.labels import classes_to_labels, labels_to_classes


@dataclass
class UNet2DOptions:
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 1
    dropout: float = 0.1
    tumour_fraction: float = 0.5
    batch_size: int = 32  # slices per forward pass at prediction

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 2:
            raise ValueError("channels needs at least two levels")

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.channels) - 1)


def _padded(shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    return tuple(-(-s // multiple) * multiple for s in shape)


class UNet2DSegmenter(TorchSegmenter):
    """MONAI UNet on axial slices, softmax over 0/NCR/ED/ET."""

    name = "unet2d"
    Options = UNet2DOptions
    default_lr = 3e-3  # 300 iterations of 8 slices reach Dice ~0.9 on built-in data at 3 mm
    default_batch_size = 8

    def build_network(self) -> nn.Module:
        o = self.options
        self._loss = DiceCELoss(to_onehot_y=True, softmax=True)
        return UNet(
            spatial_dims=2, in_channels=len(self.sequences), out_channels=4, channels=o.channels,
            strides=(2,) * (len(o.channels) - 1), num_res_units=o.num_res_units,
            dropout=o.dropout,
        )

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss(output, target)

    def sample(self, data: list[TrainingCase], rng: np.random.Generator, batch_size: int):
        size = _padded(data[0].image.shape[1:3], self.options.multiple)
        images, targets = [], []
        for case, (_, _, z) in sample_centers(data, rng, batch_size, self.options.tumour_fraction):
            image = pad_to(case.image[:, :, :, z], size)
            target = pad_to(labels_to_classes(case.label[:, :, z]), size)[None]
            flips = tuple(a + 1 for a in random_flips(rng, 2))
            images.append(scale_shift(np.flip(image, flips), rng))
            targets.append(np.flip(target, flips))
        return np.stack(images).astype(np.float32), np.stack(targets).astype(np.int64)

    def infer(self, image: torch.Tensor) -> np.ndarray:
        _, x, y, z = image.shape
        classes = np.zeros((x, y, z), np.int64)
        ks = torch.nonzero(image.abs().sum(dim=(0, 1, 2)) > 0).flatten().tolist()
        px, py = _padded((x, y), self.options.multiple)
        for start in range(0, len(ks), self.options.batch_size):
            batch = ks[start : start + self.options.batch_size]
            slices = image[:, :, :, batch].permute(3, 0, 1, 2)  # (B, C, X, Y)
            slices = torch.nn.functional.pad(slices, (0, py - y, 0, px - x))
            predicted = self.network(slices).argmax(dim=1)[:, :x, :y]
            classes[:, :, batch] = predicted.permute(1, 2, 0).cpu().numpy()
        return classes_to_labels(classes)
