"""Sequence (style) codes of real and generated slices, and their UMAP embedding.

The generator's style encoder maps slices of a domain to codes (``Generator.style_codes``).
Real slices of each target domain and slices generated into it from every source are encoded
with that domain's branch; a UMAP of all codes shows whether generated slices fall among the
real ones of their target (coloured by target), apart from them (real/generated) or by where
they came from (source). umap-learn is optional (``pip install harmonix[umap]``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from harmonix.interfaces import Generator


@torch.inference_mode()
def style_codes(
    generator: Generator, slices: np.ndarray, domain: str, batch_size: int = 64
) -> np.ndarray:
    """``(N, style_dim)`` codes of ``(N, H, W)`` 0..255 slices of ``domain``."""
    device = getattr(generator, "device", None) or "cpu"
    out = []
    for start in range(0, len(slices), batch_size):
        batch = torch.from_numpy(np.asarray(slices[start:start + batch_size], np.float32)[:, None])
        out.append(generator.style_codes(batch.to(device), domain).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def collect_codes(
    generator: Generator, groups: Iterable[tuple[str, str, str, np.ndarray]]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Encode ``(domain, kind, source, slices)`` groups; ``kind`` is "real" or "generated".

    Returns the per-code labels (``target``, ``kind``, ``source``) and the ``(N, D)`` codes.
    """
    labels, codes = [], []
    for domain, kind, source, slices in groups:
        if len(slices) == 0:
            continue
        codes.append(style_codes(generator, slices, domain))
        labels += [(domain, kind, source)] * len(slices)
    table = pd.DataFrame(labels, columns=["target", "kind", "source"])
    return table, (np.concatenate(codes) if codes else np.zeros((0, 0), np.float32))


def umap_embedding(codes: np.ndarray, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """A 2D UMAP of ``codes`` and a note; ``None`` with the reason when umap-learn is missing
    or there are too few codes."""
    if len(codes) < 5:
        return None, f"UMAP skipped: only {len(codes)} codes"
    try:
        import umap
    except ImportError as exc:  # optional extra
        return None, f"UMAP skipped: umap-learn is not importable ({exc}); pip install umap-learn"
    reducer = umap.UMAP(n_neighbors=min(15, len(codes) - 1), n_components=2, random_state=seed,
                        n_jobs=1)
    embedding = reducer.fit_transform(np.asarray(codes, np.float32))
    return np.asarray(embedding), f"UMAP of {len(codes)} codes (umap-learn {umap.__version__})"
