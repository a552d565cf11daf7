"""Draw docs/img/synth_grid.png: an axial slice of each sequence of two built-in centers, with
the tumour labels drawn over the last panel, so a reader can judge the synthetic data.

    python benchmarks/make_data_figure.py [--out docs/img/synth_grid.png] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from harmonix.data.synth import synthesize_case  # noqa: E402

SEQUENCES = ("t1", "t1ce", "t2", "flair")
LABEL_COLOURS = {1: "#ff3030", 2: "#30c030", 4: "#ffd700"}  # NCR, ED, ET (canonical)


def _axial(volume: np.ndarray, k: int, box: tuple[slice, slice]) -> np.ndarray:
    """Axial slice ``k`` of a BraTS-grid (LPS) volume inside ``box``, shown radiologically
    (patient's left on the right, anterior up)."""
    return np.rot90(volume[box[0], box[1], k])


def _brain_box(volume: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    inside = volume.any(axis=2)
    xs, ys = (np.flatnonzero(inside.any(axis=a)) for a in (1, 0))
    return (slice(max(xs[0] - margin, 0), xs[-1] + margin + 1),
            slice(max(ys[0] - margin, 0), ys[-1] + margin + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/synth_grid.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, default=3)
    parser.add_argument("--centers", nargs="+", default=["brats", "local"])
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()

    centers = args.centers
    fig, axes = plt.subplots(len(centers), len(SEQUENCES) + 1, figsize=(12.5, 3.2 * len(centers)))
    cmap = ListedColormap(["none", *LABEL_COLOURS.values()])
    for row, center in zip(axes, centers, strict=True):
        case = synthesize_case(args.case, center=center, seed=args.seed)
        core = np.isin(case.label, (1, 4)) if (case.label == 1).any() else case.label > 0
        k = int(np.argmax(core.sum(axis=(0, 1))))  # the slice with most tumour core
        box = _brain_box(case.images["t1"])
        for ax, sequence in zip(row, SEQUENCES, strict=False):
            ax.set_axis_off()
            if sequence not in case.images:
                ax.text(0.5, 0.5, f"{sequence}\nnot acquired", ha="center", va="center",
                        color="0.6", transform=ax.transAxes)
                ax.set_facecolor("black")
                continue
            image = _axial(case.images[sequence], k, box)
            ax.imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image[image > 0], 99.5))
            ax.set_title(f"{center} / {sequence}", fontsize=10, color="white")
        base = "flair" if "flair" in case.images else "t2"
        image = _axial(case.images[base], k, box)
        label = _axial(case.label, k, box)
        ax = row[-1]
        ax.imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image[image > 0], 99.5))
        index = np.searchsorted([0, *LABEL_COLOURS], label)
        ax.imshow(np.ma.masked_equal(index, 0), cmap=cmap, vmin=0, vmax=3, alpha=0.45,
                  interpolation="nearest")
        ax.set_title(f"{center}: labels on {base}\nNCR red, ED green, ET yellow", fontsize=9,
                     color="white")
        ax.set_axis_off()
        print(f"{case.case_id}: slice {k}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi, facecolor="black")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
