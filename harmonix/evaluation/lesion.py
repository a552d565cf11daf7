"""Lesion preservation: did the tumour (and the anatomy around it) survive the translation?

Per held-out case and (source, target) sequence pair, the generated target against the real
one (all on the case preprocessed from the source alone, 0..255):

* **lesion contrast**: the mean intensity of each tumour region (NCR, ED, ET) divided by that of
  normal-appearing white matter (the tissue map's WM outside the dilated tumour; without tissue
  maps, the brain outside the dilated tumour), for generated and real. A ratio above 1 is a
  bright region; the sign of ``ratio - 1`` must agree (a bright oedema must not come out dark);
* **BraSyn SSIM** (:func:`brasyn_ssim`): both images clipped to their own 0.5-99.5 percentiles
  inside the brain and scaled to [0, 1], then the SSIM map's mean inside the tumour mask and
  outside it (brain without tumour), for generated, the source copied and the source remapped
  (:func:`harmonix.evaluation.fidelity.remapped`, the better direction) as baselines;
* **tissue contrast**: CSF and grey matter over white matter, generated against real (needs the
  built-in data's tissue maps, ``harmonix synth --truth``); a T2 with CSF darker than WM is wrong;
* **structure**: normalised mutual information (``(H(A) + H(B)) / H(A, B)``, 1 to 2) inside the
  brain between the source and the generated target, next to that between the source and the
  real target. A generator that invents blobs or loses anatomy falls below the real pair.

:func:`lesion_table` summarises the ``lesion`` rows per pair (medians over cases).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torchio as tio
from scipy import ndimage
from skimage.metrics import normalized_mutual_information, structural_similarity

from harmonix.evaluation.fidelity import WIN_SIZE, pair_medians, remapped

KIND = "lesion"
REGIONS = {"NCR": 1, "ED": 2, "ET": 4}  # canonical labels
TISSUES = {"CSF": 1, "GM": 2, "WM": 3}  # ``harmonix synth --truth`` tissue maps
PERCENTILES = (0.5, 99.5)
NMI_BINS = 64
INTRO = ("Per (source, target) pair, medians over held-out cases, each case preprocessed from "
         "the source alone. Lesion contrast: mean of each tumour region (NCR, ED, ET) over "
         "normal-appearing white matter, generated and real; `contrast_sign_agrees` is 1 when "
         "every region is bright or dark as in the real target. BraSyn SSIM inside the tumour "
         "(`ssim_lesion_*`) and outside it, after clipping to the 0.5-99.5 percentiles and "
         "scaling to [0, 1], for generated, the source copied and the source remapped. Tissue "
         "contrast: CSF and GM over WM (built-in data's tissue maps). Structure: normalised "
         "mutual information of source and generated, over that of source and real "
         "(`nmi_ratio`; below 0.9 anatomy was lost or invented).")
#: where tissue maps of built-in data live: ``SITE/_truth/CASE_tissue.nii.gz``
TRUTH_DIR, TRUTH_SUFFIX = "_truth", "_tissue.nii.gz"


def normal_reference(label: np.ndarray, brain: np.ndarray,
                     tissue: np.ndarray | None = None) -> np.ndarray:
    """Normal-appearing white matter: the tissue map's WM (else the brain) outside the tumour
    dilated by 2 voxels."""
    tumour = ndimage.binary_dilation(label > 0, iterations=2)
    base = brain if tissue is None else (tissue == TISSUES["WM"]) & brain
    return base & ~tumour


def contrast_ratios(image: np.ndarray, masks: dict[str, np.ndarray],
                    reference: np.ndarray) -> dict[str, float]:
    """Mean of ``image`` in each mask over its mean in ``reference`` (NaN for an empty mask or a
    zero reference mean)."""
    ref = float(image[reference].mean()) if reference.any() else 0.0
    return {name: float(image[mask].mean()) / ref if mask.any() and ref > 0 else float("nan")
            for name, mask in masks.items()}


def signs_agree(generated: dict[str, float], real: dict[str, float]) -> float:
    """1.0 when every region present in both has ``ratio - 1`` of the same sign, else 0.0;
    NaN when no region is present."""
    both = [k for k in real if real[k] == real[k] and generated.get(k, np.nan) == generated.get(k)]
    if not both:
        return float("nan")
    return float(all(np.sign(generated[k] - 1) == np.sign(real[k] - 1) for k in both))


def unit_scaled(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``image`` clipped to its 0.5-99.5 percentiles inside the brain and scaled to [0, 1]
    (the BraSyn challenge's normalisation); 0 outside the brain."""
    low, high = np.percentile(image[brain], PERCENTILES)
    out = np.clip((np.asarray(image, np.float64) - low) / max(high - low, 1e-12), 0.0, 1.0)
    out[~brain] = 0.0
    return out


