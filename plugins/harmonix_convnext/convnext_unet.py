"""ConvNeXt-Unet: a U-Net whose encoder stages are timm ConvNeXt stages, with an AdaIN decoder.

Layout for the ``fast`` preset at 176x176 (``paper`` has ConvNeXt-T's widths 96-768)::

    stem conv 3x3          176x176  32  --skip-------------------------------+
    ConvNeXt stage (/2)     88x88   32  --skip---------------------------+   |
    ConvNeXt stage (/4)     44x44   64  --skip-----------------------+   |   |
    ConvNeXt stage (/8)     22x22  128  --skip-------------------+   |   |   |
    ConvNeXt stage (/16)    11x11  256  (bottleneck)             |   |   |   |
    decoder: transposed conv x2, concat skip, 1x1 fuse, AdaIN ConvNeXt blocks, ... -> conv 1x1

The encoder is timm's ``ConvNeXtStage`` (LayerNorm + 2x2 stride-2 conv, then ConvNeXt blocks).
Decoder blocks are ConvNeXt blocks whose LayerNorm is replaced by AdaIN, which is where the style
code enters. The input is expected in [-1, 1]; the output is unbounded (the caller scales it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import LayerNorm, LayerNorm2d
from timm.models.convnext import ConvNeXtStage
from torch import nn

from harmonix.sdk import DEFAULT_PRESET, AdaIN, Backbone, downsample_factor, from_preset

#: Named configurations; explicit options override the chosen preset.
PRESETS: dict[str, dict[str, Any]] = {
    # ConvNeXt-T's encoder (widths 96-768, depths 3-3-9-3): ~32 M parameters, near the paper's
    # Swin-T sized Swin-Unet
    "paper": dict(dims=(96, 192, 384, 768), depths=(3, 3, 9, 3), decoder_depth=1),
    "fast": dict(dims=(32, 64, 128, 256), depths=(1, 1, 2, 2), decoder_depth=1),
    "small": dict(dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), decoder_depth=1),
    "tiny": dict(dims=(8, 16), depths=(1, 1), decoder_depth=1),
}


class AdaINConvNeXtBlock(nn.Module):
    """A ConvNeXt block (7x7 depthwise conv, inverted MLP, residual) normalised by AdaIN."""

    def __init__(self, dim: int, style_dim: int, mlp_ratio: int = 4):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = AdaIN(style_dim, dim)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, mlp_ratio * dim, 1), nn.GELU(), nn.Conv2d(mlp_ratio * dim, dim, 1)
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(self.conv_dw(x), style))


class UpStage(nn.Module):
    """Upsample x2 (transposed conv), concatenate the skip, fuse (1x1), AdaIN ConvNeXt blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, style_dim: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_dim, dim, kernel_size=2, stride=2)
        self.fuse = nn.Conv2d(2 * dim, dim, kernel_size=1)
        self.blocks = nn.ModuleList(AdaINConvNeXtBlock(dim, style_dim) for _ in range(depth))

    def forward(self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat([self.up(x), skip], dim=1))
        for block in self.blocks:
            x = block(x, style)
        return x


class ConvNeXtUnet(Backbone):
    """ConvNeXt-Unet generator backbone: ``forward(x, style)`` with ``x`` in [-1, 1].

    ``len(dims)`` ConvNeXt stages each halve the size, so heights and widths must be multiples
    of ``2 ** len(dims)``; stage ``i`` has ``dims[i]`` channels and ``depths[i]`` blocks, and the
    full-resolution stem has ``dims[0]``. Each decoder level has ``decoder_depth`` AdaIN blocks.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        style_dim: int = 64,
        img_size: int = 176,
        *,
        dims: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 1, 2, 2),
        decoder_depth: int = 1,
    ):
        super().__init__(in_channels, out_channels, style_dim)
        if len(dims) != len(depths):
            raise ValueError(f"dims {tuple(dims)} and depths {tuple(depths)} differ in length")
        self.size_multiple = downsample_factor(len(dims))
        if img_size % self.size_multiple:
            raise ValueError(
                f"img_size {img_size} is not a multiple of {self.size_multiple} "
                f"({len(dims)} downsamplings)"
            )
        skip_dims = [dims[0], *dims[:-1]]  # stem, then every stage but the bottleneck
        self.stem = nn.Conv2d(in_channels, dims[0], kernel_size=3, padding=1)
        self.encoder = nn.ModuleList(
            ConvNeXtStage(
                in_chs=skip_dims[i],
                out_chs=dims[i],
                stride=2,
                depth=depths[i],
                norm_layer=LayerNorm2d,
                norm_layer_cl=LayerNorm,
            )
            for i in range(len(dims))
        )
        self.decoder = nn.ModuleList(
            UpStage(dims[i], skip_dims[i], decoder_depth, style_dim)
            for i in reversed(range(len(dims)))
        )
        self.head = nn.Conv2d(dims[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        self.check_size(x)
        x = self.stem(x)
        skips = [x]
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip, style)
        return self.head(x)


def build_convnext_unet(
    *,
    in_channels: int = 1,
    out_channels: int = 1,
    style_dim: int = 64,
    img_size: int = 176,
    preset: str = DEFAULT_PRESET,
    **options: Any,
) -> ConvNeXtUnet:
    """The ``convnext`` factory: a preset (paper, fast, small, tiny) with ``options`` over it."""
    return from_preset("convnext", ConvNeXtUnet, PRESETS, preset, options,
                       in_channels, out_channels, style_dim, img_size)
