"""The lesion-aware module (LAM): what keeps the tumour in a translation.

The paper's structure is kept: the lesion region of domain ``k`` is domain ``k + N`` for E (its
lesion heads), G always receives the whole image, and no lesion mask is needed to translate.
The paper's objective, an L1 between two lesion codes that E itself produces, is met by lesion
heads that output a constant (they did collapse, docs/validation.md). harmonix adds three terms
that a lesion-blind E, G or D cannot satisfy (docs/architecture.md, "LAM"):

* **stop-gradient targets**: the lesion codes of real lesions are fixed targets of ``les`` and
  ``les_cyc``; E's lesion heads learn from the next two terms instead;
* **spread** (``les_var``, in the manner of VICReg): within each domain, every dimension of the
  lesion codes of real lesions must vary across samples by at least ``les_spread_target`` times
  the spread of the whole-image codes (a constant head pays the full hinge);
* **lesion versus healthy tissue** (``les_con``): a lesion's code must differ from the code of
  the same-shaped region mirrored across the midline (healthy tissue of the same slice), so a
  head must read the region's intensities, not its outline;
* **lesion branches in D** (``les_adv``, :func:`harmonix_ummgat.losses.compute_d_loss`): D's
  heads ``k + N`` judge the lesion region of domain ``k``, so a tumour rendered with the wrong
  contrast (a dark hole where FLAIR shows bright oedema) is a fake that G must fix.

:func:`lesion_code_spread` is the health measure logged during training and recorded in the
model card (``lesion_code_spread``): per domain, the spread of the lesion codes across real
lesion slices divided by that of the whole-image codes of the same slices. A collapsed head
gives about 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harmonix_ummgat.networks import mask_image

#: spread of the lesion codes below this fraction of the whole-image codes' counts as collapsed
COLLAPSED_BELOW = 0.5


def has_lesion(mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: which ``(B, 1, H, W)`` lesion masks are not empty."""
    return mask.flatten(1).amax(1) > 0


def mirrored_healthy(images: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """The lesion mask mirrored left-right (dim -2, the x axis of the slices) and restricted to
    brain outside the lesion: healthy tissue of the same shape and size on the other side."""
    brain = (images > -0.99).to(lesion.dtype)
    return lesion.flip(-2) * (1.0 - lesion) * brain


def spread(codes: torch.Tensor) -> torch.Tensor:
    """Root mean (over dimensions) variance of ``(n, S)`` codes across the ``n`` samples."""
    return codes.float().var(0, unbiased=False).mean().clamp(min=0).sqrt()


def centred_by_domain(codes: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """``codes`` minus the mean of their domain, for the domains with at least two samples;
    the others are dropped (a head's bias alone gives codes of different domains a spread)."""
    kept = []
    for domain in domains.unique():
        rows = codes[domains == domain]
        if rows.shape[0] > 1:
            kept.append(rows - rows.mean(0, keepdim=True))
    return torch.cat(kept) if kept else codes[:0]


def spread_loss(lesion_codes: torch.Tensor, whole_codes: torch.Tensor,
                lesion_domains: torch.Tensor, whole_domains: torch.Tensor,
                target: float) -> torch.Tensor:
    """VICReg-style hinge: each dimension's within-domain standard deviation of the lesion
    codes must reach ``target`` times the (fixed) within-domain spread of the whole-image
    codes; normalised by that level, so 1 for a constant head and 0 once every dimension varies
    enough. Zero (connected to the graph) when no domain has two samples."""
    lesion = centred_by_domain(lesion_codes.float(), lesion_domains)
    whole = centred_by_domain(whole_codes.float(), whole_domains)
    if lesion.shape[0] < 2 or whole.shape[0] < 2:
        return lesion_codes.float().sum() * 0.0
    level = (target * spread(whole.detach())).clamp(min=1e-3)
    std = (lesion.pow(2).mean(0) + 1e-6).sqrt()
    return torch.relu(level - std).mean() / level


def contrast_loss(lesion_codes: torch.Tensor, healthy_codes: torch.Tensor, scale: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    """Hinge ``relu(1 - d / scale)`` on the mean absolute difference ``d`` between a lesion's
    code and the code of its mirrored healthy region, averaged over samples with ``weight`` 1;
    ``scale`` (fixed) is the whole-image codes' spread, so the margin is scale-free."""
    d = (lesion_codes.float() - healthy_codes.float()).abs().mean(1)
    per_sample = torch.relu(1.0 - d / scale.detach().clamp(min=1e-3))
    weight = weight.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


@torch.no_grad()
def lesion_code_spread(encoder: nn.Module, images: torch.Tensor, lesions: torch.Tensor,
                       domains: Sequence[int], num_domains: int,
                       batch: int = 64) -> dict[int, float]:
    """Per domain index, the lesion codes' spread over the whole-image codes' on the same real
    lesion slices (``images`` in [-1, 1], ``lesions`` 0/1, ``(n, 1, H, W)``); about 0 when the
    lesion head is collapsed, NaN for a domain with fewer than two slices."""
    domains_t = torch.as_tensor(list(domains), dtype=torch.long)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    whole, lesion = [], []
    for start in range(0, images.shape[0], batch):
        x = images[start:start + batch].to(device)
        m = lesions[start:start + batch].to(device)
        y = domains_t[start:start + batch].to(device)
        whole.append(encoder(x, y).float().cpu())
        lesion.append(encoder(mask_image(x, m), y + num_domains).float().cpu())
    encoder.train(was_training)
    whole_codes, lesion_codes = torch.cat(whole), torch.cat(lesion)
    out = {}
    for domain in domains_t.unique().tolist():
        rows = domains_t == domain
        if int(rows.sum()) < 2:
            out[domain] = float("nan")
            continue
        denominator = float(spread(whole_codes[rows]))
        out[domain] = float(spread(lesion_codes[rows])) / max(denominator, 1e-12)
    return out
