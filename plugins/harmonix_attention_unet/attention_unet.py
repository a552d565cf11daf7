"""Attention U-Net (Oktay et al. 2018) with AdaIN style injection in the decoder.

Layout for the ``fast`` preset at 176x176 (``paper``: five levels, 64 to 768 channels)::

    res block          176x176  32  --skip (gated)----------------------+
    res block, /2       88x88   64  --skip (gated)------------------+   |
    res block, /4       44x44  128  --skip (gated)--------------+   |   |
    res block, /8       22x22  256  (bottleneck)                |   |   |
    decoder: transposed conv x2 = gating signal g; skip * gate(g, skip); concat; 2x (conv 3x3,
             AdaIN, LeakyReLU) ... -> conv 1x1

Encoder blocks are MONAI's ``UnetResBlock`` (instance norm). The additive attention gate is
written here rather than taken from ``monai.networks.nets.attentionunet.AttentionBlock``, which
hard-codes BatchNorm: batch statistics would couple the samples of a GAN batch and make the
generator behave differently in eval mode. The input is expected in [-1, 1]; the output is
unbounded (the caller scales it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from torch import nn

from harmonix.sdk import DEFAULT_PRESET, AdaIN, Backbone, downsample_factor, from_preset

#: Named configurations; explicit options override the chosen preset.
PRESETS: dict[str, dict[str, Any]] = {
    # ~26 M parameters, as the paper's Swin-T sized Swin-Unet; 176 = 11 x 2**4
    "paper": dict(channels=(64, 128, 256, 512, 768)),
    "fast": dict(channels=(32, 64, 128, 256)),
    "small": dict(channels=(16, 32, 64, 128)),
    "tiny": dict(channels=(8, 16, 32)),
}

_NORM = ("instance", {"affine": True})
_ACT = ("leakyrelu", {"negative_slope": 0.2, "inplace": False})


class AttentionGate(nn.Module):
    """Additive attention gate: ``skip * sigmoid(psi(relu(W_g g + W_x skip)))`` per pixel."""

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int):
        super().__init__()
        self.w_g = nn.Conv2d(gate_channels, inter_channels, kernel_size=1)
        self.w_x = nn.Conv2d(skip_channels, inter_channels, kernel_size=1, bias=False)
        self.psi = nn.Conv2d(inter_channels, 1, kernel_size=1)

    def forward(self, g: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        attention = torch.sigmoid(self.psi(F.relu(self.w_g(g) + self.w_x(skip))))
        return skip * attention


class AdaINConvBlock(nn.Module):
    """Two (conv 3x3 -> AdaIN -> LeakyReLU) layers; the style enters through both AdaINs."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm1 = AdaIN(style_dim, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = AdaIN(style_dim, out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm1(self.conv1(x), style), 0.2)
        return F.leaky_relu(self.norm2(self.conv2(x), style), 0.2)


class UpStage(nn.Module):
    """Upsample x2 into the gating signal, gate the skip with it, concatenate, AdaIN conv block."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.gate = AttentionGate(out_channels, out_channels, max(out_channels // 2, 1))
        self.block = AdaINConvBlock(2 * out_channels, out_channels, style_dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        g = self.up(x)
        return self.block(torch.cat([self.gate(g, skip), g], dim=1), style)


class AttentionUnet(Backbone):
    """Attention-gated U-Net generator backbone: ``forward(x, style)`` with ``x`` in [-1, 1].

    Level ``i`` has ``channels[i]`` channels at ``1 / 2**i`` of the image size; the last level is
    the bottleneck. Heights and widths must be multiples of ``2 ** (len(channels) - 1)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        style_dim: int = 64,
        img_size: int = 176,
        *,
        channels: Sequence[int] = (32, 64, 128, 256),
    ):
        super().__init__(in_channels, out_channels, style_dim)
        self.size_multiple = downsample_factor(len(channels) - 1)
        if img_size % self.size_multiple:
            raise ValueError(
                f"img_size {img_size} is not a multiple of {self.size_multiple} "
                f"({len(channels) - 1} downsamplings)"
            )
        ins = [in_channels, *channels[:-1]]
        self.encoder = nn.ModuleList(
            UnetResBlock(
                2,
                ins[i],
                channels[i],
                kernel_size=3,
                stride=1 if i == 0 else 2,
                norm_name=_NORM,
                act_name=_ACT,
            )
            for i in range(len(channels))
        )
        self.decoder = nn.ModuleList(
            UpStage(channels[i + 1], channels[i], style_dim)
            for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv2d(channels[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        self.check_size(x)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip, style)
        return self.head(x)


def build_attention_unet(
    *,
    in_channels: int = 1,
    out_channels: int = 1,
    style_dim: int = 64,
    img_size: int = 176,
    preset: str = DEFAULT_PRESET,
    **options: Any,
) -> AttentionUnet:
    """The ``attention-unet`` factory: a preset (paper, fast, small, tiny) under ``options``."""
    return from_preset("attention-unet", AttentionUnet, PRESETS, preset, options,
                       in_channels, out_channels, style_dim, img_size)
