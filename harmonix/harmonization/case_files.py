"""The files of one harmonized case, written into its staging folder
(:mod:`harmonix.harmonization.pipeline`).

* Real files are copied byte for byte (a label map is rewritten only when its convention differs
  from the target's), with ``--merge-aligned`` into the case's ``_original/`` folder when an
  aligned volume takes their place.
* Synthetic (generated or aligned) volumes are written on the input's grid, on their real
  counterpart's intensity scale and dtype (:mod:`harmonix.harmonization.intensity`) or with
  ``--intensity model`` as float32 0..255, with the input's extension (``.nii`` stays ``.nii``)
  and a JSON sidecar recording how they were made and on which scale.
* With ``--confidence``, the spread across fused sources of a generated volume goes to the case's
  ``_confidence/`` folder, flagged synthetic as well (:mod:`harmonix.harmonization.fusion`).
* With ``--layout bids`` every file gets a sidecar: the input's own carried over (real and
  aligned files) and extended with harmonix's record (:mod:`harmonix.harmonization.bids`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from harmonix.data.preprocess import restore
from harmonix.data.provenance import SYNTHETIC_FLAG
from harmonix.harmonization.bids import DATASET_DIR, aligned_sidecar, dseg_table, input_sidecar
from harmonix.harmonization.intensity import MODEL_SCALE, scale_of, to_scale
from harmonix.harmonization.outputs import (
    CaseOutput,
    convert_labels,
    nifti_suffix,
    sidecar_path,
    synthetic_image,
)
from harmonix.io import atomic_write_json, atomic_write_nifti, atomic_write_text
from harmonix.registry import load_registry
from harmonix.version import __version__


@dataclass
class StagedCase:
    """A case being built in ``stage`` (``stage/case``, ``stage/aligned``) for ``where``."""

    stage: Path
    where: CaseOutput

    @property
    def bids(self) -> bool:
        return self.where.layout == "bids"

    def path(self, sequence: str, status: str, suffix: str) -> tuple[Path, str]:
        """The staged path of a file and its path relative to ``OUT`` (the manifest's)."""
        part, inside = self.where.place(sequence, status, suffix)
        path = self.stage / part / inside
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, self.where.relative(part, inside)


def dataset_uri(rel: str) -> str:
    """A BIDS URI of a file of the harmonix derivative dataset (``rel``: relative to ``OUT``)."""
    return "bids::" + rel.removeprefix(DATASET_DIR + "/")


def copy_real(files: StagedCase, sequence: str, src: Path, status: str = "real",
              labels: tuple[str, str] | None = None) -> tuple[str, str]:
    """Copy the real file ``src`` of ``sequence`` (``"seg"``: the label map, whose convention
    ``labels = (site's, target's)`` is converted when they differ); BIDS: with its sidecar.
    Returns the file relative to ``OUT`` and a message. Raises ``ValueError`` for label values
    that do not convert."""
    path, rel = files.path(sequence, status, nifti_suffix(src))
    messages = []
    if labels and labels[0] != labels[1]:
        atomic_write_nifti(path, convert_labels(nib.load(src), *labels))
        messages.append(f"labels converted from {labels[0]} to {labels[1]}")
    else:
        shutil.copy2(src, path)
    if files.bids:
        carried, note = input_sidecar(sidecar_path(src))
        record = {"synthetic": False, "status": "real", "case": files.where.case_id,
                  "sequence": sequence, "input_file": src.name, "harmonix_version": __version__}
        if labels:
            record["labels"] = labels[1]
            table = dseg_table(load_registry().label_values(labels[1]))
            atomic_write_text(path.with_name(sidecar_path(path).stem + ".tsv"), table)
        atomic_write_json(sidecar_path(path), {**carried, **record})
        messages += [note] if note else []
    return rel, "; ".join(messages)


def brain_on_input_grid(prepared) -> np.ndarray:
    """The case's brain mask (``prepared.brain_mask``) on the input's grid (nearest neighbour)."""
    mask = restore(prepared.brain_mask.astype(np.uint8), prepared.record, is_label=True)
    return np.asarray(mask.dataobj) > 0


def synthetic_volume(translation, status: str, data: np.ndarray, like, *, record,
                     brain: np.ndarray | None, intensity: str = "input", like_name: str = "",
                     sources: str = ""):
    """The NIfTI image of a model-scale volume ``data`` (on the input's grid) made from ``like``,
    the real image of ``translation.source``, and the scale it is on (for the sidecar):
    ``intensity="input"`` maps it onto ``like``'s scale and dtype (``record``: the case's
    ``GridRecord``; ``brain``: :func:`brain_on_input_grid`), ``"model"`` keeps float32 0..255.
    What ``harmonize`` writes and ``harmonix.fill_case`` returns; ``sources`` (``t1+t2`` when
    fused) names its sources in the header, default ``translation.source``."""
    t = translation
    scale = None
    if intensity == "input":
        scale = scale_of(record, t.source, like, like_name)
        data = to_scale(data, brain, scale)
    image = synthetic_image(data, like, f"{SYNTHETIC_FLAG} {status} from "
                                        f"{sources or t.source}", scale)
    return image, (scale.to_dict() if scale else dict(MODEL_SCALE))


def write_synthetic(files: StagedCase, translation, status: str, data: np.ndarray,
                    like_path: Path, *, record, brain: np.ndarray | None, intensity: str,
                    sidecar: dict[str, Any], source_file: str = "", sources: str = "") -> str:
    """Write a model-scale volume ``data`` (on the input's grid) made from the real file
    ``like_path`` of ``translation.source``; returns its path relative to ``OUT``.

    ``intensity="input"`` maps it onto that file's scale and dtype (``record`` is the case's
    ``GridRecord``, ``brain`` its brain mask on the input's grid); ``"model"`` keeps float32
    0..255. The sidecar gets the scale; BIDS adds ``Description``, ``Sources`` (``source_file``,
    the source's real copy relative to ``OUT``) and, for aligned volumes, the input's sidecar."""
    t = translation
    like = nib.load(like_path)  # the file's header: codes, units, dtype, scaling
    image, scale = synthetic_volume(t, status, data, like, record=record, brain=brain,
                                    intensity=intensity, like_name=like_path.name,
                                    sources=sources)
    path, rel = files.path(t.sequence, status, nifti_suffix(like_path))
    atomic_write_nifti(path, image)
    meta = {**sidecar, "intensity": scale}
    if files.bids:
        carried = (aligned_sidecar(input_sidecar(sidecar_path(like_path))[0], t.target_domain)
                   if status == "aligned" else {})
        what = (f"{t.sequence} generated from the case's real {t.source}" if status == "generated"
                else f"{t.sequence} translated from {t.source_domain} into {t.target_domain}")
        meta = {**carried, "Description": f"SYNTHETIC: {what} by harmonix; not a real scan",
                **({"Sources": [dataset_uri(source_file)]} if source_file else {}), **meta}
    atomic_write_json(sidecar_path(path), meta)
    return rel


def synthetic_sidecar(group, status: str, case_id: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of a synthetic volume made by the translations ``group`` (one per
    source; several when fused), with the run's facts ``run`` (target, seed, model, guidance,
    model card hash, fill policy)."""
    t = group[0]
    return {
        "synthetic": True,
        "warning": "synthetic image made by a generative model; never read it as a real scan",
        "status": status, "case": case_id, "sequence": t.sequence,
        "source_sequences": [x.source for x in group], "source_domain": t.source_domain,
        "target_domain": t.target_domain, **run,
        "fill": run.get("fill", "single") if len(group) > 1 else "single",
        "harmonix_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "note": t.note,
    }


def write_spread(files: StagedCase, translation, spread, like_path: Path,
                 sidecar: dict[str, Any]) -> str:
    """Write the spread across fused sources of a generated volume (a NIfTI on the input's grid,
    float32 on the model's 0..255 scale) into the case's ``_confidence/`` folder, flagged
    synthetic like the volume; returns its path relative to ``OUT``."""
    t = translation
    path, rel = files.path(t.sequence, "spread", nifti_suffix(like_path))
    data = np.asarray(spread.dataobj, np.float32)
    image = synthetic_image(data, nib.load(like_path),
                            f"{SYNTHETIC_FLAG} spread of {t.sequence} across sources", None)
    atomic_write_nifti(path, image)
    atomic_write_json(sidecar_path(path), {
        **sidecar, "meaning": "per-voxel weighted standard deviation of the generated volume "
        "across its fused sources (0..255 scale): where they disagree, not a calibrated "
        "probability", "intensity": dict(MODEL_SCALE)})
    return rel
