"""UMMGAT networks in StarGAN-v2 style: style encoder E, mapper M, generator G, discriminator D.

* ``StyleEncoder`` (E): a shared convolutional trunk and one linear head per domain plus one per
  *lesion domain* (the lesion-aware module, LAM: the lesion region of domain ``k`` is head
  ``k + N``).
* ``MappingNetwork`` (M): a latent ``z`` to a style code, shared MLP and one head per domain.
* ``StyleGenerator`` (G): a :class:`harmonix.sdk.Backbone` plugin conditioned on the style code
  (AdaIN inside the backbone). It works in [-1, 1]; :func:`to_unit` / :func:`to_255` convert at
  the :class:`harmonix.sdk.Generator` boundary only.
* ``Discriminator`` (D): the same kind of trunk, one real/fake logit per domain.

E and D follow StarGAN-v2's ``ResBlk`` trunk (its widths in the ``paper`` preset, narrower in the
others) with an adaptive pool before the final 4x4 convolution, so that any image size works
(176 = 11 x 16 is not a power of two).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmonix.sdk import (
    UNNAMED_CARD_PRESET,
    Backbone,
    get_backbone,
    he_init,
    resolve_presets,
    split_domain,
)

LESION_PREFIX = "lesion:"


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """0..255 slices to the networks' [-1, 1]."""
    return images / 127.5 - 1.0


def to_255(images: torch.Tensor) -> torch.Tensor:
    """The networks' [-1, 1] back to 0..255 (clamped)."""
    return ((images + 1.0) * 127.5).clamp(0.0, 255.0)


