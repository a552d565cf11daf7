"""FID per (source, target) sequence pair and the paper's tests on it (Fig. 4).

**Design.** The cases are split in two halves A and B (alternating, in case order; one case:
alternating slices). Per target sequence ``t`` the baseline is FID(real ``t`` of A, real ``t`` of
B); a pair ``s -> t`` is FID(``t`` generated from ``s`` of A, real ``t`` of B), and the *real*
comparison FID(real ``s`` of A, real ``t`` of B): how far the source itself is from the target,
which is what copying it would give. Every comparison thus has the same sample sizes and
reference set, and FID's small-sample bias is the baseline's.

**Lesion region** (kind ``fid-lesion``, :func:`lesion_fid_table`): the same distance on
crops around the lesion of the slices with the largest lesions, real target vs each
generator's target (and vs the real source), to see whether the lesion-aware module makes
lesions more like real ones (issue 14).

**Tests** (:func:`fid_statistics`). The sequence pairs are the blocks; the groups are real
(source vs target), generated without LAM and generated with LAM: Friedman across the three,
Dunn's post hoc test in the within-block form with Bonferroni's correction, the difference of
mean FID (the paper's post-hoc figures) beside the rank statistic, and Cohen's d with the SD
pooled over all groups, as the paper computes it. Without a generator
trained with ``--no-lam`` that column is left out and the Friedman test with it (a note says so).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harmonix.evaluation.results import CROSS, MAIN, NO_LAM, Evaluation
from harmonix.evaluation.stats import block_statistics
from harmonix.interfaces import ImageSetMetric
from harmonix.progress import progress_task

LESION_FID = "fid-lesion"
FID_GROUPS = {"real": "real (source vs target)", NO_LAM: "generated without LAM",
              MAIN: "generated with LAM"}


class FeatureCache:
    """Features of image sets by content: an image-set metric's ``features`` of the same slices
    (same shape, dtype and bytes) by the same kind of metric (class and settings) are computed
    once and reused, within an evaluation (the real sets of every pair, the lesion rows and the
    cross-center reference) and by later evaluations in the same process (the real sets of a
    test site evaluated with several generators). ``metric.features`` is deterministic, so a
    cached value is the value it would compute again (``tests/test_evaluation_speed.py``
    compares them bit for bit). At most ``max_sets`` sets are kept (least recently used first
    out; 16 slices x 2048 float64 features are 256 KB); ``enabled=False`` computes every time.
    """

    def __init__(self, max_sets: int = 256, enabled: bool = True):
        self.max_sets, self.enabled = max_sets, enabled
        self._features: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.computed = self.reused = 0

    @staticmethod
    def key(metric: ImageSetMetric, slices: np.ndarray) -> tuple:
        settings = sorted((k, repr(v)) for k, v in vars(metric).items()
                          if not k.startswith("_"))  # its settings, not its state
        array = np.ascontiguousarray(slices)
        digest = hashlib.blake2b(array.data, digest_size=20).hexdigest()
        return (type(metric).__module__, type(metric).__qualname__, tuple(settings),
                array.shape, array.dtype.str, digest)

    def get(self, metric: ImageSetMetric, slices: np.ndarray) -> np.ndarray:
        """``metric.features(slices)``, computed once per content."""
        if not self.enabled:
            self.computed += 1
            return metric.features(slices)
        key = self.key(metric, slices)
        if key in self._features:
            self._features.move_to_end(key)
            self.reused += 1
            return self._features[key]
        value = metric.features(slices)
        self.computed += 1
        self._features[key] = value
        while len(self._features) > self.max_sets:
            self._features.popitem(last=False)
        return value

    def clear(self) -> None:
        self._features.clear()
        self.computed = self.reused = 0


#: the process's cache of image-set features (:class:`FeatureCache`)
FEATURES = FeatureCache()


def compute_fid(ev: Evaluation, bank, sequences: Sequence[str], labels: Sequence[str], *,
                metrics: Mapping[str, ImageSetMetric], fid_slices: int, seed: int,
                progress: bool) -> None:
    """Add the rows of every image-set metric (FID and any other ``metrics``) to ``ev``: kind
    "fid" per sequence pair, kind cross-center for the local T2; ``metric`` names the metric.
    Every metric compares the same seeded slice sets."""
    real_a = {s: bank.stack(bank.real.get(("A", s), [])) for s in sequences}
    real_b = {s: bank.stack(bank.real.get(("B", s), [])) for s in sequences}
    size = min(fid_slices, *(len(v) for v in (*real_a.values(), *real_b.values())))
    if size < 2:
        ev.notes.append(f"{', '.join(metrics).upper()} skipped: fewer than 2 real slices in a "
                        "half (too few cases)")
        return
    rng = np.random.default_rng(seed)

    def equal(slices: np.ndarray) -> np.ndarray:
        return _subset(slices, size, rng)

    sets_a = {s: equal(v) for s, v in real_a.items()}
    sets_b = {s: equal(v) for s, v in real_b.items()}
    generated = {}
    for label in labels:
        for t in sequences:
            for s in sequences:
                made = bank.stack(bank.generated.get((label, s, t), [])) if s != t else []
                if len(made) >= 2:
                    generated[(label, s, t)] = equal(made)
    cross = bank.cross
    lesion = _lesion_sets(bank, sequences, labels, fid_slices, rng)
    n_sets = (len(sets_a) + len(sets_b) + len(generated) + (2 if cross is not None else 0)
              + sum(len(sets) for sets in lesion))
    with progress_task("image sets (features)", total=n_sets * len(metrics),
                       quiet=not progress) as advance:
        for name, metric in metrics.items():
            def features(slices, metric=metric):
                value = FEATURES.get(metric, slices)
                advance(1)
                return value

            _pair_rows(ev, name, metric, sequences, features, sets_a, sets_b, generated, cross)
            _lesion_rows(ev, name, metric, features, *lesion)


def _pair_rows(ev: Evaluation, name: str, metric: ImageSetMetric, sequences, features, sets_a,
               sets_b, generated, cross) -> None:
    """One image-set metric's rows: real vs real per target, real source vs real target,
    generated vs real per (generator, source, target), and the cross-center T2."""
    feats_a = {s: features(v) for s, v in sets_a.items()}
    feats_b = {s: features(v) for s, v in sets_b.items()}
    base = dict(case="", scenario="fid", kind="fid", metric=name)
    for t in sequences:
        ev.add(**base, strategy="real", sequence=t, source=t,
               value=metric.distance(feats_a[t], feats_b[t]))
    _source_rows(ev, base, metric, features, feats_a, feats_b, generated)
    if cross is not None:
        center, local, aligned = cross
        reference = np.concatenate([feats_a["t2"], feats_b["t2"]])
        if len(local) >= 2:
            cc = dict(case="", scenario=CROSS, kind=CROSS, metric=name, sequence="t2")
            ev.add(**cc, strategy="copy", source=f"{center}/t2",
                   value=metric.distance(features(local), reference))
            ev.add(**cc, strategy="generated", generator=MAIN, source=f"{center}/t2",
                   value=metric.distance(features(aligned), reference))


def _subset(slices: np.ndarray, size: int, rng) -> np.ndarray:
    """Every set the same size: a seeded subset of ``size`` slices."""
    keep = np.sort(rng.choice(len(slices), size, replace=False))
    return slices[keep] if len(slices) > size else slices


def _source_rows(ev: Evaluation, base: dict, metric: ImageSetMetric, features, source_feats,
                 target_feats, generated) -> None:
    """Per pair ``s -> t``: the real source (strategy copy) and the target generated from it by
    each generator, against the real target's features."""
    for t in target_feats:
        for s in source_feats:
            if s != t:
                ev.add(**base, strategy="copy", sequence=t, source=s,
                       value=metric.distance(source_feats[s], target_feats[t]))
    for (label, s, t), slices in generated.items():
        ev.add(**base, strategy="generated", generator=label, sequence=t, source=s,
               value=metric.distance(features(slices), target_feats[t]))


