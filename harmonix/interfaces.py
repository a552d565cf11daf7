"""The contracts plugins implement: Backbone, Generator and the Trainer that makes one,
Segmenter, and the three kinds of Metric (segmentation, image, image set). Each says exactly what
harmonix calls; docs/plugins.md shows a minimal plugin for each.

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

from harmonix.cards import CARD_FILE, PREPROCESSING, load_card, write_card
from harmonix.requests import TrainRequest
from harmonix.version import __version__


class Backbone(nn.Module, ABC):
    """An image-to-image network conditioned on a style code.

    ``forward(x, style)`` maps ``(B, C_in, H, W)`` and ``(B, style_dim)`` to ``(B, C_out, H, W)``.
    ``H`` and ``W`` must be multiples of :attr:`size_multiple`; implementations raise
    ``ValueError`` naming the size otherwise.

    Plugins register a factory ``factory(*, in_channels=1, out_channels=1, style_dim=64,
    img_size=176, **options) -> Backbone``.
    """

    size_multiple: int = 1
    #: the period in pixels of the backbone's patch structure (a patch embedding's patch size),
    #: where a grid artifact would show; 1 for backbones without patches
    patch_period: int = 1

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
    #: the backbone's :attr:`Backbone.patch_period` (the evaluation's grid measure)
    patch_period: int = 1

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
    """A brain-tumour segmenter that needs a fixed set of input sequences.

    Registered as the class; harmonix calls exactly this:

    * ``cls(sequences, device=device, **options)`` (``harmonix segment train --option K=V``
      gives ``options``; unknown options raise ``ValueError``);
    * :meth:`fit`, then :meth:`load` on the folder ``fit`` wrote, then :meth:`predict`;
    * the attributes :attr:`name`, :attr:`sequences` and :attr:`card`.

    ``fit`` must leave ``out_dir/model_card.json`` (:data:`harmonix.cards.CARD_FILE`), a
    segmenter card of :mod:`harmonix.cards`'s schema: ``"segmenter"`` (the registered name, which
    tells :func:`~harmonix.segmentation.load_segmenter` which plugin rebuilds it),
    ``"sequences"`` and ``"preprocessing"`` (the ``PreprocessConfig`` given to ``fit``, so that
    prediction and evaluation preprocess new cases alike). :meth:`write_card` writes one.
    ``harmonix segment train`` then adds the training record under ``"training"``.
    """

    name: ClassVar[str]  # the registered name, recorded as the card's "segmenter"
    sequences: tuple[str, ...]
    card: dict[str, Any]  # the model card; {} before fit or load

    def __init__(self, sequences: Sequence[str], *, device: str = "cpu", **options: Any):
        if options:
            raise ValueError(f"{type(self).__name__}: unknown options {sorted(options)}")
        self.sequences = tuple(sequences)
        if not self.sequences:
            raise ValueError("a segmenter needs at least one input sequence")
        self.device = device
        self.card = {}

    @abstractmethod
    def fit(
        self,
        cases: Sequence[Any],
        out_dir: Path,
        *,
        iters: int = 2000,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        resume: bool = False,
        preprocess: Any = None,
        checkpoint_every: int = 200,
        progress: bool = True,
    ) -> None:
        """Train on complete, labelled ``PreparedCase``\\ s (``case_id``, ``volumes`` per
        sequence on the 0..255 scale, ``brain_mask``, canonical ``label``) and write the model
        and its card into ``out_dir``. Every keyword is passed; a segmenter ignores those that do
        not apply to it. Without ``resume`` an existing checkpoint in ``out_dir`` is an error."""

    @abstractmethod
    def predict(self, volumes: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predict a canonical label map (0, 1 NCR, 2 ED, 4 ET) from preprocessed volumes
        (one per :attr:`sequences`, one shape, the grid of the card's preprocessing)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, device: str = "cpu") -> Segmenter:
        """Rebuild a fitted segmenter from the folder ``fit`` wrote, with :attr:`card` set."""

    def write_card(self, out_dir: Path, preprocess: Any = None, **fields: Any) -> dict[str, Any]:
        """Write ``out_dir/model_card.json`` (checked against the schema) and keep it as
        :attr:`card`: the name, sequences and ``preprocess`` (a ``PreprocessConfig`` or dict),
        plus ``fields`` (e.g. ``options``, ``iteration``)."""
        if preprocess is not None and hasattr(preprocess, "to_dict"):
            preprocess = preprocess.to_dict()
        card = {"segmenter": self.name, "sequences": list(self.sequences),
                PREPROCESSING: None if preprocess is None else dict(preprocess), **fields}
        written = write_card(Path(out_dir) / CARD_FILE, {**card, "harmonix_version": __version__},
                             "segmenter")
        self.card = {k: v for k, v in written.items() if k != "harmonix_version"}
        return self.card

    @staticmethod
    def read_card(path: Path) -> dict[str, Any]:
        """The checked segmenter card of a folder ``fit`` wrote (for :meth:`load`)."""
        return load_card(Path(path) / CARD_FILE, "segmenter")


Spacing = float | Sequence[float]  # voxel size in mm: one number, or one per axis


class Metric(ABC):
    """What every metric has. A metric plugin subclasses one of the three kinds below, which
    say what ``harmonix evaluate`` gives it; the registered class is constructed with no
    arguments. ``harmonix evaluate`` runs every registered metric whose :attr:`by_default` is
    true, or the ones named with ``--metric``; each value is one row of ``results.csv`` with
    ``metric`` = :attr:`name`."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    by_default: ClassVar[bool] = True  # False: only when asked for by name (e.g. slow ones)


