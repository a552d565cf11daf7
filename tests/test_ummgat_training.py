"""UMMGAT training on built-in data: resume, DDP, the CLI, learning, and the learned contrast."""

from __future__ import annotations

import json
import os
import shutil
import socket

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_runs import ummgat_request

import harmonix
import harmonix.errors
from harmonix.data.cache import SliceCache
from harmonix.data.dataset import SliceDataset, make_training_data
from harmonix.data.preprocess import PreprocessConfig, preprocess_case
from harmonix.data.site import read_site
from harmonix.data.synth import synthesize_site
from harmonix.errors import InputError
from harmonix.io import temp_name
from harmonix.models import checkpoints as ckpt
from harmonix.plugins import build_trainer
from harmonix_ummgat.networks import ModelConfig

SPACING = 4.0
SIZE = 32
PREP = PreprocessConfig(spacing=SPACING, crop_shape=(SIZE, SIZE, 39))
SMALL = dict(encoder_dim=8, encoder_max_dim=16, mapper_dim=16, style_dim=16, latent_dim=8)
TINY_SWIN = dict(backbone="swin", backbone_options={"preset": "tiny"})


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    """A 2-case BraTS-like site at 4 mm (t1, t1ce, t2, flair and tumour labels)."""
    root = tmp_path_factory.mktemp("ummgat-data")
    site = synthesize_site(root / "brats", 2, center="brats", spacing=SPACING, workers=1)
    dataset = make_training_data([site], root / "cache", PREP, pairing="all", progress=False)
    return site, dataset


def train(run, dataset, iters, **options):
    kw = dict(TINY_SWIN, iters=iters, batch=4, checkpoint_every=2, sample_every=1000, seed=3,
              progress=False)
    request = ummgat_request(run, dataset=dataset, **{**kw, **SMALL, **options})
    return build_trainer("ummgat").train(request)


class Killed(Exception):
    pass


def kill_at(iteration):
    def callback(done, losses, solver):
        if done == iteration:
            raise Killed

    return callback