def _lesion_sets(bank, sequences, labels, fid_slices: int, rng) -> tuple[dict, dict]:
    """Lesion crops (:func:`~harmonix.evaluation.cases.lesion_crops`), every set the same size:
    real per target, generated per (generator, source, target). Empty when too few."""
    real = {t: bank.stack(bank.crops_real.get(t, [])) for t in sequences}
    made = {(label, s, t): bank.stack(bank.crops_generated.get((label, s, t), []))
            for label in labels for t in sequences for s in sequences if s != t}
    sizes = [len(v) for v in (*real.values(), *made.values())]
    size = min(fid_slices, *sizes) if sizes else 0
    if size < 2:
        return {}, {}
    return ({t: _subset(v, size, rng) for t, v in real.items()},
            {k: _subset(v, size, rng) for k, v in made.items()})


def _lesion_rows(ev: Evaluation, name: str, metric: ImageSetMetric, features, real, made
                 ) -> None:
    """Lesion-region rows (kind "fid-lesion"): the real source's lesions (strategy copy) and the
    generated target's lesions of each generator, against the real target's lesions."""
    feats = {t: features(v) for t, v in real.items()}
    base = dict(case="", scenario=LESION_FID, kind=LESION_FID, metric=name)
    _source_rows(ev, base, metric, features, feats, feats, made)


