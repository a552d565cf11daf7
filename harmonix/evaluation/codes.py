"""Sequence (style) codes of real and generated slices, and their UMAP embedding (Fig. 2d).

The generator's style encoder maps slices of a domain to codes (``Generator.style_codes``).
Real slices of each target domain and slices generated into it from every source are encoded
with that domain's branch (*whole-image* codes); the same slices with everything outside the
lesion (label > 0) set to background are encoded with the domain's *lesion* head (E's head
k + N, ``style_codes(..., lesion=True)``, as the lesion-aware module trains it). A UMAP of all
codes shows whether generated slices fall among the real ones of their target (coloured by
target), apart from them (real/generated), by where they came from (source), and whether the
lesion codes form their own clusters. umap-learn is optional (the ``evaluate`` extra).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from harmonix.extras import install_hint
from harmonix.interfaces import Generator
from harmonix.registry import make_domain


@torch.inference_mode()
def style_codes(
    generator: Generator, slices: np.ndarray, domain: str, batch_size: int = 64,
    lesion: bool = False,
) -> np.ndarray:
    """``(N, style_dim)`` codes of ``(N, H, W)`` 0..255 slices of ``domain`` (its lesion head:
    ``lesion``)."""
    device = getattr(generator, "device", None) or "cpu"
    out = []
    for start in range(0, len(slices), batch_size):
        batch = torch.from_numpy(np.asarray(slices[start:start + batch_size], np.float32)[:, None])
        codes = generator.style_codes(batch.to(device), domain, lesion=lesion)
        out.append(codes.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def collect_codes(
    generator: Generator, groups: Iterable[tuple]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Encode ``(domain, kind, source, slices[, region])`` groups; ``kind`` is "real" or
    "generated", ``region`` "whole" (default) or "lesion" (lesion-masked slices, E's lesion
    head).

    Returns the per-code labels (``target``, ``kind``, ``source``, ``region``) and the
    ``(N, D)`` codes.
    """
    labels, codes = [], []
    for domain, kind, source, slices, *rest in groups:
        region = rest[0] if rest else "whole"
        if len(slices) == 0:
            continue
        codes.append(style_codes(generator, slices, domain, lesion=region == "lesion"))
        labels += [(domain, kind, source, region)] * len(slices)
    table = pd.DataFrame(labels, columns=["target", "kind", "source", "region"])
    return table, (np.concatenate(codes) if codes else np.zeros((0, 0), np.float32))


def bank_groups(bank, target_center: str, sequences, label: str) -> list[tuple]:
    """The groups of a ``SliceBank``: per target sequence its real slices, those generated
    from each other sequence by generator ``label``, and the lesion-masked ones of both."""
    groups = []
    for t in sequences:
        domain = make_domain(target_center, t)
        real = bank.stack(bank.real.get(("A", t), []) + bank.real.get(("B", t), []))
        groups.append((domain, "real", "real", real, "whole"))
        groups.append((domain, "real", "real", bank.stack(bank.lesion_real.get(t, [])),
                       "lesion"))
        for s in sequences:
            if s != t:
                groups.append((domain, "generated", s,
                               bank.stack(bank.generated.get((label, s, t), [])), "whole"))
                groups.append((domain, "generated", s,
                               bank.stack(bank.lesion_generated.get((s, t), [])), "lesion"))
    return groups


def umap_embedding(codes: np.ndarray, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """A 2D UMAP of ``codes`` and a note; ``None`` with the reason when umap-learn is missing
    or there are too few codes."""
    if len(codes) < 5:
        return None, f"UMAP skipped: only {len(codes)} codes"
    try:
        import umap
    except ImportError as exc:  # optional extra
        return None, (f"UMAP skipped: umap-learn is not importable ({exc}); "
                      f"{install_hint('umap')}")
    reducer = umap.UMAP(n_neighbors=min(15, len(codes) - 1), n_components=2, random_state=seed,
                        n_jobs=1)
    embedding = reducer.fit_transform(np.asarray(codes, np.float32))
    return np.asarray(embedding), f"UMAP of {len(codes)} codes (umap-learn {umap.__version__})"
