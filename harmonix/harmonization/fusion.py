"""How a missing sequence is made: from its best source, or from every present source, fused.

A generator's model card records its fill policy under ``"fill"`` (the trainer writes it):
``{"policy": "fused" or "single", "correlations": {"sequences": [...], "r": [[...]],
"cases": n}}``, Pearson's r between sequences inside the brain, averaged over the training
cases (the policy recorded is :data:`DEFAULT_POLICY`). ``harmonix harmonize``,
:func:`harmonix.fill_case` and ``harmonix evaluate`` read it (:meth:`FillPolicy.from_card`), so
the three fill a case alike by default:

* ``single``: each missing sequence from the present source most correlated with it (by
  ``|r|``; the registry's ``source_priority`` without a table);
* ``fused`` (beyond the paper): from every present source the model knows, each translated on
  its own, then averaged voxel by voxel with weights ``r^2`` (the share of the target's variance
  the source explains on the training cases; equal weights without a table). The weighted
  standard deviation across the sources is the **spread** map (``harmonize --confidence``): how
  much the sources disagree, not a calibrated probability. With one source, fused is single.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harmonix.harmonization.options import POLICIES

FILL_KEY = "fill"
#: the policy a newly trained generator records: single, since fusing was worse than the most
#: correlated source on the validate profile (docs/validation.md, "fused vs single source")
DEFAULT_POLICY = "single"
#: cases the trainer measures the correlation table on
MAX_CASES = 20
#: weight of a source whose |r| with the target is unknown (no table or no entry)
EQUAL = 1.0


@dataclass(frozen=True)
class FillPolicy:
    """How missing sequences are filled (see the module docstring)."""

    policy: str = "single"
    correlations: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # t -> s -> r
    cases: int = 0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"fill policy must be one of {', '.join(POLICIES)}, got "
                             f"'{self.policy}'")

    @property
    def fused(self) -> bool:
        return self.policy == "fused"

    def ranking(self) -> dict[str, list[str]] | None:
        """Per target sequence its sources, most correlated (``|r|``) first; None without a
        table."""
        if not self.correlations:
            return None
        return {t: sorted((s for s in row if s != t), key=lambda s: (-abs(row[s]), s))
                for t, row in self.correlations.items()}

    def weights(self, target: str, sources: Sequence[str]) -> np.ndarray:
        """Fusion weights of ``sources`` for ``target``, summing to 1: ``r^2`` from the table
        (equal where it has no entry, or when every ``r`` is 0)."""
        row = self.correlations.get(target, {})
        raw = np.array([float(row[s]) ** 2 if s in row else EQUAL for s in sources], float)
        if not np.isfinite(raw).all() or raw.sum() <= 0:
            raw = np.ones(len(sources))
        return raw / raw.sum()

    def with_policy(self, policy: str | None) -> FillPolicy:
        """The same table under another policy (``None``: unchanged)."""
        return self if policy is None else FillPolicy(policy, self.correlations, self.cases)

    def to_record(self) -> dict[str, Any]:
        names = list(dict.fromkeys([*self.correlations, *(s for row in
                                                          self.correlations.values()
                                                          for s in row)]))
        r = [[float(self.correlations.get(a, {}).get(b, 1.0 if a == b else 0.0))
              for b in names] for a in names]
        return {"policy": self.policy, "correlations": {"sequences": names, "r": r,
                                                        "cases": int(self.cases)}}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> FillPolicy:
        """The policy of a card's ``fill`` record; ``single`` without a table for ``None``."""
        if not record:
            return cls()
        table = record.get("correlations") or {}
        names = list(table.get("sequences") or [])
        r = table.get("r") or []
        correlations = {a: {b: float(r[i][j]) for j, b in enumerate(names)}
                        for i, a in enumerate(names)} if names and r else {}
        return cls(str(record.get("policy", "single")), correlations,
                   int(table.get("cases", 0)))

    @classmethod
    def from_card(cls, card: Mapping[str, Any] | None) -> FillPolicy:
        """The fill policy a generator's model card records (cards from before it: single)."""
        return cls.from_record((card or {}).get(FILL_KEY))


def measure_correlations(cases: Iterable[Mapping[str, np.ndarray]]) -> tuple[dict, int]:
    """Mean Pearson's r between every two sequences of each case inside its brain (voxels where
    any sequence is above 0): ``({target: {source: r}}, cases counted)``. ``cases`` map
    sequences to arrays of one grid; cases with a single sequence do not count."""
    sums: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    n = 0
    for case in cases:
        names = sorted(case)
        if len(names) < 2:
            continue
        arrays = [np.asarray(case[s], np.float64) for s in names]
        brain = np.any([a > 0 for a in arrays], axis=0)
        if brain.sum() < 2:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(np.stack([a[brain] for a in arrays]))
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if np.isfinite(r[i, j]):
                    sums[a, b] = sums.get((a, b), 0.0) + float(r[i, j])
                    counts[a, b] = counts.get((a, b), 0) + 1
        n += 1
    table: dict[str, dict[str, float]] = {}
    for (a, b), total in sums.items():
        table.setdefault(a, {})[b] = round(total / counts[a, b], 6)
    return table, n


def fuse(volumes: Sequence[np.ndarray], weights: Sequence[float]) -> tuple[np.ndarray,
                                                                            np.ndarray | None]:
    """The weighted mean of ``volumes`` and their weighted standard deviation (the spread;
    ``None`` for a single volume, which comes back unchanged)."""
    if len(volumes) == 1:
        return volumes[0], None
    stack = np.stack([np.asarray(v, np.float32) for v in volumes])
    w = np.asarray(weights, np.float32).reshape(-1, *([1] * (stack.ndim - 1)))
    mean = (w * stack).sum(0) / w.sum()
    spread = np.sqrt((w * (stack - mean) ** 2).sum(0) / w.sum())
    return mean.astype(np.float32), spread.astype(np.float32)


__all__ = ["DEFAULT_POLICY", "FILL_KEY", "MAX_CASES", "POLICIES", "FillPolicy", "fuse",
           "measure_correlations"]
