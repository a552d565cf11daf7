"""UMMGAT losses as free functions, following StarGAN-v2's ``core/solver.py``.

Images are in [-1, 1]. ``nets`` is anything with ``E``, ``M``, ``G``, ``D`` attributes (plain,
DDP-wrapped or compiled modules). Loss terms are returned as detached tensors, so that a training
step never waits for the device; call ``.item()`` only when logging.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from harmonix_ummgat.lam import (
    centred_by_domain,
    contrast_loss,
    has_lesion,
    mirrored_healthy,
    spread,
    spread_loss,
)
from harmonix_ummgat.networks import mask_image
from harmonix_ummgat.recipe import Recipe


def adversarial_loss(logits: torch.Tensor, target: int,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """Non-saturating GAN loss: BCE of the logits against all-real (1) or all-fake (0);
    with ``weight`` (0/1 per sample), the mean over the samples that count."""
    if target not in (0, 1):
        raise ValueError(f"target must be 0 or 1, got {target}")
    logits = logits.float()
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))
    per_sample = F.binary_cross_entropy_with_logits(
        logits, torch.full_like(logits, float(target)), reduction="none")
    weight = weight.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def r1_per_sample(d_out: torch.Tensor, x_in: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """``gamma / 2 * ||grad_x D(x)||^2`` for each real image (``(B,)``, fp32); ``x_in`` must
    require grad and ``d_out`` must come from it."""
    (grad,) = torch.autograd.grad(d_out.float().sum(), x_in, create_graph=True)
    return 0.5 * gamma * grad.float().pow(2).flatten(1).sum(1)


def r1_penalty(d_out: torch.Tensor, x_in: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Zero-centred gradient penalty on real images: ``gamma / 2 * E_x ||grad_x D(x)||^2``."""
    return r1_per_sample(d_out, x_in, gamma).mean()


def style_reconstruction_loss(s_pred: torch.Tensor, s_target: torch.Tensor) -> torch.Tensor:
    """L1 between the style E reads back from a generated image and the style G was given."""
    return (s_pred.float() - s_target.float()).abs().mean()


