"""The training loop: batches through a DataLoader, the step, and its side jobs (progress,
TensorBoard, sample grids, checkpoints).

TensorBoard is optional (the ``train`` extra): without it a run trains the same and writes no
TensorBoard logs, saying so in one warning.

After the first :data:`ESTIMATE_AFTER` iterations the loop prints the time per iteration and the
estimated total, and warns when the run would take longer than :data:`IMPRACTICAL_S`; the card
records how long the model was trained (``training.iterations`` and ``training.seconds``, summed
over resumes).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from harmonix.sdk import MissingExtraError, progress_task, require, save_checkpoint
from harmonix_ummgat.data import BatchSource, iteration_seed, seed_everything
from harmonix_ummgat.generator import UMMGATGenerator
from harmonix_ummgat.lam import COLLAPSED_BELOW, lesion_code_spread
from harmonix_ummgat.samples import save_sample_grid
from harmonix_ummgat.settings import RunSettings
from harmonix_ummgat.solver import Solver

ESTIMATE_AFTER = 4  # iterations timed (the first, warm-up, excluded when there are more)
IMPRACTICAL_S = 24 * 3600  # a run estimated longer than this is warned about


def duration(seconds: float) -> str:
    """``"3.2 s"``, ``"14 min"``, ``"5.1 h"``, ``"12.3 days"``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def estimate_line(per_iteration: float, done: int, iters: int) -> str:
    """The estimate ``train`` prints after its first iterations."""
    return (f"train: {per_iteration:.3g} s per iteration; {iters} iterations take about "
            f"{duration(per_iteration * iters)} ({duration(per_iteration * (iters - done))} left)")


class IterationBatches(Dataset):
    """Item ``i`` is iteration ``i``'s batch: a pure function of (seed, i, rank), so worker
    processes can assemble batches ahead of the step without changing what is trained on."""

    def __init__(self, source: BatchSource, batch: int, iters: int):
        self.source, self.batch, self.iters = source, batch, iters

    def __len__(self) -> int:
        return self.iters

    def __getitem__(self, iteration: int):
        return self.source.batch(iteration, self.batch)


