"""Complete and harmonize a site: fill every missing target sequence, optionally align the present
ones into the target domain, and write the cases back on their own grids in the target's layout.

Per case: read the present sequences (:mod:`harmonix.data.site`), preprocess them with the
generator's own preprocessing (:mod:`harmonix.data.preprocess`, the model card's
``"preprocessing"``), translate the axial slices that contain brain in batches with the generator's
EMA weights, map the result back onto the case's original shape and affine with ``restore`` and
write it. Outputs of one case (``OUT/CASE/``):

* real sequences copied byte-identically under the target's file names; the label map copied too
  (its values converted when the site's label convention differs from the target's);
* each generated sequence as ``float32`` NIfTI on the case's grid, intensities on harmonix's
  preprocessed 0..255 scale (not the scanner's, so never cast back to the input's integer type);
* with ``align``, each present sequence translated from the case's center domain into the target
  domain goes to ``OUT/_aligned/CASE/`` under the same file name, so that ``OUT`` stays a site of
  real plus generated cases and the originals are kept (``_`` folders are not cases of a site).

Every generated or aligned volume is flagged as synthetic three times: the NIfTI ``descrip``
(``harmonix SYNTHETIC from t1``), a JSON sidecar next to it, and ``OUT/manifest.csv``.

A case is built in a hidden staging folder ``OUT/.partial-CASE-PID`` and moved into place when
complete, so ``OUT/CASE`` exists only for finished cases; ``OUT/CASE/.harmonix-case.json`` (written
last) records the settings and rows, and a re-run with the same settings skips the case.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from harmonix.errors import HarmonixError, InputError
from harmonix.interfaces import Generator
from harmonix.io import atomic_write_json, atomic_write_nifti, atomic_write_text
from harmonix.registry import Registry, Target, load_registry

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("case", "sequence", "status", "source", "message", "file")
CASE_RECORD = ".harmonix-case.json"
ALIGNED_DIR = "_aligned"
SYNTHETIC_STATUSES = ("generated", "aligned")
# BraTS 2021/2023 file-name suffixes; every other target uses BraTS 2019's ``CASE_seq``
BRATS2023_SUFFIX = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestRow:
    """One line of ``manifest.csv``; ``status`` is real, generated, aligned or failed."""

    case: str
    sequence: str
    status: str
    source: str = ""
    message: str = ""
    file: str = ""


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
    """What :func:`harmonize_site` did: one outcome per case and the manifest it wrote."""

    out: Path
    manifest: Path
    cases: list[CaseOutcome] = field(default_factory=list)

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


# -- choosing sources ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Translation:
    """Make ``sequence`` of the target from ``source`` (a present sequence of the case)."""

    sequence: str
    source: str
    source_domain: str
    target_domain: str
    note: str = ""


def resolve_target(target: str | Target, registry: Registry | None = None) -> Target:
    if isinstance(target, Target):
        return target
    registry = registry or load_registry()
    try:
        return registry.target(target)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def source_domain(
    center: str | None, sequence: str, target: Target, domains: Sequence[str]
) -> tuple[str | None, str]:
    """The model domain that ``sequence`` of a case from ``center`` is read as, and a note.

    ``center/sequence`` when the model knows it, else the target center's domain for that
    sequence (with a note saying so), else ``None``.
    """
    if center and f"{center}/{sequence}" in domains:
        return f"{center}/{sequence}", ""
    fallback = f"{target.center}/{sequence}"
    if fallback in domains:
        if not center or center == target.center:
            return fallback, ""
        return fallback, (
            f"center '{center}' is not a domain of the model; read {sequence} as {fallback}"
        )
    return None, ""


def source_order(
    present: Iterable[str], sources: Sequence[str] | None, registry: Registry | None = None
) -> list[str]:
    """Present sequences in the order they are tried as a source.

    ``sources`` (e.g. ``["t1", "t2"]``) restricts and orders the candidates; otherwise the
    registry's ``defaults.source_priority`` orders them, unlisted sequences last.
    """
    present = list(present)
    if sources:
        return [s for s in sources if s in present]
    priority = list((registry or load_registry()).source_priority)
    rank = {s: i for i, s in enumerate(priority)}
    return sorted(present, key=lambda s: (rank.get(s, len(priority)), present.index(s)))


def plan_translations(
    present: Iterable[str],
    target: Target,
    domains: Sequence[str],
    *,
    center: str | None,
    sources: Sequence[str] | None = None,
    align: bool = False,
    registry: Registry | None = None,
) -> tuple[list[Translation], list[Translation], dict[str, str]]:
    """Plan a case: ``(fills, alignments, errors)``.

    ``fills`` make the target sequences that are missing, each from the best present source the
    model knows; ``alignments`` (only with ``align`` and a center other than the target's)
    translate present target sequences into the target domain; ``errors`` maps a sequence that
    cannot be made to the reason.
    """
    present = [s for s in present]
    candidates = []
    notes = []
    for seq in source_order(present, sources, registry):
        domain, note = source_domain(center, seq, target, domains)
        if domain is not None:
            candidates.append((seq, domain))
            notes.append(note)
    fills, alignments, errors = [], [], {}
    for seq in target.sequences:
        target_domain = f"{target.center}/{seq}"
        if seq in present:
            if align and center != target.center:
                domain, note = source_domain(center, seq, target, domains)
                if target_domain not in domains:
                    errors[seq] = f"cannot align: the model has no domain {target_domain}"
                elif domain is not None:
                    alignments.append(Translation(seq, seq, domain, target_domain, note))
            continue
        if target_domain not in domains:
            errors[seq] = f"missing, and the model has no domain {target_domain}"
        elif not candidates:
            listed = f" among --sources {','.join(sources)}" if sources else ""
            errors[seq] = (
                f"missing, and no usable source sequence{listed} "
                f"(present: {', '.join(present) or 'none'}; model domains: {', '.join(domains)})"
            )
        else:
            (source, domain), note = candidates[0], notes[0]
            fills.append(Translation(seq, source, domain, target_domain, note))
    return fills, alignments, errors


# -- generation on the preprocessed grid -----------------------------------------------------------
def brain_slices(brain_mask: np.ndarray) -> np.ndarray:
    """Indices ``k`` of the axial slices ``[:, :, k]`` that contain brain."""
    return np.flatnonzero(np.asarray(brain_mask).reshape(-1, brain_mask.shape[-1]).any(axis=0))


class _ReferenceSlices:
    """Reference slices from target-domain volume(s) ``(H,W,D)`` or ``(N,H,W,D)`` on the
    processed grid: volume ``k % N`` serves slice ``k``, its nearest slice with brain if
    slice ``k`` has none."""

    def __init__(self, reference: np.ndarray):
        self.volumes = reference[None] if reference.ndim == 3 else reference
        self.with_brain = [brain_slices(volume > 0) for volume in self.volumes]
        if any(len(ks) == 0 for ks in self.with_brain):
            raise ValueError("a reference volume is empty")

    def __call__(self, ks: np.ndarray) -> np.ndarray:
        out = np.empty((len(ks), *self.volumes.shape[1:3]), np.float32)
        for i, k in enumerate(ks):
            n = k % len(self.volumes)
            with_brain = self.with_brain[n]
            out[i] = self.volumes[n][:, :, with_brain[np.abs(with_brain - k).argmin()]]
        return out


def _device_of(generator: Generator) -> torch.device:
    return torch.device(getattr(generator, "device", None) or "cpu")


@torch.inference_mode()
def translate_volume(
    volume: np.ndarray,
    brain_mask: np.ndarray,
    generator: Generator,
    source: str,
    target: str,
    *,
    reference: np.ndarray | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """Translate the brain slices of a preprocessed ``(H, W, D)`` volume from domain ``source``
    to ``target``, ``batch_size`` axial slices at a time; other slices and voxels outside
    ``brain_mask`` stay 0. Latent-guided with ``seed``, or reference-guided by ``reference``
    (target-domain volume(s) on the same grid, see :class:`_ReferenceSlices`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = np.zeros(volume.shape, np.float32)
    device = _device_of(generator)
    ks = brain_slices(brain_mask)
    references = _ReferenceSlices(reference) if reference is not None else None
    for start in range(0, len(ks), batch_size):
        batch = ks[start : start + batch_size]
        images = np.ascontiguousarray(np.moveaxis(volume[:, :, batch], -1, 0)[:, None])
        ref = None
        if references is not None:
            ref = torch.from_numpy(references(batch)[:, None]).to(device)
        fake = generator.translate(
            torch.from_numpy(images).float().to(device), source, target, reference=ref, seed=seed
        )
        fake = fake.detach().float().clamp_(0, 255).cpu().numpy()[:, 0]
        out[:, :, batch] = np.moveaxis(fake, 0, -1)
    out *= brain_mask
    return out


def fill_missing(
    prepared,
    generator: Generator,
    target: str | Target = "brats",
    *,
    present: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    center: str | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Generate every sequence of ``target`` that ``prepared`` (a ``PreparedCase``) lacks.

    Works on the preprocessed grid and returns ``{sequence: float32 volume 0..255}`` for the
    missing sequences only. ``present`` limits which of ``prepared.volumes`` count as present
    (default: all); ``center`` is the case's center (default: the target's); ``references`` maps a
    target sequence to real target-domain volume(s) for reference guidance. Raises
    ``ValueError`` when a missing sequence cannot be made.
    """
    target = resolve_target(target)
    present = list(prepared.volumes) if present is None else list(present)
    unknown = [s for s in present if s not in prepared.volumes]
    if unknown:
        raise ValueError(f"present sequences {unknown} are not in the prepared case")
    fills, _, errors = plan_translations(
        present, target, generator.domains, center=center or target.center, sources=sources
    )
    if errors:
        raise ValueError("; ".join(f"{seq}: {msg}" for seq, msg in errors.items()))
    references = references or {}
    return {
        t.sequence: translate_volume(
            prepared.volumes[t.source],
            prepared.brain_mask,
            generator,
            t.source_domain,
            t.target_domain,
            reference=references.get(t.sequence),
            batch_size=batch_size,
            seed=seed,
        )
        for t in fills
    }


# -- output naming and files -----------------------------------------------------------------------
def _nifti_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else ".nii"


def output_name(case_id: str, sequence: str, target: Target, suffix: str = ".nii.gz") -> str:
    """File name of ``sequence`` (or ``"seg"``) in the target's layout: BraTS 2023 naming for
    targets with BraTS 2023 labels (``CASE-t2f``), BraTS 2019 naming otherwise (``CASE_flair``)."""
    if target.labels == "brats2023":
        return f"{case_id}-{BRATS2023_SUFFIX.get(sequence, sequence)}{suffix}"
    return f"{case_id}_{sequence}{suffix}"


def sidecar_path(nifti: Path) -> Path:
    """``CASE_t2.nii.gz`` -> ``CASE_t2.json``."""
    return nifti.with_name(nifti.name[: -len(_nifti_suffix(nifti))] + ".json")


def card_hash(card: Mapping[str, Any]) -> str:
    """sha256 of the model card as canonical JSON (sorted keys)."""
    text = json.dumps(card, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_image(data: np.ndarray, like: nib.Nifti1Image, descrip: str) -> nib.Nifti1Image:
    """A float32 NIfTI of ``data`` on ``like``'s grid (affine, qform/sform codes, units)."""
    if tuple(data.shape) != tuple(like.shape[:3]):
        raise ValueError(f"volume of shape {data.shape} does not fit the grid {like.shape}")
    image = nib.Nifti1Image(np.asarray(data, np.float32), like.affine)
    header = like.header
    if hasattr(header, "get_qform"):  # keep the file's qform/sform and their codes exactly
        qform, qcode = header.get_qform(coded=True)
        sform, scode = header.get_sform(coded=True)
        image.set_qform(qform if qcode else like.affine, code=int(qcode or 0))
        image.set_sform(sform if scode else like.affine, code=int(scode or 0))
    image.header.set_xyzt_units(*header.get_xyzt_units())
    image.header["descrip"] = descrip.encode("ascii", "replace")[:79]
    return image


def convert_labels(image: nib.Nifti1Image, source: str, target: str) -> nib.Nifti1Image:
    """The label map rewritten from convention ``source`` to ``target`` (same dtype and grid)."""
    from harmonix.data.labels import from_canonical, to_canonical

    data = np.asanyarray(image.dataobj)
    converted = from_canonical(to_canonical(data, source), target)
    return nib.Nifti1Image(converted, image.affine, image.header.copy())


# -- settings and model --------------------------------------------------------------------------
def preprocess_config_from_card(generator: Generator):
    """The ``PreprocessConfig`` the generator was trained with: the model card's
    ``"preprocessing"`` (what the ummgat trainer writes) or ``"preprocess"``."""
    from harmonix.data.preprocess import PreprocessConfig

    card = generator.card or {}
    spec = card.get("preprocessing", card.get("preprocess"))
    if isinstance(spec, PreprocessConfig):
        return spec
    if isinstance(spec, Mapping):
        names = {f.name for f in dataclasses.fields(PreprocessConfig)}
        return PreprocessConfig.from_dict({k: v for k, v in spec.items() if k in names})
    size = int(generator.image_size)
    default = PreprocessConfig()
    warnings.warn(
        "the model card has no 'preprocessing' entry; using the default preprocessing with "
        f"{size}x{size} slices",
        RuntimeWarning,
        stacklevel=3,
    )
    return dataclasses.replace(default, crop_shape=(size, size, default.crop_shape[2]))


def _check_config(config, generator: Generator) -> None:
    size = getattr(generator, "image_size", None)
    if size is not None and tuple(config.crop_shape[:2]) != (int(size), int(size)):
        raise ValueError(
            f"preprocessing crop {tuple(config.crop_shape)} does not match the model's "
            f"{size}x{size} slices"
        )


def _load_model(model: str | Path | Generator, device: str) -> tuple[Generator, str]:
    if isinstance(model, Generator):
        return model, f"<{type(model).__name__}>"
    from harmonix import load_generator

    return load_generator(model, device=device), str(Path(model).resolve())


def _load_references(reference: str | Path, target: Target, config, *, max_cases: int = 2):
    """Preprocessed real target-domain volumes per sequence from the site at ``reference``."""
    from harmonix.data.preprocess import preprocess_case
    from harmonix.data.site import read_site

    site = read_site(reference)
    refs: dict[str, list[np.ndarray]] = {}
    for case in site.cases:
        wanted = [
            s for s in target.sequences if s in case.sequences and len(refs.get(s, [])) < max_cases
        ]
        if not case.ok or not wanted:
            continue
        try:
            prepared = preprocess_case(case, config)
        except (InputError, ValueError) as exc:
            warnings.warn(f"reference case {case.id} skipped: {exc}", RuntimeWarning, stacklevel=3)
            continue
        for seq in wanted:
            refs.setdefault(seq, []).append(prepared.volumes[seq].astype(np.float32))
    if not refs:
        raise InputError(reference, f"no usable case with any of {', '.join(target.sequences)}")
    return {seq: np.stack(vols) for seq, vols in refs.items()}, site.center


# -- one case --------------------------------------------------------------------------------------
class _CaseFailed(Exception):
    def __init__(self, rows: list[ManifestRow]):
        self.rows = rows


@dataclass
class _Job:
    """Everything that is the same for every case of a run."""

    out: Path
    target: Target
    generator: Generator
    registry: Registry
    config: Any
    settings: dict[str, Any]  # what a finished case must share with this run to be skipped
    model_name: str
    site_center: str
    sources: Sequence[str] | None
    align: bool
    references: Mapping[str, np.ndarray] | None
    batch_size: int
    seed: int


def _record_ok(case_dir: Path, settings: Mapping[str, Any]) -> list[ManifestRow] | None:
    """The rows of a finished case written with the same settings, else ``None``."""
    try:
        record = json.loads((case_dir / CASE_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if record.get("settings") != settings:
        return None
    rows = [ManifestRow(**row) for row in record.get("rows", [])]
    if not all((case_dir.parent / r.file).exists() for r in rows if r.file):
        return None
    return rows


def _failed(case_id: str, problems: Iterable[tuple[str, str]]) -> _CaseFailed:
    return _CaseFailed([ManifestRow(case_id, seq, "failed", "", msg) for seq, msg in problems])


def _sidecar(job: _Job, t: Translation, status: str, model: str, case_id: str) -> dict[str, Any]:
    from harmonix import __version__

    return {
        "synthetic": True,
        "warning": "synthetic image made by a generative model; never read it as a real scan",
        "status": status,
        "case": case_id,
        "sequence": t.sequence,
        "source_sequences": [t.source],
        "source_domain": t.source_domain,
        "target": job.target.name,
        "target_domain": t.target_domain,
        "guidance": "reference" if job.references else "latent",
        "seed": job.seed,
        "model": model,
        "model_card_sha256": job.settings["model_card_sha256"],
        "harmonix_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": t.note,
    }


def _harmonize_case(case, job: _Job, stage: Path) -> list[ManifestRow]:
    """Write one complete case into ``stage/case`` (and ``stage/aligned``); return its rows."""
    from harmonix.data.preprocess import preprocess_case, restore
    from harmonix.data.site import load_case

    case_id, target = case.id, job.target
    if not case.ok:
        raise _failed(case_id, [("", f"{p.path}: {p.message}") for p in case.problems])
    present = [s for s in case.sequences]
    fills, alignments, errors = plan_translations(
        present, target, job.generator.domains, center=job.site_center, sources=job.sources,
        align=job.align, registry=job.registry,
    )
    if errors:
        raise _failed(case_id, errors.items())
    try:
        loaded = load_case(case)
    except InputError as exc:
        raise _failed(case_id, [("", str(exc))]) from None

    case_dir, aligned_dir = stage / "case", stage / "aligned"
    case_dir.mkdir(parents=True)
    rows: list[ManifestRow] = []
    rel = f"{case_id}/"
    for seq in target.sequences:
        if seq in present:
            src = Path(case.sequences[seq])
            name = output_name(case_id, seq, target, _nifti_suffix(src))
            shutil.copy2(src, case_dir / name)
            rows.append(ManifestRow(case_id, seq, "real", str(src), "", rel + name))
    if case.label is not None:
        name = output_name(case_id, "seg", target, _nifti_suffix(Path(case.label)))
        convention = getattr(case, "label_convention", None) or target.labels
        message = ""
        if convention == target.labels:
            shutil.copy2(case.label, case_dir / name)
        else:
            try:
                converted = convert_labels(nib.load(case.label), convention, target.labels)
            except ValueError as exc:
                raise _failed(case_id, [("seg", f"{case.label}: {exc}")]) from None
            atomic_write_nifti(case_dir / name, converted)
            message = f"labels converted from {convention} to {target.labels}"
        rows.append(ManifestRow(case_id, "seg", "real", str(case.label), message, rel + name))

    if fills or alignments:
        try:
            prepared = preprocess_case(dict(loaded.images), job.config, case_id=case_id)
        except (InputError, ValueError) as exc:
            raise _failed(case_id, [("", f"preprocessing failed: {exc}")]) from None
        model = job.model_name
        for t, status, folder, prefix in [
            *[(t, "generated", case_dir, rel) for t in fills],
            *[(t, "aligned", aligned_dir, f"{ALIGNED_DIR}/{rel}") for t in alignments],
        ]:
            volume = translate_volume(
                prepared.volumes[t.source], prepared.brain_mask, job.generator,
                t.source_domain, t.target_domain,
                reference=(job.references or {}).get(t.sequence),
                batch_size=job.batch_size, seed=job.seed,
            )
            like = nib.load(case.sequences[t.source])  # the file's header: codes and units
            restored = restore(volume, prepared.record)
            if tuple(restored.shape[:3]) != tuple(like.shape[:3]) or not np.allclose(
                restored.affine, like.affine, atol=1e-4
            ):
                raise _failed(case_id, [(t.sequence, "restore did not give the input grid")])
            data = np.asarray(restored.dataobj, np.float32)
            image = synthetic_image(data, like, f"harmonix SYNTHETIC {status} from {t.source}")
            name = output_name(case_id, t.sequence, target)
            atomic_write_nifti(folder / name, image)
            atomic_write_json(
                sidecar_path(folder / name), _sidecar(job, t, status, model, case_id)
            )
            rows.append(
                ManifestRow(case_id, t.sequence, status, t.source_domain, t.note, prefix + name)
            )
    record = {"case": case_id, "settings": job.settings, "rows": [vars(r) for r in rows]}
    atomic_write_json(case_dir / CASE_RECORD, record)
    return rows


def _commit(stage: Path, out: Path, case_id: str) -> None:
    """Move a staged case into ``out`` (replacing an older one); aligned volumes first."""
    moves = ((stage / "aligned", out / ALIGNED_DIR / case_id), (stage / "case", out / case_id))
    for staged, final in moves:
        old = final.with_name(f".old-{os.getpid()}-{case_id}")
        if final.exists():
            os.replace(final, old)
        if staged.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
        if old.exists():
            shutil.rmtree(old)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Remove staging folders left by a run that was killed outright (not by Ctrl-C)."""
    for folder in (out, out / ALIGNED_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = re.match(r"^\.(?:partial-.*-(\d+)|old-(\d+)-.*)$", path.name)
            if match and path.is_dir() and not _pid_alive(int(match.group(1) or match.group(2))):
                shutil.rmtree(path, ignore_errors=True)


# -- the site --------------------------------------------------------------------------------------
def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, c) for c in MANIFEST_COLUMNS])
    atomic_write_text(path, buffer.getvalue())


def read_manifest(path: str | Path) -> list[ManifestRow]:
    with open(path, newline="") as handle:
        return [ManifestRow(**row) for row in csv.DictReader(handle)]


def harmonize_site(
    site_dir: str | Path,
    *,
    target: str | None = None,
    model: str | Path | Generator,
    out: str | Path,
    center: str | None = None,
    align: bool = False,
    sources: Sequence[str] | None = None,
    reference: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    overwrite: bool = False,
    preprocess=None,
    seed: int = 0,
    progress: bool = False,
    on_case: Callable[[CaseOutcome], None] | None = None,
) -> HarmonizeResult:
    """Complete every case of ``site_dir`` for ``target`` and write them to ``out``.

    ``model`` is a run directory, checkpoint or loaded :class:`~harmonix.interfaces.Generator`;
    ``center`` overrides the site's center (its source domains); ``align`` also translates the
    present sequences into the target domain; ``sources`` restricts and orders the sequences
    used as sources (default: registry ``defaults.source_priority``); ``reference`` is a site of
    real target-domain cases whose slices give the target style (default: latent-guided);
    ``preprocess`` overrides the model card's ``PreprocessConfig``. Cases finished by an earlier
    run with the same settings are skipped unless ``overwrite``. Per-case errors become
    ``failed`` rows; ``KeyboardInterrupt`` writes the manifest of the finished cases and is
    re-raised. ``progress`` shows a rich progress bar over the cases (joining a display that
    is already running, see :mod:`harmonix.progress`); ``on_case(outcome)`` follows each case.
    """
    from harmonix.data.site import read_site

    registry = load_registry()
    target_spec = resolve_target(target or registry.defaults.get("target", "brats"), registry)
    site_dir, out = Path(site_dir), Path(out)
    site = read_site(site_dir, center=center)
    if out.resolve() == site.root.resolve() or site.root.resolve() in out.resolve().parents:
        raise InputError(out, "the output folder must not be inside the input site")
    unknown = [s for s in sources or () if s not in registry.sequences]
    if unknown:
        known = ", ".join(registry.sequences)
        raise ValueError(f"unknown source sequences {unknown}; known: {known}")
    generator, model_name = _load_model(model, device)
    config = preprocess or preprocess_config_from_card(generator)
    _check_config(config, generator)
    references = None
    if reference is not None:
        references, ref_center = _load_references(reference, target_spec, config)
        if ref_center != target_spec.center:
            warnings.warn(
                f"reference site {reference} is from center '{ref_center}', not the target's "
                f"'{target_spec.center}'", RuntimeWarning, stacklevel=2,
            )
    settings = {
        "target": target_spec.name,
        "center": site.center,
        "align": bool(align),
        "sources": list(sources) if sources else None,
        "reference": str(Path(reference).resolve()) if reference else None,
        "model_card_sha256": card_hash(generator.card or {}),
        "preprocess": dataclasses.asdict(config),
        "seed": seed,
    }
    job = _Job(out, target_spec, generator, registry, config, json.loads(json.dumps(settings)),
               model_name, site.center, sources, align, references,
               batch_size, seed)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    result = HarmonizeResult(out, out / MANIFEST_NAME)

    from harmonix.progress import progress_task

    try:
        with progress_task("harmonize", total=len(site.cases), quiet=not progress) as advance:
            for case in site.cases:
                advance(0, case=case.id)
                outcome = _run_case(case, job, overwrite)
                result.cases.append(outcome)
                if on_case:
                    on_case(outcome)
                advance(1, case=case.id)
    finally:
        # written on success, error and Ctrl-C alike: the manifest of the cases that are done
        write_manifest(result.manifest, result.rows)
    return result


def _run_case(case, job: _Job, overwrite: bool) -> CaseOutcome:
    start = time.perf_counter()
    final = job.out / case.id
    if not overwrite and (rows := _record_ok(final, job.settings)) is not None:
        return CaseOutcome(case.id, "skipped", rows)
    stage = job.out / f".partial-{case.id}-{os.getpid()}"
    try:
        shutil.rmtree(stage, ignore_errors=True)
        rows = _harmonize_case(case, job, stage)
        _commit(stage, job.out, case.id)
        return CaseOutcome(case.id, "done", rows, time.perf_counter() - start)
    except _CaseFailed as exc:
        return CaseOutcome(case.id, "failed", exc.rows, time.perf_counter() - start)
    except (HarmonixError, OSError, ValueError, RuntimeError) as exc:
        row = ManifestRow(case.id, "", "failed", "", f"{type(exc).__name__}: {exc}")
        return CaseOutcome(case.id, "failed", [row], time.perf_counter() - start)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class _CallableModule(types.ModuleType):
    """``harmonix.harmonize(...)`` keeps working once this submodule is imported: importing it
    makes the package attribute ``harmonix.harmonize`` the module, so the module is callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> HarmonizeResult:
        return harmonize_site(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
