"""The report's figures: Dice box plots, FID heatmaps, the UMAP of sequence codes (whole-image
and lesion codes), overlays of the predictions on the truth, and examples of real and generated
slices side by side. Legends sit outside the data; label colours are docs/data.md's (NCR red, ED
green, ET yellow). Every PNG is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harmonix.evaluation.results import CROSS, GENERATOR_LABELS, MAIN, NO_LAM
from harmonix.evaluation.scenarios import missing_text
from harmonix.evaluation.strategies import STRATEGIES
from harmonix.extras import require
from harmonix.io import atomic_write_with

REGIONS = ("WT", "TC", "ET")
# NCR, ED, ET (canonical labels) in docs/data.md's colours (red, green, yellow; the same as
# benchmarks/make_data_figure.py)
LABEL_HEX = {1: "#ff3030", 2: "#30c030", 4: "#ffd700"}
LABEL_COLOURS = {v: tuple(int(h[i:i + 2], 16) / 255 for i in (1, 3, 5))
                 for v, h in LABEL_HEX.items()}
LABEL_NAMES = {1: "NCR (necrotic core)", 2: "ED (oedema)", 4: "ET (enhancing tumour)"}


def metric_long(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The per-case rows of a segmentation ``metric`` as the long table
    :mod:`harmonix.evaluation.stats` reads (the values in a column named after the metric)."""
    rows = results[(results["metric"] == metric) & (results["case"] != "")
                   & (results["region"] != "")]
    return rows.rename(columns={"value": metric})[["case", "scenario", "strategy", "region",
                                                   metric]].reset_index(drop=True)


def dice_long(results: pd.DataFrame) -> pd.DataFrame:
    """The Dice rows as the long table :mod:`harmonix.evaluation.stats` reads."""
    return metric_long(results, "dice")


def _savefig(fig, path: Path) -> Path:
    plt = require("matplotlib.pyplot", "the report's figures")

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    atomic_write_with(path, write)
    plt.close(fig)
    return path


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend; matplotlib is the ``evaluate`` extra's."""
    matplotlib = require("matplotlib", "the report's figures")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "the report's figures")


# -- figures ---------------------------------------------------------------------------------------
def plot_boxplots(results: pd.DataFrame, scenarios: Sequence[str], path: Path) -> Path | None:
    dice = dice_long(results)
    if dice.empty:
        return None
    plt = _pyplot()
    strategies = [s for s in (*STRATEGIES, "generated-noalign") if s in set(dice["strategy"])]
    order = [s for s in scenarios if s in set(dice["scenario"])]
    regions = [r for r in REGIONS if r in set(dice["region"])]
    width = 0.8 / len(strategies)
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(regions), 1, figsize=(max(8, 0.9 * len(order) + 2),
                                                       3.2 * len(regions)), squeeze=False)
    for ax, region in zip(axes[:, 0], regions, strict=True):
        for j, strategy in enumerate(strategies):
            data, positions = [], []
            for i, scenario in enumerate(order):
                values = dice[(dice["scenario"] == scenario) & (dice["strategy"] == strategy)
                              & (dice["region"] == region)]["dice"]
                if len(values):
                    data.append(values.to_numpy())
                    positions.append(i + (j - (len(strategies) - 1) / 2) * width)
            if data:
                parts = ax.boxplot(data, positions=positions, widths=width * 0.9,
                                   patch_artist=True, manage_ticks=False)
                for box in parts["boxes"]:
                    box.set_facecolor(colours(j))
                    box.set_alpha(0.7)
            ax.plot([], [], color=colours(j), lw=6, alpha=0.7, label=strategy)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([s.removeprefix("missing ") for s in order], rotation=45, ha="right")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"Dice {region}")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(strategies),
                      fontsize="small", frameon=False)  # above the data
    fig.suptitle("Dice per scenario (x: missing sequences) and strategy")
    fig.tight_layout()
    return _savefig(fig, path)


FID_PANELS = {"real": "real source vs real target", NO_LAM: GENERATOR_LABELS[NO_LAM],
              MAIN: GENERATOR_LABELS[MAIN]}


