"""The ``ummgat`` trainer plugin: data, the model, resume, and the run's model card.

The loop itself (batches, step, samples, checkpoints) is :mod:`harmonix_ummgat.loop`; what a
call asks for is a :class:`harmonix.requests.TrainRequest`, and this trainer's own options a
:class:`harmonix_ummgat.settings.UMMGATOptions`.

The model card travels (``harmonix models export``), so it names the training sites by folder
name only and records their cases by content (``data.data_record``: ids and file hashes,
:func:`harmonix.data.fingerprint.training_record`), which ``harmonix evaluate`` checks test cases
against. The absolute site folders, which ``--resume`` without ``--data`` reads back, stay in the
run-local ``RUN/run.json`` (:data:`RUN_FILE`), which is never exported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from harmonix.sdk import (
    CARD_FILE,
    CHECKPOINTS_DIR,
    DEFAULT_POLICY,
    FILL_KEY,
    LATEST_FILE,
    MAX_CASES,
    RECORD_KEY,
    CheckpointError,
    FillPolicy,
    InputError,
    PreprocessConfig,
    Trainer,
    TrainRequest,
    __version__,
    atomic_write_json,
    check_training_coverage,
    latest_checkpoint,
    load_tensors,
    load_training_state,
    make_training_data,
    measure_correlations,
    merge_records,
    portable_path,
    read_card,
    refuse_synthetic,
    remove_stale_temporaries,
    training_record,
)
from harmonix_ummgat.data import BatchSource, indices_by_domain
from harmonix_ummgat.generator import UMMGATGenerator
from harmonix_ummgat.loop import Loop
from harmonix_ummgat.networks import ModelConfig
from harmonix_ummgat.recipe import Recipe, recipe_overrides
from harmonix_ummgat.settings import RunSettings, UMMGATOptions, new_recipe
from harmonix_ummgat.solver import Solver

TRAINER_NAME = "ummgat"

#: Run-local facts that must not travel in the card: ``{"sites": [absolute folders]}``.
RUN_FILE = "run.json"


def preprocess_config(size: int | None, spacing: float | None, depth: int | None = None):
    """Preprocessing for ``size`` x ``size`` slices at ``spacing`` mm, ``depth`` slices deep.

    Defaults: the paper's 176x176x155 at 1 mm; a coarser ``spacing`` without a ``size`` keeps the
    paper's field of view (176 mm, rounded up to a multiple of 16 pixels), and without a
    ``depth`` the crop covers 155 mm.
    """
    base = PreprocessConfig()
    spacing = float(spacing) if spacing is not None else base.spacing
    if size is None:
        size = 16 * math.ceil(base.crop_shape[0] * base.spacing / spacing / 16)
    if depth is None:
        depth = max(1, round(base.crop_shape[2] * base.spacing / spacing))
    return dataclasses.replace(base, spacing=spacing,
                               crop_shape=(int(size), int(size), int(depth)))


def impractical(preset: str, device: str) -> str | None:
    """Why ``preset`` on ``device`` makes a full run impractical (``None`` when it does not):
    the paper's scale on a CPU takes minutes per iteration."""
    if preset == "paper" and not device.startswith("cuda"):
        return (f"the paper preset on {device} takes minutes per iteration (591 s was measured "
                "on a CPU): impractical for a full run; use a GPU, or --preset fast or small "
                "for a CPU run")
    return None


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


def run_checkpoint(run_dir: Path) -> Path | None:
    """The run's latest checkpoint; ``latest.json`` may only name a folder of this run."""
    latest = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if latest is None:
        return None
    root = (run_dir / CHECKPOINTS_DIR).resolve()
    if latest.resolve().parent != root:
        raise CheckpointError(run_dir / CHECKPOINTS_DIR / LATEST_FILE,
                              f"names '{latest}', which is not a checkpoint of this run")
    return latest


