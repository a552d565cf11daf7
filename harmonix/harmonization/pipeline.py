"""The harmonize pipeline: fill every missing target sequence of a site's cases, optionally align
the present ones into the target domain, and write the cases back on their own grids in the
target's layout.

Per case: read the present sequences (:mod:`harmonix.data.site`), preprocess them with the
generator's own preprocessing (:mod:`harmonix.data.preprocess`, the model card's
``"preprocessing"``), translate the axial slices that contain brain in batches with the generator's
EMA weights, map the result back onto the case's original shape and affine with ``restore`` and
write it. Outputs of one case (``OUT/CASE/``):

* real sequences copied byte-identically under the target's file names; the label map copied too
  (its values converted when the site's label convention differs from the target's);
* each generated sequence on the case's grid, by default on the intensity scale and dtype of its
  real counterpart (its source sequence; :mod:`harmonix.harmonization.intensity`), with
  ``intensity="model"`` as ``float32`` on harmonix's preprocessed 0..255 scale; with the
  input's extension;
* with ``align``, each present sequence translated from the case's center domain into the
  target domain goes to ``OUT/_aligned/CASE/`` under the same file name, so that ``OUT`` stays a
  site of real plus generated cases and the originals are kept (``_`` folders are not cases of a
  site); with ``merge_aligned`` it takes the real copy's place in ``OUT/CASE/`` and the real copy
  goes to ``OUT/CASE/_original/``;
* ``layout="bids"``: a BIDS derivatives dataset in ``OUT/derivatives/harmonix/`` instead
  (:mod:`harmonix.harmonization.bids`, :class:`harmonix.harmonization.outputs.CaseOutput`).

Every generated or aligned volume is flagged as synthetic three times: the NIfTI ``descrip``
(``harmonix SYNTHETIC from t1``), a JSON sidecar next to it, and ``OUT/manifest.csv``.

A case is built in a hidden staging folder ``OUT/.partial-CASE-PID`` and moved into place when
complete, so ``OUT/CASE`` exists only for finished cases; ``OUT/CASE/.harmonix-case.json`` (written
last) records the settings, a fingerprint of every input file and the rows. A re-run skips a case
only when all of them match, and replaces a case folder only when it is harmonix's own: its record
names the case and every file in it. Anything else in the way is an error for that case; harmonix
never removes what it did not write (:mod:`harmonix.harmonization.outputs`, docs/reliability.md).

Planning and translation live in :mod:`harmonix.harmonization.translate`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from harmonix.cards import portable_path
from harmonix.data.load import load_case
from harmonix.data.preprocess import PreprocessConfig, preprocess_case, restore
from harmonix.data.provenance import SYNTHETIC_STATUSES
from harmonix.data.site import GRID_KINDS, read_site
from harmonix.errors import HarmonixError, InputError, did_you_mean
from harmonix.harmonization.bids import input_entities, write_description
from harmonix.harmonization.case_files import (
    StagedCase,
    brain_on_input_grid,
    copy_real,
    synthetic_sidecar,
    write_spread,
    write_synthetic,
)
from harmonix.harmonization.coverage import CoverageError, check_coverage
from harmonix.harmonization.fusion import FillPolicy
from harmonix.harmonization.outputs import (
    ALIGNED_DIR,
    CASE_RECORD,
    MANIFEST_NAME,
    STAGING_MARKER,
    CaseOutput,
    ManifestRow,
    card_hash,
    check_out_folder,
    check_output_options,
    commit_case,
    foreign,
    input_fingerprints,
    mark_staging,
    record_ok,
    remove_stale,
)
from harmonix.harmonization.request import HarmonizeRequest
from harmonix.harmonization.shards import Merged, Shard, check_part, write_run_manifest
from harmonix.harmonization.translate import (
    by_sequence,
    check_grid,
    load_references,
    make_sequence,
    plan_translations,
    preprocess_config_from_card,
    resolve_target,
)
from harmonix.interfaces import Generator
from harmonix.io import atomic_write_json
from harmonix.models.checkpoints import as_generator
from harmonix.progress import progress_task
from harmonix.registry import Registry, Target, load_registry


@dataclass
class CaseOutcome:
    case: str
    status: str  # "done", "skipped" or "failed"
    rows: list[ManifestRow]
    seconds: float = 0.0

    @property
    def n_synthetic(self) -> int:
        return sum(r.status in SYNTHETIC_STATUSES for r in self.rows)


@dataclass
class HarmonizeResult:
    """What :func:`harmonize_site` did: one outcome per case and the manifest it wrote (a
    shard's: its part; ``merged``: the site manifest, when this shard wrote the last part)."""

    out: Path
    manifest: Path
    cases: list[CaseOutcome] = field(default_factory=list)
    ignored: list[Any] = field(default_factory=list)  # site Problems: files read as no case
    shard: Shard | None = None
    merged: Merged | None = None

    @property
    def rows(self) -> list[ManifestRow]:
        return [row for case in self.cases for row in case.rows]

    @property
    def failed(self) -> list[str]:
        return [c.case for c in self.cases if c.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cases)


# -- one case --------------------------------------------------------------------------------------
class _CaseFailed(Exception):
    def __init__(self, rows: list[ManifestRow]):
        self.rows = rows


@dataclass(frozen=True, kw_only=True)
class _Job:
    """What every case of a run shares: the request and what was resolved from it once."""

    request: HarmonizeRequest
    target: Target
    generator: Generator
    registry: Registry
    config: PreprocessConfig  # the generator's preprocessing (or the request's)
    settings: dict[str, Any]  # what a finished case must share with this run to be skipped
    model_name: str
    site_center: str
    references: Mapping[str, np.ndarray] | None
    policy: FillPolicy

    @property
    def out(self) -> Path:
        return self.request.out

    @property
    def sidecar(self) -> dict[str, Any]:
        """What every synthetic volume's sidecar says about this run."""
        return {"target": self.target.name, "seed": self.request.seed, "model": self.model_name,
                "guidance": "reference" if self.references else "latent",
                "model_card_sha256": self.settings["model_card_sha256"],
                "fill": self.policy.policy}

    def where(self, case_id: str, case=None) -> CaseOutput:
        kept = ()
        if case is not None and self.request.layout == "bids":  # keep acq-, run- ... entities
            kept = input_entities({**case.sequences, **({"seg": case.label} if case.label else {})})
        return CaseOutput(case_id, self.target, self.request.layout, self.request.merge_aligned,
                          kept)


def _failed(case_id: str, problems: Iterable[tuple[str, str]]) -> _CaseFailed:
    return _CaseFailed([ManifestRow(case_id, seq, "failed", "", msg) for seq, msg in problems])


def _harmonize_case(case, job: _Job, stage: Path, inputs: dict[str, Any]) -> list[ManifestRow]:
    """Write one complete case into ``stage/case`` (and ``stage/aligned``); return its rows."""
    case_id, target = case.id, job.target
    tolerated = GRID_KINDS if job.request.resample else frozenset()
    if any(p.kind not in tolerated for p in case.problems):
        raise _failed(case_id, [("", f"{p.path}: {p.message}") for p in case.problems])
    present = [s for s in case.sequences]
    fills, alignments, errors = plan_translations(
        present, target, job.generator.domains, center=job.site_center,
        sources=job.request.sources, align=job.request.align, registry=job.registry,
        policy=job.policy,
    )
    if errors:
        raise _failed(case_id, errors.items())
    try:
        loaded = load_case(case, resample=job.request.resample)
    except InputError as exc:
        raise _failed(case_id, [("", str(exc))]) from None

    files = StagedCase(stage, job.where(case_id, case))
    (stage / "case").mkdir()
    merged = {t.sequence for t in alignments} if job.request.merge_aligned else set()
    rows: list[ManifestRow] = []
    real_files: dict[str, str] = {}
    for seq in [s for s in target.sequences if s in present]:
        src = Path(case.sequences[seq])
        rel, message = copy_real(files, seq, src, "original" if seq in merged else "real")
        real_files[seq] = rel
        rows.append(ManifestRow(case_id, seq, "real", str(src), message, rel))
    if case.label is not None:
        convention = getattr(case, "label_convention", None) or target.labels
        try:
            rel, message = copy_real(files, "seg", Path(case.label),
                                     labels=(convention, target.labels))
        except ValueError as exc:
            raise _failed(case_id, [("seg", f"{case.label}: {exc}")]) from None
        rows.append(ManifestRow(case_id, "seg", "real", str(case.label), message, rel))

    if fills or alignments:
        try:
            prepared = preprocess_case(dict(loaded.images), job.config, case_id=case_id)
        except (InputError, ValueError) as exc:
            raise _failed(case_id, [("", f"preprocessing failed: {exc}")]) from None
        try:
            coverage, coverage_note = check_coverage(prepared, job.config,
                                                      job.request.min_coverage)
        except CoverageError as exc:
            raise _failed(case_id, [("", str(exc))]) from None
        brain = brain_on_input_grid(prepared) if job.request.intensity == "input" else None
        for group, status in [*[(g, "generated") for g in by_sequence(fills).values()],
                              *[([t], "aligned") for t in alignments]]:
            t = group[0]  # the best source: its file gives the output's scale and header
            volume, spread = make_sequence(
                group, prepared.volumes, prepared.brain_mask, job.generator, job.policy,
                reference=(job.references or {}).get(t.sequence),
                batch_size=job.request.batch_size, seed=job.request.seed,
            )
            # --resample: a resampled source's volume lies on the reference sequence's grid
            like_seq = case.reference if t.source in loaded.resampled else t.source
            like_path = Path(case.sequences[like_seq])
            like = nib.load(like_path)
            restored = restore(volume, prepared.record)
            if tuple(restored.shape[:3]) != tuple(like.shape[:3]) or not np.allclose(
                restored.affine, like.affine, atol=1e-4
            ):
                raise _failed(case_id, [(t.sequence, "restore did not give the input grid")])
            sidecar = {**synthetic_sidecar(group, status, case_id, job.sidecar),
                       "brain_coverage": coverage}
            rel = write_synthetic(
                files, t, status, np.asarray(restored.dataobj, np.float32), like_path,
                record=prepared.record, brain=brain, intensity=job.request.intensity,
                sidecar=sidecar,
                source_file=real_files.get(t.source, ""),
                sources="+".join(x.source for x in group),
            )
            note = "; ".join(n for n in (t.note, coverage_note) if n)
            rows.append(ManifestRow(case_id, t.sequence, status, t.source_domain, note,
                                    rel, f"{coverage:.4f}"))
            if spread is not None and job.request.confidence:
                rel = write_spread(files, t, restore(spread, prepared.record), like_path,
                                   {**sidecar, "status": "spread"})
                rows.append(ManifestRow(case_id, t.sequence, "spread", t.source_domain,
                                        "spread across fused sources", rel))
    record = {"case": case_id, "settings": job.settings, "inputs": inputs,
              "rows": [vars(r) for r in rows]}
    if (stage / "aligned").is_dir():  # marks the aligned folder as harmonix's too
        atomic_write_json(stage / "aligned" / CASE_RECORD, {"case": case_id, "aligned": True})
    atomic_write_json(stage / "case" / CASE_RECORD, record)
    return rows


def harmonize_site(request: HarmonizeRequest) -> HarmonizeResult:
    """Complete every case of ``request.site`` and write them to ``request.out`` (see
    :class:`~harmonix.harmonization.request.HarmonizeRequest` for every field).

    A case folder already in ``out`` is replaced only when harmonix wrote all of it. Per-case
    errors become ``failed`` rows; files of the site that belong to no case are in
    ``result.ignored``; ``KeyboardInterrupt`` writes the manifest of the finished cases and is
    re-raised. With a ``shard`` the manifest part is written, and the last part merges them
    (:mod:`harmonix.harmonization.shards`).
    """
    req = request
    registry = load_registry()
    target_spec = resolve_target(req.target or registry.defaults.get("target", "brats"), registry)
    out, shard = req.out, req.shard
    check_out_folder(out, req.site)
    site = read_site(req.site, center=req.center, run=req.run)
    check_out_folder(out, site.root)
    check_part(out, shard)
    unknown = [s for s in req.sources or () if s not in registry.sequences]
    if unknown:
        known = ", ".join(registry.sequences)
        hints = "".join(did_you_mean(u, registry.sequences) for u in unknown)
        raise ValueError(f"unknown source sequences {unknown}{hints}; known: {known}")
    check_output_options(out, req.intensity, req.layout, [case.id for case in site.cases])
    if req.on_site:
        req.on_site(site)
    generator = as_generator(req.model, req.device)
    model_name = (f"<{type(req.model).__name__}>" if generator is req.model
                  else portable_path(req.model))
    config = req.preprocess or preprocess_config_from_card(generator)
    check_grid(config, generator)
    if req.align and site.center != target_spec.center:
        centers = sorted({d.split("/", 1)[0] for d in generator.domains})
        if site.center not in centers:
            raise InputError(site.root, (
                f"--align: the model was not trained on center '{site.center}' (its domains: "
                f"{', '.join(generator.domains)}); to align a new center, train with that "
                "center's site as well (harmonix train --data SITE ...), or give --center one "
                f"of {', '.join(centers)} if this site is one of them"))
    references = None
    if req.reference is not None:
        references, ref_center = load_references(req.reference, target_spec, config)
        if ref_center != target_spec.center:
            warnings.warn(
                f"reference site {req.reference} is from center '{ref_center}', not the "
                f"target's '{target_spec.center}'", RuntimeWarning, stacklevel=2,
            )
    policy = FillPolicy.from_card(generator.card).with_policy(req.fill)
    settings = {
        "target": target_spec.name,
        "fill": policy.policy,
        "confidence": req.confidence,
        "center": site.center,
        "align": req.align,
        **({"resample": True} if req.resample else {}),
        **({"run": req.run} if req.run else {}),
        "sources": list(req.sources) if req.sources else None,
        "reference": str(req.reference.resolve()) if req.reference else None,
        "model_card_sha256": card_hash(generator.card or {}),
        "preprocess": dataclasses.asdict(config),
        "seed": req.seed,
        "intensity": req.intensity,
        "layout": req.layout,
        "merge_aligned": req.merge_aligned,
    }
    job = _Job(request=req, target=target_spec, generator=generator, registry=registry,
               config=config, settings=json.loads(json.dumps(settings)), model_name=model_name,
               site_center=site.center, references=references, policy=policy)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the output folder: {exc.strerror or exc}") from None
    remove_stale(out, shared=shard is not None)
    if req.layout == "bids":
        write_description(out, site.root.resolve().name)
    else:
        write_site_files(out, site.center, target_spec, align=req.align,
                         merged=req.merge_aligned)
    cases = shard.select(site.cases) if shard else site.cases
    result = HarmonizeResult(out, out / (shard.part_name if shard else MANIFEST_NAME),
                             ignored=list(site.problems), shard=shard)
    finished = False
    try:
        with progress_task("harmonize", total=len(cases), quiet=not req.progress) as advance:
            for case in cases:
                advance(0, case=case.id)
                outcome = _run_case(case, job, req.overwrite)
                result.cases.append(outcome)
                if req.on_case:
                    req.on_case(outcome)
                advance(1, case=case.id)
        finished = True
    finally:
        # written on success, error and Ctrl-C alike: the manifest of the cases that are done
        result.merged = write_run_manifest(out, result.rows, shard, merge=finished)
    return result


def write_site_files(out: Path, center: str, target, *, align: bool, merged: bool) -> None:
    """``OUT/harmonix-site.json`` (layout target): the center whose domain the case folders
    hold (the target's with ``--merge-aligned``, where aligned volumes replace the real scans;
    else the input's, whose real scans they keep) and the target's label convention; with
    ``--align`` apart, ``OUT/_aligned/harmonix-site.json`` names the target's center: the aligned
    volumes read back as a site of the target domain. A file harmonix did not write is kept."""
    from harmonix.data.layouts import SITE_FILE

    files = {out / SITE_FILE: target.center if merged else center}
    if align and not merged:
        files[out / ALIGNED_DIR / SITE_FILE] = target.center
    for path, name in files.items():
        if path.exists():
            try:
                if json.loads(path.read_text()).get("written_by") != "harmonix harmonize":
                    continue  # the user's own: never replaced
            except (OSError, UnicodeDecodeError, ValueError, AttributeError):
                continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"center": name, "labels": target.labels,
                                 "written_by": "harmonix harmonize"})


