"""Small building blocks shared by backbones and the UMMGAT networks."""

from __future__ import annotations

import math

import torch
from torch import nn


class AdaIN(nn.Module):
    """Adaptive instance normalisation: ``(1 + gamma(s)) * IN(x) + beta(s)``, as in StarGAN-v2.

    Works on ``(B, C, H, W)`` feature maps; :meth:`forward_tokens` handles ``(B, L, C)`` tokens.
    """

    def __init__(self, style_dim: int, num_features: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def _gamma_beta(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gamma, beta = self.fc(style).chunk(2, dim=1)
        return gamma, beta

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self._gamma_beta(style)
        return (1 + gamma[:, :, None, None]) * self.norm(x) + beta[:, :, None, None]

    def forward_tokens(self, tokens: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``(B, L, C)`` tokens, normalised over ``L`` per channel."""
        mean = tokens.mean(dim=1, keepdim=True)
        std = tokens.var(dim=1, keepdim=True, unbiased=False).add(1e-5).sqrt()
        gamma, beta = self._gamma_beta(style)
        return (1 + gamma[:, None, :]) * (tokens - mean) / std + beta[:, None, :]


def he_init(module: nn.Module) -> None:
    """He (Kaiming normal) init for conv and linear weights, zero biases (StarGAN-v2's recipe).

    Use as ``model.apply(he_init)``.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def downsample_factor(levels: int, patch: int = 1) -> int:
    """The size multiple needed for ``levels`` halvings after a ``patch``-sized stem."""
    return patch * int(math.pow(2, levels))
