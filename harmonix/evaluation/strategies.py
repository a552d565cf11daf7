"""How a segmenter that needs every sequence gets them when some are missing.

* **complete**: all real sequences (the upper bound; needs no filling);
* **copy**: each missing sequence replaced by the present one that correlates best with it.
  Correlations are Pearson's r between two sequences' voxels inside a case's brain mask,
  averaged over *training* cases (:func:`sequence_correlations`), or the fixed clinical
  mapping (:mod:`harmonix.evaluation.provenance`); never measured on the test cases;
* **generated**: harmonix fills them (:func:`harmonix.harmonization.translate.fill_missing`, the
  source chosen by ``defaults.source_priority`` or the given ``sources`` as ``harmonix harmonize``
  does; latent-guided, or reference-guided by real target-domain ``references``), each (case,
  sequence, source, source volume) generated once and reused by every scenario that needs it
  (:class:`GeneratedFiller`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from harmonix.harmonization.fusion import FillPolicy
from harmonix.interfaces import Generator
from harmonix.registry import Target

STRATEGIES = ("complete", "copy", "generated")


def parse_strategies(spec: str | Iterable[str]) -> list[str]:
    """A comma-separated list (or iterable) of strategies, in canonical order."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise ValueError(f"unknown strategies {unknown or names}; use {', '.join(STRATEGIES)}")
    return [s for s in STRATEGIES if s in names]


