"""The four interfaces that plugins implement, plus the trainer that produces a Generator.

Image conventions shared by every interface:

* A *domain* is a ``"center/sequence"`` string, e.g. ``"brats/t2"`` or ``"local/t1"``.
* Slices given to a :class:`Generator` are float tensors ``(B, 1, H, W)`` on the preprocessed
  intensity scale 0..255 (see :mod:`harmonix.data.preprocess`); networks inside a generator
  may rescale internally, callers never do.
* Label maps use the canonical BraTS 2019 convention: NCR 1, ED 2, ET 4 (0 background).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


class Backbone(nn.Module, ABC):
    """An image-to-image network conditioned on a style code.

    ``forward(x, style)`` maps ``(B, C_in, H, W)`` and ``(B, style_dim)`` to ``(B, C_out, H, W)``.
    ``H`` and ``W`` must be multiples of :attr:`size_multiple`; implementations raise
    ``ValueError`` naming the size otherwise.

    Plugins register a factory ``factory(*, in_channels=1, out_channels=1, style_dim=64,
    img_size=176, **options) -> Backbone``.
    """

    size_multiple: int = 1

    def __init__(self, in_channels: int = 1, out_channels: int = 1, style_dim: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.style_dim = style_dim

    @abstractmethod
    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor: ...

    def check_size(self, x: torch.Tensor) -> None:
        """Raise a clear error when the spatial size does not fit this backbone."""
        h, w = x.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"{type(self).__name__} needs height and width that are multiples of {m}, "
                f"got {h}x{w}"
            )


class Generator(ABC):
    """A trained any-to-any sequence translator."""

    domains: Sequence[str]
    image_size: int
    card: Mapping[str, Any]

    @abstractmethod
    def translate(
        self,
        images: torch.Tensor,
        source: str,
        target: str,
        *,
        reference: torch.Tensor | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """Translate ``(B,1,H,W)`` slices (0..255) from ``source`` to ``target`` domain.

        Latent-guided (the mapper draws the style from a seeded latent) unless ``reference``
        slices of the target domain are given, in which case the style is encoded from them.
        """

    @abstractmethod
    def style_codes(
        self, images: torch.Tensor, domain: str, *, lesion: bool = False
    ) -> torch.Tensor:
        """Encode ``(B,1,H,W)`` slices (0..255) of ``domain`` into ``(B, style_dim)`` codes."""


class Segmenter(ABC):
    """A brain-tumour segmenter that needs a fixed set of input sequences."""

    sequences: tuple[str, ...]

    @abstractmethod
    def fit(self, cases: Sequence[Any], out_dir: Path, **options: Any) -> None:
        """Train on complete, preprocessed cases and checkpoint into ``out_dir``."""

    @abstractmethod
    def predict(self, volumes: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predict a canonical label map (0, 1 NCR, 2 ED, 4 ET) from preprocessed volumes."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, device: str = "cpu") -> Segmenter:
        """Rebuild a fitted segmenter from its checkpoint directory."""


class Metric(ABC):
    """A named comparison of a prediction with a reference."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    @abstractmethod
    def compute(self, prediction: np.ndarray, reference: np.ndarray) -> float | dict[str, float]:
        """Return one number, or one number per region/channel."""


class Trainer(ABC):
    """Trains a :class:`Generator` and rebuilds one from its checkpoint."""

    name: ClassVar[str]

    @abstractmethod
    def train(self, **options: Any) -> Path:
        """Run (or resume) training; returns the run directory."""

    @abstractmethod
    def load_generator(self, path: Path, device: str = "cpu") -> Generator:
        """Rebuild the EMA generator from a run directory or checkpoint."""
