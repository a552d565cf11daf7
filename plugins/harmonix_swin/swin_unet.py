"""Swin-Unet (Cao et al. 2021) with AdaIN style injection in the decoder, built from timm blocks.

Layout for the ``fast`` preset at 176x176 (patch 4, window 11; ``paper`` has a fourth level,
Swin-T's widths and patches of 2, so that its windows of 11 tile 88, 44, 22 and 11)::

    patch embed 176 -> 44x44 tokens, C
    encoder  44x44 C   --skip--------------------------------+
             22x22 2C  --skip---------------+                |
             11x11 4C  (bottleneck)         |                |
    decoder  expand -> 22x22 2C, fuse skip, AdaIN + Swin blocks
             expand -> 44x44 C,  fuse skip, AdaIN + Swin blocks
    final expand x4 -> 176x176 C, AdaIN, GELU, conv 3x3 -> out_channels
    (with ``full_res_channels``: conv 3x3 of the input joins the final expansion, fused by a
    conv 3x3, before the AdaIN; with ``final_upsample="resize"`` the final expansion is a
    bilinear upsampling and a conv 3x3 instead of the linear patch expanding)

Window attention with shifted windows (W-MSA / SW-MSA) and patch merging are timm's
``SwinTransformerBlock`` / ``SwinTransformerStage``; only the patch expanding layer (which timm
does not have) and the style injection are written here. The input is expected in [-1, 1]; the
output is unbounded (the caller scales it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.swin_transformer import SwinTransformerBlock, SwinTransformerStage
from torch import nn

from harmonix.sdk import DEFAULT_PRESET, AdaIN, Backbone, downsample_factor, from_preset

#: Named configurations; explicit options override the chosen preset.
PRESETS: dict[str, dict[str, Any]] = {
    # paper-scale, Swin-T sized as Cao et al.'s Swin-Unet (width 96, depths 2-2-2-2, heads
    # 3-6-12-24, ~27 M parameters). Four levels at 176 need patches of 2 (patches of 4 would
    # give 44 -> 22 -> 11 -> 5.5 tokens): 88, 44, 22 and 11 tokens, tiled by windows of 11
    "paper": dict(
        patch_size=2,
        embed_dim=96,
        depths=(2, 2, 2, 2),
        num_heads=(3, 6, 12, 24),
        window_size=11,
        mlp_ratio=4.0,
    ),
    # 8x fewer parameters: 176 -> 44x44 tokens, windows of 11 tile 44, 22 and 11 exactly
    "fast": dict(
        patch_size=4,
        embed_dim=64,
        depths=(2, 2, 2),
        num_heads=(2, 4, 8),
        window_size=11,
        mlp_ratio=4.0,
    ),
    # for CPU demos at 64x64: patches of 2 -> 32x32 tokens, windows of 8 tile 32, 16 and 8
    "small": dict(
        patch_size=2,
        embed_dim=32,
        depths=(2, 2, 2),
        num_heads=(1, 2, 4),
        window_size=8,
        mlp_ratio=2.0,
    ),
    # for tests: 32x32 -> 8x8 tokens, one shifted-window block per level
    "tiny": dict(
        patch_size=4,
        embed_dim=16,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        mlp_ratio=2.0,
    ),
}


def _fit_masks(blocks: Sequence[SwinTransformerBlock], height: int, width: int) -> None:
    """Use the blocks' precomputed shift masks at the built size, dynamic masks at any other."""
    for block in blocks:
        dynamic = (height, width) != tuple(block.input_resolution)
        if block.dynamic_mask != dynamic:
            block.dynamic_mask = dynamic


class PatchExpand(nn.Module):
    """Swin-Unet's patch expanding: a linear layer, then each token becomes ``scale x scale``."""

    def __init__(self, in_dim: int, out_dim: int, scale: int = 2, norm: bool = True):
        super().__init__()
        self.scale = scale
        self.out_dim = out_dim
        self.expand = nn.Linear(in_dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, in_dim)`` -> ``(B, scale*H, scale*W, out_dim)``."""
        b, h, w, _ = x.shape
        s = self.scale
        x = self.expand(x).view(b, h, w, s, s, self.out_dim)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, self.out_dim)
        return self.norm(x)


class ResizeExpand(nn.Module):
    """The final expansion as a resize-convolution (Odena et al., "Deconvolution and
    checkerboard artifacts", 2016): bilinear upsampling of the token grid, then a 3x3
    convolution. Unlike :class:`PatchExpand`, every output pixel of a patch is made by the same
    weights, so a smooth token map cannot come out as a block pattern at the patch period."""

    def __init__(self, dim: int, scale: int):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, dim)`` -> ``(B, scale*H, scale*W, dim)``."""
        x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=self.scale, mode="bilinear",
                          align_corners=False)
        return self.conv(x).permute(0, 2, 3, 1)


#: how the decoder's last token grid becomes pixels (``final_upsample``)
FINAL_UPSAMPLES = ("linear", "resize")