class UMMGATTrainer(Trainer):
    """Trains UMMGAT (StarGAN-v2 style E, M, G on a backbone plugin, D) on slice datasets."""

    name = TRAINER_NAME

    def load_generator(self, path: Path, device: str = "cpu") -> UMMGATGenerator:
        return UMMGATGenerator.from_checkpoint(path, device=device)

    def train(self, request: TrainRequest) -> Path:
        """Train (or with ``request.resume`` continue) a run in ``request.out``; returns the run
        directory. ``request.options`` are :class:`UMMGATOptions` (model widths, speed settings,
        a ready ``dataset``, ``cache_dir``, ``callback``); ``request.recipe`` overrides
        :class:`Recipe` fields. ``batch_size`` is per process."""
        options = UMMGATOptions.from_mapping(request.options)
        rank, world, device, own_group = _distributed(str(request.device))
        try:
            return self._train(request, options, rank, world, device)
        finally:
            if own_group:
                torch.distributed.destroy_process_group()

    # -- the run ----------------------------------------------------------------------------
    def _train(self, req: TrainRequest, options: UMMGATOptions, rank: int, world: int,
               device: str) -> Path:
        run_dir = req.out
        latest = run_checkpoint(run_dir)
        card_prev = read_card(latest) if latest is not None else None
        if latest is not None and not req.resume:
            raise InputError(run_dir, f"already holds a training run (checkpoint {latest.name}); "
                                      "resume it with --resume or choose another --out")
        if card_prev is not None and card_prev.get("trainer") != TRAINER_NAME:
            raise CheckpointError(latest / CARD_FILE, "was not written by the ummgat trainer")

        if card_prev is not None:  # resuming: the saved model and recipe are authoritative
            config = ModelConfig.from_dict(card_prev["model"])
            recipe = Recipe.from_dict({**card_prev["recipe"], **recipe_overrides(req.recipe)})
            if req.iters is not None:
                recipe.iters = int(req.iters)
            prep = PreprocessConfig.from_dict(card_prev["preprocessing"])
            pairing = card_prev["data"].get("pairing", req.pairing)
            seed = int(card_prev["seed"])
            sites = list(req.data) or recorded_sites(run_dir, card_prev)
            settings = RunSettings.resolve(options.run(req), card_prev.get("run"))
        else:
            prep = preprocess_config(req.size, req.spacing, req.depth)
            pairing, seed, sites = req.pairing, int(req.seed), list(req.data)
            recipe = new_recipe(req)
            settings = RunSettings.resolve(options.run(req), None)
            config = None  # needs the dataset's domains

        dataset = options.dataset
        if dataset is None:
            named = (card_prev or {}).get("data", {}).get("sites") if not sites else None
            if named:
                raise InputError(run_dir, f"has no {RUN_FILE} and its model card names the "
                                          f"training sites by name only ({', '.join(named)}); "
                                          "give them again with --data")
            if not sites:
                raise ValueError("give site folders (data=[...] / --data) or a dataset")
            refuse_synthetic(sites, allow=req.allow_synthetic)  # before any cache is written
            if card_prev is None and req.min_coverage != 0:  # a new run's field of view
                check_training_coverage(sites, prep, req.min_coverage)
            cache = Path(options.cache_dir) if options.cache_dir else run_dir / "cache"
            if world > 1 and rank != 0:  # rank 0 builds the slice cache, the others reuse it
                torch.distributed.barrier()
            dataset = make_training_data(sites, cache, prep, pairing=pairing, seed=seed,
                                         progress=req.progress and rank == 0)
            if world > 1 and rank == 0:
                torch.distributed.barrier()
        cached = getattr(getattr(dataset, "cache", None), "config", None)
        prep = cached if cached is not None else prep  # what the slices really went through
        if config is None:
            height, image_size = (int(n) for n in torch.as_tensor(dataset[0]["image"]).shape[-2:])
            if height != image_size:
                raise ValueError(f"slices must be square, got {height}x{image_size}")
            lesion_heads = recipe.lam and recipe.lambda_les_adv > 0  # D's LAM branches
            config = ModelConfig(domains=tuple(dataset.domains), image_size=image_size,
                                 preset=req.preset, backbone=req.backbone,
                                 backbone_options=dict(req.backbone_options),
                                 lesion_discriminator=lesion_heads, **options.model())
        elif list(dataset.domains) != list(config.domains):
            raise InputError(run_dir, f"the data's domains {list(dataset.domains)} differ from "
                                      f"the run's {list(config.domains)}")
        if recipe.batch > len(dataset):
            raise ValueError(f"--batch-size {recipe.batch} is larger than the {len(dataset)} "
                             f"training slices ({_counts(dataset)}); choose --batch-size "
                             f"{len(dataset)} or less")

        is_cuda = device.startswith("cuda")
        amp = is_cuda and torch.cuda.is_bf16_supported() if settings.amp is None else settings.amp
        channels_last = is_cuda if settings.channels_last is None else settings.channels_last
        torch.manual_seed(seed)
        solver = Solver(config, recipe, device, amp=amp, channels_last=channels_last,
                        compile=settings.compile, distributed=world > 1)
        multiple = solver.modules.G.size_multiple
        if config.image_size % multiple:
            raise ValueError(f"slice size {config.image_size} is not a multiple of {multiple}, "
                             f"which the '{config.backbone}' backbone needs")
        if rank == 0 and (why := impractical(config.preset, device)):
            warnings.warn(why, RuntimeWarning, stacklevel=2)
        start = 0
        if req.resume and rank == 0:  # a killed run's half-written checkpoint
            remove_stale_temporaries(run_dir)
        if latest is not None:
            solver.load_state_tensors(load_tensors(latest))
            state = load_training_state(latest)
            solver.load_optimizer_state(state["optimizers"])
            start = int(state["iteration"])

        source = BatchSource(dataset, latent_dim=config.latent_dim, seed=seed, rank=rank)
        card = _card(config, recipe, settings, prep, seed, sites, pairing, dataset, source,
                     training={"world_size": world, "device": device, "amp_bf16": amp,
                               "channels_last": channels_last, "compile": settings.compile,
                               "allow_synthetic": bool(req.allow_synthetic),
                               # how long it was trained, over every session (the loop adds)
                               "seconds": ((card_prev or {}).get("training") or {}).get(
                                   "seconds", 0.0)})
        if card_prev is not None and "lesion_code_spread" in card_prev:  # its history goes on
            card["lesion_code_spread"] = card_prev["lesion_code_spread"]
        if rank == 0:  # only rank 0 writes cards
            previous = (card_prev or {}).get("data") or {}
            record = data_record(sites, previous.get(RECORD_KEY),
                                 same=card_prev is not None and not req.data)
            if record is not None:
                card["data"][RECORD_KEY] = record
            if sites:
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_json(run_dir / RUN_FILE,
                                  {"sites": [str(Path(s).resolve()) for s in sites]})
        loop = Loop(run_dir, rank, solver, source, card, settings, progress=req.progress,
                    callback=options.callback)
        loop.run(start, recipe.iters)
        return run_dir


