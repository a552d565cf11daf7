"""A tiny style-conditioned U-Net, registered as the harmonix backbone ``tiny``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmonix.sdk import DEFAULT_PRESET, AdaIN, Backbone, from_preset, hookimpl

#: ``preset="tiny"`` is what harmonix's backbone test suite builds; options override a preset.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"channels": 64}, "fast": {"channels": 32}, "tiny": {"channels": 8}
}


class TinyUnet(Backbone):
    """One downsampling level: conv, strided conv, AdaIN, transposed conv, skip, conv."""

    size_multiple = 2

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, style_dim: int = 64, channels: int = 32
    ):
        super().__init__(in_channels, out_channels, style_dim)
        self.stem = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.down = nn.Conv2d(channels, 2 * channels, kernel_size=4, stride=2, padding=1)
        self.mid = nn.Conv2d(2 * channels, 2 * channels, kernel_size=3, padding=1)
        self.mid_style = AdaIN(style_dim, 2 * channels)
        self.up = nn.ConvTranspose2d(2 * channels, channels, kernel_size=2, stride=2)
        self.up_style = AdaIN(style_dim, channels)
        self.head = nn.Conv2d(2 * channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        self.check_size(x)  # ValueError naming the size unless H and W are even
        skip = F.leaky_relu(self.stem(x), 0.2)
        h = F.leaky_relu(self.mid_style(self.mid(self.down(skip)), style), 0.2)
        h = F.leaky_relu(self.up_style(self.up(h), style), 0.2)
        return self.head(torch.cat([h, skip], dim=1))


def build_tiny_unet(
    *,
    in_channels: int = 1,
    out_channels: int = 1,
    style_dim: int = 64,
    img_size: int = 176,
    preset: str = DEFAULT_PRESET,
    **options: Any,
) -> TinyUnet:
    """The factory harmonix calls: the standard arguments, a preset, and free options."""
    return from_preset("tiny", TinyUnet, PRESETS, preset, options,
                       in_channels, out_channels, style_dim)


@hookimpl
def register_backbones(register):
    register("tiny", build_tiny_unet)
