"""The trained UMMGAT generator: EMA copies of E, M and G behind :class:`harmonix.Generator`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harmonix.sdk import (
    CheckpointError,
    Generator,
    load_tensors,
    read_card,
    resolve_checkpoint,
)
from harmonix_ummgat.networks import ModelConfig, Nets, build_nets, to_255, to_unit
from harmonix_ummgat.solver import split_prefix


class UMMGATGenerator(Generator):
    """Any-to-any translation between the training domains with the EMA networks.

    ``translate`` is latent-guided (one latent drawn from ``seed``, shared by every image so that
    the slices of one volume get one style) unless ``reference`` slices give the target style.
    Images whose size is not a multiple of the backbone's are padded with background and cropped
    back.
    """

    def __init__(self, nets: Nets, card: Mapping[str, Any], device: str | torch.device = "cpu"):
        self.nets = nets
        self.card = dict(card)
        self.config = ModelConfig.from_dict(self.card["model"])
        self.domains = list(self.config.domains)
        self.image_size = int(self.config.image_size)
        self.patch_period = int(getattr(nets.G.backbone, "patch_period", 1))
        self.device = torch.device(device)
        for net in nets.named().values():
            net.to(self.device).eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> UMMGATGenerator:
        folder = resolve_checkpoint(path)
        card = read_card(folder)
        if "model" not in card:
            raise CheckpointError(folder / "model_card.json", "has no 'model' section")
        nets = build_nets(ModelConfig.from_dict(card["model"]), discriminator=False, init=False)
        tensors = load_tensors(folder, prefixes=["ema."])
        for name, net in nets.named().items():
            try:
                net.load_state_dict(split_prefix(tensors, f"ema.{name}."))
            except RuntimeError as exc:
                raise CheckpointError(folder / "model.safetensors",
                                      f"weights do not fit the model card: {exc}") from None
        return cls(nets, card, device)

    # -- helpers ---------------------------------------------------------------------------
    def domain_index(self, domain: str) -> int:
        if domain not in self.domains:
            raise ValueError(f"unknown domain '{domain}'; this model knows {self.domains}")
        return self.domains.index(domain)

    def _prepare(self, images: torch.Tensor, what: str = "images") -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"{what} must be (B, 1, H, W), got {tuple(images.shape)}")
        return to_unit(images.to(self.device, torch.float32))

    def _heads(self, index: int, batch: int) -> torch.Tensor:
        return torch.full((batch,), index, dtype=torch.long, device=self.device)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        multiple = self.nets.G.size_multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % multiple, (-w) % multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=-1.0)
        return x, (h, w)

    # -- the Generator interface -------------------------------------------------------------
    @torch.no_grad()
    def style_codes(
        self, images: torch.Tensor, domain: str, *, lesion: bool = False
    ) -> torch.Tensor:
        """E's style of ``(B,1,H,W)`` 0..255 slices of ``domain`` (its lesion head: ``lesion``)."""
        x = self._prepare(images)
        head = self.domain_index(domain) + (self.config.num_domains if lesion else 0)
        return self.nets.E(x, self._heads(head, x.shape[0]))

    @torch.no_grad()
    def translate(
        self,
        images: torch.Tensor,
        source: str,
        target: str,
        *,
        reference: torch.Tensor | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        self.domain_index(source)
        target_index = self.domain_index(target)
        x = self._prepare(images)
        batch = x.shape[0]
        if reference is not None:
            styles = self.style_codes(reference, target)
            if styles.shape[0] != batch:  # one style for all: the references' mean
                styles = styles.mean(0, keepdim=True).expand(batch, -1)
        else:
            gen = torch.Generator().manual_seed(seed)
            z = torch.randn(1, self.config.latent_dim, generator=gen).to(self.device)
            z = z.expand(batch, -1)
            styles = self.nets.M(z, self._heads(target_index, batch))
        x, (h, w) = self._pad(x)
        out = self.nets.G(x, styles)[..., :h, :w]
        return to_255(out.float()).to(images.device)
