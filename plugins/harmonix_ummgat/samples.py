"""Sample grids: one row per source domain, the source slice then one column per target domain."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from harmonix.sdk import Generator, atomic_write_with

MIN_CELL = 96  # pixels; small training slices are enlarged so that the grid stays readable
HEADER = 14


def translation_grid(
    generator: Generator, sources: torch.Tensor, source_domains: Sequence[str], seed: int = 0
) -> torch.Tensor:
    """``(rows, 1 + targets, H, W)`` 0..255: each source slice and its latent-guided translations
    into every domain of ``generator``."""
    rows = []
    for image, domain in zip(sources, source_domains, strict=True):
        image = image[None]
        outs = [generator.translate(image, domain, t, seed=seed) for t in generator.domains]
        rows.append(torch.cat([image, *outs], dim=1)[0])
    return torch.stack(rows)


def _display(slice_xy: np.ndarray) -> np.ndarray:
    """A slice stored as (x, y) in RAS, shown with anterior up and the subject's right on the
    right (neurological view)."""
    return np.rot90(slice_xy)


def render_grid(
    grid: torch.Tensor, row_names: Sequence[str], col_names: Sequence[str]
) -> Image.Image:
    """A labelled 8-bit PNG image of a ``(rows, cols, H, W)`` 0..255 grid."""
    rows, cols, h, w = grid.shape
    scale = max(1, -(-MIN_CELL // max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    canvas = Image.new("L", (cols * cell_w, HEADER + rows * (cell_h + HEADER)), 0)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(col_names):
        draw.text((c * cell_w + 2, 1), name, fill=255)
    array = grid.detach().float().cpu().clamp(0, 255).numpy()
    for r in range(rows):
        top = HEADER + r * (cell_h + HEADER)
        draw.text((2, top + 1), f"from {row_names[r]}", fill=255)
        for c in range(cols):
            cell = _display(array[r, c]).round().astype(np.uint8)
            tile = Image.fromarray(np.ascontiguousarray(cell))
            tile = tile.resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (c * cell_w, top + HEADER))
    return canvas


def save_sample_grid(
    generator: Generator,
    sources: torch.Tensor,
    source_domains: Sequence[str],
    path: str | Path,
    seed: int = 0,
) -> tuple[Path, torch.Tensor]:
    """Write the translation grid of ``sources`` ``(rows, 1, H, W)`` 0..255 as a PNG (atomic).

    Returns the path and the grid tensor.
    """
    grid = translation_grid(generator, sources, source_domains, seed)
    image = render_grid(grid, source_domains, ["source", *generator.domains])
    path = Path(path)
    atomic_write_with(path, lambda tmp: image.save(tmp, format="PNG"))
    return path, grid
