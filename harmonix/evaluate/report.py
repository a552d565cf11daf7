"""Write an evaluation's files: every number, the statistics, the figures and ``report.md``.

``REPORT_DIR/``

* ``results.csv``: every number, one per row (columns :data:`harmonix.evaluate.run.COLUMNS`);
* ``table1_median_dice.csv``, ``wilcoxon.csv``, ``friedman.csv``, ``dunn.csv``: statistics of
  the Dice rows (:mod:`harmonix.evaluate.stats`);
* ``correlations.csv``, ``random_missing.csv``, ``fid.csv``, ``image_quality.csv``,
  ``umap.csv``: the tables behind the report's sections;
* ``boxplots_dice.png``, ``fid_heatmap.png``, ``umap.png``, ``overlays/*.png``;
* ``evaluation.json`` (settings, timings, notes) and ``report.md``.

Every file is written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harmonix.evaluate.run import (
    CROSS,
    GENERATOR_LABELS,
    MAIN,
    NO_LAM,
    Evaluation,
    EvaluationResult,
)
from harmonix.evaluate.scenarios import missing_text, random_distribution
from harmonix.evaluate.strategies import STRATEGIES
from harmonix.io import atomic_write_json, atomic_write_text, atomic_write_with

REGIONS = ("WT", "TC", "ET")
LABEL_COLOURS = {1: (1.0, 0.0, 0.0), 2: (0.0, 0.8, 0.0), 4: (0.0, 0.3, 1.0)}  # NCR, ED, ET


# -- small helpers ---------------------------------------------------------------------------------
def _csv(path: Path, table: pd.DataFrame, index: bool = False) -> Path:
    atomic_write_text(path, table.to_csv(index=index))
    return path


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    if index:
        table = table.reset_index()
    header = [" / ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c)
              for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def _p(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _savefig(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    atomic_write_with(path, write)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- statistics ------------------------------------------------------------------------------------
def dice_long(results: pd.DataFrame) -> pd.DataFrame:
    """The Dice rows as the long table :mod:`harmonix.evaluate.stats` reads."""
    rows = results[(results["metric"] == "dice") & (results["case"] != "")]
    return rows.rename(columns={"value": "dice"})[["case", "scenario", "strategy", "region",
                                                   "dice"]].reset_index(drop=True)


def statistics(results: pd.DataFrame, scenarios: Sequence[str]) -> dict[str, pd.DataFrame]:
    from harmonix.evaluate import stats

    dice = dice_long(results)
    if dice.empty:
        return {}
    strategies = [s for s in (*STRATEGIES, "generated-noalign") if s in set(dice["strategy"])]
    order = [s for s in scenarios if s in set(dice["scenario"])]
    out = {"medians": stats.median_table(dice, strategies=strategies, regions=REGIONS,
                                         scenarios=order)}
    if {"generated", "copy"} <= set(dice["strategy"]):
        out["wilcoxon"] = stats.wilcoxon_table(dice, a="generated", b="copy")
    out["friedman"] = stats.friedman_table(dice)
    out["dunn"] = stats.dunn_table(dice)
    return out


def verdict_lines(
    wilcoxon: pd.DataFrame, scenarios: Sequence[str], alpha: float = 0.05
) -> list[str]:
    """One honest sentence per scenario: per region, does generated beat copy, with p-values."""
    lines = []
    for scenario in scenarios:
        rows = wilcoxon[wilcoxon["scenario"] == scenario]
        if rows.empty:
            continue
        parts = []
        for row in rows.itertuples(index=False):
            verdict = row.verdict
            if verdict == "generated better":
                verdict = "**generated beats copy**"
            elif verdict == "copy better":
                verdict = "**copy beats generated**"
            parts.append(
                f"{row.region}: {verdict} (median Dice {_fmt(row.median_generated)} vs "
                f"{_fmt(row.median_copy)}, n = {row.n}, p = {_p(row.p_value)}, "
                f"Holm p = {_p(row.p_holm)}{'; ' + row.note if row.note else ''})"
            )
        wins = (rows["verdict"] == "generated better").sum()
        losses = (rows["verdict"] == "copy better").sum()
        if wins and not losses:
            summary = "generated beats copy"
        elif losses and not wins:
            summary = "generated does not beat copy; copy is better"
        elif wins and losses:
            summary = "mixed: generated wins some regions and loses others"
        else:
            summary = "generated does not beat copy significantly after Holm's correction"
            raw = rows[rows["p_value"] < alpha]
            higher = [r.region for r in raw.itertuples() if r.median_difference > 0]
            lower = [r.region for r in raw.itertuples() if r.median_difference < 0]
            hints = ([f"generated higher in {', '.join(higher)}"] if higher else []) + (
                [f"copy higher in {', '.join(lower)}"] if lower else [])
            if hints:
                summary += f" (uncorrected p < {alpha}: {'; '.join(hints)})"
        lines.append(f"- **{scenario}** — {summary}. " + "; ".join(parts) + ".")
    return lines


def power_note(wilcoxon: pd.DataFrame, alpha: float = 0.05) -> str:
    """Whether any Holm-corrected verdict is reachable with this many cases and tests."""
    tested = wilcoxon[wilcoxon["note"] == ""]
    if tested.empty:
        return ""
    n, m = int(tested["n"].max()), len(wilcoxon)
    smallest = 2.0 / 2**n  # the exact two-sided signed-rank test's smallest p-value
    if smallest * m < alpha:
        return ""
    needed = math.floor(math.log2(2 * m / alpha)) + 1
    return (f"With n = {n} cases the smallest possible p-value is 2/2^{n} = {smallest:.2g}, so "
            f"after Holm's correction over {m} tests no difference can be significant; "
            f"about {needed} or more cases are needed. Uncorrected p-values are shown.")


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
    axes[0, 0].legend(loc="lower left", ncol=len(strategies), fontsize="small")
    axes[0, 0].set_title("Dice per scenario (x: missing sequences) and strategy")
    fig.tight_layout()
    return _savefig(fig, path)


def fid_matrix(fid: pd.DataFrame, label: str, sequences: Sequence[str]) -> pd.DataFrame:
    """Source x target FID of generator ``label``; the diagonal is the real-vs-real baseline."""
    matrix = pd.DataFrame(np.nan, index=list(sequences), columns=list(sequences))
    for row in fid.itertuples(index=False):
        if row.strategy == "real":
            matrix.loc[row.sequence, row.sequence] = row.value
        elif row.strategy == "generated" and row.generator == label:
            matrix.loc[row.source, row.sequence] = row.value
    matrix.index.name = "source \\ target"
    return matrix


def plot_fid(fid: pd.DataFrame, sequences: Sequence[str], path: Path) -> Path | None:
    labels = [g for g in (MAIN, NO_LAM) if ((fid["strategy"] == "generated")
                                           & (fid["generator"] == g)).any()]
    if not labels:
        return None
    plt = _pyplot()
    matrices = [fid_matrix(fid, g, sequences) for g in labels]
    vmax = max(float(np.nanmax(m.to_numpy())) for m in matrices)
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
        ax.set_xlabel("target (generated)")
        ax.set_ylabel("source")
        ax.set_title(GENERATOR_LABELS[label], fontsize="medium")
    fig.colorbar(image, ax=axes[0].tolist(), label="FID (diagonal: real vs real)")
    return _savefig(fig, path)


def plot_umap(codes: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colours = plt.get_cmap("tab10")
    for ax, column, title in zip(axes, ("target", "kind", "source"),
                                 ("by target domain", "real vs generated", "by source"),
                                 strict=True):
        for i, value in enumerate(sorted(codes[column].unique())):
            part = codes[codes[column] == value]
            ax.scatter(part["x"], part["y"], s=8, alpha=0.7, color=colours(i % 10), label=value)
        ax.set_title(f"sequence codes, {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize="x-small", markerscale=2)
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
                 "(NCR red, ED green, ET blue)", fontsize="small")
    return _savefig(fig, path)


# -- the report ------------------------------------------------------------------------------------
def write_report(ev: Evaluation, out: str | Path) -> EvaluationResult:
    """Write every file of the report into ``out`` and return what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = ev.frame()
    scenarios = [s.name for s in ev.scenarios]
    files: dict[str, Path] = {"results": _csv(out / "results.csv", results)}
    stats = statistics(results, scenarios)
    names = {"medians": "table1_median_dice.csv", "wilcoxon": "wilcoxon.csv",
             "friedman": "friedman.csv", "dunn": "dunn.csv"}
    for key, table in stats.items():
        files[key] = _csv(out / names[key], table, index=key == "medians")
    if ev.correlations is not None:
        files["correlations"] = _csv(out / "correlations.csv", ev.correlations, index=True)
    distribution = None
    if ev.random_assignment:
        distribution = random_distribution(ev.random_assignment, ev.sequences)
        files["random"] = _csv(out / "random_missing.csv", distribution)
    fid = results[results["metric"] == "fid"]
    if not fid.empty:
        files["fid"] = _csv(out / "fid.csv", fid)
        if (plot := plot_fid(fid[fid["kind"] == "fid"], ev.sequences, out / "fid_heatmap.png")):
            files["fid_heatmap"] = plot
    quality = _image_quality(results)
    if not quality.empty:
        files["image_quality"] = _csv(out / "image_quality.csv", quality)
    if (plot := plot_boxplots(results, scenarios, out / "boxplots_dice.png")):
        files["boxplots"] = plot
    if ev.codes is not None:
        files["umap_csv"] = _csv(out / "umap.csv", ev.codes)
        files["umap"] = plot_umap(ev.codes, out / "umap.png")
    overlays = []
    for example in ev.overlays:
        path = out / "overlays" / f"{example['case']}.png"
        if (plot := plot_overlay(example, results, ev.sequences, path)):
            overlays.append(plot)
    files.update({f"overlay_{p.stem}": p for p in overlays})
    settings = {**ev.settings, "timings_s": {k: round(v, 2) for k, v in ev.timings.items()},
                "notes": ev.notes, "skipped_cases": [list(s) for s in ev.skipped]}
    files["settings"] = out / "evaluation.json"
    atomic_write_json(files["settings"], settings)
    files["report"] = out / "report.md"
    text = _markdown(ev, results, stats, distribution, quality, files, overlays, out)
    atomic_write_text(files["report"], text)
    return EvaluationResult(out, results, stats, files["report"], files, list(ev.notes))


