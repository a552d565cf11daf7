"""``harmonix.fill_case``: fill the missing sequences of one case held in memory.

For users who hold images rather than a site folder (a notebook, a PACS bridge). The case goes
through what ``harmonix harmonize`` does to each case of a site
(:mod:`harmonix.harmonization.pipeline`): the same plan
(:func:`harmonix.harmonization.translate.plan_translations`, the model card's fill policy), the
generator's own preprocessing (:func:`harmonix.data.preprocess.preprocess_case`), slice-wise
translation and fusion (:func:`harmonix.harmonization.translate.make_sequence`), the exact inverse
onto the input's grid (:func:`harmonix.data.preprocess.restore`), the same intensity scale (by
default the real counterpart's scale and dtype, :mod:`harmonix.harmonization.intensity`;
``intensity="model"``: float32 0..255) and the synthetic flag in the NIfTI header
(:func:`harmonix.harmonization.outputs.synthetic_image`), so that a volume it returns equals, voxel
for voxel, the one ``harmonize`` writes for the same case, model, target, seed and intensity mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from harmonix.data.preprocess import preprocess_case, restore
from harmonix.errors import InputError, did_you_mean
from harmonix.harmonization.case_files import brain_on_input_grid, synthetic_volume
from harmonix.harmonization.coverage import CoverageError, check_coverage
from harmonix.harmonization.fusion import FillPolicy
from harmonix.harmonization.options import INTENSITY_MODES, MIN_COVERAGE
from harmonix.harmonization.translate import (
    by_sequence,
    check_grid,
    make_sequence,
    plan_translations,
    preprocess_config_from_card,
    resolve_target,
)
from harmonix.interfaces import Generator
from harmonix.models.checkpoints import load_generator
from harmonix.registry import Registry, load_registry


def _as_images(images) -> dict[str, nib.spatialimages.SpatialImage]:
    """``images`` as ``{key: nibabel image}``: a dict of nibabel images or of NIfTI paths, or a
    TorchIO ``Subject`` (its scalar images; label maps and other entries are left out)."""
    try:
        import torchio as tio
    except ImportError:  # pragma: no cover - torchio is a dependency
        tio = None
    subject = tio is not None and isinstance(images, tio.Subject)
    if not isinstance(images, Mapping) or not images:
        raise ValueError("images must be a non-empty dict {sequence: nibabel image or NIfTI "
                         "path}, or a TorchIO Subject")
    out = {}
    for key, value in images.items():
        if isinstance(value, (str, Path)):
            path = Path(value)
            if not path.is_file():
                raise InputError(path, f"images['{key}']: no such NIfTI file")
            try:
                value = nib.load(path)
            except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for a bad file
                raise InputError(path, f"images['{key}']: not a readable NIfTI: {exc}") from None
        elif tio is not None and isinstance(value, tio.Image):
            if subject and value.type != tio.INTENSITY:
                continue  # a Subject's label map: not a sequence
            if value.path is not None and not isinstance(value.path, list) and (
                    Path(value.path).is_file()):
                value = nib.load(value.path)  # the file's own header, dtype and scaling
            else:
                value = nib.Nifti1Image(value.data[0].numpy(), value.affine)
        elif subject and not isinstance(value, nib.spatialimages.SpatialImage):
            continue  # a Subject's metadata (age, ...)
        out[key] = value
    if not out:
        raise ValueError("images holds no image")
    return out


def _sequences(images: Mapping[str, nib.Nifti1Image], registry: Registry) -> dict[str, str]:
    """``{sequence: key of images}``, the keys read as sequence names or aliases (``T1Gd``)."""
    if not isinstance(images, Mapping) or not images:
        raise ValueError("images must be a non-empty dict {sequence: nibabel image}")
    found: dict[str, str] = {}
    for key, image in images.items():
        sequence = registry.resolve_sequence(str(key))
        if sequence is None:
            aliases = [a for s in registry.sequences.values() for a in (s.name, *s.aliases)]
            raise ValueError(f"images['{key}']: not a sequence name or alias harmonix knows"
                             f"{did_you_mean(str(key), aliases)} "
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
    images: Mapping[str, Any],
    model: str | Path | Generator,
    target: str = "brats",
    *,
    center: str | None = None,
    sources: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    intensity: str = "input",
    min_coverage: float = MIN_COVERAGE,
    fill: str | None = None,
) -> dict[str, nib.Nifti1Image]:
    """Complete one case for ``target``: every target sequence, the given ones unchanged (the
    same image objects) and the missing ones generated on the input's grid, flagged synthetic in
    their NIfTI ``descrip`` (``harmonix SYNTHETIC generated from t1``).

    ``images`` maps sequence names or aliases (``t1``, ``T1Gd``, ``flair``) to co-registered nibabel
    images, or NIfTI paths, of one case, or is a TorchIO ``Subject`` (its scalar images; a given
    image comes back as the nibabel image it was read as); ``device`` follows ``--device`` (``auto``
    by default; a device this machine lacks is a :class:`~harmonix.device.DeviceError`); ``model``
    is a run directory, checkpoint, installed model's name or loaded
    :class:`~harmonix.interfaces.Generator`; ``center`` is the case's center (its source domains;
    default: the target's); ``sources`` restricts and orders the sequences used as sources (as
    ``harmonize --sources``); ``intensity="input"`` puts a generated volume on the scale and dtype
    of its source image, ``"model"`` keeps float32 0..255 (as ``harmonize --intensity``); ``fill``
    (``single`` or ``fused``) overrides the model card's fill policy
    (:mod:`harmonix.harmonization.fusion`), as ``harmonize --fill``. Raises ``ValueError`` when a
    missing sequence cannot be made or the model's crop holds less than ``min_coverage`` of the
    brain, and :class:`~harmonix.errors.InputError` for an unusable image.
    """
    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {', '.join(INTENSITY_MODES)}, got "
                         f"'{intensity}'")
    from harmonix.device import resolve_device

    device = resolve_device(device)
    registry = load_registry()
    target_spec = resolve_target(target, registry)
    images = _as_images(images)
    keys = _sequences(images, registry)
    generator = model if isinstance(model, Generator) else load_generator(model, device=device)
    config = preprocess_config_from_card(generator)
    check_grid(config, generator)
    policy = FillPolicy.from_card(generator.card).with_policy(fill)
    fills, _, errors = plan_translations(
        list(keys), target_spec, generator.domains, center=center, sources=sources,
        registry=registry, policy=policy,
    )
    if errors:
        raise ValueError("; ".join(f"{seq}: {message}" for seq, message in errors.items()))
    out = {seq: images[keys[seq]] for seq in target_spec.sequences if seq in keys}
    if not fills:
        return out
    prepared = preprocess_case({seq: _as_loaded(images[key]) for seq, key in keys.items()},
                               config, case_id="case", registry=registry)
    try:
        _, note = check_coverage(prepared, config, min_coverage)
    except CoverageError as exc:
        raise ValueError(str(exc).replace("--min-coverage", "min_coverage")) from None
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    brain = brain_on_input_grid(prepared) if intensity == "input" else None
    for sequence, group in by_sequence(fills).items():
        volume, _ = make_sequence(group, prepared.volumes, prepared.brain_mask, generator,
                                  policy, batch_size=batch_size, seed=seed)
        t = group[0]
        data = np.asarray(restore(volume, prepared.record).dataobj, np.float32)
        like = images[keys[t.source]]
        out[sequence], _ = synthetic_volume(t, "generated", data, like, record=prepared.record,
                                            brain=brain, intensity=intensity,
                                            like_name=Path(like.get_filename() or "").name,
                                            sources="+".join(x.source for x in group))
    return {seq: out[seq] for seq in target_spec.sequences if seq in out}


__all__ = ["fill_case"]