def lesion_fid_table(results: pd.DataFrame) -> pd.DataFrame:
    """Lesion-region FID per pair (rows ``"s->t"``): with LAM, without LAM (when evaluated) and
    the real source's lesions, plus ``lam_lower`` (with LAM below without)."""
    rows = results[(results["kind"] == LESION_FID) & (results["metric"] == "fid")]
    if rows.empty:
        return pd.DataFrame()
    wide = fid_wide(rows.assign(kind="fid"))
    if {MAIN, NO_LAM} <= set(wide.columns):
        wide["lam_lower"] = wide[MAIN] < wide[NO_LAM]
    return wide


def fid_wide(fid: pd.DataFrame) -> pd.DataFrame:
    """Sequence pairs (``"s->t"``, rows) x groups (``lam``, ``no-lam``, ``real``; those present)
    from the FID rows of a results table."""
    rows = fid[(fid["metric"] == "fid") & (fid["kind"] == "fid")]
    columns: dict[str, pd.Series] = {}
    for label in (MAIN, NO_LAM):  # the paper's order: "with LAM vs without LAM", "... vs real"
        made = rows[(rows["strategy"] == "generated") & (rows["generator"] == label)]
        if not made.empty:
            columns[label] = pd.Series(made["value"].to_numpy(float),
                                       index=made["source"] + "->" + made["sequence"])
    real = rows[rows["strategy"] == "copy"]
    if not real.empty:
        columns["real"] = pd.Series(real["value"].to_numpy(float),
                                    index=real["source"] + "->" + real["sequence"])
    wide = pd.DataFrame(columns)
    wide.index.name = "pair"
    return wide


def fid_statistics(fid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(friedman, dunn, notes)`` of the FID rows: one-row Friedman table and the pairs table
    (:func:`harmonix.evaluation.stats.block_statistics`, Bonferroni) with readable group names."""
    wide = fid_wide(fid)
    notes = []
    if NO_LAM not in wide.columns:
        notes.append("FID statistics without the 'generated without LAM' column: give a "
                     "generator trained with --no-lam as --generator-no-lam for the paper's "
                     "three-way comparison")
    if wide.shape[1] < 2:
        return pd.DataFrame(), pd.DataFrame(), notes + ["FID statistics need two groups"]
    friedman, pairs = block_statistics(wide, p_adjust="bonferroni")
    friedman_row: dict[str, Any] = {"groups": ", ".join(FID_GROUPS[c] for c in wide.columns),
                                    **friedman}
    if not pairs.empty:
        for column in ("group_a", "group_b"):
            pairs[column] = pairs[column].map(FID_GROUPS)
    return pd.DataFrame([friedman_row]), pairs, notes


__all__ = ["FEATURES", "FID_GROUPS", "LESION_FID", "FeatureCache", "compute_fid",
           "fid_statistics", "fid_wide", "lesion_fid_table"]
