"""Plan and translate: which present sequence fills which missing one, and the slice-by-slice
translation of a preprocessed volume with a :class:`~harmonix.interfaces.Generator`.

``harmonix harmonize`` (:mod:`harmonix.harmonization.pipeline`),
``harmonix.harmonization.fill``-style callers and the evaluation (:mod:`harmonix.evaluation`)
all make synthetic sequences through this module.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmonix.cards import preprocessing_of
from harmonix.data.preprocess import PreprocessConfig, preprocess_case
from harmonix.data.site import read_site
from harmonix.errors import InputError
from harmonix.harmonization.fusion import FillPolicy, fuse
from harmonix.interfaces import Generator
from harmonix.registry import Registry, Target, load_registry, make_domain


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
    if center and make_domain(center, sequence) in domains:
        return make_domain(center, sequence), ""
    fallback = make_domain(target.center, sequence)
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
    ranking: Mapping[str, Sequence[str]] | None = None,
    policy: FillPolicy | None = None,
) -> tuple[list[Translation], list[Translation], dict[str, str]]:
    """Plan a case: ``(fills, alignments, errors)``.

    ``fills`` make the target sequences that are missing, each from the best present source the
    model knows: the first of ``sources`` (or the registry's priority), or with ``ranking`` (a
    target sequence -> its sources, best first, e.g. :func:`source_ranking`; default, unless
    ``sources`` are given: the ``policy``'s correlations) the first present in the target's own
    ranking, the others after it. With a ``fused``
    :class:`~harmonix.harmonization.fusion.FillPolicy` a missing sequence gets one translation
    from every usable source, best first (:func:`make_sequence` fuses them).
    ``alignments`` (only with ``align`` and a center other than the target's) translate present
    target sequences into the target domain; ``errors`` maps a sequence that cannot be made to
    the reason.
    """
    if ranking is None and policy is not None and not sources:  # --sources orders itself
        ranking = policy.ranking()
    fused = policy is not None and policy.fused
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
        target_domain = make_domain(target.center, seq)
        if seq in present:
            if align and center != target.center:
                domain = make_domain(center, seq)
                if target_domain not in domains:
                    errors[seq] = f"cannot align: the model has no domain {target_domain}"
                elif domain not in domains:
                    errors[seq] = f"cannot align: the model has no domain {domain}"
                else:
                    alignments.append(Translation(seq, seq, domain, target_domain))
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
            order = list(range(len(candidates)))
            if ranking and ranking.get(seq):
                ranked = list(ranking[seq])
                order.sort(key=lambda i: (ranked.index(candidates[i][0])
                                          if candidates[i][0] in ranked else len(ranked), i))
            for i in order if fused else order[:1]:
                (source, domain), note = candidates[i], notes[i]
                fills.append(Translation(seq, source, domain, target_domain, note))
    return fills, alignments, errors


def by_sequence(translations: Iterable[Translation]) -> dict[str, list[Translation]]:
    """Translations grouped by the sequence they make (several when fused), in plan order."""
    groups: dict[str, list[Translation]] = {}
    for t in translations:
        groups.setdefault(t.sequence, []).append(t)
    return groups

def source_ranking(correlations) -> dict[str, list[str]]:
    """Per target sequence the other sequences, most correlated first, from a ``sequences x
    sequences`` table of Pearson's r on training cases (a DataFrame, as
    :func:`harmonix.evaluation.strategies.sequence_correlations` measures it): translate each
    missing sequence from the present one that resembles it most."""
    names = list(correlations.index)
    return {t: sorted((s for s in names if s != t),
                      key=lambda s: (-float(correlations.loc[t, s]), names.index(s)))
            for t in names}


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


def make_sequence(
    group: Sequence[Translation],
    volumes: Mapping[str, np.ndarray],
    brain_mask: np.ndarray,
    generator: Generator,
    policy: FillPolicy,
    *,
    reference: np.ndarray | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One target sequence from the translations of ``group`` (one per source; several when
    the policy fuses): each source translated (:func:`translate_volume`), then fused with the
    policy's weights. Returns ``(volume, spread)``; ``spread`` is ``None`` for one source."""
    made = [translate_volume(volumes[t.source], brain_mask, generator, t.source_domain,
                             t.target_domain, reference=reference, batch_size=batch_size,
                             seed=seed) for t in group]
    return fuse(made, policy.weights(group[0].sequence, [t.source for t in group]))


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
    policy: FillPolicy | None = None,
) -> dict[str, np.ndarray]:
    """Generate every sequence of ``target`` that ``prepared`` (a ``PreparedCase``) lacks.

    Works on the preprocessed grid and returns ``{sequence: float32 volume 0..255}`` for the
    missing sequences only. ``present`` limits which of ``prepared.volumes`` count as present
    (default: all); ``center`` is the case's center (default: the target's); ``references`` maps a
    target sequence to real target-domain volume(s) for reference guidance; ``policy`` (default:
    the generator card's, :meth:`FillPolicy.from_card`) chooses or fuses sources. Raises
    ``ValueError`` when a missing sequence cannot be made.
    """
    target = resolve_target(target)
    policy = FillPolicy.from_card(generator.card) if policy is None else policy
    present = list(prepared.volumes) if present is None else list(present)
    unknown = [s for s in present if s not in prepared.volumes]
    if unknown:
        raise ValueError(f"present sequences {unknown} are not in the prepared case")
    fills, _, errors = plan_translations(
        present, target, generator.domains, center=center or target.center, sources=sources,
        policy=policy,
    )
    if errors:
        raise ValueError("; ".join(f"{seq}: {msg}" for seq, msg in errors.items()))
    references = references or {}
    return {
        seq: make_sequence(group, prepared.volumes, prepared.brain_mask, generator, policy,
                           reference=references.get(seq), batch_size=batch_size, seed=seed)[0]
        for seq, group in by_sequence(fills).items()
    }


# -- settings and model --------------------------------------------------------------------------
def preprocess_config_from_card(generator: Generator) -> PreprocessConfig:
    """The ``PreprocessConfig`` the generator was trained with (its model card's preprocessing;
    without one the default at the model's slice size, with a warning)."""
    spec = preprocessing_of(generator.card)
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


def check_grid(config: PreprocessConfig, generator: Generator) -> None:
    """The preprocessing crop must be the model's slice size."""
    size = getattr(generator, "image_size", None)
    if size is not None and tuple(config.crop_shape[:2]) != (int(size), int(size)):
        raise ValueError(
            f"preprocessing crop {tuple(config.crop_shape)} does not match the model's "
            f"{size}x{size} slices"
        )


def load_references(reference: str | Path, target: Target, config: PreprocessConfig, *,
                    max_cases: int = 2):
    """Preprocessed real target-domain volumes per sequence from the site at ``reference``."""
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