def brasyn_ssim(image: np.ndarray, reference: np.ndarray, tumour: np.ndarray,
                brain: np.ndarray) -> dict[str, float]:
    """BraSyn's image score: SSIM (7-voxel window, data range 1) of the two images after
    :func:`unit_scaled`, averaged over the voxels inside the ``tumour`` mask and over those of
    the brain outside it (NaN for an empty part)."""
    a, b = unit_scaled(image, brain), unit_scaled(reference, brain)
    if min(a.shape) < WIN_SIZE:
        return {"ssim_lesion": float("nan"), "ssim_outside": float("nan")}
    _, ssim_map = structural_similarity(b, a, data_range=1.0, win_size=WIN_SIZE, full=True)
    inside, outside = tumour & brain, brain & ~tumour
    return {"ssim_lesion": float(ssim_map[inside].mean()) if inside.any() else float("nan"),
            "ssim_outside": float(ssim_map[outside].mean()) if outside.any() else float("nan")}


def brain_nmi(a: np.ndarray, b: np.ndarray, brain: np.ndarray) -> float:
    """Normalised mutual information of the voxels inside the brain (``NMI_BINS`` bins)."""
    return float(normalized_mutual_information(np.asarray(a, np.float64)[brain],
                                               np.asarray(b, np.float64)[brain], bins=NMI_BINS))


def pair_rows(generated: np.ndarray, source: np.ndarray, real: np.ndarray, label: np.ndarray,
              brain: np.ndarray, tissue: np.ndarray | None = None) -> list[dict]:
    """The ``lesion`` rows of one case and pair: ``{"strategy", "metric", "value"}`` dicts."""
    brain = np.asarray(brain, bool)
    label = np.asarray(label)
    rows = []

    def add(strategy: str, metric: str, value: float) -> None:
        rows.append({"strategy": strategy, "metric": metric, "value": float(value)})

    tumour = label > 0
    if tumour.any():
        masks = {name: label == value for name, value in REGIONS.items()}
        reference = normal_reference(label, brain, tissue)
        ratios = {s: contrast_ratios(v, masks, reference)
                  for s, v in (("generated", generated), ("real", real))}
        for strategy, values in ratios.items():
            for region, value in values.items():
                add(strategy, f"contrast_{region}", value)
        add("generated", "contrast_sign_agrees", signs_agree(ratios["generated"],
                                                             ratios["real"]))
        copies = {"generated": generated, "copy": source}
        direct, inverse = (remapped(source, real, brain, inverse=i) for i in (False, True))
        candidates = [brasyn_ssim(r, real, tumour, brain) for r in (direct, inverse)]
        for strategy, image in copies.items():
            for metric, value in brasyn_ssim(image, real, tumour, brain).items():
                add(strategy, metric, value)
        for metric in ("ssim_lesion", "ssim_outside"):
            add("remapped", metric, np.nanmax([c[metric] for c in candidates]))
    if tissue is not None:
        white = (tissue == TISSUES["WM"]) & brain & ~tumour
        masks = {name: (tissue == value) & brain & ~tumour for name, value in TISSUES.items()
                 if name != "WM"}
        for strategy, image in (("generated", generated), ("real", real)):
            for name, value in contrast_ratios(image, masks, white).items():
                add(strategy, f"tissue_{name}", value)
    add("generated", "nmi", brain_nmi(source, generated, brain))
    add("real", "nmi", brain_nmi(source, real, brain))
    return rows


