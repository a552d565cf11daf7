"""The lesion-aware module: its health measure and the terms a lesion-blind E cannot satisfy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harmonix_ummgat import lam
from harmonix_ummgat.losses import compute_g_loss
from harmonix_ummgat.networks import ModelConfig, StyleEncoder, build_nets, mask_image
from harmonix_ummgat.recipe import PAPER_LAM, Recipe

SIZE, N, S = 32, 3, 8


def config() -> ModelConfig:
    return ModelConfig(domains=tuple(f"c/s{k}" for k in range(N)), image_size=SIZE,
                       style_dim=S, latent_dim=4, encoder_dim=4, encoder_max_dim=8,
                       mapper_dim=8, backbone_options={"preset": "tiny"})


def lesion_slices(n_per_domain: int = 6, seed: int = 0):
    """Slices with a bright disc of varying size and brightness (the lesion) on noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    images, masks, domains = [], [], []
    for k in range(N):
        for i in range(n_per_domain):
            r = 3 + i % 4
            mask = (((yy - 10) ** 2 + (xx - 16) ** 2) <= r * r).float()[None]
            image = torch.rand(1, SIZE, SIZE, generator=g) * 0.5 - 0.5 + mask * (0.3 + 0.1 * i)
            images.append(image)
            masks.append(mask)
            domains.append(k)
    return torch.stack(images), torch.stack(masks), domains


class CollapsedLesionHeads(nn.Module):
    """An encoder whose lesion heads (``k + N``) output one constant per head."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x, y):
        codes = self.encoder(x, y)
        constant = torch.arange(S, dtype=codes.dtype)[None] * (y[:, None] + 1)
        return torch.where((y >= N)[:, None], constant, codes)


def test_the_spread_measure_flags_a_collapsed_encoder_and_not_a_working_one():
    torch.manual_seed(0)
    encoder = StyleEncoder(config())
    images, masks, domains = lesion_slices()
    healthy = lam.lesion_code_spread(encoder, images, masks, domains, N)
    collapsed = lam.lesion_code_spread(CollapsedLesionHeads(encoder), images, masks, domains, N)
    assert set(healthy) == set(collapsed) == set(range(N))
    assert all(v > 0.05 for v in healthy.values())
    assert all(v < 1e-6 for v in collapsed.values())  # each head's own constant: no spread
    assert all(v < lam.COLLAPSED_BELOW for v in collapsed.values())


def test_spread_is_the_root_mean_variance_worked_by_hand():
    codes = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # variances 1 and 4 -> sqrt(2.5)
    assert math.isclose(float(lam.spread(codes)), math.sqrt(2.5), rel_tol=1e-6)
    # one constant per domain: no spread within a domain, whatever the heads' biases
    codes = torch.tensor([[1.0, 1.0], [1.0, 1.0], [5.0, 5.0], [5.0, 5.0]])
    centred = lam.centred_by_domain(codes, torch.tensor([0, 0, 1, 1]))
    assert float(lam.spread(centred)) == 0 and float(lam.spread(codes)) == 2.0


def test_the_spread_term_charges_a_constant_head_in_full_and_spread_codes_nothing():
    whole = torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 0.0], [2.0, 2.0]])  # spread 1 per domain
    domains = torch.tensor([0, 0, 1, 1])
    constant = torch.ones(4, 2)
    assert math.isclose(float(lam.spread_loss(constant, whole, domains, domains, 1.0)), 1.0,
                        rel_tol=1e-3)
    assert float(lam.spread_loss(whole * 1.5, whole, domains, domains, 1.0)) == 0.0
    # a lone sample per domain has no within-domain spread to measure: zero, in the graph
    lone = torch.ones(2, 2, requires_grad=True)
    value = lam.spread_loss(lone, whole, torch.tensor([0, 1]), domains, 1.0)
    assert value.item() == 0.0 and value.requires_grad


def test_the_contrast_term_and_the_mirrored_healthy_region():
    lesion_codes, scale = torch.zeros(2, 4), torch.tensor(1.0)
    same = lam.contrast_loss(lesion_codes, lesion_codes, scale, torch.tensor([True, True]))
    apart = lam.contrast_loss(lesion_codes, lesion_codes + 2.0, scale, torch.tensor([True, True]))
    half = lam.contrast_loss(lesion_codes, lesion_codes + 0.5, scale, torch.tensor([True, False]))
    assert float(same) == 1.0 and float(apart) == 0.0 and math.isclose(float(half), 0.5)
    images = torch.zeros(1, 1, 8, 8)
    images[..., :, 6:] = -1.0  # background on the right
    lesion = torch.zeros(1, 1, 8, 8)
    lesion[..., 1:3, 2:4] = 1.0
    healthy = lam.mirrored_healthy(images, lesion)
    assert healthy[0, 0, 5:7, 2:4].eq(1).all() and healthy.sum() == 4  # mirrored along dim -2
    lesion[..., 1:3, 6:8] = 1.0  # its mirror lies in background: not brain
    assert lam.mirrored_healthy(images, lesion).sum() == 4


def test_the_new_lam_cannot_be_satisfied_by_constant_lesion_heads():
    """The paper's two lesion terms are zero for a collapsed E; the new objective is not, and
    its gradient reaches the lesion heads."""
    torch.manual_seed(0)
    cfg = config()
    nets = build_nets(cfg)
    nets.E = CollapsedLesionHeads(nets.E)
    images, masks, domains = lesion_slices(2)
    y = torch.tensor(domains)
    b = len(domains)
    z = (torch.randn(b, 4), torch.randn(b, 4))
    kw = dict(num_domains=N, z_trgs=z, lesion=masks, x_lesion_ref=images.flip(0),
              lesion_ref=masks.flip(0))
    _, paper = compute_g_loss(nets, Recipe(**PAPER_LAM), images, y, y.roll(1), **kw)
    assert float(paper["les"]) == 0 and float(paper["les_cyc"]) == 0  # met by ignoring lesions
    _, new = compute_g_loss(nets, Recipe(), images, y, y.roll(1), **kw)
    assert float(new["les_var"]) > 0.9 and float(new["les_con"]) == 1.0

    encoder = build_nets(cfg).E
    with torch.no_grad():  # nearly collapsed: the lesion heads' weights scaled far down
        rows = slice(N * S, 2 * N * S)
        encoder.heads.weight[rows] *= 1e-4
    nets.E = encoder
    loss, terms = compute_g_loss(nets, Recipe(), images, y, y.roll(1), **kw)
    (grad,) = torch.autograd.grad(loss, encoder.heads.weight)
    assert float(terms["les_var"]) > 0.5 and grad[N * S:].abs().sum() > 0


def test_masked_lesions_are_what_the_lesion_heads_see():
    images, masks, _ = lesion_slices(1)
    masked = mask_image(images, masks)
    assert masked[masks == 0].eq(-1).all() and torch.equal(masked[masks == 1], images[masks == 1])


def test_the_structure_term_ignores_contrast_and_sees_lost_anatomy():
    from harmonix_ummgat.losses import structure_loss

    images, _, _ = lesion_slices(1)
    same = float(structure_loss(images, images))  # not 0: eps discounts weak edges
    inverted = -images  # every edge kept, the contrast flipped
    assert float(structure_loss(inverted, images)) == pytest.approx(same, abs=1e-6)
    blobs = torch.rand(images.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert float(structure_loss(blobs, images)) > 3 * same