class SwinDecoderStage(nn.Module):
    """Expand the coarser tokens, fuse the skip connection, then AdaIN before each Swin block."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        style_dim: int,
    ):
        super().__init__()
        self.expand = PatchExpand(in_dim, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.styles = nn.ModuleList(AdaIN(style_dim, dim) for _ in range(depth))
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim=dim,
                input_resolution=resolution,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat([self.expand(x), skip], dim=-1))
        b, h, w, c = x.shape
        _fit_masks(self.blocks, h, w)
        for adain, block in zip(self.styles, self.blocks, strict=True):
            x = adain.forward_tokens(x.reshape(b, h * w, c), style).reshape(b, h, w, c)
            x = block(x)
        return x


class SwinUnet(Backbone):
    """Swin-Unet generator backbone: ``forward(x, style)`` with ``x`` in [-1, 1].

    ``depths[i]`` Swin blocks at level ``i`` (level ``i`` has ``embed_dim * 2**i`` channels and
    ``1 / (patch_size * 2**i)`` of the image size); the last level is the bottleneck and the
    decoder mirrors the others. Heights and widths must be multiples of
    ``patch_size * 2**(len(depths) - 1)``. Windows larger than a level's token grid shrink to it
    (timm); inputs of another size than ``img_size`` use padded windows with dynamic masks.
    """

    #: Blocks whose layers keep their own init when a trainer applies He init to the rest.
    transformer_blocks = (SwinTransformerBlock,)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        style_dim: int = 64,
        img_size: int = 176,
        *,
        patch_size: int = 4,
        embed_dim: int = 64,
        depths: Sequence[int] = (2, 2, 2),
        num_heads: Sequence[int] = (2, 4, 8),
        window_size: int = 11,
        mlp_ratio: float = 4.0,
        full_res_channels: int = 0,
        final_upsample: str = "linear",
    ):
        super().__init__(in_channels, out_channels, style_dim)
        if final_upsample not in FINAL_UPSAMPLES:
            raise ValueError(f"final_upsample {final_upsample!r}: choose one of "
                             f"{', '.join(FINAL_UPSAMPLES)}")
        if len(num_heads) != len(depths):
            raise ValueError(
                f"num_heads {tuple(num_heads)} needs one entry per level of depths {tuple(depths)}"
            )
        levels = len(depths)
        self.size_multiple = downsample_factor(levels - 1, patch_size)
        self.patch_period = patch_size
        if img_size % self.size_multiple:
            raise ValueError(
                f"img_size {img_size} is not a multiple of {self.size_multiple} "
                f"(patch_size {patch_size}, {levels - 1} patch merges)"
            )
        dims = [embed_dim * 2**i for i in range(levels)]
        grids = [(img_size // (patch_size * 2**i),) * 2 for i in range(levels)]

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_channels,
            embed_dim=embed_dim,
            norm_layer=nn.LayerNorm,
            output_fmt="NHWC",
            strict_img_size=False,
        )
        self.encoder = nn.ModuleList(
            SwinTransformerStage(
                dim=dims[max(i - 1, 0)],
                out_dim=dims[i],
                input_resolution=grids[max(i - 1, 0)],
                depth=depths[i],
                downsample=i > 0,
                num_heads=num_heads[i],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
            )
            for i in range(levels)
        )
        self.decoder = nn.ModuleList(
            SwinDecoderStage(
                in_dim=dims[i + 1],
                dim=dims[i],
                resolution=grids[i],
                depth=depths[i],
                num_heads=num_heads[i],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                style_dim=style_dim,
            )
            for i in reversed(range(levels - 1))
        )
        # linear: Swin-Unet's patch expanding (the paper's); resize: a resize-convolution
        self.final_expand = (PatchExpand(embed_dim, embed_dim, scale=patch_size, norm=False)
                             if final_upsample == "linear" else ResizeExpand(embed_dim, patch_size))
        # full-resolution skip: the patch embedding is otherwise the only path from the pixels,
        # and the linear expansion back to them paints each patch as a block
        self.full_res = None
        if full_res_channels:
            self.full_res = nn.Conv2d(in_channels, full_res_channels, kernel_size=3, padding=1)
            self.full_res_fuse = nn.Conv2d(embed_dim + full_res_channels, embed_dim,
                                           kernel_size=3, padding=1)
        self.final_style = AdaIN(style_dim, embed_dim)
        self.head = nn.Conv2d(embed_dim, out_channels, kernel_size=3, padding=1)
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        self.check_size(x)
        h, w = (n // self.patch_size for n in x.shape[-2:])
        image = x
        x = self.patch_embed(x)
        skips = []
        for level, stage in enumerate(self.encoder):
            _fit_masks(stage.blocks, h >> level, w >> level)
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip, style)
        x = self.final_expand(x).permute(0, 3, 1, 2)
        if self.full_res is not None:
            x = self.full_res_fuse(torch.cat([x, F.gelu(self.full_res(image))], dim=1))
        x = F.gelu(self.final_style(x, style))
        return self.head(x)


def build_swin_unet(
    *,
    in_channels: int = 1,
    out_channels: int = 1,
    style_dim: int = 64,
    img_size: int = 176,
    preset: str = DEFAULT_PRESET,
    **options: Any,
) -> SwinUnet:
    """The ``swin`` factory: a preset (paper, fast, small, tiny) with ``options`` over it."""
    return from_preset("swin", SwinUnet, PRESETS, preset, options,
                       in_channels, out_channels, style_dim, img_size)
