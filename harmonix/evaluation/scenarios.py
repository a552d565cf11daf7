"""Which sequences are missing: the paper's scenarios.

* **fixed**: every non-empty proper subset of the four sequences goes missing in every case:
  4 single-, 6 double- and 4 triple-missing sets (14 scenarios; all four missing is no input);
* **random**: each case loses its own random set, drawn uniformly from those 14 (so each case
  keeps at least one sequence and loses at most three), from ``numpy.random.default_rng(seed)``
  in case order; :func:`random_distribution` reports what was drawn;
* **brasyn**: each case loses one sequence, drawn per case (the BraSyn challenge's protocol,
  :mod:`harmonix.evaluation.brasyn`);
* **cross-center**: a local center's T2 stands in for all four (see :mod:`harmonix.evaluation.run`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

SEQUENCES = ("t1", "t1ce", "t2", "flair")
FIXED_KINDS = {1: "single", 2: "double", 3: "triple"}
KINDS = ("single", "double", "triple", "random", "brasyn", "cross-center")


@dataclass(frozen=True)
class Scenario:
    """A named missing-sequence scenario; ``missing`` is empty for random and cross-center ones
    (their missing sets are per case)."""

    name: str
    kind: str
    missing: frozenset[str] = frozenset()

    def present(self, sequences: Sequence[str]) -> list[str]:
        return [s for s in sequences if s not in self.missing]


def missing_text(missing: Iterable[str], sequences: Sequence[str] = SEQUENCES) -> str:
    """``{"t2", "t1"}`` -> ``"t1+t2"`` (sequences in ``sequences`` order)."""
    missing = set(missing)
    return "+".join(s for s in sequences if s in missing)


def scenario_name(missing: Iterable[str], sequences: Sequence[str] = SEQUENCES) -> str:
    """``{"t2", "t1"}`` -> ``"missing t1+t2"``."""
    return "missing " + missing_text(missing, sequences)


def fixed_scenarios(
    sequences: Sequence[str] = SEQUENCES, kinds: Iterable[str] = ("single", "double", "triple")
) -> list[Scenario]:
    """The fixed scenarios of ``kinds``: for four sequences 4 single, 6 double, 4 triple."""
    kinds = set(kinds)
    out = []
    for k in range(1, len(sequences)):
        kind = FIXED_KINDS.get(k, f"{k}-missing")
        if kind in kinds:
            out.extend(Scenario(scenario_name(c, sequences), kind, frozenset(c))
                       for c in combinations(sequences, k))
    return out


def parse_kinds(spec: str | Iterable[str]) -> list[str]:
    """``"all"`` or a comma-separated list of kinds (single, double, triple, random, brasyn,
    cross-center) -> the kinds in canonical order; unknown names raise ``ValueError``."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names or "all" in names:
        return list(KINDS)
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; use all or {', '.join(KINDS)}")
    return [k for k in KINDS if k in names]


def random_missing(
    case_ids: Sequence[str], sequences: Sequence[str] = SEQUENCES, *, seed: int = 0
) -> dict[str, frozenset[str]]:
    """A random missing set per case, uniform over the fixed ones (keep >= 1, lose <= n - 1)."""
    choices = [s.missing for s in fixed_scenarios(sequences, FIXED_KINDS.values())]
    if not choices:
        raise ValueError("random missing needs at least two sequences")
    rng = np.random.default_rng(seed)
    return {case: choices[rng.integers(len(choices))] for case in case_ids}


def random_distribution(
    assignment: Mapping[str, frozenset[str]], sequences: Sequence[str] = SEQUENCES
) -> pd.DataFrame:
    """Counts of what random missing drew: per missing set, per number missing and per
    sequence (``what``, ``value``, ``cases``, ``fraction``)."""
    n = max(len(assignment), 1)
    rows = []
    sets = pd.Series([scenario_name(m, sequences) for m in assignment.values()]).value_counts()
    for name in [s.name for s in fixed_scenarios(sequences, FIXED_KINDS.values())]:
        rows.append(("missing set", name.removeprefix("missing "), int(sets.get(name, 0))))
    for k in range(1, len(sequences)):
        rows.append(("number missing", str(k), sum(len(m) == k for m in assignment.values())))
    for seq in sequences:
        rows.append(("sequence missing", seq, sum(seq in m for m in assignment.values())))
    table = pd.DataFrame(rows, columns=["what", "value", "cases"])
    table["fraction"] = table["cases"] / n
    return table
