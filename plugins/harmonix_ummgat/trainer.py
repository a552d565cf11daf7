"""The ``ummgat`` trainer plugin: data, the training loop, logging, samples and checkpoints."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

import harmonix
from harmonix import checkpoints as ckpt
from harmonix.errors import CheckpointError, InputError
from harmonix.interfaces import Trainer
from harmonix_ummgat.data import BatchSource
from harmonix_ummgat.generator import UMMGATGenerator
from harmonix_ummgat.networks import ModelConfig
from harmonix_ummgat.recipe import Recipe
from harmonix_ummgat.samples import save_sample_grid
from harmonix_ummgat.solver import Solver

TRAINER_NAME = "ummgat"

#: ``callback(iteration_done, losses, solver)``; raising stops training (tests use it to "kill").
Callback = Callable[[int, dict[str, torch.Tensor], Solver], None]


def _model_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(ModelConfig)} - {"domains", "image_size",
                                                                 "backbone", "backbone_options"}


def _recipe_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Recipe)} - {"iters", "batch", "lam"}


def preprocess_config(size: int | None, spacing: float | None, preprocess=None):
    """Preprocessing for ``size`` x ``size`` slices at ``spacing`` mm.

    Defaults: ``preprocess`` (or the paper's 176x176x155 at 1 mm); a coarser ``spacing`` without
    a ``size`` keeps the paper's field of view (176 mm, rounded up to a multiple of 16 pixels),
    and the depth always covers 155 mm.
    """
    from harmonix.data.preprocess import PreprocessConfig

    base = preprocess or PreprocessConfig()
    if size is None and spacing is None:
        return base
    spacing = float(spacing) if spacing is not None else base.spacing
    if size is None:
        size = 16 * math.ceil(base.crop_shape[0] * base.spacing / spacing / 16)
    depth = max(1, round(base.crop_shape[2] * base.spacing / spacing))
    return dataclasses.replace(base, spacing=spacing, crop_shape=(int(size), int(size), depth))


def _distributed(device: str) -> tuple[int, int, str, bool]:
    """``(rank, world_size, device, initialised_here)``; starts torch.distributed under torchrun."""
    import torch.distributed as dist

    here = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        here = True
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return 0, 1, device, here
    rank = dist.get_rank()
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank % torch.cuda.device_count()))}"
        torch.cuda.set_device(device)
    return rank, dist.get_world_size(), device, here


def _loss_line(losses: dict[str, float]) -> str:
    d = losses.get("D/latent_real", 0.0) + losses.get("D/latent_fake", 0.0)
    parts = [f"D {d:.3f}", f"R1 {losses.get('D/latent_r1', 0.0):.3f}"]
    for key in ("adv", "sty", "cyc", "les", "ds"):
        if f"G/latent_{key}" in losses:
            parts.append(f"{key} {losses[f'G/latent_{key}']:.3f}")
    return " ".join(parts)


class UMMGATTrainer(Trainer):
    """Trains UMMGAT (StarGAN-v2 style E, M, G on a backbone plugin, D) on slice datasets."""

    name = TRAINER_NAME

    def load_generator(self, path: Path, device: str = "cpu") -> UMMGATGenerator:
        return UMMGATGenerator.from_checkpoint(path, device=device)

    def train(
        self,
        *,
        out: str | Path,
        data: Sequence[str | Path] | None = None,
        dataset=None,
        backbone: str = "swin",
        backbone_options: dict[str, Any] | None = None,
        iters: int = 20_000,
        batch: int = 8,
        size: int | None = None,
        spacing: float | None = None,
        preprocess=None,
        lam: bool = True,
        pairing: str = "unpaired",
        seed: int = 0,
        device: str = "cpu",
        resume: bool = False,
        checkpoint_every: int = 1000,
        sample_every: int = 1000,
        log_every: int = 10,
        keep_checkpoints: int | None = None,
        amp: bool | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        cache_dir: str | Path | None = None,
        progress: bool = True,
        callback: Callback | None = None,
        **options: Any,
    ) -> Path:
        """Train (or with ``resume`` continue) a run in ``out``; returns the run directory.

        ``data`` are site folders (read and cached through :mod:`harmonix.data.dataset`), or
        give a ready ``dataset`` (a ``SliceDataset``). ``size``/``spacing`` set the slice size
        and the preprocessing spacing. Other ``options`` are :class:`ModelConfig` fields
        (``style_dim``, ``latent_dim``, ...) or :class:`Recipe` fields (``lr``, ``lambda_ds``,
        ...). ``amp`` and ``channels_last`` default to on for CUDA. ``batch`` is per process.
        """
        unknown = set(options) - _model_fields() - _recipe_fields()
        if unknown:
            raise TypeError(f"unknown training options: {', '.join(sorted(unknown))}")
        run_dir = Path(out)
        rank, world, device, own_group = _distributed(str(device))
        try:
            return self._train(
                run_dir, rank, world, device, data=data, dataset=dataset, backbone=backbone,
                backbone_options=dict(backbone_options or {}), iters=iters, batch=batch,
                size=size, spacing=spacing, preprocess=preprocess, lam=lam, pairing=pairing,
                seed=seed, resume=resume, checkpoint_every=checkpoint_every,
                sample_every=sample_every, log_every=log_every, keep=keep_checkpoints,
                amp=amp, channels_last=channels_last, compile=compile, cache_dir=cache_dir,
                progress=progress, callback=callback, options=options,
            )
        finally:
            if own_group:
                torch.distributed.destroy_process_group()

    # -- the run ----------------------------------------------------------------------------
    def _train(self, run_dir: Path, rank: int, world: int, device: str, **kw: Any) -> Path:
        latest = ckpt.latest_checkpoint(run_dir) if run_dir.is_dir() else None
        card_prev = ckpt.read_card(latest) if latest is not None else None
        if latest is not None and not kw["resume"]:
            raise InputError(run_dir, f"already holds a training run (checkpoint {latest.name}); "
                                      "resume it with --resume or choose another --out")
        if card_prev is not None and card_prev.get("trainer") != TRAINER_NAME:
            raise CheckpointError(latest / ckpt.CARD_FILE, "was not written by the ummgat trainer")

        if card_prev is not None:  # resuming: the saved model and recipe are authoritative
            config = ModelConfig.from_dict(card_prev["model"])
            recipe = Recipe.from_dict({**card_prev["recipe"], "iters": kw["iters"]})
            from harmonix.data.preprocess import PreprocessConfig

            prep = PreprocessConfig.from_dict(card_prev["preprocessing"])
            pairing = card_prev["data"].get("pairing", kw["pairing"])
            seed = int(card_prev["seed"])
            sites = kw["data"] or card_prev["data"].get("sites") or []
        else:
            prep = preprocess_config(kw["size"], kw["spacing"], kw["preprocess"])
            pairing, seed, sites = kw["pairing"], int(kw["seed"]), kw["data"] or []
            opts = kw["options"]
            recipe = Recipe(iters=kw["iters"], batch=kw["batch"], lam=kw["lam"],
                            **{k: v for k, v in opts.items() if k in _recipe_fields()})
            config = None  # needs the dataset's domains

        dataset = kw["dataset"]
        if dataset is None:
            if not sites:
                raise ValueError("give site folders (data=[...] / --data) or a dataset")
            from harmonix.data.dataset import make_training_data

            cache = Path(kw["cache_dir"]) if kw["cache_dir"] else run_dir / "cache"
            if world > 1 and rank != 0:  # rank 0 builds the slice cache, the others reuse it
                torch.distributed.barrier()
            dataset = make_training_data([Path(s) for s in sites], cache, prep, pairing=pairing,
                                         seed=seed, progress=kw["progress"] and rank == 0)
            if world > 1 and rank == 0:
                torch.distributed.barrier()
        cached = getattr(getattr(dataset, "cache", None), "config", None)
        prep = cached if cached is not None else prep  # what the slices really went through
        if config is None:
            height, image_size = (int(n) for n in torch.as_tensor(dataset[0]["image"]).shape[-2:])
            if height != image_size:
                raise ValueError(f"slices must be square, got {height}x{image_size}")
            config = ModelConfig(
                domains=tuple(dataset.domains), image_size=image_size, backbone=kw["backbone"],
                backbone_options=kw["backbone_options"],
                **{k: v for k, v in kw["options"].items() if k in _model_fields()},
            )
        elif list(dataset.domains) != list(config.domains):
            raise InputError(run_dir, f"the data's domains {list(dataset.domains)} differ from "
                                      f"the run's {list(config.domains)}")

        is_cuda = device.startswith("cuda")
        amp = is_cuda and torch.cuda.is_bf16_supported() if kw["amp"] is None else bool(kw["amp"])
        channels_last = is_cuda if kw["channels_last"] is None else bool(kw["channels_last"])
        torch.manual_seed(seed)
        solver = Solver(config, recipe, device, amp=amp, channels_last=channels_last,
                        compile=kw["compile"], distributed=world > 1)
        multiple = solver.modules.G.size_multiple
        if config.image_size % multiple:
            raise ValueError(f"slice size {config.image_size} is not a multiple of {multiple}, "
                             f"which the '{config.backbone}' backbone needs")
        start = 0
        if latest is not None:
            solver.load_state_tensors(ckpt.load_tensors(latest))
            state = ckpt.load_training_state(latest)
            solver.load_optimizer_state(state["optimizers"])
            start = int(state["iteration"])

        source = BatchSource(dataset, latent_dim=config.latent_dim, seed=seed, rank=rank)
        card = {
            "trainer": TRAINER_NAME,
            "harmonix_version": harmonix.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "domains": list(config.domains),
            "lesion_domains": list(config.lesion_domains),
            "backbone": {"name": config.backbone, "options": config.backbone_options},
            "style_dim": config.style_dim,
            "latent_dim": config.latent_dim,
            "image_size": config.image_size,
            "preprocessing": prep.to_dict(),
            "recipe": recipe.to_dict(),
            "model": config.to_dict(),
            "seed": seed,
            "data": {
                "sites": [str(Path(s).resolve()) for s in sites],
                "pairing": pairing,
                "flip": bool(getattr(dataset, "flip", False)),  # horizontal flips
                "slices": len(dataset),
                "per_domain": dataset.summary() if hasattr(dataset, "summary")
                else {d: {"slices": n} for d, n in source.counts().items()},
            },
            "training": {"world_size": world, "device": device, "amp_bf16": amp,
                         "channels_last": channels_last, "compile": bool(kw["compile"])},
        }
        loop = _Loop(run_dir, rank, solver, source, card, kw)
        loop.run(start, recipe.iters)
        return run_dir


class _Loop:
    """The iteration loop with its side jobs (progress, TensorBoard, samples, checkpoints)."""

    def __init__(self, run_dir: Path, rank: int, solver: Solver, source: BatchSource,
                 card: dict[str, Any], kw: dict[str, Any]):
        self.run_dir, self.solver, self.source = run_dir, solver, source
        self.card, self.kw = card, kw
        self.main = rank == 0
        self.writer = None

    def _checkpoint(self, done: int) -> None:
        ckpt.save_checkpoint(
            self.run_dir, done, tensors=self.solver.state_tensors(), card=self.card,
            training_state={"iteration": done, "optimizers": self.solver.optimizer_state()},
            keep=self.kw["keep"],
        )

    def _samples(self, done: int) -> None:
        generator = UMMGATGenerator(self.solver.ema, self.card, self.solver.device)
        images, names = self.source.fixed_sources()
        path = self.run_dir / "samples" / f"iter_{done:06d}.png"
        _, grid = save_sample_grid(generator, images, names, path)
        if self.writer is not None:
            rows = [torch.cat(list(row), dim=-1) for row in grid]  # (H, cols*W) per row
            self.writer.add_image("samples", torch.cat(rows, dim=-2)[None] / 255.0, done)

    def run(self, start: int, iters: int) -> None:
        kw, solver = self.kw, self.solver
        if self.main:
            from torch.utils.tensorboard import SummaryWriter

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start + 1)
        progress = _progress(kw["progress"] and self.main)
        try:
            with progress:
                task = progress.add_task("train", total=iters, completed=start)
                for it in range(start, iters):
                    batch = self.source.batch(it, solver.recipe.batch)
                    losses = solver.step(batch.to(solver.device, solver.channels_last), it)
                    done = it + 1
                    if self.main:
                        self._side_jobs(done, iters, start, losses, progress)
                    progress.update(task, completed=done)
                    if kw["callback"] is not None:
                        kw["callback"](done, losses, solver)
        finally:
            if self.writer is not None:
                self.writer.close()

    def _side_jobs(self, done, iters, start, losses, progress) -> None:
        kw = self.kw
        if done % kw["log_every"] == 0 or done in (iters, start + 1):
            values = {k: float(v) for k, v in losses.items()}
            for key, value in values.items():
                self.writer.add_scalar(key, value, done)
            progress.losses = _loss_line(values)
        if done % kw["sample_every"] == 0 or done == iters:
            self._samples(done)
        if done % kw["checkpoint_every"] == 0 or done == iters:
            self._checkpoint(done)


class SpeedColumn(ProgressColumn):
    """Iterations per second."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s")


class TrainProgress(Progress):
    """The progress bar with the latest losses on a line of their own."""

    losses = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.losses:
            yield Text(self.losses, style="cyan")


def _progress(enabled: bool) -> TrainProgress:
    from harmonix.cli.app import console

    return TrainProgress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
        SpeedColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not enabled,
    )