def _counts(dataset) -> str:
    pools = indices_by_domain(dataset)
    return ", ".join(f"{d}: {len(ix)}" for d, ix in zip(dataset.domains, pools, strict=True))


def _card(config: ModelConfig, recipe: Recipe, settings: RunSettings, prep, seed: int, sites,
          pairing: str, dataset, source: BatchSource, training: dict[str, Any]) -> dict[str, Any]:
    """The model card: what rebuilds the generator, how it was trained, and on what."""
    return {
        "trainer": TRAINER_NAME,
        "harmonix_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "domains": list(config.domains),
        "lesion_domains": list(config.lesion_domains),
        "preset": config.preset,
        "backbone": {"name": config.backbone, "options": config.backbone_options},
        "style_dim": config.style_dim,
        "latent_dim": config.latent_dim,
        "image_size": config.image_size,
        "preprocessing": prep.to_dict(),
        "recipe": recipe.to_dict(),
        "model": config.to_dict(),
        "run": settings.to_dict(),
        "seed": seed,
        "data": {
            "sites": [portable_path(Path(s).resolve()) for s in sites],  # absolute: RUN_FILE
            "pairing": pairing,
            "flip": bool(getattr(dataset, "flip", False)),  # horizontal flips
            "slices": len(dataset),
            "per_domain": dataset.summary() if hasattr(dataset, "summary")
            else {d: {"slices": n} for d, n in source.counts().items()},
        },
        "training": training,
        FILL_KEY: fill_record(dataset),
    }


def fill_record(dataset) -> dict[str, Any]:
    """The card's fill policy (:mod:`harmonix.harmonization.fusion`): the default policy and the
    sequences' correlation table measured on up to ``MAX_CASES`` cached training cases with two or
    more sequences (all of a case's sequences, whatever the unpaired draw gave the generator)."""
    cache = getattr(dataset, "cache", None)
    cases = [] if cache is None else [i for i, c in enumerate(cache.cases)
                                      if len(c.sequences) > 1][:MAX_CASES]
    table, n = measure_correlations({s: cache.slices(i, s) for s in cache.cases[i].sequences}
                                    for i in cases)
    return FillPolicy(DEFAULT_POLICY, table, n).to_record()


def recorded_sites(run_dir: Path, card: dict[str, Any]) -> list[Path]:
    """The run's site folders for ``--resume`` without ``--data``: those in ``RUN/run.json``,
    else (runs made before it) the absolute ones the card names; ``[]`` when neither has any."""
    file = run_dir / RUN_FILE
    if file.is_file():
        try:
            sites = json.loads(file.read_text())["sites"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(file, f"unreadable run file ({exc}); give --data") from None
        return [Path(s) for s in sites]
    named = (card.get("data") or {}).get("sites") or []
    return [Path(s) for s in named if Path(s).is_absolute()]


def data_record(sites: Sequence[str | Path], previous: dict[str, Any] | None = None, *,
                same: bool = False) -> dict[str, Any] | None:
    """The card's training record (:func:`harmonix.data.fingerprint.training_record` of ``sites``):
    a resumed run's ``previous`` one as it is when the data are the ``same``, else merged with
    it (a run resumed on other data was trained on both); ``None`` without sites or record."""
    if same and previous:
        return previous
    record = training_record(sites) if sites else None
    if not previous:
        return record
    return merge_records(previous, record)