def batch_loader(source: BatchSource, batch: int, start: int, iters: int, *, workers: int,
                 pin_memory: bool) -> DataLoader:
    """Iterations ``start..iters-1`` in order, assembled by ``workers`` processes (0: here)."""
    return DataLoader(
        IterationBatches(source, batch, iters), batch_size=None, sampler=range(start, iters),
        num_workers=workers, pin_memory=pin_memory, prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


def default_workers(device: torch.device) -> int:
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def tensorboard_writer(log_dir: Path, purge_step: int):
    """A TensorBoard ``SummaryWriter`` into ``log_dir``, or ``None`` (with one warning) when
    TensorBoard is not installed."""
    try:
        module = require("torch.utils.tensorboard", "TensorBoard logging")
    except MissingExtraError as exc:
        warnings.warn(f"no TensorBoard logs for this run: {exc}", RuntimeWarning, stacklevel=2)
        return None
    return module.SummaryWriter(str(log_dir), purge_step=purge_step)


def loss_line(losses: dict[str, float]) -> str:
    d = losses.get("D/latent_real", 0.0) + losses.get("D/latent_fake", 0.0)
    parts = [f"D {d:.3f}", f"R1 {losses.get('D/latent_r1', 0.0):.3f}"]
    for key in ("adv", "sty", "cyc", "les", "les_cyc", "les_adv", "les_var", "les_con", "struct",
                "ds"):
        if f"G/latent_{key}" in losses:
            parts.append(f"{key} {losses[f'G/latent_{key}']:.3f}")
    return " ".join(parts)


class Loop:
    """Runs iterations ``start..iters-1`` of one process (rank 0 writes)."""

    def __init__(self, run_dir: Path, rank: int, solver: Solver, source: BatchSource,
                 card: dict[str, Any], settings: RunSettings, *, progress: bool, callback=None):
        self.run_dir, self.rank, self.solver, self.source = run_dir, rank, solver, source
        self.card, self.settings = card, settings
        self.main = rank == 0
        self.show_progress = progress and self.main
        self.callback = callback
        self.writer = None
        self.last_losses = ""
        self._lesion_slices = None
        training = card.setdefault("training", {})
        self._seconds_before = float(training.get("seconds") or 0.0)  # earlier sessions'
        self._started = time.perf_counter()
        self.per_iteration: float | None = None

    def _lesion_code_spread(self, done: int) -> None:
        """LAM's health (:func:`harmonix_ummgat.lam.lesion_code_spread`) of the EMA encoder on
        fixed real lesion slices: to TensorBoard and the card's ``lesion_code_spread``."""
        if self._lesion_slices is None:
            self._lesion_slices = self.source.lesion_slices()
        images, masks, domains = self._lesion_slices
        if not domains:
            return
        per_domain = lesion_code_spread(self.solver.ema.E, images, masks, domains,
                                        self.solver.config.num_domains)
        named = {self.source.domains[k]: round(v, 4) for k, v in per_domain.items()}
        for domain, value in named.items() if self.writer is not None else ():
            self.writer.add_scalar(f"lesion_code_spread/{domain}", value, done)
        record = self.card.setdefault("lesion_code_spread", {"history": []})
        record["history"] = [h for h in record.get("history", []) if h["iteration"] < done]
        record["history"].append({"iteration": done, **named})
        finite = [v for v in named.values() if v == v]
        record.update(iteration=done, per_domain=named, min=min(finite) if finite else None,
                      collapsed_below=COLLAPSED_BELOW)

    def _estimate(self, done: int, start: int, iters: int, first_done: float) -> None:
        """The time per iteration (after the first, warm-up, when there are enough), printed
        with the total, into the card, and a warning when the run is impractically long."""
        now = time.perf_counter()
        timed = done - start - 1
        per = (now - first_done) / timed if timed >= 1 else now - self._started
        self.per_iteration = per
        self.card["training"]["seconds_per_iteration"] = round(per, 4)
        if not self.main:
            return
        if self.show_progress:
            print(estimate_line(per, done, iters), file=sys.stderr, flush=True)
        if per * (iters - done) > IMPRACTICAL_S:
            device = self.solver.device
            warnings.warn(
                f"this run would take about {duration(per * (iters - done))} more "
                f"({per:.3g} s per iteration on {device.type}, preset "
                f"'{self.solver.config.preset}'): impractical. Use a GPU, a smaller preset "
                "(--preset fast or small), fewer --iters or a coarser --spacing",
                RuntimeWarning, stacklevel=2)

    def _checkpoint(self, done: int) -> None:
        training = self.card.setdefault("training", {})
        training["iterations"] = done
        training["seconds"] = round(self._seconds_before + time.perf_counter() - self._started, 3)
        self._lesion_code_spread(done)
        save_checkpoint(
            self.run_dir, done, tensors=self.solver.state_tensors(), card=self.card,
            training_state={"iteration": done, "optimizers": self.solver.optimizer_state()},
            keep=self.settings.keep_checkpoints,
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
        solver, settings = self.solver, self.settings
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.writer = tensorboard_writer(self.run_dir / "tensorboard", start + 1)
        workers = settings.loader_workers
        workers = default_workers(solver.device) if workers is None else workers
        loader = batch_loader(self.source, solver.recipe.batch, start, iters, workers=workers,
                              pin_memory=solver.device.type == "cuda")
        try:
            self._started = time.perf_counter()
            first_done = self._started
            with progress_task("train", total=iters, quiet=not self.show_progress) as advance:
                advance(start)
                for it, batch in enumerate(loader, start):
                    # the step's own randomness, if any, is the iteration's too (exact resume)
                    seed_everything(iteration_seed(self.source.seed, it, self.rank) ^ 1)
                    losses = solver.step(batch.to(solver.device, solver.channels_last), it)
                    done = it + 1
                    if done == start + 1:
                        first_done = time.perf_counter()
                    if done == min(start + ESTIMATE_AFTER, iters):
                        self._estimate(done, start, iters, first_done)
                    if self.main:
                        self.last_losses = self._side_jobs(done, iters, start, losses)
                    advance(1, losses=self.last_losses)
                    if self.callback is not None:
                        self.callback(done, losses, solver)
        finally:
            if self.writer is not None:
                self.writer.close()

    def _side_jobs(self, done: int, iters: int, start: int, losses) -> str:
        """Logging, samples and checkpoints due at ``done``; the loss line for the display."""
        s, line = self.settings, self.last_losses
        if done % s.log_every == 0 or done in (iters, start + 1):
            values = {k: float(v) for k, v in losses.items()}
            for key, value in values.items() if self.writer is not None else ():
                self.writer.add_scalar(key, value, done)
            line = loss_line(values)
        if done % s.sample_every == 0 or done == iters:
            self._samples(done)
        if done % s.checkpoint_every == 0 or done == iters:
            self._checkpoint(done)
        return line