def _run_case(case, job: _Job, overwrite: bool) -> CaseOutcome:
    start = time.perf_counter()
    where = job.where(case.id, case)
    final = job.out / where.folder
    try:
        inputs = input_fingerprints(case)
    except OSError:
        inputs = None  # unreadable inputs: the case fails below, naming the file
    if not overwrite and inputs is not None and (
        rows := record_ok(final, case.id, job.settings, inputs, job.out)
    ) is not None:
        return CaseOutcome(case.id, "skipped", rows)
    problem = foreign(job.out, case.id, where)
    if problem:
        return CaseOutcome(case.id, "failed", [ManifestRow(case.id, "", "failed", "", problem)])
    stage = job.out / f".partial-{case.id}-{os.getpid()}"
    try:
        if (stage / STAGING_MARKER).is_file():
            shutil.rmtree(stage)
        stage.mkdir()
        mark_staging(stage)
        rows = _harmonize_case(case, job, stage, inputs or input_fingerprints(case))
        commit_case(stage, job.out, case.id, where)
        return CaseOutcome(case.id, "done", rows, time.perf_counter() - start)
    except _CaseFailed as exc:
        return CaseOutcome(case.id, "failed", exc.rows, time.perf_counter() - start)
    except (HarmonixError, OSError, ValueError, RuntimeError) as exc:
        row = ManifestRow(case.id, "", "failed", "", f"{type(exc).__name__}: {exc}")
        return CaseOutcome(case.id, "failed", [row], time.perf_counter() - start)
    finally:
        if (stage / STAGING_MARKER).is_file():
            shutil.rmtree(stage, ignore_errors=True)