def _image_quality(results: pd.DataFrame) -> pd.DataFrame:
    """Mean SSIM/PSNR per (generator, source, target) over the cases (the "pairs" rows)."""
    rows = results[results["kind"] == "pairs"]
    if rows.empty:
        return pd.DataFrame()
    finite = rows[np.isfinite(rows["value"].astype(float))]
    table = finite.pivot_table(index=["generator", "source", "sequence"], columns="metric",
                               values="value", aggfunc="mean")
    counts = rows.groupby(["generator", "source", "sequence"])["case"].nunique()
    table["cases"] = counts
    return table.reset_index().rename(columns={"sequence": "target"})


def _markdown(ev, results, stats, distribution, quality, files, overlays, out: Path) -> str:
    s = ev.settings
    buffer = io.StringIO()

    def w(line: str = "") -> None:
        buffer.write(line + "\n")

    def rel(path: Path) -> str:
        return path.relative_to(out).as_posix()

    n_cases = len(s.get("cases", []))
    w("# harmonix evaluation report")
    w()
    w(f"- test site: `{s['data']}` (center `{s['center']}`, {n_cases} complete labelled cases"
      + (f"; {len(ev.skipped)} skipped" if ev.skipped else "") + ")")
    w(f"- segmenter: `{s['segmenter']}` ({s['segmenter_card'].get('segmenter', '?')}, inputs "
      f"{', '.join(ev.sequences)}); preprocessing {s['preprocess']}")
    if s.get("generator"):
        w(f"- generator: `{s['generator']}` (target `{s['target']}`)")
    if s.get("generator_no_lam"):
        w(f"- generator without LAM: `{s['generator_no_lam']}`")
    w(f"- scenarios: {', '.join(s['scenarios'])}; strategies: {', '.join(s['strategies'])}; "
      f"seed {s['seed']}")
    w(f"- every number is in `{rel(files['results'])}` (long format, one value per row); "
      f"settings, timings and notes in `{rel(files['settings'])}`")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in ev.timings.items())
    w(f"- time: {timings}")
    for note in ev.notes:
        w(f"- note: {note}")
    for case_id, reason in ev.skipped:
        w(f"- skipped case {case_id}: {reason}")
    w()

    if "wilcoxon" in stats and not stats["wilcoxon"].empty:
        w("## Does generated beat copy?")
        w()
        w("Paired two-sided Wilcoxon signed-rank test per scenario and region (Dice, paired by "
          "case), generated versus copy; `Holm p` is adjusted over all scenario-region tests, "
          "and a verdict needs Holm p < 0.05.")
        if note := power_note(stats["wilcoxon"]):
            w()
            w(f"**Too few cases for a verdict:** {note}")
        w()
        for line in verdict_lines(stats["wilcoxon"], [s.name for s in ev.scenarios]):
            w(line)
        w()
    if "medians" in stats:
        w("## Median Dice per scenario (Table 1 layout)")
        w()
        w(markdown_table(stats["medians"], index=True))
        w()
        w(f"File: `{rel(files['medians'])}`.")
        w()
    if "boxplots" in files:
        w(f"![Dice box plots]({rel(files['boxplots'])})")
        w()
    if "wilcoxon" in stats and not stats["wilcoxon"].empty:
        w("## Wilcoxon signed-rank, generated vs copy")
        w()
        w(markdown_table(stats["wilcoxon"]))
        w()
    if "friedman" in stats and not stats["friedman"].empty:
        w("## Friedman test across strategies, Dunn's post hoc")
        w()
        w(markdown_table(stats["friedman"]))
        w()
        if "dunn" in stats and not stats["dunn"].empty:
            w("Dunn's test (Holm-adjusted within each scenario and region):")
            w()
            w(markdown_table(stats["dunn"]))
            w()

    if ev.correlations is not None:
        w("## Copy strategy: sequence correlations")
        w()
        w("Pearson's r between two sequences' voxels inside the brain mask, averaged over "
          f"cases, measured on {ev.correlation_source}. A missing sequence is replaced by the "
          "present sequence with the highest r:")
        w()
        w(markdown_table(ev.correlations, index=True))
        w()
        order = {m: [o for o in ev.correlations.loc[m].sort_values(ascending=False).index
                     if o != m] for m in ev.sequences}
        for m, others in order.items():
            w(f"- {m}: copied from {' > '.join(others)} (first present one)")
        w()
    if distribution is not None:
        w("## Random missing")
        w()
        w("Each case loses one of the 14 fixed missing sets, drawn uniformly "
          f"(seed {s['seed']}); so it keeps at least one sequence and loses at most three. "
          "What was drawn:")
        w()
        w(markdown_table(distribution))
        w()

    fid = results[results["metric"] == "fid"]
    if not fid.empty:
        w("## FID per (source, target) pair")
        w()
        w("FID of slices generated from the source for the target sequence (cases of half A) "
          "against real target slices (half B), next to the real-vs-real baseline "
          "FID(real target of A, real target of B) on the diagonal. Equal set sizes make the "
          "numbers comparable; with few slices FID is biased upwards, which the baseline "
          "shows. `copy` rows compare the real source itself with the target.")
        w()
        for label in (MAIN, NO_LAM):
            if ((fid["generator"] == label) & (fid["kind"] == "fid")).any():
                w(f"**{GENERATOR_LABELS[label]}** (rows: source, columns: target):")
                w()
                w(markdown_table(fid_matrix(fid[fid["kind"] == "fid"], label, ev.sequences),
                                 digits=1, index=True))
                w()
        copy_rows = fid[(fid["strategy"] == "copy") & (fid["kind"] == "fid")]
        if not copy_rows.empty:
            w("Copy (real source vs real target): " + "; ".join(
                f"{r.source}→{r.sequence} {r.value:.1f}" for r in copy_rows.itertuples()))
            w()
        if "fid_heatmap" in files:
            w(f"![FID heatmap]({rel(files['fid_heatmap'])})")
            w()
    if not quality.empty:
        w("## SSIM and PSNR of generated sequences")
        w()
        w("Against the real sequence of the same case, inside the brain mask, mean over cases:")
        w()
        w(markdown_table(quality))
        w()

    cross = results[results["kind"] == CROSS]
    if not cross.empty:
        w("## Cross-center")
        w()
        w("Each case of the local site is given to the segmenter with only its T2, read as "
          "the local center's domain. `copy`: the local T2 in all four inputs; `generated`: "
          "T1, T1ce and FLAIR generated from it and the T2 itself translated into the target "
          "domain; `generated-noalign`: the three generated, the local T2 kept as acquired. "
          "Only the whole tumour (WT) is scored.")
        w()
        dice = cross[cross["metric"] == "dice"]
        if not dice.empty:
            summary = dice.groupby("strategy")["value"].agg(["count", "median", "mean"])
            w(markdown_table(summary, index=True))
            w()
        for r in cross[cross["metric"] == "fid"].itertuples():
            what = "as acquired" if r.strategy == "copy" else "translated into the target"
            w(f"- FID of the local T2 {what} vs the target's real T2: {r.value:.1f}")
        w()
    if "umap" in files:
        w("## Sequence codes (UMAP)")
        w()
        w("Style codes of real and generated slices, encoded with the target domain's branch, "
          "coloured by target domain, by real/generated and by source. Points in "
          f"`{rel(files['umap_csv'])}`.")
        w()
        w(f"![UMAP]({rel(files['umap'])})")
        w()
    if overlays:
        w("## Examples")
        w()
        w("NCR red, ED green, ET blue; for each case the scenario where generated and copy "
          "differ most in WT Dice.")
        w()
        for path in overlays:
            w(f"![{path.stem}]({rel(path)})")
        w()
    return buffer.getvalue()
