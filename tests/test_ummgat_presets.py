"""UMMGAT model presets (paper, fast, small, tiny), He initialisation and the recipe."""

from __future__ import annotations

import math

import pytest
import torch
from test_ummgat import batch, config, domains, images
from torch import nn

from harmonix.registry import make_domain, split_domain
from harmonix_ummgat.networks import ModelConfig, build_nets, stargan_width
from harmonix_ummgat.recipe import Recipe, recipe_overrides
from harmonix_ummgat.solver import Batch, Solver


def params(net: nn.Module) -> float:
    return sum(p.numel() for p in net.parameters()) / 1e6


def test_paper_preset_has_stargan_widths_and_a_swin_t_sized_swin_unet_tiling_176():
    from timm.models.swin_transformer import SwinTransformerBlock

    cfg = ModelConfig(domains=domains(6))  # the default preset
    assert cfg.preset == "paper" and cfg.backbone_options == {"preset": "paper"}
    assert (cfg.encoder_dim, cfg.encoder_max_dim, cfg.mapper_dim) == (2**14 // 176, 512, 512)
    nets = build_nets(cfg, init=False)
    blocks = [m for m in nets.G.modules() if isinstance(m, SwinTransformerBlock)]
    assert {tuple(b.input_resolution) for b in blocks} == {(88, 88), (44, 44), (22, 22), (11, 11)}
    assert {b.window_size for b in blocks} == {(11, 11)}  # windows tile every level exactly
    heads = sorted({b.attn.num_heads for b in blocks})
    assert heads == [3, 6, 12, 24] and nets.G.backbone.patch_embed.proj.out_channels == 96
    assert 26 < params(nets.G) < 29  # Cao et al.'s Swin-Unet: ~27 M
    assert params(nets.M) > 5 and params(nets.E) > 15 and params(nets.D) > 15
    fast = build_nets(ModelConfig(domains=domains(6), preset="fast"), init=False)
    assert params(fast.G) * 8 < params(nets.G)
    assert stargan_width(16) == 512 and stargan_width(176) == 93


def test_presets_follow_a_named_backbone_preset_and_old_cards_read_as_fast():
    tiny = ModelConfig(domains=domains(2), image_size=32, backbone_options={"preset": "tiny"})
    assert tiny.preset == "tiny" and tiny.encoder_dim == 8
    explicit = ModelConfig(domains=domains(2), preset="fast", encoder_dim=12)
    assert (explicit.encoder_dim, explicit.mapper_dim) == (12, 256)
    # a card written before presets: widths stored, backbone preset "default" (now "fast")
    old = {"domains": list(domains(2)), "image_size": 32, "backbone": "swin",
           "backbone_options": {"preset": "default"}, "encoder_dim": 32,
           "encoder_max_dim": 256, "mapper_dim": 256, "style_dim": 64, "latent_dim": 16}
    cfg = ModelConfig.from_dict(old)
    assert cfg.preset == "fast" and cfg.encoder_dim == 32
    net = build_nets(cfg, init=False).G.backbone
    assert net.patch_embed.proj.out_channels == 64  # the fast (old default) swin
    no_preset = {**old, "backbone_options": {}}  # the old default swin, not the paper one
    assert ModelConfig.from_dict(no_preset).backbone_options == {"preset": "fast"}
    tiny_card = {**old, "backbone_options": {"preset": "tiny"}}
    assert ModelConfig.from_dict(tiny_card).preset == "tiny"
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        ModelConfig(domains=domains(2), preset="huge")
    with pytest.raises(ValueError, match="center/sequence"):
        ModelConfig(domains=("t1", "t2"))
    assert split_domain(make_domain("brats", "t2")) == ("brats", "t2")
    with pytest.raises(ValueError):
        make_domain("a/b", "t1")


def test_paper_preset_shapes_and_one_training_step_at_a_reduced_size():
    torch.manual_seed(0)
    cfg = ModelConfig(domains=domains(2), image_size=16, preset="paper", latent_dim=16)
    solver = Solver(cfg, Recipe(batch=2))
    nets = solver.modules
    x, y = images(2)[..., :16, :16], torch.tensor([0, 1])
    style = nets.M(torch.randn(2, 16), y)
    assert style.shape == (2, 64) and nets.E(x, y + 2).shape == (2, 64)
    assert nets.D(x, y).shape == (2,) and nets.G(x, style).shape == (2, 1, 16, 16)
    b = batch(cfg, 2)
    b = Batch(**{k: v[..., :16, :16] if v.dim() == 4 else v for k, v in vars(b).items()})
    before = nets.G.backbone.head.weight.detach().clone()
    losses = solver.step(b, 0)
    assert all(torch.isfinite(v) for v in losses.values())
    assert "G/latent_les" in losses and not torch.equal(before, nets.G.backbone.head.weight)


def test_every_module_g_included_gets_he_init_with_zero_biases():
    from timm.models.swin_transformer import SwinTransformerBlock

    torch.manual_seed(0)
    nets = build_nets(config(4))
    in_blocks = {id(m) for b in nets.G.modules() if isinstance(b, SwinTransformerBlock)
                 for m in b.modules()}  # documented exception: they keep their own init
    layers = [(name, m) for name, net in nets.named().items() for m in net.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in in_blocks]
    assert {name for name, _ in layers} == {"E", "M", "G", "D"}
    for _, layer in layers:
        assert layer.bias is None or not layer.bias.any()
    g_layers = [m for name, m in layers if name == "G"]
    biggest = max(g_layers, key=lambda m: m.weight.numel())  # He: std = sqrt(2 / fan_in)
    ratio = biggest.weight.std().item() / math.sqrt(2 / biggest.weight[0].numel())
    assert abs(ratio - 1) < 0.15


def test_recipe_defaults_to_the_papers_rates_and_takes_typed_overrides():
    assert Recipe().mapper_lr == Recipe().lr == 1e-4
    typed = recipe_overrides({"lr": "3e-4", "ema_warmup": "false", "ds_iters": "50"})
    assert typed == {"lr": 3e-4, "ema_warmup": False, "ds_iters": 50}
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        recipe_overrides({"lrr": "1"})
    with pytest.raises(ValueError, match="lr=fast: lr takes a number"):
        recipe_overrides({"lr": "fast"})
    with pytest.raises(ValueError, match="ema_warmup takes true or false"):
        recipe_overrides({"ema_warmup": "maybe"})
    with pytest.raises(ValueError, match="ema_beta must be between 0 and 1"):
        recipe_overrides({"ema_beta": "1.5"})
    with pytest.raises(ValueError, match="use --iters"):
        recipe_overrides({"iters": "5"})
