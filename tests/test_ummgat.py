"""UMMGAT networks, losses, EMA, the training step, checkpoints and the Generator (no data)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import harmonix
from harmonix.errors import CheckpointError
from harmonix.models import checkpoints as ckpt
from harmonix.registry import make_domain
from harmonix_ummgat import losses as L
from harmonix_ummgat.generator import UMMGATGenerator
from harmonix_ummgat.networks import (
    ModelConfig,
    Nets,
    build_nets,
    mask_image,
    to_255,
    to_unit,
)
from harmonix_ummgat.recipe import PAPER_LAM, Recipe
from harmonix_ummgat.samples import save_sample_grid
from harmonix_ummgat.solver import Batch, Solver

SIZE = 32
SMALL = dict(encoder_dim=8, encoder_max_dim=16, mapper_dim=16, style_dim=16, latent_dim=8)


def domains(n: int) -> tuple[str, ...]:
    return tuple(make_domain(f"c{i // 2}", ("t1", "t2")[i % 2]) for i in range(n))


class IdentityBackbone(harmonix.Backbone):
    """G(x, s) = x + shift * mean(s): the identity when ``shift`` is 0."""

    def __init__(self, shift: float = 0.0, style_dim: int = 16, **_):
        super().__init__(style_dim=style_dim)
        self.shift = shift
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x, style):
        return x * self.scale + self.shift * style.mean(1)[:, None, None, None]


class _TestBackbones:
    @harmonix.hookimpl
    def register_backbones(self, register):
        register("test-identity", IdentityBackbone)


@pytest.fixture(autouse=True)
def _test_backbones():
    harmonix.get_host().add(_TestBackbones(), name="ummgat-test-backbones")


def config(n: int = 4, backbone: str = "swin", **options) -> ModelConfig:
    backbone_options = {"preset": "tiny"} if backbone == "swin" else options.pop("bb", {})
    return ModelConfig(domains=domains(n), image_size=SIZE, backbone=backbone,
                       backbone_options=backbone_options, **{**SMALL, **options})


def images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def lesion_masks(b: int, present=None) -> torch.Tensor:
    mask = torch.zeros(b, 1, SIZE, SIZE)
    for i in range(b):
        if present is None or present[i]:
            mask[i, :, 8:16, 10:20] = 1
    return mask


# -- networks --------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 6, 10])
def test_every_network_has_the_documented_shapes(n):
    cfg = config(n)
    nets = build_nets(cfg)
    b = 3
    x, y = images(b), torch.tensor([0, n // 2, n - 1])
    style = nets.M(torch.randn(b, cfg.latent_dim), y)
    assert style.shape == (b, cfg.style_dim)
    assert nets.E(x, y).shape == (b, cfg.style_dim)
    assert nets.E(x, y + n).shape == (b, cfg.style_dim)  # lesion domains k + N
    assert nets.D(x, y).shape == (b,)
    assert nets.G(x, style).shape == (b, 1, SIZE, SIZE)
    assert len(cfg.lesion_domains) == n and cfg.lesion_domains[0] == "lesion:" + cfg.domains[0]
    # each of the 2N encoder heads and N mapper / discriminator heads is its own branch
    x1 = x[:1].expand(2 * n, -1, -1, -1)
    codes = nets.E(x1, torch.arange(2 * n))
    assert torch.cdist(codes, codes).add(torch.eye(2 * n)).min() > 0
    z = torch.randn(1, cfg.latent_dim).expand(n, -1)
    assert torch.cdist(nets.M(z, torch.arange(n)), nets.M(z, torch.arange(n))).add(
        torch.eye(n)).min() > 0
    assert nets.D(x1[:n], torch.arange(n)).unique().numel() == n


def test_model_config_round_trips_and_rejects_bad_domains():
    cfg = config(4)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="duplicate"):
        ModelConfig(domains=("a/t1", "a/t1"))
    with pytest.raises(ValueError, match="at least 2"):
        ModelConfig(domains=("a/t1",))


def test_scaling_helpers():
    x = torch.tensor([0.0, 127.5, 255.0])
    assert torch.allclose(to_unit(x), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(to_255(to_unit(x)), x)
    assert to_255(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 255.0]
    m = torch.tensor([1.0, 0.0])
    assert mask_image(torch.tensor([0.5, 0.5]), m).tolist() == [0.5, -1.0]


# -- losses ----------------------------------------------------------------------------------
def test_adversarial_loss_points_the_right_way():
    low, high = torch.full((4,), -2.0), torch.full((4,), 2.0)
    assert L.adversarial_loss(high, 1) < L.adversarial_loss(low, 1)  # real: wants high logits
    assert L.adversarial_loss(low, 0) < L.adversarial_loss(high, 0)  # fake: wants low logits
    assert math.isclose(L.adversarial_loss(torch.zeros(4), 1).item(), math.log(2), rel_tol=1e-6)
    with pytest.raises(ValueError):
        L.adversarial_loss(low, 2)


def test_r1_penalty_equals_its_analytic_value_for_a_linear_discriminator():
    w = torch.randn(1, 1, 5, 5, requires_grad=True)
    x = torch.randn(3, 1, 5, 5, requires_grad=True)
    out = (w * x).flatten(1).sum(1)  # D(x) = <w, x>: grad_x D = w for every sample
    gamma = 3.0
    r1 = L.r1_penalty(out, x, gamma)
    assert torch.allclose(r1, 0.5 * gamma * w.pow(2).sum())
    (grad_w,) = torch.autograd.grad(r1, w)  # d/dw (gamma/2 ||w||^2) = gamma w
    assert torch.allclose(grad_w, gamma * w)


class LinearD(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, 1, SIZE, SIZE) * 0.1)

    def forward(self, x, y):
        return (self.w * x).flatten(1).sum(1)


def test_discriminator_loss_has_the_r1_of_its_discriminator():
    cfg = config(4, backbone="test-identity")
    nets = build_nets(cfg)
    nets.D = LinearD()
    recipe = Recipe(r1_gamma=2.0)
    y = torch.tensor([0, 1, 2, 3])
    _, terms = L.compute_d_loss(nets, recipe, images(4), y, y.flip(0),
                                z_trg=torch.randn(4, cfg.latent_dim))
    assert torch.allclose(terms["r1"], 0.5 * 2.0 * nets.D.w.pow(2).sum())
    with pytest.raises(ValueError, match="exactly one"):
        L.compute_d_loss(nets, recipe, images(4), y, y)


def test_style_reconstruction_is_zero_only_when_styles_match():
    s = torch.randn(4, 16)
    assert L.style_reconstruction_loss(s, s) == 0
    assert torch.isclose(L.style_reconstruction_loss(s + 0.5, s), torch.tensor(0.5))


def g_loss(nets, recipe, n=4, lesion=None, guide="latent", **kw):
    cfg = config(n)
    b = 4
    y_org, y_trg = torch.tensor([0, 1, 2, 3]) % n, torch.tensor([1, 2, 3, 0]) % n
    lesion = lesion_masks(b) if lesion is None else lesion
    if guide == "latent":
        zs = (torch.randn(b, cfg.latent_dim, generator=torch.Generator().manual_seed(1)),
              torch.randn(b, cfg.latent_dim, generator=torch.Generator().manual_seed(2)))
        kw.setdefault("x_lesion_ref", images(b, 5))
        kw.setdefault("lesion_ref", lesion_masks(b))
        return L.compute_g_loss(nets, recipe, images(b), y_org, y_trg, num_domains=n, z_trgs=zs,
                                lesion=lesion, **kw)
    return L.compute_g_loss(nets, recipe, images(b), y_org, y_trg, num_domains=n,
                            x_refs=(images(b, 5), images(b, 6)), lesion=lesion,
                            lesion_ref=kw.pop("lesion_ref", lesion_masks(b)), **kw)


def test_cycle_loss_is_zero_for_an_identity_generator_and_positive_otherwise():
    torch.manual_seed(0)
    nets = build_nets(config(4, backbone="test-identity"))
    for guide in ("latent", "ref"):
        _, terms = g_loss(nets, Recipe(), guide=guide)
        assert terms["cyc"] == 0
    nets.G.backbone.shift = 0.5
    _, terms = g_loss(nets, Recipe())
    assert terms["cyc"] > 0.01
    assert L.cycle_loss(images(2), images(2)) == 0


def test_lesion_style_loss_counts_only_samples_with_a_lesion():
    s_pred, s_target = torch.zeros(3, 4), torch.tensor([[1.0] * 4, [3.0] * 4, [100.0] * 4])
    weight = torch.tensor([True, True, False])
    assert torch.isclose(L.lesion_style_loss(s_pred, s_target, weight), torch.tensor(2.0))
    assert L.lesion_style_loss(s_pred, s_target, torch.zeros(3, dtype=torch.bool)) == 0
    assert L.has_lesion(lesion_masks(3, [1, 0, 1])).tolist() == [True, False, True]


LAM_WEIGHTS = {"les": "lambda_les", "les_cyc": "lambda_les_cyc", "les_adv": "lambda_les_adv",
               "les_var": "lambda_les_var", "les_con": "lambda_les_con"}


@pytest.mark.parametrize("guide", ["latent", "ref"])
@pytest.mark.parametrize("paper", [False, True])
def test_lam_adds_exactly_its_weighted_terms_to_the_generator_loss(guide, paper):
    torch.manual_seed(0)
    nets = build_nets(config(4))
    weights = {"lambda_les_adv": 0.5, "lambda_les_var": 2.0, "lambda_les_con": 3.0}
    recipe = Recipe(lam=True, **{**weights, **(PAPER_LAM if paper else {})})
    with_lam, terms = g_loss(nets, recipe, guide=guide)
    without, terms_off = g_loss(nets, Recipe(lam=False), guide=guide)
    lam_terms = {k for k in terms if k.startswith("les")}
    expected = {"les", "les_cyc"} if paper else {"les", "les_cyc", "les_adv"} | (
        {"les_var", "les_con"} if guide == "latent" else set())
    assert lam_terms == expected and not any("les" in k for k in terms_off)
    assert terms["les"] > 0 and terms["les_cyc"] > 0
    added = sum(getattr(recipe, LAM_WEIGHTS[k]) * terms[k] for k in lam_terms)
    assert torch.isclose(with_lam - without, added, atol=1e-4)
    # no lesion in any source: the LAM terms are zero and the loss is unchanged
    _, empty = g_loss(nets, Recipe(lam=True), guide=guide, lesion=torch.zeros(4, 1, SIZE, SIZE))
    assert empty["les"] == 0 and empty["les_cyc"] == 0


def test_latent_lesion_target_is_a_real_reference_lesion_code_not_the_whole_image_code(
    monkeypatch,
):
    torch.manual_seed(0)
    nets, n = build_nets(config(4)), 4
    targets = []
    real_loss = L.lesion_style_loss

    def recording(pred, target, weight):
        targets.append(target)
        return real_loss(pred, target, weight)

    monkeypatch.setattr(L, "lesion_style_loss", recording)
    g_loss(nets, Recipe(), guide="latent")
    les_target = targets[0]  # the first LAM term: the translated lesion
    y_trg = torch.tensor([1, 2, 3, 0])
    z = torch.randn(4, config(4).latent_dim, generator=torch.Generator().manual_seed(1))
    whole_image = nets.M(z, y_trg)  # what the old LAM used as the target
    assert not torch.allclose(les_target, whole_image, atol=1e-3)
    real_lesion = nets.E(mask_image(images(4, 5), lesion_masks(4)), y_trg + n)
    assert torch.allclose(les_target, real_lesion, atol=1e-5)


def test_lesion_heads_learn_from_real_lesion_regions_in_the_latent_step():
    torch.manual_seed(0)
    nets, n, s = build_nets(config(4)), 4, 16
    x_ref = images(4, 5).requires_grad_(True)
    loss, _ = g_loss(nets, Recipe(**PAPER_LAM), guide="latent", x_lesion_ref=x_ref)
    grad_ref, grad_heads = torch.autograd.grad(loss, [x_ref, nets.E.heads.weight])
    inside = lesion_masks(4).bool().expand_as(grad_ref)
    assert grad_ref[inside].abs().sum() > 0  # the real reference lesion reaches the loss ...
    assert grad_ref[~inside].abs().sum() == 0  # ... through its lesion region only
    lesion_rows = grad_heads[n * s:].abs().sum()  # heads N..2N-1 are the lesion heads
    assert lesion_rows > 0


class _HeadRecorder(nn.Module):
    """E that records which heads it was asked for."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.heads_seen = encoder, []

    def forward(self, x, y):
        self.heads_seen += y.tolist()
        return self.encoder(x, y)


