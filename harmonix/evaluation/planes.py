"""Through-plane panels (issue 22): a coronal and a sagittal slice through the brain centre of
one held-out case, each target sequence generated beside the real one.

A slice-wise generator makes every axial slice on its own; a generator that changes its output
from slice to slice leaves horizontal stripes in these views, which the through-plane measure
(:func:`harmonix.evaluation.artifacts.through_plane`) puts in one number. Only the four 2-D
slices per target are kept (:func:`plane_panels`), never the volumes; :func:`plot_planes` draws
``through_plane.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

FIGURE = "through_plane.png"


def brain_centre(brain: np.ndarray) -> tuple[int, int, int]:
    """The voxel nearest the centroid of ``brain`` (the grid's centre without brain)."""
    points = np.argwhere(np.asarray(brain, bool))
    if not len(points):
        return tuple(int(n // 2) for n in brain.shape)
    return tuple(int(round(v)) for v in points.mean(axis=0))


def planes(volume: np.ndarray, centre: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The coronal (``volume[:, y, :]``) and sagittal (``volume[x, :, :]``) slices through
    ``centre``, float32 copies (the volume is not kept)."""
    x, y, _ = centre
    return {"coronal": np.array(volume[:, y, :], np.float32),
            "sagittal": np.array(volume[x, :, :], np.float32)}


def plane_panels(case_id: str, brain: np.ndarray, real: Mapping[str, np.ndarray],
                 generated: Mapping[str, tuple[str, np.ndarray]]) -> dict:
    """What :func:`plot_planes` needs of one case: per target sequence of ``generated``
    (``{target: (source, volume on the grid of brain)}``) the source and the coronal and
    sagittal slices of the generated and the real volume through the brain centre."""
    centre = brain_centre(brain)
    targets = {t: {"source": source, "generated": planes(volume, centre),
                   "real": planes(real[t], centre)}
               for t, (source, volume) in generated.items() if t in real}
    return {"case": case_id, "centre": centre, "targets": targets}


def plot_planes(panels: Mapping | None, path: Path) -> Path | None:
    """One row per target sequence: coronal real and generated, sagittal real and generated
    (superior up); ``None`` without panels."""
    if not panels or not panels.get("targets"):
        return None
    from harmonix.evaluation.figures import _pyplot, _savefig

    plt = _pyplot()
    targets = panels["targets"]
    fig, axes = plt.subplots(len(targets), 4, squeeze=False, layout="constrained",
                             figsize=(9.6, 2.5 * len(targets) + 0.5))
    for row, (target, panel) in zip(axes, targets.items(), strict=True):
        columns = [(view, kind) for view in ("coronal", "sagittal")
                   for kind in ("real", "generated")]
        for ax, (view, kind) in zip(row, columns, strict=True):
            ax.imshow(np.rot90(panel[kind][view]), cmap="gray", vmin=0, vmax=255)
            title = f"{target} {view}, real" if kind == "real" else (
                f"{target} {view}, generated from {panel['source']}")
            ax.set_title(title, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
    x, y, z = panels["centre"]
    fig.suptitle(f"{panels['case']}: coronal (y={y}) and sagittal (x={x}) slices through the "
                 "brain centre, real beside generated (stripes = slice-to-slice changes)",
                 fontsize="medium")
    return _savefig(fig, path)


__all__ = ["FIGURE", "brain_centre", "plane_panels", "planes", "plot_planes"]
