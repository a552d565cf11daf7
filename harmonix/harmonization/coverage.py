"""The field-of-view check: how much of a case's brain the model's crop holds.

A generated volume is 0 outside the crop of the model's preprocessing, so a case whose brain
the crop cuts is only partly generated. :func:`check_coverage` is the one check that
``harmonix harmonize`` and :func:`harmonix.fill_case` apply: a note below
:data:`WARN_COVERAGE`, a :class:`CoverageError` below ``min_coverage``.
"""

from __future__ import annotations

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


__all__ = ["MIN_COVERAGE", "WARN_COVERAGE", "CoverageError", "check_coverage"]