@pytest.mark.parametrize("lam", [True, False])
def test_no_lam_removes_every_lesion_term(lam):
    torch.manual_seed(0)
    cfg = config(4)
    solver = Solver(cfg, Recipe(lam=lam))
    recorder = _HeadRecorder(solver.nets.E)
    solver.nets.E = recorder
    losses = solver.step(batch(cfg), 0)
    lesion_terms = [k for k in losses if "les" in k]
    lesion_heads = [y for y in recorder.heads_seen if y >= cfg.num_domains]
    if lam:  # D: real, fake, R1 on lesions; G: les, les_cyc, les_adv (+ var, con when latent)
        assert len(lesion_terms) == 2 * 3 + 5 + 3 and lesion_heads
    else:
        assert lesion_terms == [] and lesion_heads == []


def test_style_diversification_is_subtracted():
    torch.manual_seed(0)
    nets = build_nets(config(4))
    base, terms = g_loss(nets, Recipe(lambda_ds=0.0))
    with_ds, terms_ds = g_loss(nets, Recipe(lambda_ds=2.0))
    assert "ds" not in terms and terms_ds["ds"] > 0
    assert torch.isclose(with_ds, base - 2.0 * terms_ds["ds"], atol=1e-5)
    assert Recipe(lambda_ds=1.0, ds_iters=100).lambda_ds_at(50) == 0.5


