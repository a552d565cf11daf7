"""The segmenter workflow: train a segmenter plugin on a site, load one, and predict a site's
label maps (``harmonix segment train`` / ``predict``); the evaluation loads its segmenter and
prepares its test cases here too (:func:`load_segmenter`, :func:`prepare_site`).

The segmenter's checkpoint folder (``model_card.json`` and the plugin's own files, e.g.
``model.safetensors``) names the plugin (``"segmenter"``) and the ``PreprocessConfig`` it was
trained with (``"preprocessing"``), so prediction and evaluation preprocess new cases exactly
alike. What a segmenter plugin must do is :class:`harmonix.interfaces.Segmenter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonix.cards import CARD_FILE, portable_path, preprocessing_of, write_card
from harmonix.data.fingerprint import RECORD_KEY, case_record, merge_records
from harmonix.data.labels import from_canonical
from harmonix.data.layouts import naming_for_labels
from harmonix.data.preprocess import PreprocessConfig, preprocess_case, restore
from harmonix.data.site import read_site
from harmonix.errors import CheckpointError, InputError
from harmonix.evaluation.strategies import (
    CORRELATIONS_KEY,
    MAX_CORRELATION_CASES,
    correlations_record,
    sequence_correlations,
)
from harmonix.interfaces import Segmenter
from harmonix.io import atomic_write_nifti, atomic_write_text
from harmonix.models.checkpoints import read_card, resolve_checkpoint
from harmonix.plugins import build_segmenter, get_segmenter

DEFAULT_FIELD_OF_VIEW = (176, 176, 155)  # mm, harmonix's 1 mm crop


def default_preprocess(spacing: float = 1.0, size: int | None = None):
    """``PreprocessConfig`` at ``spacing`` mm: the 176 x 176 x 155 mm crop, or ``size`` voxels
    in-plane (the generator's slice size) with the depth of 155 mm."""
    x, y, z = (math.ceil(n / spacing - 1e-6) for n in DEFAULT_FIELD_OF_VIEW)
    if size is not None:
        x = y = int(size)
    return PreprocessConfig(spacing=spacing, crop_shape=(x, y, z))


def load_segmenter(path: str | Path | Segmenter, device: str = "cpu") -> Segmenter:
    """The segmenter plugin named in the card, rebuilt from its checkpoint folder."""
    if isinstance(path, Segmenter):
        return path
    folder = resolve_checkpoint(path, "segmenter")
    card = read_card(folder, "segmenter")
    return get_segmenter(card["segmenter"]).load(folder, device=device)


def segmenter_preprocess(segmenter: Segmenter):
    """The ``PreprocessConfig`` a segmenter was trained with (default config if unrecorded)."""
    spec = preprocessing_of(getattr(segmenter, "card", None))
    return PreprocessConfig.from_dict(spec) if spec else PreprocessConfig()


@dataclass
class PreparedSite:
    """The usable cases of a site, preprocessed, and why the others were left out."""

    site: Any
    cases: list  # PreparedCase
    skipped: list[tuple[str, str]]


def prepare_site(
    site_dir: str | Path,
    config,
    *,
    sequences: Sequence[str],
    need_label: bool = True,
    max_cases: int | None = None,
    center: str | None = None,
    on_case: Callable[[str], None] | None = None,
) -> PreparedSite:
    """Read a site and preprocess its cases that have ``sequences`` (and a label map if
    ``need_label``); each other case is skipped with the reason. Raises ``InputError`` if no
    case is usable."""
    site = read_site(site_dir, center=center)
    cases, skipped = [], []
    for case in site.cases:
        if max_cases is not None and len(cases) >= max_cases:
            break
        lacking = [s for s in sequences if s not in case.sequences]
        if not case.ok:
            skipped.append((case.id, "; ".join(str(p) for p in case.problems)))
        elif lacking:
            skipped.append((case.id, f"lacks {', '.join(lacking)}"))
        elif need_label and case.label is None:
            skipped.append((case.id, "no label map"))
        else:
            try:
                prepared = preprocess_case(case, config)
            except (InputError, ValueError) as exc:
                skipped.append((case.id, f"preprocessing failed: {exc}"))
                continue
            prepared.volumes = {s: prepared.volumes[s] for s in sequences}
            cases.append(prepared)
        if on_case:
            on_case(case.id)
    if not cases:
        reasons = "; ".join(f"{c}: {r}" for c, r in skipped[:5]) or "no cases"
        what = f"{', '.join(sequences)}" + (" and a label map" if need_label else "")
        raise InputError(site_dir, f"no case with {what} ({reasons})")
    return PreparedSite(site, cases, skipped)


def train_segmenter(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    segmenter: str = "segresnet",
    sequences: Sequence[str] = ("t1", "t1ce", "t2", "flair"),
    preprocess=None,
    iters: int = 2000,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    resume: bool = False,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
    checkpoint_every: int = 200,
    progress: bool = True,
    on_skipped: Callable[[Path, str, str], None] | None = None,
    allow_synthetic: bool = False,
) -> Path:
    """Train segmenter plugin ``segmenter`` on the complete labelled cases of the site(s)
    ``data`` and checkpoint it into ``out``; returns ``out``. Each case left out is passed to
    ``on_skipped(site, case, reason)`` before training starts.

    ``preprocess`` defaults to 1 mm (:func:`default_preprocess`); on ``resume`` the card's is
    used. The card records, under ``training``, the site folders' names (``data``; cards hold
    no local path), each training case's id and input-file content hashes (``data_record``,
    :mod:`harmonix.data.fingerprint`) and the sequences' correlations on the training cases
    (``copy_correlations``): ``harmonix evaluate`` refuses test cases found in the record and
    learns the copy mapping from them. Sites holding synthetic volumes (made by harmonize) are
    refused unless ``allow_synthetic`` (:func:`harmonix.data.provenance.refuse_synthetic`).
    """
    from harmonix.data.provenance import refuse_synthetic

    out = Path(out)
    sites = [Path(d) for d in ([data] if isinstance(data, (str, Path)) else data)]
    refuse_synthetic(sites, allow=allow_synthetic, what="train a segmenter")
    earlier = read_card(out, "segmenter") if resume and (out / CARD_FILE).exists() else {}
    if preprocess is None and earlier.get("preprocessing"):
        preprocess = PreprocessConfig.from_dict(earlier["preprocessing"])
    config = preprocess or default_preprocess()
    previous = earlier.get("training") or {}
    cases, used = [], []
    for site_dir in sites:
        prepared = prepare_site(site_dir, config, sequences=sequences)
        cases += prepared.cases
        for case_id, reason in prepared.skipped if on_skipped else ():
            on_skipped(site_dir, case_id, reason)
        ids = {c.case_id for c in prepared.cases}
        used += [case_record(c, prepared.site.root) for c in prepared.site.cases if c.id in ids]
    model = build_segmenter(segmenter, sequences, device=device, **(options or {}))
    model.fit(cases, out, iters=iters, batch_size=batch_size, lr=lr, seed=seed, resume=resume,
              preprocess=config, checkpoint_every=checkpoint_every, progress=progress)
    if not (out / CARD_FILE).is_file():
        raise CheckpointError(out, f"segmenter '{segmenter}' wrote no {CARD_FILE} (its fit must; "
                                   "see harmonix.interfaces.Segmenter)")
    card = read_card(out, "segmenter")
    training = card.setdefault("training", {})
    training["data"] = [portable_path(s.resolve()) for s in sites]  # names: cards travel
    training["allow_synthetic"] = bool(allow_synthetic)
    # for the evaluation: the cases trained on (never to be tested on) and the copy strategy's
    # correlations, learned here rather than on test cases
    training[RECORD_KEY] = merge_records(previous.get(RECORD_KEY), {"cases": used})
    table = sequence_correlations(cases[:MAX_CORRELATION_CASES], sequences)
    training[CORRELATIONS_KEY] = correlations_record(table)
    write_card(out / CARD_FILE, card, "segmenter")
    return out


def label_file_name(case_id: str, convention: str) -> str:
    """``CASE_seg.nii.gz`` (BraTS 2019) or ``CASE-seg.nii.gz`` (BraTS 2023 convention)."""
    return naming_for_labels(convention).file_name(case_id, "seg")


@dataclass(frozen=True)
class PredictionRow:
    case: str
    status: str  # "done", "skipped" (already written) or "failed"
    file: str = ""
    message: str = ""
    coverage: str = ""  # fraction of the case's brain inside the segmenter's crop
    synthetic_inputs: str = ""  # the case's inputs harmonize made (t2,flair), "" when none


PREDICTIONS_FILE = "predictions.csv"
PREDICTION_DESCRIP = "harmonix"  # a label map's descrip starts with it when harmonix wrote it


def _prediction_file(out: Path, shard) -> Path:
    """``OUT/predictions.csv``, or with ``shard`` ``OUT/predictions.shard-K-of-N.csv``."""
    if shard is None:
        return out / PREDICTIONS_FILE
    return out / f"predictions.shard-{shard.index}-of-{shard.count}.csv"


def _ours(path: Path) -> bool:
    import nibabel as nib

    try:
        descrip = bytes(nib.load(path).header.get("descrip", b"") or b"")
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False
    return descrip.startswith(PREDICTION_DESCRIP.encode())


def predict_site(
    site_dir: str | Path,
    model: str | Path | Segmenter,
    out: str | Path,
    *,
    device: str = "cpu",
    center: str | None = None,
    on_case: Callable[[PredictionRow], None] | None = None,
    min_coverage: float | None = None,
    shard=None,
    overwrite: bool = False,
) -> list[PredictionRow]:
    """Segment every case of ``site_dir`` and write ``OUT/CASE/CASE_seg.nii.gz`` on the case's
    own grid, in the site's label convention (atomic writes), with a JSON sidecar naming the
    segmenter, the case's coverage and its synthetic inputs; a case that lacks a sequence or
    fails is reported and skipped. ``OUT/predictions.csv`` lists every case.

    The field-of-view check is harmonize's (:func:`harmonix.harmonization.coverage.
    check_coverage`): a case whose brain the segmenter's crop holds less than ``min_coverage``
    of fails (a tumour outside the crop would be missed). ``shard`` (a
    :class:`~harmonix.harmonization.shards.Shard`) takes every N-th case and writes
    ``predictions.shard-K-of-N.csv``; a label map harmonix wrote before is kept (``skipped``)
    unless ``overwrite``, and a file harmonix did not write is never replaced."""
    from harmonix.data.provenance import synthetic_files
    from harmonix.harmonization.coverage import check_coverage
    from harmonix.harmonization.options import MIN_COVERAGE
    from harmonix.io import atomic_write_json

    segmenter = load_segmenter(model, device)
    config = segmenter_preprocess(segmenter)
    site = read_site(site_dir, center=center)
    out = Path(out)
    if out.resolve() == site.root.resolve() or site.root.resolve() in out.resolve().parents:
        raise InputError(out, "the output folder must not be inside the input site")
    min_coverage = MIN_COVERAGE if min_coverage is None else float(min_coverage)
    cases = shard.select(site.cases) if shard is not None else site.cases
    rows = []
    for case in cases:
        lacking = [s for s in segmenter.sequences if s not in case.sequences]
        name = f"{case.id}/{label_file_name(case.id, site.label_convention)}"
        flagged = synthetic_files(case)
        synthetic = ",".join(s for s in segmenter.sequences if s in flagged)
        coverage = ""
        try:
            if (out / name).exists() and not overwrite:
                if not _ours(out / name):
                    raise InputError(out / name, "exists and was not written by harmonix; "
                                                 "move it away (never replaced)")
                row = PredictionRow(case.id, "skipped", name, "already segmented "
                                    "(--overwrite redoes it)", "", synthetic)
                rows.append(row)
                if on_case:
                    on_case(row)
                continue
            if not case.ok:
                raise InputError(case.root, "; ".join(str(p) for p in case.problems))
            if lacking:
                raise ValueError(f"lacks {', '.join(lacking)}; fill it first with "
                                 "'harmonix harmonize'")
            prepared = preprocess_case(case, config)
            fraction, note = check_coverage(prepared, config, min_coverage)
            coverage = f"{fraction:.4f}"
            labels = segmenter.predict({s: prepared.volumes[s] for s in segmenter.sequences})
            image = restore(labels.astype(np.uint8), prepared.record, is_label=True)
            data = from_canonical(np.asarray(image.dataobj), site.label_convention)
            image = type(image)(data.astype(np.uint8), image.affine, image.header)
            image.set_data_dtype(np.uint8)
            image.header["descrip"] = f"harmonix {getattr(segmenter, 'name', '')} prediction"
            atomic_write_nifti(out / name, image)
            atomic_write_json(out / name.replace(".nii.gz", ".json").replace(".nii", ".json"), {
                "synthetic": False, "segmenter": getattr(segmenter, "name", ""),
                "case": case.id, "coverage": fraction, "label_convention":
                site.label_convention, "synthetic_inputs": synthetic.split(",") if synthetic
                else [], "note": ("segmented from synthetic inputs (made by harmonix "
                                  "harmonize)" if synthetic else "")})
            row = PredictionRow(case.id, "done", name, note, coverage, synthetic)
        except (InputError, ValueError, RuntimeError, OSError) as exc:
            row = PredictionRow(case.id, "failed", "", str(exc), coverage, synthetic)
        rows.append(row)
        if on_case:
            on_case(row)
    columns = ["case", "status", "file", "message", "coverage", "synthetic_inputs"]
    table = pd.DataFrame([vars(r) for r in rows], columns=columns)
    atomic_write_text(_prediction_file(out, shard), table.to_csv(index=False))
    return rows
