"""Image fidelity against trivial baselines (issue 14): is a generated sequence closer to the real
one than what needs no model at all?

For one held-out case and one (source, target) sequence pair, inside the brain mask:

* **generated**: the target generated from the source;
* **copy**: the source itself, as acquired (what the copy strategy gives);
* **remapped**: the best monotone remapping of the source: its intensities, or their inverse
  (``255 - x``), histogram-matched to the real target's inside the brain
  (``skimage.exposure.match_histograms``); per metric the better of the two directions counts.
  It uses the real target's histogram, so it is an oracle baseline: a synthesis model that loses
  to it has learned no more than a global intensity mapping.

Each is scored against the real target with SSIM (mean of scikit-image's SSIM map over the mask,
7-voxel window), PSNR (mean squared error over the mask) on the 0..255 scale, and Pearson's r
of the voxels inside the mask. :func:`pair_scores` scores one pair, :func:`fidelity_table`
summarises the ``fidelity`` rows of an evaluation's long table per pair (median over cases) with
the verdict "generated beats both baselines".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.exposure import match_histograms
from skimage.metrics import structural_similarity

DATA_RANGE = 255.0
WIN_SIZE = 7
KIND = "fidelity"  # the ``kind`` (and ``scenario``) of the rows in results.csv
BASELINES = ("generated", "copy", "remapped")
METRICS = ("ssim", "psnr", "pearson_r")
VERDICT = "generated beats both baselines"
INTRO = ("Per held-out case and (source, target) pair, inside the brain mask of the case "
         "preprocessed from the source alone, against the real target: the generated volume, "
         "the source copied, and the source remapped (its intensities or their inverse "
         "255 - x, histogram-matched to the real target's inside the brain; per metric the "
         "better direction). Medians over cases; the verdict needs generated above both "
         "baselines in SSIM, PSNR and Pearson's r.")


def _inside(mask: np.ndarray) -> np.ndarray:
    """The mask without the border that SSIM's window cannot reach."""
    pad = (WIN_SIZE - 1) // 2
    interior = np.zeros_like(mask)
    interior[tuple(slice(pad, n - pad) for n in mask.shape)] = True
    return mask & interior


def brain_ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (0..255 scale) over the mask's voxels away from the image border."""
    inside = _inside(mask)
    if not inside.any() or min(image.shape) < WIN_SIZE:
        return float("nan")
    _, ssim_map = structural_similarity(reference, image, data_range=DATA_RANGE,
                                        win_size=WIN_SIZE, full=True)
    return float(ssim_map[inside].mean())


def brain_psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB (0..255 scale) from the mean squared error over the mask; inf when equal."""
    mse = float(np.mean((image[mask] - reference[mask]) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(DATA_RANGE**2 / mse))


def brain_pearson(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Pearson's r of the voxels inside the mask (0 when either is constant there)."""
    a, b = image[mask], reference[mask]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def scores(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR and Pearson's r of ``image`` against ``reference`` inside ``mask``."""
    image, reference = np.asarray(image, np.float64), np.asarray(reference, np.float64)
    mask = np.asarray(mask, bool)
    if image.shape != reference.shape or mask.shape != image.shape:
        raise ValueError(f"shapes differ: image {image.shape}, reference {reference.shape}, "
                         f"mask {mask.shape}")
    if not mask.any():
        raise ValueError("the brain mask is empty")
    return {"ssim": brain_ssim(image, reference, mask),
            "psnr": brain_psnr(image, reference, mask),
            "pearson_r": brain_pearson(image, reference, mask)}


def remapped(source: np.ndarray, reference: np.ndarray, mask: np.ndarray,
             inverse: bool = False) -> np.ndarray:
    """``source`` (or ``255 - source``) histogram-matched to ``reference`` inside ``mask``;
    zero outside it."""
    source = np.asarray(source, np.float64)
    values = DATA_RANGE - source[mask] if inverse else source[mask]
    out = np.zeros_like(source)
    out[mask] = match_histograms(values, np.asarray(reference, np.float64)[mask])
    return out


def pair_scores(generated: np.ndarray, source: np.ndarray, real: np.ndarray,
                mask: np.ndarray) -> dict[str, dict[str, float]]:
    """``{baseline: {metric: value}}`` for generated, copy and remapped (the better direction
    per metric) against the ``real`` target inside ``mask``; ``remapped`` also records
    ``inverse`` (1.0 when the inverted intensities correlate better)."""
    mask = np.asarray(mask, bool)
    direct = scores(remapped(source, real, mask), real, mask)
    inverted = scores(remapped(source, real, mask, inverse=True), real, mask)
    best = {m: float(np.nanmax([direct[m], inverted[m]])) for m in METRICS}
    best["inverse"] = float(inverted["pearson_r"] > direct["pearson_r"])
    return {"generated": scores(generated, real, mask), "copy": scores(source, real, mask),
            "remapped": best}


def pair_medians(results: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``kind`` (values as floats) and their medians over cases per (source,
    target sequence), one column per (metric, strategy)."""
    rows = results[results["kind"] == kind].copy()
    if rows.empty:
        return rows, pd.DataFrame()
    rows["value"] = rows["value"].astype(float)
    wide = rows.pivot_table(index=["source", "sequence"], columns=["metric", "strategy"],
                            values="value", aggfunc="median", sort=False)
    return rows, wide


def fidelity_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (source, target): the number of cases, the median over cases of every metric for
    generated, copy and remapped (columns ``METRIC_BASELINE``), and the verdict column
    "generated beats both baselines" ("yes" when generated is above both baselines in SSIM,
    PSNR and r; else "no", naming the metrics it loses); ``remapped_inverted`` is the share of
    cases whose remapping inverted the source (255 - x correlated better)."""
    rows, wide = pair_medians(results, KIND)
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (source, target), row in wide.iterrows():
        record = {"source": source, "target": target,
                  "cases": int(rows[(rows["source"] == source)
                                    & (rows["sequence"] == target)]["case"].nunique())}
        losses = []
        for metric in METRICS:
            for baseline in BASELINES:
                record[f"{metric}_{baseline}"] = float(row.get((metric, baseline), np.nan))
            if not record[f"{metric}_generated"] > max(record[f"{metric}_copy"],
                                                       record[f"{metric}_remapped"]):
                losses.append(metric)
        inverted = rows[(rows["metric"] == "inverse") & (rows["source"] == source)
                        & (rows["sequence"] == target)]["value"]
        record["remapped_inverted"] = float(inverted.mean()) if len(inverted) else np.nan
        record[VERDICT] = "yes" if not losses else "no (" + ", ".join(losses) + ")"
        out.append(record)
    return pd.DataFrame(out)


def add_pair_rows(ev, case: str, source: str, target: str, generated: np.ndarray,
                  source_volume: np.ndarray, real: np.ndarray | None, mask: np.ndarray) -> None:
    """Add one case's :func:`pair_scores` to an evaluation's long table (kind ``fidelity``);
    nothing when the real target is not on the source's grid (``real`` None)."""
    if real is None:
        return
    for baseline, values in pair_scores(generated, source_volume, real, mask).items():
        for metric, value in values.items():
            ev.add(case=case, scenario=KIND, kind=KIND, strategy=baseline, metric=metric,
                   sequence=target, source=source, value=value)


def image_quality_table(results: pd.DataFrame) -> pd.DataFrame:
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


__all__ = ["BASELINES", "INTRO", "KIND", "METRICS", "VERDICT", "add_pair_rows", "brain_pearson",
           "brain_psnr", "brain_ssim", "fidelity_table", "image_quality_table", "pair_medians",
           "pair_scores", "remapped", "scores"]