def mask_image(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep ``images`` ([-1, 1]) inside ``mask`` (0/1) and set the rest to background (-1)."""
    return images * mask - (1.0 - mask)


def stargan_width(image_size: int) -> int:
    """StarGAN-v2's first width of E and D: ``2**14 // size``, capped at 512 (93 at 176)."""
    return min(2**14 // image_size, 512)


#: Whole-model presets: E's and D's first and largest widths, M's width and G's backbone preset.
#: ``paper`` is StarGAN-v2's E/M/D and a Swin-T sized Swin-Unet; ``fast`` is 8x cheaper.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(encoder_dim=None, encoder_max_dim=512, mapper_dim=512),  # None: stargan_width
    "fast": dict(encoder_dim=32, encoder_max_dim=256, mapper_dim=256),
    "small": dict(encoder_dim=16, encoder_max_dim=128, mapper_dim=128),
    "tiny": dict(encoder_dim=8, encoder_max_dim=16, mapper_dim=16),
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the networks (stored in the model card as ``"model"``).

    ``preset`` fills the widths left ``None`` and, unless ``backbone_options`` name one, the
    backbone's preset. Without a ``preset``, a model preset named by ``backbone_options`` (say
    ``tiny``) is the whole model's, else ``paper``. The card stores the resolved values, so a
    later change of a preset does not change a trained model.
    """

    domains: tuple[str, ...]
    image_size: int = 176
    preset: str | None = None
    style_dim: int = 64
    latent_dim: int = 16
    backbone: str = "swin"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    encoder_dim: int | None = None  # first width of E's and D's trunks
    encoder_max_dim: int | None = None
    mapper_dim: int | None = None
    lesion_discriminator: bool = True  # D has a head per lesion domain (LAM's les_adv)

    def __post_init__(self) -> None:
        self.domains = tuple(self.domains)
        if len(self.domains) < 2:
            raise ValueError(f"UMMGAT needs at least 2 domains, got {list(self.domains)}")
        if len(set(self.domains)) != len(self.domains):
            raise ValueError(f"duplicate domains in {list(self.domains)}")
        for domain in self.domains:
            split_domain(domain)
        self.preset, self.backbone_options = resolve_presets(self.preset, self.backbone_options)
        for key, value in MODEL_PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, stargan_width(self.image_size) if value is None else value)

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    @property
    def lesion_domains(self) -> tuple[str, ...]:
        """Names of E's lesion heads: lesion domain ``k + N`` is ``"lesion:" + domains[k]``."""
        return tuple(LESION_PREFIX + d for d in self.domains)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["domains"] = list(self.domains)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Cards written before presets existed store the widths; their backbone preset (or
        none: the old ``default``) names the model's."""
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("lesion_discriminator", False)  # cards from before LAM's D branches
        if values.get("preset") is None:
            values["preset"], values["backbone_options"] = resolve_presets(
                None, values.get("backbone_options") or {}, default=UNNAMED_CARD_PRESET)
        return cls(**values)


class ResBlk(nn.Module):
    """StarGAN-v2's pre-activation residual block with optional 2x average-pool downsampling."""

    def __init__(self, dim_in: int, dim_out: int, downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        h = self.conv1(F.leaky_relu(x, 0.2))
        if self.downsample:
            skip = F.avg_pool2d(skip, 2)
            h = F.avg_pool2d(h, 2)
        h = self.conv2(F.leaky_relu(h, 0.2))
        return (skip + h) / math.sqrt(2)


def num_downsamplings(image_size: int) -> int:
    """StarGAN-v2's ``log2(size) - 2`` halvings (so that about 4x4 pixels remain)."""
    return max(1, int(math.log2(image_size)) - 2)


class ConvTrunk(nn.Module):
    """The shared trunk of E and D: ``(B, 1, H, W)`` -> ``(B, C)`` features."""

    def __init__(self, image_size: int, dim: int, max_dim: int):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(1, dim, 3, 1, 1)]
        for _ in range(num_downsamplings(image_size)):
            dim_out = min(dim * 2, max_dim)
            blocks.append(ResBlk(dim, dim_out, downsample=True))
            dim = dim_out
        blocks += [
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(4),  # identity at powers of two, as in StarGAN-v2
            nn.Conv2d(dim, dim, 4, 1, 0),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        ]
        self.main = nn.Sequential(*blocks)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _select(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``outputs[b, y[b]]`` for ``outputs`` of shape ``(B, heads, ...)``."""
    return outputs[torch.arange(outputs.shape[0], device=outputs.device), y]


class StyleEncoder(nn.Module):
    """E: ``(x, y) -> (B, style_dim)``; ``y`` in ``0..2N-1`` (``k + N`` is domain k's lesion)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_domains = config.num_domains
        self.style_dim = config.style_dim
        self.trunk = ConvTrunk(config.image_size, config.encoder_dim, config.encoder_max_dim)
        # one linear head per (lesion) domain, stored as one layer: head k is rows k*S..(k+1)*S
        self.heads = nn.Linear(self.trunk.out_dim, 2 * self.num_domains * self.style_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        styles = self.heads(self.trunk(x)).view(x.shape[0], 2 * self.num_domains, self.style_dim)
        return _select(styles, y)


class MappingNetwork(nn.Module):
    """M: ``(z, y) -> (B, style_dim)``: a shared MLP and one MLP head per domain (StarGAN-v2)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.mapper_dim
        shared: list[nn.Module] = [nn.Linear(config.latent_dim, dim), nn.ReLU()]
        for _ in range(3):
            shared += [nn.Linear(dim, dim), nn.ReLU()]
        self.shared = nn.Sequential(*shared)
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, dim), nn.ReLU(),
                nn.Linear(dim, dim), nn.ReLU(),
                nn.Linear(dim, dim), nn.ReLU(),
                nn.Linear(dim, config.style_dim),
            )
            for _ in range(config.num_domains)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        styles = torch.stack([head(h) for head in self.heads], dim=1)
        return _select(styles, y)


class Discriminator(nn.Module):
    """D: ``(x, y) -> (B,)`` real/fake logits, one output branch per domain; with
    ``lesion_discriminator``, also one per lesion domain ``k + N`` (LAM)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.trunk = ConvTrunk(config.image_size, config.encoder_dim, config.encoder_max_dim)
        heads = config.num_domains * (2 if config.lesion_discriminator else 1)
        self.heads = nn.Linear(self.trunk.out_dim, heads)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _select(self.heads(self.trunk(x)), y)


class StyleGenerator(nn.Module):
    """G: a backbone plugin with style injection; ``(x in [-1, 1], style) -> [-1, 1]``."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.backbone, "size_multiple", 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.backbone(x, style)


@dataclass
class Nets:
    """The networks of one model. ``D`` is ``None`` for the EMA copy and for inference."""

    E: nn.Module
    M: nn.Module
    G: nn.Module
    D: nn.Module | None = None

    def named(self) -> dict[str, nn.Module]:
        return {k: v for k, v in vars(self).items() if v is not None}


def build_backbone(config: ModelConfig) -> Backbone:
    """G's backbone: the backbone plugin ``config.backbone``, reached through the registry."""
    factory = get_backbone(config.backbone)
    return factory(
        in_channels=1,
        out_channels=1,
        style_dim=config.style_dim,
        img_size=config.image_size,
        **config.backbone_options,
    )


def init_weights(net: nn.Module) -> None:
    """He init with zero biases for every conv and linear layer (StarGAN-v2, the paper), except
    inside a backbone's ``transformer_blocks`` (Swin's attention and MLP), which keep PyTorch's
    default init: He init there made the 200-iteration learning test fail (see
    docs/architecture.md)."""
    exempt: tuple[type, ...] = ()
    for module in net.modules():
        exempt += tuple(getattr(module, "transformer_blocks", ()))
    inside = {id(m) for block in net.modules() if exempt and isinstance(block, exempt)
              for m in block.modules()}
    for module in net.modules():
        if id(module) not in inside:
            he_init(module)


def build_nets(config: ModelConfig, *, discriminator: bool = True, init: bool = True) -> Nets:
    """Build E, M, G (and D) for ``config``; ``init``: He init with zero biases for all (paper)."""
    nets = Nets(
        E=StyleEncoder(config),
        M=MappingNetwork(config),
        G=StyleGenerator(build_backbone(config)),
        D=Discriminator(config) if discriminator else None,
    )
    if init:
        for net in nets.named().values():
            init_weights(net)
    return nets
