"""``harmonix.fill_case``: fill the missing sequences of one case held in memory.

For users who hold images rather than a site folder (a notebook, a PACS bridge). The case goes
through what ``harmonix harmonize`` does to each case of a site (:mod:`harmonix.pipeline`): the
same plan (:func:`harmonix.translate.plan_translations`), the generator's own preprocessing
(:func:`harmonix.data.preprocess.preprocess_case`), slice-wise translation
(:func:`harmonix.translate.translate_volume`), the exact inverse onto the input's grid
(:func:`harmonix.data.preprocess.restore`), the same intensity scale (by default the real
counterpart's scale and dtype, :mod:`harmonix.intensity`; ``intensity="model"``: float32 0..255)
and the synthetic flag in the NIfTI header (:func:`harmonix.outputs.synthetic_image`), so that a
volume it returns equals, voxel for voxel, the one ``harmonize`` writes for the same case, model,
target, seed and intensity mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from harmonix.case_files import brain_on_input_grid
from harmonix.checkpoints import load_generator
from harmonix.data.preprocess import preprocess_case, restore
from harmonix.intensity import INTENSITY_MODES, scale_of, to_scale
from harmonix.interfaces import Generator
from harmonix.outputs import synthetic_image
from harmonix.pipeline import MIN_COVERAGE, WARN_COVERAGE
from harmonix.registry import Registry, load_registry
from harmonix.translate import (
    check_grid,
    plan_translations,
    preprocess_config_from_card,
    resolve_target,
    translate_volume,
)


def _sequences(images: Mapping[str, nib.Nifti1Image], registry: Registry) -> dict[str, str]:
    """``{sequence: key of images}``, the keys read as sequence names or aliases (``T1Gd``)."""
    if not isinstance(images, Mapping) or not images:
        raise ValueError("images must be a non-empty dict {sequence: nibabel image}")
    found: dict[str, str] = {}
    for key, image in images.items():
        sequence = registry.resolve_sequence(str(key))
        if sequence is None:
            raise ValueError(f"images['{key}']: not a sequence name or alias harmonix knows "
                             f"({', '.join(registry.sequences)})")
        if sequence in found:
            raise ValueError(f"images['{found[sequence]}'] and images['{key}'] are both "
                             f"{sequence}")
        if not isinstance(image, nib.spatialimages.SpatialImage):
            raise ValueError(f"images['{key}']: expected a nibabel image, got "
                             f"{type(image).__name__}")
        found[sequence] = key
    return found


def _as_loaded(image: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """The image as ``harmonize`` reads a file: float32 voxels (scaled), the same affine."""
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data.reshape(data.shape[:3])
    return nib.Nifti1Image(data.astype(np.float32), image.affine)


def fill_case(
    images: Mapping[str, nib.Nifti1Image],
    model: str | Path | Generator,
    target: str = "brats",
    *,
    center: str | None = None,
    sources: Sequence[str] | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    seed: int = 0,
    intensity: str = "input",
    min_coverage: float = MIN_COVERAGE,
) -> dict[str, nib.Nifti1Image]:
    """Complete one case for ``target``: every target sequence, the given ones unchanged (the
    same image objects) and the missing ones generated on the input's grid, flagged synthetic in
    their NIfTI ``descrip`` (``harmonix SYNTHETIC generated from t1``).

    ``images`` maps sequence names or aliases (``t1``, ``T1Gd``, ``flair``) to co-registered
    nibabel images of one case; ``model`` is a run directory, checkpoint, installed model's name
    or loaded :class:`~harmonix.interfaces.Generator`; ``center`` is the case's center (its
    source domains; default: the target's); ``sources`` restricts and orders the sequences used
    as sources (as ``harmonize --sources``); ``intensity="input"`` puts a generated volume on the
    scale and dtype of its source image, ``"model"`` keeps float32 0..255 (as ``harmonize
    --intensity``). Raises ``ValueError`` when a missing sequence cannot be made or the model's
    crop holds less than ``min_coverage`` of the brain, and
    :class:`~harmonix.errors.InputError` for an unusable image.
    """
    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {', '.join(INTENSITY_MODES)}, got "
                         f"'{intensity}'")
    registry = load_registry()
    target_spec = resolve_target(target, registry)
    keys = _sequences(images, registry)
    generator = model if isinstance(model, Generator) else load_generator(model, device=device)
    config = preprocess_config_from_card(generator)
    check_grid(config, generator)
    fills, _, errors = plan_translations(
        list(keys), target_spec, generator.domains, center=center, sources=sources,
        registry=registry,
    )
    if errors:
        raise ValueError("; ".join(f"{seq}: {message}" for seq, message in errors.items()))
    out = {seq: images[keys[seq]] for seq in target_spec.sequences if seq in keys}
    if not fills:
        return out
    prepared = preprocess_case({seq: _as_loaded(images[key]) for seq, key in keys.items()},
                               config, case_id="case", registry=registry)
    coverage = float(prepared.coverage)
    if coverage < WARN_COVERAGE:
        message = f"the model's field of view covers {coverage:.1%} of this case's brain"
        if coverage < min_coverage:
            raise ValueError(f"{message}; use a model trained with a larger crop or spacing, "
                             f"or lower min_coverage (now {min_coverage:g})")
        warnings.warn(f"{message}; the rest is 0", RuntimeWarning, stacklevel=2)
    brain = brain_on_input_grid(prepared) if intensity == "input" else None
    for t in fills:
        volume = translate_volume(
            prepared.volumes[t.source], prepared.brain_mask, generator, t.source_domain,
            t.target_domain, batch_size=batch_size, seed=seed,
        )
        like = images[keys[t.source]]
        data = np.asarray(restore(volume, prepared.record).dataobj, np.float32)
        scale = None
        if intensity == "input":
            name = Path(like.get_filename() or "").name
            scale = scale_of(prepared.record, t.source, like, name)
            data = to_scale(data, brain, scale)
        out[t.sequence] = synthetic_image(data, like,
                                          f"harmonix SYNTHETIC generated from {t.source}", scale)
    return {seq: out[seq] for seq in target_spec.sequences if seq in out}


__all__ = ["fill_case"]
