"""The BraSyn protocol (the BraTS missing-sequence synthesis challenge), as a scenario.

Each held-out case loses one of its four sequences, drawn at random with the evaluation's seed
and recorded per case (``evaluation.json``: ``brasyn_drops``); the generated strategy fills it
from the other three with the generator's fill policy, the copy strategy copies the most
correlated present one. Scored:

* the image, as BraSyn scores it: SSIM inside the tumour mask and outside it after both images
  are clipped to their 0.5-99.5 percentiles and scaled to [0, 1]
  (:func:`harmonix.evaluation.lesion.brasyn_ssim`, the same function as the lesion table's),
  and PSNR of the scaled images inside the brain; for generated, copy and the copied source
  remapped (histogram-matched to the real one, the better direction) as baselines;
* the completed case, segmented: Dice per region like every scenario (scenario ``brasyn`` in
  ``summary.csv``).

:func:`brasyn_table` summarises it per strategy (means over cases, as the challenge ranks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harmonix.evaluation.fidelity import remapped
from harmonix.evaluation.lesion import brasyn_ssim, unit_scaled

KIND = "brasyn"
INTRO = ("BraSyn protocol: each held-out case loses one sequence at random (seeded, recorded "
         "in evaluation.json as `brasyn_drops`), filled from the other three. SSIM inside the "
         "tumour and outside it, and PSNR inside the brain, after clipping each image to its "
         "0.5-99.5 percentiles and scaling to [0, 1]; means over cases for generated, the most "
         "correlated source copied, and that source remapped to the real one's histogram; then "
         "the median Dice of the completed case (complete, copy, generated).")


def drops(case_ids, sequences, seed: int = 0) -> dict[str, frozenset[str]]:
    """One sequence per case, drawn uniformly with ``seed`` (independent of random missing)."""
    rng = np.random.default_rng([seed, 20230])
    return {case: frozenset({sequences[int(rng.integers(len(sequences)))]})
            for case in case_ids}


def unit_psnr(image: np.ndarray, reference: np.ndarray, brain: np.ndarray) -> float:
    """PSNR (dB, data range 1) of the two images after :func:`unit_scaled`, inside the brain."""
    a, b = unit_scaled(image, brain), unit_scaled(reference, brain)
    mse = float(np.mean((a[brain] - b[brain]) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def image_rows(generated: np.ndarray, copied: np.ndarray, real: np.ndarray, label: np.ndarray,
               brain: np.ndarray) -> list[dict]:
    """``{"strategy", "metric", "value"}`` rows of one case's filled sequence."""
    brain = np.asarray(brain, bool)
    tumour = np.asarray(label) > 0
    rows = []
    candidates = {"generated": [generated], "copy": [copied],
                  "remapped": [remapped(copied, real, brain, inverse=i) for i in (False, True)]}
    for strategy, images in candidates.items():
        scores = [{**brasyn_ssim(image, real, tumour, brain),
                   "psnr": unit_psnr(image, real, brain)} for image in images]
        for metric in ("ssim_lesion", "ssim_outside", "psnr"):
            rows.append({"strategy": strategy, "metric": metric,
                         "value": float(np.nanmax([s[metric] for s in scores]))})
    return rows


def brasyn_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: cases, the mean SSIM inside and outside the tumour and PSNR, and the
    median Dice per region of the completed case."""
    rows = results[results["kind"] == KIND].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["value"] = rows["value"].astype(float)
    images = rows[rows["region"].fillna("") == ""]
    dice = rows[(rows["metric"] == "dice") & (rows["region"].fillna("") != "")]
    out = []
    for strategy in ("complete", "copy", "remapped", "generated"):
        record = {"strategy": strategy}
        mine = images[images["strategy"] == strategy]
        for metric in ("ssim_lesion", "ssim_outside", "psnr"):
            values = mine[mine["metric"] == metric]["value"]
            record[metric] = float(values.mean()) if len(values) else np.nan
        regions = dice[dice["strategy"] == strategy]
        record["cases"] = int(max(mine["case"].nunique(), regions["case"].nunique()))
        for region in ("WT", "TC", "ET"):
            values = regions[regions["region"] == region]["value"]
            record[f"dice_{region}"] = float(values.median()) if len(values) else np.nan
        out.append(record)
    return pd.DataFrame(out)


__all__ = ["INTRO", "KIND", "brasyn_table", "drops", "image_rows", "unit_psnr"]