def lesion_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (source, target), medians over cases of the ``lesion`` rows, one column per
    ``METRIC_STRATEGY`` (``ssim_lesion_generated``, ``contrast_ED_real``, ...), and:

    * ``contrast_sign_agrees``: 1 when every tumour region's median contrast has the real
      target's sign (``contrast_sign_share``: the share of cases where every region agrees);
    * ``ssim_lesion_remap`` (and ``_copy``): the baselines' lesion SSIM, named as
      docs/validation/lesion.csv has them; ``lesion_ssim_wins``: generated above both;
    * ``nmi_ratio``: NMI(source, generated) / NMI(source, real)."""
    rows, wide = pair_medians(results, KIND)
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (source, target), row in wide.iterrows():
        values = {f"{m}_{s}": float(v) for (m, s), v in row.items()}
        record = {"source": source, "target": target}
        generated = {r: values.get(f"contrast_{r}_generated", np.nan) for r in REGIONS}
        real = {r: values.get(f"contrast_{r}_real", np.nan) for r in REGIONS}
        record["contrast_sign_agrees"] = signs_agree(generated, real)
        record["contrast_sign_share"] = values.get("contrast_sign_agrees_generated", np.nan)
        for baseline, name in (("generated", "generated"), ("copy", "copy"),
                               ("remapped", "remap")):
            for part in ("lesion", "outside"):
                record[f"ssim_{part}_{name}"] = values.get(f"ssim_{part}_{baseline}", np.nan)
        record["lesion_ssim_wins"] = float(record["ssim_lesion_generated"] > max(
            record["ssim_lesion_copy"], record["ssim_lesion_remap"]))
        for region in REGIONS:
            record[f"contrast_{region}_generated"] = generated[region]
            record[f"contrast_{region}_real"] = real[region]
        for tissue in ("CSF", "GM"):
            record[f"tissue_{tissue}_generated"] = values.get(f"tissue_{tissue}_generated",
                                                              np.nan)
            record[f"tissue_{tissue}_real"] = values.get(f"tissue_{tissue}_real", np.nan)
        record["nmi_generated"] = values.get("nmi_generated", np.nan)
        record["nmi_real"] = values.get("nmi_real", np.nan)
        record["nmi_ratio"] = record["nmi_generated"] / record["nmi_real"]
        out.append(record)
    return pd.DataFrame(out)


def tissue_on_grid(path: str | Path, record) -> np.ndarray:
    """A tissue map resampled (nearest neighbour) onto a prepared case's grid (its
    ``GridRecord``'s shape and affine)."""
    image = tio.LabelMap(path)
    target = (tuple(int(n) for n in record.shape), np.asarray(record.affine, float))
    return tio.Resample(target, copy=False)(image).data[0].numpy().astype(np.uint8)


def truth_path(site_root: str | Path, case_id: str) -> Path | None:
    """The tissue map of ``case_id`` (built-in data): in the site's ``_truth`` folder, or in the
    one of the site a ``harmonix split`` part came from; None when there is none."""
    root = Path(site_root)
    folders = [root / TRUTH_DIR]
    split = root.parent / "split.json"
    if split.is_file():
        try:
            folders.append(Path(json.loads(split.read_text())["source"]) / TRUTH_DIR)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for folder in folders:
        path = folder / f"{case_id}{TRUTH_SUFFIX}"
        if path.is_file():
            return path
    return None


__all__ = ["INTRO", "KIND", "REGIONS", "TISSUES", "brain_nmi", "brasyn_ssim", "contrast_ratios",
           "lesion_table", "normal_reference", "pair_rows", "signs_agree", "tissue_on_grid",
           "truth_path",
           "unit_scaled"]