def test_moving_average_is_a_lerp_towards_the_model():
    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    L.moving_average(model, ema, beta=0.9)
    for p, e0, e1 in zip(model.parameters(), before, ema.parameters(), strict=True):
        assert torch.allclose(e1, 0.9 * e0 + 0.1 * p)


# -- the training step -------------------------------------------------------------------------
def batch(cfg: ModelConfig, b: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = cfg.num_domains
    return Batch(
        images(b, seed), torch.randint(n, (b,), generator=g), lesion_masks(b, [1, 0, 1, 1]),
        torch.randint(n, (b,), generator=g), images(b, seed + 1), images(b, seed + 2),
        torch.randn(b, cfg.latent_dim, generator=g), torch.randn(b, cfg.latent_dim, generator=g),
        images(b, seed + 3), lesion_masks(b),
    )


def test_a_step_trains_every_network_and_moves_the_ema_by_one_minus_beta():
    torch.manual_seed(0)
    cfg = config(4)
    solver = Solver(cfg, Recipe(ema_beta=0.9, ema_warmup=False, mapper_lr=1e-4))
    start = {k: v.clone() for k, v in solver.state_tensors().items()}
    losses = solver.step(batch(cfg), 0)
    assert {"D/latent_r1", "D/ref_fake", "G/latent_cyc", "G/ref_sty", "G/latent_les"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    after = solver.state_tensors()
    for name in ("E", "M", "G", "D"):
        key = next(k for k in start if k.startswith(f"{name}.") and k.endswith("weight"))
        assert not torch.equal(start[key], after[key]), name
        if name != "D":  # ema = 0.9 * ema0 + 0.1 * new, with ema0 = the initial weights
            expected = 0.9 * start[f"ema.{key}"] + 0.1 * after[key]
            assert torch.allclose(after[f"ema.{key}"], expected, atol=1e-6)
    assert not any(k.startswith("ema.D.") for k in after)


# -- checkpoints and the generator ------------------------------------------------------------
def card_for(cfg: ModelConfig) -> dict:
    return {"trainer": "ummgat", "model": cfg.to_dict(), "domains": list(cfg.domains)}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = config(4)
    solver = Solver(cfg, Recipe())
    solver.step(batch(cfg), 0)
    run = tmp_path / "run"
    state = {"iteration": 1, "optimizers": solver.optimizer_state()}
    ckpt.save_checkpoint(run, 1, tensors=solver.state_tensors(), card=card_for(cfg),
                         training_state=state)
    return run, solver, cfg


def test_checkpoint_round_trip(saved):
    run, solver, cfg = saved
    folder = run / "checkpoints" / "iter_000001"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["checkpoint"] == folder.name
    card = json.loads((folder / "model_card.json").read_text())
    assert card["trainer"] == "ummgat" and card["iteration"] == 1
    assert len(card["files"]["model.safetensors"]["sha256"]) == 64
    loaded = ckpt.load_tensors(run)
    for key, value in solver.state_tensors().items():
        assert torch.equal(loaded[key], value), key
    state = ckpt.load_training_state(folder)
    fresh = Solver(cfg, Recipe())
    fresh.load_state_tensors(loaded)
    fresh.load_optimizer_state(state["optimizers"])
    assert fresh.optims["G"].state_dict()["state"].keys() == solver.optims["G"].state_dict()[
        "state"].keys()

    for path in (run, folder, folder / "model.safetensors", folder / "model_card.json"):
        generator = harmonix.load_generator(path)
        assert isinstance(generator, UMMGATGenerator)
        assert generator.domains == list(cfg.domains) and generator.image_size == SIZE
    ema_g = solver.ema.G.state_dict()
    for key, value in generator.nets.G.state_dict().items():
        assert torch.equal(value, ema_g[key])


def test_saving_again_replaces_and_keep_prunes(saved):
    run, solver, cfg = saved
    for it in (1, 2, 3):
        ckpt.save_checkpoint(run, it, tensors=solver.state_tensors(), card=card_for(cfg), keep=2)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["iter_000002", "iter_000003"]
    assert ckpt.latest_checkpoint(run).name == "iter_000003"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_truncated_or_corrupt_checkpoints_raise_checkpoint_error_naming_the_file(saved):
    run, _, _ = saved
    folder = run / "checkpoints" / "iter_000001"
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        harmonix.load_generator(run)
    weights.write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        ckpt.load_tensors(folder)
    state = folder / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="training_state.pt"):
        ckpt.load_training_state(folder)
    (folder / "model_card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model_card.json"):
        ckpt.read_card(folder)
    (run / "checkpoints" / "latest.json").write_text('{"checkpoint": "iter_000009"}')
    with pytest.raises(CheckpointError, match="latest.json"):
        harmonix.load_generator(run)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        harmonix.load_generator(run / "checkpoints" / "iter_000001" / "..")


def test_generator_translates_latent_and_reference_guided(saved, tmp_path):
    run, _, cfg = saved
    generator = harmonix.load_generator(run)
    x = torch.rand(2, 1, SIZE, SIZE) * 255
    a = generator.translate(x, "c0/t1", "c1/t2", seed=1)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255
    assert torch.equal(a, generator.translate(x, "c0/t1", "c1/t2", seed=1))
    assert not torch.equal(a, generator.translate(x, "c0/t1", "c1/t2", seed=2))
    ref = generator.translate(x, "c0/t1", "c1/t2", reference=torch.rand(3, 1, SIZE, SIZE) * 255)
    assert ref.shape == x.shape
    odd = generator.translate(torch.rand(1, 1, 28, 36) * 255, "c0/t1", "c0/t2")
    assert odd.shape == (1, 1, 28, 36)  # padded to the backbone's multiple and cropped back
    assert generator.style_codes(x, "c0/t2", lesion=True).shape == (2, cfg.style_dim)
    with pytest.raises(ValueError, match="unknown domain"):
        generator.translate(x, "c0/t1", "nowhere/t9")
    path, grid = save_sample_grid(generator, x, ["c0/t1", "c1/t1"], tmp_path / "grid.png")
    assert grid.shape == (2, 1 + 4, SIZE, SIZE) and path.read_bytes()[:4] == b"\x89PNG"


def test_nets_container_skips_the_missing_discriminator():
    nets = build_nets(config(4), discriminator=False)
    assert set(nets.named()) == {"E", "M", "G"} and isinstance(nets, Nets)


def test_ema_warm_up_rises_to_the_recipe_decay_and_can_be_switched_off():
    recipe = Recipe(ema_beta=0.999)
    decays = [recipe.ema_beta_at(t) for t in range(0, 20_000, 50)]
    assert decays[0] == pytest.approx(0.1)  # the first update mostly replaces the random init
    assert all(a <= b for a, b in zip(decays, decays[1:], strict=False))
    assert decays[-1] == 0.999 and recipe.ema_beta_at(9000) == 0.999
    assert Recipe(ema_beta=0.999, ema_warmup=False).ema_beta_at(0) == 0.999