# -- copy --------------------------------------------------------------------------------------
def sequence_correlations(cases: Iterable, sequences: Sequence[str]) -> pd.DataFrame:
    """Mean over ``cases`` (``PreparedCase``) of Pearson's r inside each case's brain mask.

    Returns a ``sequences x sequences`` table (diagonal 1) with ``attrs["cases"]`` the number of
    cases it averages.
    """
    total = np.zeros((len(sequences), len(sequences)))
    n = 0
    for case in cases:
        voxels = np.stack([case.volumes[s][case.brain_mask] for s in sequences]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(voxels)
        total += np.nan_to_num(r, nan=0.0)
        n += 1
    if not n:
        raise ValueError("no case to measure sequence correlations on")
    table = pd.DataFrame(total / n, index=list(sequences), columns=list(sequences))
    table.index.name = "sequence"
    table.attrs["cases"] = n
    return table


#: where a model card records the correlations of its training cases (``training`` of a
#: segmenter card, ``data`` of a generator card), and how many cases they are measured on
CORRELATIONS_KEY = "copy_correlations"
MAX_CORRELATION_CASES = 20


def correlations_record(table: pd.DataFrame) -> dict:
    """A correlation table as JSON for a model card."""
    return {"sequences": list(table.index), "r": np.asarray(table, float).tolist(),
            "cases": int(table.attrs.get("cases", 0))}


def correlations_from_record(record, sequences: Sequence[str]) -> pd.DataFrame | None:
    """The table of :func:`correlations_record` restricted to ``sequences`` (None if it lacks
    one of them)."""
    names = list(record.get("sequences") or [])
    if not set(sequences) <= set(names):
        return None
    table = pd.DataFrame(record["r"], index=names, columns=names).loc[list(sequences),
                                                                      list(sequences)]
    table.index.name = "sequence"
    table.attrs["cases"] = int(record.get("cases", 0))
    return table


def copy_sources(
    correlations: pd.DataFrame, missing: Iterable[str], present: Sequence[str]
) -> dict[str, str]:
    """For each missing sequence the present one with the highest correlation (ties: the
    earlier in ``present``)."""
    if not present:
        raise ValueError("copy needs at least one present sequence")
    return {
        m: max(present, key=lambda p: (correlations.loc[m, p], -present.index(p)))
        for m in missing
    }


def copy_fill(volumes: Mapping[str, np.ndarray], sources: Mapping[str, str]) -> dict:
    """``volumes`` with each missing sequence replaced by its copy source."""
    filled = {s: v for s, v in volumes.items() if s not in sources}
    filled.update({m: volumes[src] for m, src in sources.items()})
    return filled


# -- generated ---------------------------------------------------------------------------------
class GeneratedFiller:
    """Fills missing sequences with a generator, one (case, sequence, source) at a time, cached.

    ``target`` is the registry target whose domains are generated (restricted to
    ``sequences``); ``center`` is the cases' center (their source domains); ``sources`` orders
    the present sequences tried as a source (default: the registry's ``source_priority``);
    ``references`` maps a target sequence to real target-domain volumes on the model's grid
    (:func:`harmonix.harmonization.translate.load_references`): reference-guided filling instead of
    the mapper's latent codes; ``policy`` (default: the generator card's) chooses one source or
    fuses all (:mod:`harmonix.harmonization.fusion`).
    """

    def __init__(
        self,
        generator: Generator,
        target: Target,
        sequences: Sequence[str],
        *,
        center: str | None = None,
        batch_size: int = 16,
        seed: int = 0,
        sources: Sequence[str] | None = None,
        references: Mapping[str, np.ndarray] | None = None,
        policy: FillPolicy | None = None,
    ):
        self.generator = generator
        self.policy = FillPolicy.from_card(generator.card) if policy is None else policy
        self.sources = list(sources) if sources else None
        self.references = dict(references or {})
        self.ranking: dict[str, list[str]] | None = None  # per target, see plan_translations
        self.target = dataclasses.replace(target, sequences=tuple(sequences))
        self.center = center or target.center
        self.batch_size = batch_size
        self.seed = seed
        self._cache: dict[tuple[str, str, str, str], np.ndarray] = {}

    def check(self) -> None:
        """Raise ``ValueError`` unless the generator knows every target domain."""
        lacking = [d for d in self.target.domains if d not in self.generator.domains]
        if lacking:
            raise ValueError(f"the generator cannot make {', '.join(lacking)} (its domains: "
                             f"{', '.join(self.generator.domains)})")

    def plan(self, present: Sequence[str]) -> dict[str, list[str]]:
        """``{missing sequence: its sources}`` as ``fill_missing`` would choose (one source, or
        every usable one, best first, when the policy fuses)."""
        from harmonix.harmonization.translate import by_sequence, plan_translations

        fills, _, errors = plan_translations(
            present, self.target, self.generator.domains, center=self.center,
            sources=self.sources, ranking=self.ranking, policy=self.policy,
        )
        if errors:
            raise ValueError("; ".join(f"{s}: {m}" for s, m in errors.items()))
        return {seq: [t.source for t in group] for seq, group in by_sequence(fills).items()}

    def volume(self, prepared, sequence: str, source: str) -> np.ndarray:
        """``sequence`` generated from ``source`` of ``prepared`` (cached by the content of the
        source volume and brain mask: preparations from other present sets share it only when
        they are identical)."""
        from harmonix.harmonization.translate import fill_missing

        key = (prepared.case_id, sequence, source, _digest(prepared.volumes[source],
                                                           prepared.brain_mask))
        if key not in self._cache:
            one = dataclasses.replace(self.target, sequences=(sequence,))
            made = fill_missing(
                prepared, self.generator, one, present=[source], sources=[source],
                references=self.references, center=self.center, batch_size=self.batch_size,
                seed=self.seed, policy=self.policy,
            )
            self._cache[key] = made[sequence]
        return self._cache[key]

    def made(self, prepared, sequence: str, sources: Sequence[str]) -> np.ndarray:
        """``sequence`` from ``sources`` of ``prepared``: one source's volume, or every source's
        fused with the policy's weights (:func:`harmonix.harmonization.fusion.fuse`)."""
        from harmonix.harmonization.fusion import fuse

        volumes = [self.volume(prepared, sequence, s) for s in sources]
        return fuse(volumes, self.policy.weights(sequence, list(sources)))[0]

    def slices(self, prepared, sequence: str, source: str, ks: Sequence[int]) -> np.ndarray:
        """Only axial slices ``ks`` of ``sequence`` generated from ``source``, ``(len(ks), X, Y)``
        (what FID needs; not cached)."""
        from harmonix.harmonization.translate import fill_missing

        mask = np.zeros_like(prepared.brain_mask)
        mask[:, :, ks] = prepared.brain_mask[:, :, ks]
        one = dataclasses.replace(self.target, sequences=(sequence,))
        made = fill_missing(
            dataclasses.replace(prepared, brain_mask=mask), self.generator, one,
            present=[source], sources=[source], references=self.references,
            center=self.center, batch_size=self.batch_size, seed=self.seed, policy=self.policy,
        )
        return np.moveaxis(made[sequence][:, :, ks], -1, 0)

    def fill(self, prepared, present: Sequence[str]) -> tuple[dict[str, np.ndarray], dict]:
        """(real present + generated missing volumes, ``{missing: its sources joined by +}``)."""
        plan = self.plan(present)
        volumes = {s: prepared.volumes[s] for s in present}
        volumes.update({m: self.made(prepared, m, srcs) for m, srcs in plan.items()})
        return volumes, {m: "+".join(srcs) for m, srcs in plan.items()}

    def forget(self, case_id: str) -> None:
        """Drop a case's cached volumes (the evaluation goes case by case)."""
        for key in [k for k in self._cache if k[0] == case_id]:
            del self._cache[key]


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.data)
    return digest.hexdigest()