def cycle_loss(x_rec: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """L1 between the image translated there and back and the original."""
    return (x_rec.float() - x_real.float()).abs().mean()


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along H and W, cropped to a common ``(H-1, W-1)`` grid."""
    x = x.float()
    return x[..., 1:, :-1] - x[..., :-1, :-1], x[..., :-1, 1:] - x[..., :-1, :-1]


def structure_loss(x_fake: torch.Tensor, x_real: torch.Tensor, eps: float = 0.05) -> torch.Tensor:
    """Normalised gradient fields (Haber and Modersitzki): ``1 - mean cos^2`` of the angle
    between the two images' intensity gradients, over the pixels where either has brain
    (above background -1). Independent of contrast (a gradient that flips sign still counts as
    aligned); ``eps`` (in [-1, 1] units) keeps flat regions from counting."""
    (fy, fx), (ry, rx) = _gradients(x_fake), _gradients(x_real)
    dot = fy * ry + fx * rx
    norms = (fy.pow(2) + fx.pow(2) + eps**2) * (ry.pow(2) + rx.pow(2) + eps**2)
    alignment = dot.pow(2) / norms
    brain = ((x_real[..., :-1, :-1] > -0.99) | (x_fake[..., :-1, :-1] > -0.99)).float()
    return 1.0 - (alignment * brain).sum() / brain.sum().clamp(min=1.0)


def diversity_loss(x_fake: torch.Tensor, x_fake2: torch.Tensor) -> torch.Tensor:
    """Style diversification: L1 between two outputs for two styles (maximised; 2nd detached)."""
    return (x_fake.float() - x_fake2.detach().float()).abs().mean()


def lesion_style_loss(
    s_pred: torch.Tensor, s_target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """L1 between lesion style codes, averaged over the samples with ``weight`` 1.

    Zero (but still connected to the graph) when no sample in the batch has a lesion.
    """
    per_sample = (s_pred.float() - s_target.float()).abs().mean(1)
    weight = weight.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


@torch.no_grad()
def moving_average(model: nn.Module, ema: nn.Module, beta: float = 0.999) -> None:
    """EMA update ``ema = beta * ema + (1 - beta) * model`` for every parameter (StarGAN-v2)."""
    params, params_ema = list(model.parameters()), list(ema.parameters())
    if len(params) != len(params_ema):
        raise ValueError("the model and its EMA copy have different parameters")
    torch._foreach_lerp_(params_ema, [p.detach() for p in params], 1.0 - beta)


def _autocast(x: torch.Tensor, amp: bool):
    if not amp:  # also lets FLOPs be counted on the meta device
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=torch.bfloat16)


def _encode(E: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Run E once on several ``(images, heads)`` batches (E has no batch statistics)."""
    codes = E(torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
    return list(codes.split([x.shape[0] for x, _ in pairs]))


def lesion_branches(recipe: Recipe, lesion: torch.Tensor | None) -> bool:
    """Whether D's lesion heads (``k + N``) take part: LAM on, ``lambda_les_adv`` > 0."""
    return recipe.lam and recipe.lambda_les_adv > 0 and lesion is not None


def compute_d_loss(
    nets,
    recipe: Recipe,
    x_real: torch.Tensor,
    y_org: torch.Tensor,
    y_trg: torch.Tensor,
    *,
    z_trg: torch.Tensor | None = None,
    x_ref: torch.Tensor | None = None,
    num_domains: int | None = None,
    lesion: torch.Tensor | None = None,
    x_lesion_ref: torch.Tensor | None = None,
    lesion_ref: torch.Tensor | None = None,
    amp: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss for a latent-guided (``z_trg``) or reference-guided (``x_ref``) step.

    With LAM's lesion branches (:mod:`harmonix_ummgat.lam`), D's head ``y_trg + N`` also
    judges the lesion region: real, a target-domain lesion (``x_lesion_ref`` inside
    ``lesion_ref``, with its own R1); fake, the translated image inside the source ``lesion``.
    The real pass and R1 run in fp32; the fake pass may run under bf16 autocast.
    """
    if (z_trg is None) == (x_ref is None):
        raise ValueError("give exactly one of z_trg (latent-guided) or x_ref (reference-guided)")
    branches = lesion_branches(recipe, lesion)
    if branches and (num_domains is None or x_lesion_ref is None or lesion_ref is None):
        raise ValueError("D's lesion branches need num_domains, a lesion reference and its mask")
    b = x_real.shape[0]
    x_in, heads = x_real.detach(), y_org
    if branches:
        x_in = torch.cat([x_in, mask_image(x_lesion_ref.detach(), lesion_ref)])
        heads = torch.cat([y_org, y_trg + num_domains])
    x_in = x_in.requires_grad_(True)
    out = nets.D(x_in, heads)
    r1 = r1_per_sample(out, x_in, recipe.r1_gamma)
    loss_real = adversarial_loss(out[:b], 1)
    loss_reg = r1[:b].mean()

    with torch.no_grad(), _autocast(x_real, amp):
        s_trg = nets.M(z_trg, y_trg) if z_trg is not None else nets.E(x_ref, y_trg)
        x_fake = nets.G(x_real.detach(), s_trg)
    fakes, heads = x_fake, y_trg
    if branches:
        fakes = torch.cat([x_fake, mask_image(x_fake, lesion)])
        heads = torch.cat([y_trg, y_trg + num_domains])
    with _autocast(x_real, amp):
        out_fake = nets.D(fakes, heads)
    loss_fake = adversarial_loss(out_fake[:b], 0)

    loss = loss_real + loss_fake + loss_reg
    terms = {"real": loss_real, "fake": loss_fake, "r1": loss_reg}
    if branches:
        les_real = adversarial_loss(out[b:], 1)
        les_fake = adversarial_loss(out_fake[b:], 0, has_lesion(lesion))
        les_r1 = r1[b:].mean()
        loss = loss + recipe.lambda_les_adv * (les_real + les_fake + les_r1)
        terms.update(les_real=les_real, les_fake=les_fake, les_r1=les_r1)
    return loss, {k: v.detach() for k, v in terms.items()}


def compute_g_loss(
    nets,
    recipe: Recipe,
    x_real: torch.Tensor,
    y_org: torch.Tensor,
    y_trg: torch.Tensor,
    *,
    num_domains: int,
    z_trgs: tuple[torch.Tensor, torch.Tensor] | None = None,
    x_refs: tuple[torch.Tensor, torch.Tensor] | None = None,
    lesion: torch.Tensor | None = None,
    x_lesion_ref: torch.Tensor | None = None,
    lesion_ref: torch.Tensor | None = None,
    lambda_ds: float | None = None,
    amp: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's (and, in the latent-guided step, M's and E's) loss, as in StarGAN-v2, plus LAM.

    LAM (``recipe.lam``, :mod:`harmonix_ummgat.lam`) treats the lesion region of domain ``k``
    as domain ``k + N`` of E:

    * ``les``: E's lesion head ``y_trg + N`` on the generated image inside the source lesion
      mask (G keeps anatomy) must give the lesion style of a *real* target-domain lesion, E's
      lesion head on ``x_lesion_ref`` (default: the reference ``x_refs[0]``) inside
      ``lesion_ref``; never the whole-image code.
    * ``les_cyc``: the lesion of the cycle's reconstruction must keep the source's lesion
      style, E's head ``y_org + N`` on the real source lesion.
    * ``les_adv`` (``lambda_les_adv``): D's lesion head ``y_trg + N`` must take the generated
      image's lesion region for a real target-domain lesion.
    * in the latent-guided step (where E learns), ``les_var`` and ``les_con`` keep E's lesion
      codes of real lesions spread and different from mirrored healthy tissue.

    With ``les_stop_grad`` the real-lesion codes are fixed targets of ``les`` and ``les_cyc``
    (the paper's form lets both sides move, which a constant head satisfies). Samples without a
    lesion (in the source, or in the reference for ``les``) do not count.
    """
    if (z_trgs is None) == (x_refs is None):
        raise ValueError("give exactly one of z_trgs (latent-guided) or x_refs (reference-guided)")
    lambda_ds = recipe.lambda_ds if lambda_ds is None else lambda_ds
    lam = recipe.lam and lesion is not None
    latent = z_trgs is not None
    x_lesion_ref = x_refs[0] if x_lesion_ref is None and x_refs is not None else x_lesion_ref
    if lam and (lesion_ref is None or x_lesion_ref is None):
        raise ValueError("the LAM loss needs a target-domain reference and its lesion mask")
    keep_codes = lam and latent and (recipe.lambda_les_var > 0 or recipe.lambda_les_con > 0)
    terms: dict[str, torch.Tensor] = {}

    with _autocast(x_real, amp):
        # target style: from the mapper, or encoded from references; LAM: a real lesion's style
        pairs = [] if latent else [(x_refs[0], y_trg)]
        if not latent and lambda_ds > 0:
            pairs.append((x_refs[1], y_trg))
        if keep_codes:  # the lesion reference's whole-image code and its mirrored healthy region
            healthy = mirrored_healthy(x_lesion_ref, lesion_ref)
            pairs.append((x_lesion_ref, y_trg))
            pairs.append((mask_image(x_lesion_ref, healthy), y_trg + num_domains))
        if lam:
            pairs.append((mask_image(x_lesion_ref, lesion_ref), y_trg + num_domains))
            pairs.append((mask_image(x_real, lesion), y_org + num_domains))
        codes = _encode(nets.E, pairs) if pairs else []
        if latent:
            s_trg = nets.M(z_trgs[0], y_trg)
        else:
            s_trg = codes[0]
            s_trg2 = codes[1] if lambda_ds > 0 else None
        if lam:
            s_les_trg, s_les_org = codes[-2], codes[-1]
            s_les_trg_target, s_les_org_target = s_les_trg, s_les_org
            if not latent or recipe.les_stop_grad:  # fixed targets (always when E is frozen)
                s_les_trg_target, s_les_org_target = s_les_trg.detach(), s_les_org.detach()
            has_source_lesion = has_lesion(lesion)

        x_fake = nets.G(x_real, s_trg)
        fakes, heads = x_fake, y_trg
        branches = lesion_branches(recipe, lesion)
        if branches:
            fakes = torch.cat([x_fake, mask_image(x_fake, lesion)])
            heads = torch.cat([y_trg, y_trg + num_domains])
        out_fake = nets.D(fakes, heads)
        b = x_real.shape[0]
        loss_adv = adversarial_loss(out_fake[:b], 1)

        # style reconstruction, the source style for the cycle and (LAM) the generated lesion
        pairs = [(x_fake, y_trg), (x_real, y_org)]
        if lam:
            pairs.append((mask_image(x_fake, lesion), y_trg + num_domains))
        codes_out = _encode(nets.E, pairs)
        s_pred, s_org = codes_out[0], codes_out[1]
        loss_sty = style_reconstruction_loss(s_pred, s_trg)
        loss = loss_adv + recipe.lambda_sty * loss_sty
        terms.update(adv=loss_adv, sty=loss_sty)

        if lam:
            weight = has_source_lesion & has_lesion(lesion_ref)
            loss_les = lesion_style_loss(codes_out[2], s_les_trg_target, weight)
            loss = loss + recipe.lambda_les * loss_les
            terms["les"] = loss_les
        if branches:
            loss_les_adv = adversarial_loss(out_fake[b:], 1, has_source_lesion)
            loss = loss + recipe.lambda_les_adv * loss_les_adv
            terms["les_adv"] = loss_les_adv
        if keep_codes:
            loss = loss + _lesion_code_terms(recipe, codes, s_org, y_org, y_trg, lesion_ref,
                                             healthy, has_source_lesion, terms)

        if lambda_ds > 0:
            with torch.no_grad():  # the second output is a fixed target (StarGAN-v2 detaches it)
                if latent:
                    s_trg2 = nets.M(z_trgs[1], y_trg)
                x_fake2 = nets.G(x_real, s_trg2.detach())
            loss_ds = diversity_loss(x_fake, x_fake2)
            loss = loss - lambda_ds * loss_ds
            terms["ds"] = loss_ds

        if recipe.lambda_struct > 0:  # anatomy kept whatever the contrast (not the paper's)
            loss_struct = structure_loss(x_fake, x_real)
            loss = loss + recipe.lambda_struct * loss_struct
            terms["struct"] = loss_struct

        x_rec = nets.G(x_fake, s_org)
        loss_cyc = cycle_loss(x_rec, x_real)
        loss = loss + recipe.lambda_cyc * loss_cyc
        terms["cyc"] = loss_cyc

        if lam:
            s_les_rec = nets.E(mask_image(x_rec, lesion), y_org + num_domains)
            loss_les_cyc = lesion_style_loss(s_les_rec, s_les_org_target, has_source_lesion)
            loss = loss + recipe.lambda_les_cyc * loss_les_cyc
            terms["les_cyc"] = loss_les_cyc

    return loss, {k: v.detach() for k, v in terms.items()}


def _lesion_code_terms(recipe: Recipe, codes: list[torch.Tensor], s_org: torch.Tensor,
                       y_org: torch.Tensor, y_trg: torch.Tensor, lesion_ref: torch.Tensor,
                       healthy: torch.Tensor, has_source_lesion: torch.Tensor,
                       terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """LAM's anti-collapse terms on E's codes of real images (the latent-guided step's first
    encoding: ``[..., whole lesion ref, its healthy mirror, lesion ref, source lesion]``)."""
    s_ref_whole, s_healthy, s_les_trg, s_les_org = codes[-4], codes[-3], codes[-2], codes[-1]
    whole = torch.cat([s_ref_whole, s_org])
    whole_domains = torch.cat([y_trg, y_org])
    lesion_codes = torch.cat([s_les_trg, s_les_org[has_source_lesion]])
    lesion_domains = torch.cat([y_trg, y_org[has_source_lesion]])
    loss_var = spread_loss(lesion_codes, whole, lesion_domains, whole_domains,
                           recipe.les_spread_target)
    centred = centred_by_domain(whole.float(), whole_domains)
    scale = spread(centred if centred.shape[0] > 1 else whole.float())
    enough = healthy.flatten(1).sum(1) >= 0.25 * lesion_ref.flatten(1).sum(1).clamp(min=1)
    loss_con = contrast_loss(s_les_trg, s_healthy, scale, has_lesion(lesion_ref) & enough)
    terms.update(les_var=loss_var, les_con=loss_con)
    return recipe.lambda_les_var * loss_var + recipe.lambda_les_con * loss_con