def test_killed_then_resumed_run_ends_with_the_same_weights(brats, tmp_path):
    _, dataset = brats
    train(tmp_path / "straight", dataset, 4)
    with pytest.raises(Killed):
        train(tmp_path / "killed", dataset, 4, callback=kill_at(3))
    assert ckpt.latest_checkpoint(tmp_path / "killed").name == "iter_000002"
    with pytest.raises(InputError, match="--resume"):
        train(tmp_path / "killed", dataset, 4)
    train(tmp_path / "killed", dataset, 4, resume=True)

    card = ckpt.read_card(tmp_path / "straight")
    assert card["preprocessing"]["crop_shape"] == [SIZE, SIZE, 39]  # the dataset's, not a default
    straight, resumed = (ckpt.load_tensors(tmp_path / run) for run in ("straight", "killed"))
    assert straight.keys() == resumed.keys()
    assert {k.split(".")[0] for k in straight} == {"E", "M", "G", "D", "ema"}
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    first = ckpt.load_tensors(tmp_path / "straight" / "checkpoints" / "iter_000002")
    assert not torch.equal(first["G.backbone.head.weight"], straight["G.backbone.head.weight"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, port, cache_dir, run_dir, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        dataset = SliceDataset(SliceCache(cache_dir), pairing="all")
        first = {}

        def record(done, losses, solver):
            if done == 1:
                first.update({k: float(v) for k, v in losses.items()})
            if done == 2:
                torch.save({"weights": solver.state_tensors(), "losses": first},
                           f"{out_dir}/rank{rank}.pt")

        train(run_dir, dataset, 2, callback=record)
    finally:
        dist.destroy_process_group()


def test_ddp_on_two_gloo_processes_keeps_the_ranks_identical(brats, tmp_path):
    _, dataset = brats
    mp.spawn(_ddp_worker, nprocs=2, join=True,
             args=(_free_port(), str(dataset.cache.root), str(tmp_path / "run"), str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # each rank trained on its own batches ...
    assert ranks[0]["losses"]["G/latent_cyc"] != ranks[1]["losses"]["G/latent_cyc"]
    # ... but all-reduced gradients keep every network (and its EMA) identical
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key
    card = ckpt.read_card(tmp_path / "run")
    assert card["training"]["world_size"] == 2 and card["iteration"] == 2


def test_cli_trains_resumes_and_writes_a_readable_run(brats, tmp_path, cli):
    site, _ = brats
    run = tmp_path / "run"
    args = ["train", "--data", site, "--out", run, "--backbone", "swin", "--backbone-option",
            "preset=tiny", "--batch-size", "2", "--size", SIZE, "--spacing", SPACING,
            "--pairing", "all", "--checkpoint-every", "1", "--sample-every", "2", "--device",
            "cpu", "--no-lam", "--recipe", "lambda_cyc=2", "--recipe", "ema_warmup=false",
            "--min-coverage", "0"]  # a 128 mm crop: quick, not a useful field of view
    result = cli(*args, "--iters", "2")
    assert result.exit_code == 0, result.output
    assert (run / "samples" / "iter_000002.png").read_bytes()[:4] == b"\x89PNG"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    card = json.loads((run / "checkpoints" / "iter_000002" / "model_card.json").read_text())
    assert card["trainer"] == "ummgat" and card["iteration"] == 2
    assert card["domains"] == ["brats/flair", "brats/t1", "brats/t1ce", "brats/t2"]
    assert card["lesion_domains"][0] == "lesion:brats/flair"
    assert card["backbone"] == {"name": "swin", "options": {"preset": "tiny"}}
    assert card["preprocessing"]["crop_shape"] == [SIZE, SIZE, 39]
    assert card["recipe"]["lr"] == card["recipe"]["mapper_lr"] == 1e-4
    assert card["recipe"]["lam"] is False and card["recipe"]["lambda_cyc"] == 2.0
    assert card["recipe"]["ema_warmup"] is False
    assert card["preset"] == card["model"]["preset"] == "tiny"
    assert card["harmonix_version"] == harmonix.__version__
    assert card["data"]["per_domain"]["brats/t2"]["patients"] == 2
    assert ModelConfig.from_dict(card["model"]).image_size == SIZE

    refused = cli(*args, "--iters", "3")
    assert refused.exit_code != 0 and "--resume" in refused.output
    resumed = cli("train", "--out", run, "--resume", "--iters", "3")  # the run's own data
    assert resumed.exit_code == 0, resumed.output
    assert ckpt.read_card(run)["iteration"] == 3
    generator = harmonix.load_generator(run)
    out = generator.translate(torch.full((1, 1, SIZE, SIZE), 100.0), "brats/t1", "brats/t2")
    assert out.shape == (1, 1, SIZE, SIZE)
    bad = cli("train", "--data", site, "--out", tmp_path / "x", "--backbone-option", "oops")
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output
    for recipe, message in (("lrr=1", "unknown key 'lrr'"), ("lr=abc", "lr takes a number"),
                            ("lr", "KEY=VALUE")):
        bad = cli("train", "--data", site, "--out", tmp_path / "y", "--recipe", recipe)
        assert bad.exit_code != 0 and message in bad.output, bad.output
        assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("backbone", ["convnext", "attention-unet"])
def test_backbone_swaps_from_the_cli_and_is_rebuilt_from_the_card(brats, tmp_path, cli, backbone):
    site, _ = brats
    run = tmp_path / backbone
    result = cli("train", "--data", site, "--out", run, "--backbone", backbone,
                 "--backbone-option", "preset=tiny", "--iters", "1", "--batch-size", "2",
                 "--size", SIZE, "--spacing", SPACING, "--pairing", "all", "--device", "cpu",
                 "--min-coverage", "0")
    assert result.exit_code == 0, result.output
    card = ckpt.read_card(run)
    assert card["backbone"] == {"name": backbone, "options": {"preset": "tiny"}}
    generator = harmonix.load_generator(run)
    expected = type(harmonix.build_backbone(backbone, img_size=SIZE, preset="tiny"))
    assert type(generator.nets.G.backbone) is expected
    out = generator.translate(torch.full((2, 1, SIZE, SIZE), 80.0), "brats/t1", "brats/flair")
    assert out.shape == (2, 1, SIZE, SIZE) and torch.isfinite(out).all()


# -- learning ----------------------------------------------------------------------------------
CSF, WM = 1, 3  # synth's truth tissue classes


def tissue_slices(site, sequences=("t1", "t2")):
    """Axial slices of a held-out case (preprocessed like training data) with their truth tissue
    map resampled (nearest) onto the same grid; only slices holding both CSF and WM."""
    from nibabel.processing import resample_from_to

    found = read_site(site)
    case = found.cases[0]
    prepared = preprocess_case(case, PREP, label_convention=found.label_convention)
    truth = nib.load(site / "_truth" / f"{case.id}_tissue.nii.gz")
    grid = (prepared.record.shape, prepared.record.affine)
    tissue = np.asarray(resample_from_to(truth, grid, order=0).dataobj).astype(int)
    keep = [k for k in range(tissue.shape[2])
            if (tissue[:, :, k] == CSF).sum() >= 5 and (tissue[:, :, k] == WM).sum() >= 5]
    images = {s: torch.from_numpy(prepared.volumes[s][:, :, keep].transpose(2, 0, 1).copy())
              for s in sequences}
    images = {s: v[:, None] for s, v in images.items()}
    return images, tissue[:, :, keep].transpose(2, 0, 1)


def csf_and_wm(images: torch.Tensor, tissue: np.ndarray) -> tuple[float, float]:
    values = images[:, 0].numpy()
    return float(values[tissue == CSF].mean()), float(values[tissue == WM].mean())


def t1_t2_site(source, out):
    """A center that acquires T1 and T2 only (as the registry's "local" target): the built-in
    BraTS-like cases without their T1ce and FLAIR."""
    for case in (p for p in source.iterdir() if p.is_dir() and not p.name.startswith("_")):
        (out / case.name).mkdir(parents=True)
        for file in case.iterdir():
            if file.name.endswith(("_t1.nii.gz", "_t2.nii.gz", "_seg.nii.gz")):
                shutil.copy(file, out / case.name / file.name)
    shutil.copytree(source / "_truth", out / "_truth")
    shutil.copy(source / "harmonix-site.json", out / "harmonix-site.json")
    return out


def test_short_training_learns_the_t2_contrast_and_lowers_cycle_and_style_losses(tmp_path):
    """After 200 iterations on the CPU the generated T2 of a held-out case has CSF brighter than
    white matter, as real T2 has and T1 has not; the cycle and style losses went down.

    The tiny Swin preset learns this within the budget with a 10x learning rate (1e-3, the
    mapper's 1e-5) and a short EMA (0.9); the recipe is the paper's otherwise. At this toy scale
    the reference-guided T2 got the order from each of 3 seeds tried, the latent-guided one
    (through a barely trained mapper) from 2, so the seed is fixed and the latent-guided check
    asks only for a CSF/WM ratio far above T1's.
    """
    brats = synthesize_site(tmp_path / "brats", 3, center="brats", spacing=SPACING,
                            write_truth=True, workers=1)
    site = t1_t2_site(brats, tmp_path / "t1t2")
    held = synthesize_site(tmp_path / "held", 1, center="brats", spacing=SPACING, seed=7,
                           write_truth=True, workers=1)
    dataset = make_training_data([site], tmp_path / "cache", PREP, pairing="all", progress=False)
    assert dataset.domains == ["brats/t1", "brats/t2"]
    history: list[dict[str, float]] = []

    def record(done, losses, solver):
        history.append({k: float(v) for k, v in losses.items()})

    iters = 200
    run = train(tmp_path / "run", dataset, iters, batch=8, seed=0, lr=1e-3, mapper_lr=1e-5,
                ema_beta=0.9, encoder_max_dim=32, mapper_dim=32, style_dim=64, latent_dim=16,
                checkpoint_every=iters, sample_every=iters, callback=record)

    def mean(key, part):
        values = [h[key] for h in history]
        return float(np.mean(values[:20] if part == "first" else values[-20:]))

    for key in ("G/latent_cyc", "G/ref_cyc", "G/latent_sty"):
        assert mean(key, "last") < 0.9 * mean(key, "first"), key
    # the reference-guided style loss falls less (0.23 -> 0.21 measured) since LAM's terms
    # share E's trunk; it must still fall
    assert mean("G/ref_sty", "last") < 0.97 * mean("G/ref_sty", "first")
    grid = run / "samples" / f"iter_{iters:06d}.png"
    assert grid.read_bytes()[:4] == b"\x89PNG"

    images, tissue = tissue_slices(held)
    t1_csf, t1_wm = csf_and_wm(images["t1"], tissue)
    t2_csf, t2_wm = csf_and_wm(images["t2"], tissue)
    assert t1_csf < t1_wm and t2_csf > t2_wm  # the data: the order flips between T1 and T2
    generator = harmonix.load_generator(run)
    latent = csf_and_wm(generator.translate(images["t1"], "brats/t1", "brats/t2"), tissue)
    references = tissue_slices(site, ["t2"])[0]["t2"]  # a training case's T2 slices
    guided = csf_and_wm(generator.translate(images["t1"], "brats/t1", "brats/t2",
                                            reference=references), tissue)
    print(f"CSF/WM: T1 {t1_csf:.0f}/{t1_wm:.0f}, T2 {t2_csf:.0f}/{t2_wm:.0f}, generated T2 "
          f"latent-guided {latent[0]:.0f}/{latent[1]:.0f}, reference-guided "
          f"{guided[0]:.0f}/{guided[1]:.0f}")
    assert guided[0] > guided[1] + 5, guided  # reference-guided: the order of T2
    assert latent[0] / latent[1] > 3 * t1_csf / t1_wm, latent  # latent-guided: far from T1's


# -- run safety (issue 11) ---------------------------------------------------------------------
def test_a_batch_larger_than_the_training_slices_is_refused_with_the_counts(brats, tmp_path):
    _, dataset = brats
    with pytest.raises(ValueError, match=rf"--batch-size 100000 is larger than the "
                                         rf"{len(dataset)} training slices \(brats/flair: \d+"):
        train(tmp_path / "run", dataset, 1, batch=100_000)
    assert not (tmp_path / "run").exists()


def _dead_pid() -> int:
    pid = 4_194_304 + 7  # above Linux's largest pid_max
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def test_resume_removes_a_killed_runs_temporary_checkpoint_and_keeps_the_run_settings(
    brats, tmp_path
):
    _, dataset = brats
    run = tmp_path / "run"
    train(run, dataset, 3, checkpoint_every=3, sample_every=1000)
    stale = run / "checkpoints" / temp_name("iter_000004", _dead_pid())
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    foreign = run / "checkpoints" / ".tmp-notes"  # not a name harmonix writes: left alone
    foreign.mkdir()
    train(run, dataset, 6, resume=True, checkpoint_every=None)
    assert not stale.exists() and foreign.is_dir()
    names = [p.name for p in ckpt.list_checkpoints(run)]
    assert names == ["iter_000003", "iter_000006"]  # every 3, as the run was started
    assert ckpt.read_card(run)["run"]["checkpoint_every"] == 3


def test_latest_json_may_only_name_a_checkpoint_of_the_run(brats, tmp_path):
    _, dataset = brats
    run, other = tmp_path / "run", tmp_path / "other"
    train(run, dataset, 2)
    train(other, dataset, 2)
    latest = run / "checkpoints" / "latest.json"
    latest.write_text(json.dumps({"checkpoint": "../../other/checkpoints/iter_000002"}))
    with pytest.raises(harmonix.errors.CheckpointError, match="not a checkpoint of this run"):
        train(run, dataset, 4, resume=True)
    assert ckpt.read_card(other)["iteration"] == 2


def test_batches_from_loader_workers_equal_the_in_process_ones(brats):
    from harmonix_ummgat.data import BatchSource
    from harmonix_ummgat.loop import batch_loader

    _, dataset = brats
    source = BatchSource(dataset, latent_dim=8, seed=5)
    loaded = list(batch_loader(source, 3, 2, 4, workers=1, pin_memory=False))
    assert len(loaded) == 2
    for iteration, batch in zip((2, 3), loaded, strict=True):
        direct = source.batch(iteration, 3)
        for key, value in vars(direct).items():
            assert torch.equal(value, getattr(batch, key)), key
