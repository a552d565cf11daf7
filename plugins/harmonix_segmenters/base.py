"""What both segmenters share: input normalisation, the training loop, checkpoints and resume.

A checkpoint directory holds

* ``model.safetensors``: the network weights;
* ``model_card.json``: ``{"segmenter", "sequences", "options", "preprocessing", "iteration", ...}``,
  enough to rebuild the network (:meth:`TorchSegmenter.load`) and preprocess new cases alike;
* ``training_state.pt``: the optimizer state for ``resume`` (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from monai.transforms import NormalizeIntensity
from safetensors.torch import load_file
from torch import nn

from harmonix.sdk import (
    CARD_FILE,
    CheckpointError,
    Segmenter,
    __version__,
    atomic_write_with,
    progress_task,
    read_card,
    save_weights,
    write_card,
)

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "training_state.pt"
DEFAULT_SEQUENCES = ("t1", "t1ce", "t2", "flair")

_normalize = NormalizeIntensity(nonzero=True, channel_wise=True)


def stack_inputs(volumes: Mapping[str, np.ndarray], sequences: Sequence[str]) -> np.ndarray:
    """``(C, X, Y, Z)`` float32 network input: the sequences in order, each z-scored over its
    non-zero (brain) voxels, background 0 (MONAI's BraTS bundle normalisation)."""
    missing = [s for s in sequences if s not in volumes]
    if missing:
        raise ValueError(
            f"the segmenter needs {', '.join(sequences)}; missing {', '.join(missing)}"
        )
    shapes = {np.shape(volumes[s]) for s in sequences}
    if len(shapes) != 1:
        raise ValueError(f"input volumes differ in shape: {sorted(shapes)}")
    image = np.stack([np.asarray(volumes[s], np.float32) for s in sequences])
    return np.asarray(_normalize(image), np.float32)


def pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Zero-pad the last ``len(shape)`` axes of ``array`` at their end up to ``shape``."""
    lead = array.ndim - len(shape)
    sizes = zip(shape, array.shape[lead:], strict=True)
    pad = [(0, 0)] * lead + [(0, max(0, s - n)) for s, n in sizes]
    return np.pad(array, pad) if any(p[1] for p in pad) else array


@dataclasses.dataclass
class TrainingCase:
    """One case ready for sampling: normalised ``(C, X, Y, Z)`` image, canonical labels and
    (subsampled) voxel coordinates of the tumour and of the brain to centre samples on."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    tumour: np.ndarray  # (N, 3) int
    brain: np.ndarray  # (M, 3) int

    @classmethod
    def of(cls, case_id: str, image: np.ndarray, label: np.ndarray, limit: int = 50_000):
        rng = np.random.default_rng(0)

        def coords(mask: np.ndarray) -> np.ndarray:
            found = np.argwhere(mask)
            if len(found) > limit:
                found = found[rng.choice(len(found), limit, replace=False)]
            return found

        brain = coords(image.any(axis=0))
        if not len(brain):
            raise ValueError(f"case {case_id}: all input volumes are empty")
        return cls(case_id, image, label, coords(label > 0), brain)


def sample_centers(
    data: Sequence[TrainingCase], rng: np.random.Generator, n: int, tumour_fraction: float
) -> list[tuple[TrainingCase, np.ndarray]]:
    """``n`` (case, voxel) pairs: a tumour voxel with probability ``tumour_fraction`` (when the
    case has tumour), else a brain voxel."""
    out = []
    for _ in range(n):
        case = data[rng.integers(len(data))]
        pool = case.tumour if len(case.tumour) and rng.random() < tumour_fraction else case.brain
        out.append((case, pool[rng.integers(len(pool))]))
    return out


def crop(array: np.ndarray, center: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The ``size`` window of the last ``len(size)`` axes around ``center`` (shifted to stay
    inside, zero-padded where the array is smaller)."""
    lead = array.ndim - len(size)
    index = [slice(None)] * lead
    for c, s, n in zip(center, size, array.shape[lead:], strict=True):
        start = int(np.clip(c - s // 2, 0, max(n - s, 0)))
        index.append(slice(start, start + s))
    return pad_to(array[tuple(index)], size)


def training_cases(cases: Sequence[Any], sequences: Sequence[str]) -> list[TrainingCase]:
    """Check and normalise ``PreparedCase``\\ s (complete, labelled, one shape)."""
    if not cases:
        raise ValueError("no training cases: a segmenter needs complete, labelled cases")
    out = []
    for case in cases:
        case_id = getattr(case, "case_id", "?")
        if case.label is None:
            raise ValueError(f"case {case_id} has no label map")
        missing = [s for s in sequences if s not in case.volumes]
        if missing:
            raise ValueError(f"case {case_id} lacks {', '.join(missing)}")
        image = stack_inputs(case.volumes, sequences)
        if image.shape[1:] != np.shape(case.label):
            raise ValueError(f"case {case_id}: label shape {np.shape(case.label)} "
                             f"differs from the volumes' {image.shape[1:]}")
        out.append(TrainingCase.of(case_id, image, np.asarray(case.label)))
    shapes = {c.image.shape for c in out}
    if len(shapes) != 1:
        raise ValueError(f"training cases differ in shape: {sorted(shapes)}; preprocess them "
                         "with one PreprocessConfig")
    return out


def random_flips(rng: np.random.Generator, ndim: int) -> tuple[int, ...]:
    """Spatial axes (0-based, of a sample without its channel axis) to flip, each with p=0.5."""
    return tuple(axis for axis in range(ndim) if rng.random() < 0.5)


def scale_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The bundle's RandScaleIntensity/RandShiftIntensity (factors ±0.1), per channel."""
    shape = (image.shape[0],) + (1,) * (image.ndim - 1)
    scale = 1 + rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    shift = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    return image * scale + shift


class TorchSegmenter(Segmenter):
    """A MONAI network trained on normalised complete cases, checkpointed in safetensors.

    Subclasses set ``name`` and ``Options`` (a dataclass of network/inference options) and
    implement :meth:`build_network`, :meth:`loss`, :meth:`sample` and :meth:`infer`.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    default_lr: ClassVar[float] = 1e-4
    default_batch_size: ClassVar[int] = 2

    def __init__(
        self, sequences: Sequence[str] = DEFAULT_SEQUENCES, *, device: str = "cpu", **options
    ):
        try:
            self.options = self.Options(**options)
        except TypeError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(self.Options))
            raise ValueError(f"{self.name}: bad options ({exc}); known: {known}") from None
        self.sequences = tuple(sequences)
        if not self.sequences:
            raise ValueError("a segmenter needs at least one input sequence")
        self.device = torch.device(device)
        self.network = self.build_network().to(self.device)
        self.card: dict[str, Any] = {}

    # -- what a subclass provides ------------------------------------------------------------
    def build_network(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self, data: list[TrainingCase], rng: np.random.Generator, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A training batch ``(images, targets)`` as numpy arrays."""
        raise NotImplementedError

    def infer(self, image: torch.Tensor) -> np.ndarray:
        """Canonical labels ``(X, Y, Z)`` for one normalised ``(C, X, Y, Z)`` image."""
        raise NotImplementedError

    # -- prediction --------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, volumes: Mapping[str, np.ndarray]) -> np.ndarray:
        """Canonical label map (0, 1 NCR, 2 ED, 4 ET, ``uint8``) of preprocessed volumes."""
        image = torch.from_numpy(stack_inputs(volumes, self.sequences)).to(self.device)
        self.network.eval()
        return self.infer(image)

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        cases: Sequence[Any],
        out_dir: Path,
        *,
        iters: int = 2000,
        batch_size: int | None = None,
        lr: float | None = None,
        weight_decay: float = 1e-5,
        seed: int = 0,
        resume: bool = False,
        preprocess: Any = None,
        checkpoint_every: int = 200,
        progress: bool = True,
        on_iteration: Callable[[int, float], None] | None = None,
    ) -> None:
        """Train on complete, labelled ``PreparedCase``\\ s and checkpoint into ``out_dir``.

        Adam with a cosine learning-rate decay over ``iters`` (the bundle's recipe; ``lr`` and
        ``batch_size`` default to the segmenter's ``default_lr``/``default_batch_size``); the batch
        of iteration ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so a resumed
        run samples what an uninterrupted one would. ``resume`` continues from the checkpoint
        in ``out_dir`` (or starts one if there is none); without it an existing checkpoint
        there is an error. ``preprocess`` (a
        ``PreprocessConfig`` or dict) is recorded in the card so that prediction preprocesses
        alike.
        """
        out_dir = Path(out_dir)
        lr = self.default_lr if lr is None else lr
        batch_size = batch_size or self.default_batch_size
        if iters < 1 or batch_size < 1 or checkpoint_every < 1:
            raise ValueError("iters, batch_size and checkpoint_every must be at least 1")
        data = training_cases(cases, self.sequences)
        optimizer = torch.optim.Adam(self.network.parameters(), lr=lr, weight_decay=weight_decay)
        start = 0
        if (out_dir / CARD_FILE).exists():
            if not resume:
                raise CheckpointError(out_dir, "already holds a segmenter checkpoint; resume it "
                                               "or choose a new folder")
            start = self._restore_training(out_dir, optimizer)
            if preprocess is not None and _as_dict(preprocess) != self.card.get("preprocessing"):
                raise CheckpointError(out_dir / CARD_FILE, "cannot resume: the checkpoint was "
                                      f"trained with {self.card.get('preprocessing')}")
            preprocess = preprocess or self.card.get("preprocessing")
        self.card = {
            "segmenter": self.name,
            "sequences": list(self.sequences),
            "options": dataclasses.asdict(self.options),
            "preprocessing": _as_dict(preprocess),
            "iteration": start,
            "iters": iters,
            "seconds": self.card.get("seconds", 0.0) if start else 0.0,
            "training": {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                         "seed": seed, "cases": [c.case_id for c in data]},
        }
        if start >= iters:
            return
        torch.manual_seed(seed * 1_000_003 + start)
        self.network.train()
        began = time.perf_counter()
        try:
            with progress_task(f"train {self.name}", total=iters - start,
                               quiet=not progress) as advance:
                for it in range(start, iters):
                    loss = self._step(data, optimizer, it, iters, lr, seed, batch_size)
                    advance(1, loss=loss)
                    if (it + 1) % checkpoint_every == 0 or it + 1 == iters:
                        seconds = self.card.get("seconds", 0.0) + time.perf_counter() - began
                        self.card.update(iteration=it + 1, loss=loss, seconds=round(seconds, 2))
                        began = time.perf_counter()
                        self.save(out_dir, optimizer)
                    if on_iteration:
                        on_iteration(it + 1, loss)
        finally:
            self.network.eval()

    def _step(self, data, optimizer, it: int, iters: int, lr: float, seed: int,
              batch_size: int) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * it / iters))
        images, targets = self.sample(data, np.random.default_rng([seed, it]), batch_size)
        output = self.network(torch.from_numpy(images).to(self.device))
        loss = self.loss(output, torch.from_numpy(targets).to(self.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, out_dir: Path, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Write weights, optimizer state and the card (last, so it never names newer work)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_weights(out_dir / WEIGHTS_NAME, weights)  # 0644, like the generator's
        if optimizer is not None:
            atomic_write_with(out_dir / STATE_NAME,
                              lambda tmp: torch.save({"optimizer": optimizer.state_dict()}, tmp))
        write_card(out_dir / CARD_FILE, {**self.card, "harmonix_version": __version__}, "segmenter")

    def _restore_training(self, out_dir: Path, optimizer: torch.optim.Optimizer) -> int:
        card = read_card(out_dir, "segmenter")
        mine = {"segmenter": self.name, "sequences": list(self.sequences),
                "options": json.loads(json.dumps(dataclasses.asdict(self.options)))}
        for key, value in mine.items():
            if card.get(key) != value:
                raise CheckpointError(out_dir / CARD_FILE, f"cannot resume: {key} is "
                                      f"{card.get(key)!r} there, {value!r} here")
        self._load_weights(out_dir)
        try:
            state = torch.load(out_dir / STATE_NAME, map_location=self.device, weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(out_dir / STATE_NAME, f"unreadable state: {exc}") from None
        self.card = card
        return int(card.get("iteration", 0))

    def _load_weights(self, path: Path) -> None:
        file = Path(path) / WEIGHTS_NAME
        try:
            weights = load_file(str(file), device=str(self.device))
            self.network.load_state_dict(weights)
        except (OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(file, f"cannot load the weights: {exc}") from None

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> TorchSegmenter:
        """Rebuild a fitted segmenter from its checkpoint directory (or its model card)."""
        path = Path(path)
        path = path.parent if path.is_file() else path
        card = read_card(path, "segmenter")
        if card.get("segmenter") != cls.name:
            raise CheckpointError(path / CARD_FILE, f"a '{card.get('segmenter')}' checkpoint, "
                                                    f"not '{cls.name}'")
        options = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in card.get("options", {}).items()}
        segmenter = cls(card["sequences"], device=device, **options)
        segmenter._load_weights(path)
        segmenter.network.eval()
        segmenter.card = card
        return segmenter


def _as_dict(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(dict(config)))