def fid_matrix(fid: pd.DataFrame, label: str, sequences: Sequence[str]) -> pd.DataFrame:
    """Source x target FID of generator ``label`` (or, for ``"real"``, of the real source
    against the real target); the diagonal is the real-vs-real baseline of the target."""
    matrix = pd.DataFrame(np.nan, index=list(sequences), columns=list(sequences))
    for row in fid.itertuples(index=False):
        if row.strategy == "real":
            matrix.loc[row.sequence, row.sequence] = row.value
        elif (row.strategy == "generated" and row.generator == label) or (
                label == "real" and row.strategy == "copy"):
            matrix.loc[row.source, row.sequence] = row.value
    matrix.index.name = "source \\ target"
    return matrix


def plot_fid(fid: pd.DataFrame, sequences: Sequence[str], path: Path) -> Path | None:
    """Heatmaps of FID per (source, target): real vs real, without LAM, with LAM (those
    measured), on one colour scale."""
    labels = [g for g in FID_PANELS if (g == "real" and (fid["strategy"] == "copy").any())
              or ((fid["strategy"] == "generated") & (fid["generator"] == g)).any()]
    if not labels:
        return None
    plt = _pyplot()
    matrices = [fid_matrix(fid, g, sequences) for g in labels]
    vmax = max(float(np.nanmax(m.to_numpy(float))) for m in matrices)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.6 * len(labels) + 1.2, 4.2),
                             squeeze=False, layout="constrained")
    for ax, label, matrix in zip(axes[0], labels, matrices, strict=True):
        image = ax.imshow(matrix.to_numpy(float), cmap="viridis_r", vmin=0, vmax=vmax)
        for (i, j), value in np.ndenumerate(matrix.to_numpy(float)):
            if not np.isnan(value):
                text = f"{value:.0f}" + ("\nreal" if i == j else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if value > vmax / 2 else "black")
        ax.set_xticks(range(len(sequences)), list(sequences))
        ax.set_yticks(range(len(sequences)), list(sequences))
        ax.set_xlabel("target")
        ax.set_ylabel("source")
        ax.set_title(FID_PANELS[label], fontsize="medium")
    fig.colorbar(image, ax=axes[0].tolist(), label="FID (diagonal: real vs real, same sequence)")
    return _savefig(fig, path)


def plot_umap(codes: pd.DataFrame, path: Path) -> Path:
    """Four panels of one embedding: by target, real vs generated, by source, whole image vs
    lesion (marker: circle whole-image code, triangle lesion code)."""
    plt = _pyplot()
    codes = codes.assign(region=codes["region"] if "region" in codes else "whole")
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    colours = plt.get_cmap("tab10")
    markers = {"whole": "o", "lesion": "^"}
    for ax, column, title in zip(axes, ("target", "kind", "source", "region"),
                                 ("by target domain", "real vs generated", "by source",
                                  "whole image vs lesion"), strict=True):
        for i, value in enumerate(sorted(codes[column].unique())):
            label = str(value).strip() or "none"  # never an empty legend entry
            for region, marker in markers.items():
                part = codes[(codes[column] == value) & (codes["region"] == region)]
                if len(part):
                    ax.scatter(part["x"], part["y"], s=10, alpha=0.7, marker=marker,
                               color=colours(i % 10), label=label)
                    label = None  # one legend entry per value
        ax.set_title(f"sequence codes, {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize="x-small", markerscale=2, loc="upper center", ncol=2, frameon=False,
                  bbox_to_anchor=(0.5, -0.02))  # below the panel, off the points
    fig.tight_layout()
    return _savefig(fig, path)