class SegmentationMetric(Metric):
    """One case: a predicted canonical label map against the truth, one value per region.

    Evaluation gives it every (case, scenario, strategy) prediction; the regions are the
    registry's (WT, TC, ET). Cross-center scores only WT.
    """

    @abstractmethod
    def compute(
        self, prediction: np.ndarray, truth: np.ndarray, *, spacing: Spacing = 1.0
    ) -> dict[str, float]:
        """``{region: value}`` of two label maps of one shape on a grid of ``spacing`` mm."""


class ImageMetric(Metric):
    """One volume: a generated sequence against the real one of the same case."""

    @abstractmethod
    def compute(
        self, prediction: np.ndarray, reference: np.ndarray, *, mask: np.ndarray | None = None
    ) -> float:
        """One value for two images of one shape (0..255 scale), inside ``mask`` if given
        (evaluation gives the brain mask)."""


class ImageSetMetric(Metric):
    """Two sets of slices, one value (e.g. FID): evaluation computes :meth:`features` once per
    set and :meth:`distance` for every comparison (the design of :mod:`harmonix.evaluation.fid`)."""

    @abstractmethod
    def features(self, slices: np.ndarray) -> np.ndarray:
        """One row per slice, ``(N, ...)``, of ``(N, H, W)`` 0..255 grey slices (evaluation
        concatenates the rows of two sets to compare a third with their union)."""

    @abstractmethod
    def distance(self, features_a: np.ndarray, features_b: np.ndarray) -> float:
        """The value between two sets, from their :meth:`features`."""

    def compute(self, slices_a: np.ndarray, slices_b: np.ndarray) -> float:
        """The value between two sets of slices."""
        return self.distance(self.features(slices_a), self.features(slices_b))


METRIC_KINDS: dict[str, type[Metric]] = {
    "segmentation": SegmentationMetric, "image": ImageMetric, "image-set": ImageSetMetric,
}


class Trainer(ABC):
    """Trains a :class:`Generator` and rebuilds one from its checkpoint.

    Registered as the class and built with no arguments. ``harmonix train`` builds one
    :class:`~harmonix.requests.TrainRequest` from its options and calls :meth:`train` with it:
    every trainer receives ``data``, ``out``, ``backbone``, ``preset``, ``iters``,
    ``batch_size``, ... as typed fields, and its own options (``--trainer-option KEY=VALUE``) in
    ``request.options``, which it checks (an unknown key is a ``ValueError`` naming it). The run
    folder (or its ``checkpoints/iter_N/``) must hold a generator ``model_card.json`` of
    :mod:`harmonix.cards`'s schema whose ``"trainer"`` is :attr:`name`:
    :func:`harmonix.models.checkpoints.load_generator` reads it and calls :meth:`load_generator`
    of that trainer. Its ``"image_size"`` and ``"preprocessing"`` tell harmonize and evaluate
    how to preprocess cases for the generator.
    """

    name: ClassVar[str]  # the registered name, recorded as the card's "trainer"

    @abstractmethod
    def train(self, request: TrainRequest) -> Path:
        """Run (or with ``request.resume`` continue) training; returns the run directory."""

    @abstractmethod
    def load_generator(self, path: Path, device: str = "cpu") -> Generator:
        """Rebuild the (EMA) generator from a run directory or checkpoint folder."""
