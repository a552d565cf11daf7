"""The field-of-view check: how much of a case's brain the model's crop holds.

A generated volume is 0 outside the crop of the model's preprocessing, so a case whose brain
the crop cuts is only partly generated, and a segmenter sees nothing outside its crop (a tumour
there is missed). :func:`check_coverage` is the one check that ``harmonix harmonize``,
:func:`harmonix.fill_case` and ``harmonix segment predict`` apply (``--min-coverage``), and that
``harmonix train`` applies to the training cases before its first iteration: a note below
:data:`WARN_COVERAGE`, a :class:`CoverageError` below ``min_coverage``.
"""

from __future__ import annotations

from harmonix.data.preprocess import preprocess_case
from harmonix.data.site import read_site
from harmonix.errors import InputError
from harmonix.harmonization.options import MIN_COVERAGE

WARN_COVERAGE = 0.99


class CoverageError(ValueError):
    """The model's crop holds less of the brain than allowed."""


def check_coverage(prepared, config, min_coverage: float = MIN_COVERAGE) -> tuple[float, str]:
    """``(coverage, note)``: the fraction of ``prepared``'s brain inside the crop of ``config``
    (a ``PreprocessConfig``) and a note when it is below :data:`WARN_COVERAGE` (else "");
    raises :class:`CoverageError` below ``min_coverage``."""
    coverage = float(prepared.coverage)
    if coverage >= WARN_COVERAGE:
        return coverage, ""
    crop, spacing = config.crop_shape, config.spacing
    fov = "x".join(f"{n * spacing:g}" for n in crop)
    message = (f"the model's field of view ({fov} mm: a {'x'.join(map(str, crop))} crop at "
               f"{spacing:g} mm) covers {coverage:.1%} of this case's brain; the rest is 0")
    if coverage < min_coverage:
        raise CoverageError(f"{message}. Use a model trained with a larger crop or spacing, or "
                            f"lower --min-coverage (now {min_coverage:g})")
    return coverage, message


def suggested_size(spacing: float, field_of_view: float = 176.0, multiple: int = 16) -> int:
    """The in-plane crop (pixels, a multiple of ``multiple``) that holds ``field_of_view`` mm."""
    import math

    return multiple * math.ceil(field_of_view / spacing / multiple - 1e-6)


def check_training_coverage(sites, config, min_coverage: float | None = None,
                            per_site: int = 3) -> float:
    """The lowest coverage of the crop of ``config`` over the first ``per_site`` usable cases of
    each site (folders or read sites); raises :class:`CoverageError` below ``min_coverage``,
    naming the fix: a model whose crop cuts the training brains is refused by harmonize on
    every case. ``harmonix train`` calls it before the first iteration (``min_coverage``
    ``None``: :data:`MIN_COVERAGE`)."""
    min_coverage = MIN_COVERAGE if min_coverage is None else min_coverage
    worst, which = 1.0, ""
    for site in sites:
        if not hasattr(site, "cases"):
            site = read_site(site, check_voxels=False)
        for case in [c for c in site.cases if c.ok][:per_site]:
            try:
                prepared = preprocess_case(case, config)
            except (InputError, ValueError, OSError):
                continue  # the data pipeline reports the case
            if prepared.coverage < worst:
                worst, which = float(prepared.coverage), case.id
    if worst < min_coverage:
        crop, spacing = config.crop_shape, config.spacing
        fov = "x".join(f"{n * spacing:g}" for n in crop)
        raise CoverageError(
            f"the training crop ({fov} mm: a {'x'.join(map(str, crop))} crop at {spacing:g} mm) "
            f"covers {worst:.1%} of the brain of training case {which}, below {min_coverage:g}: "
            "harmonize would refuse every case with this model. Use --size "
            f"{suggested_size(spacing)} at --spacing {spacing:g} (176 mm of view), or a coarser "
            "--spacing with the default size")
    return worst


__all__ = ["MIN_COVERAGE", "WARN_COVERAGE", "CoverageError", "check_coverage",
           "check_training_coverage", "suggested_size"]