def label_overlay(background: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB image: the grey ``background`` (0..255) with NCR red, ED green, ET blue."""
    grey = np.clip(np.asarray(background, np.float32) / 255.0, 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for value, colour in LABEL_COLOURS.items():
        mask = np.asarray(labels) == value
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)
    return rgb


def plot_overlay(
    example: dict, results: pd.DataFrame, sequences: Sequence[str], path: Path
) -> Path | None:
    """Background, truth and each strategy's prediction for the scenario of this case where
    generated and copy differ most in WT Dice (the first one if they never do)."""
    predictions = example["predictions"]
    candidates = [m for m in predictions if m]
    if not candidates and frozenset() not in predictions:
        return None
    rows = results[(results["case"] == example["case"]) & (results["metric"] == "dice")
                   & (results["region"] == "WT") & (results["kind"] != CROSS)]

    def gap(missing) -> float:
        same = rows[rows["missing"] == missing_text(missing, sequences)]
        values = same.groupby("strategy")["value"].first()
        if {"generated", "copy"} <= set(values.index):
            return abs(values["generated"] - values["copy"])
        return -1.0

    chosen = max(candidates, key=gap) if candidates else frozenset()
    panels = [("truth", example["truth"])]
    if frozenset() in predictions and "complete" in predictions[frozenset()]:
        panels.append(("complete", predictions[frozenset()]["complete"]))
    for strategy in ("copy", "generated"):
        if strategy in predictions.get(chosen, {}):
            panels.append((strategy, predictions[chosen][strategy]))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 3))
    background = example["background"]
    axes[0].imshow(np.rot90(background), cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"{example['background_sequence']} (real)", fontsize="small")
    for ax, (title, labels) in zip(axes[1:], panels, strict=True):
        ax.imshow(np.rot90(label_overlay(background, labels)))
        ax.set_title(title, fontsize="small")
    for ax in axes:
        ax.axis("off")
    missing = missing_text(chosen, sequences) or "none"
    fig.suptitle(f"{example['case']}, axial slice {example['slice']}, missing: {missing} "
                 "(NCR red, ED green, ET yellow)", fontsize="small")
    return _savefig(fig, path)


def _label_legend(fig) -> None:
    """The label colours as a legend below the figure, outside every image."""
    Patch = require("matplotlib.patches", "the report's figures").Patch  # noqa: N806

    handles = [Patch(color=LABEL_COLOURS[v], label=LABEL_NAMES[v]) for v in LABEL_COLOURS]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False,
               fontsize="small")


def _hardest(predictions: dict) -> frozenset | None:
    """The missing set with the most sequences that has a 'generated' prediction."""
    chosen = [m for m in predictions if m and "generated" in predictions[m]]
    return max(chosen, key=lambda m: (len(m), sorted(m)), default=None)


def plot_examples(examples: Sequence[dict], sequences: Sequence[str], path: Path) -> Path | None:
    """Per case two rows: the real slices of every sequence, then each generated from one
    other sequence (its source, harmonize's choice), with the truth and the prediction on the
    case whose sequences are generated (the scenario missing the most) drawn over the real
    background in a last column; ``None`` without generated slices."""
    examples = [e for e in examples if e.get("generated") and e.get("real")]
    if not examples:
        return None
    plt = _pyplot()
    columns = len(sequences) + 1
    fig, axes = plt.subplots(2 * len(examples), columns, squeeze=False, layout="constrained",
                             figsize=(2.1 * columns, 2.3 * 2 * len(examples) + 0.4))
    for row, example in enumerate(examples):
        real_axes, made_axes = axes[2 * row], axes[2 * row + 1]
        for ax, seq in zip(real_axes, sequences, strict=False):
            ax.imshow(np.rot90(example["real"][seq]), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{seq} real", fontsize="small")
        for ax, seq in zip(made_axes, sequences, strict=False):
            if seq in example["generated"]:
                source, image = example["generated"][seq]
                ax.imshow(np.rot90(image), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{seq} generated from {source}", fontsize="small")
        background = example["background"]
        real_axes[-1].imshow(np.rot90(label_overlay(background, example["truth"])))
        real_axes[-1].set_title("truth", fontsize="small")
        missing = _hardest(example["predictions"])
        if missing is not None:
            labels = example["predictions"][missing]["generated"]
            made_axes[-1].imshow(np.rot90(label_overlay(background, labels)))
            made_axes[-1].set_title(f"segmented, {missing_text(missing, sequences)} generated",
                                    fontsize="small")
        real_axes[0].set_ylabel(f"{example['case']}\nslice {example['slice']}", fontsize="small")
        for ax in (*real_axes, *made_axes):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    _label_legend(fig)
    fig.suptitle(f"Real (top) and generated (bottom) slices; labels over the real "
                 f"{examples[0]['background_sequence']}", fontsize="medium")
    return _savefig(fig, path)


