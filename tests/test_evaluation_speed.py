"""Issue 22, evaluation at less time: image-set features are computed once per content and the
numbers stay the same to the last digit (cached against uncached FID)."""

from __future__ import annotations

import numpy as np
import pytest

from harmonix.evaluation import fid as fid_module
from harmonix.evaluation.cases import SliceBank
from harmonix.evaluation.fid import FeatureCache, compute_fid
from harmonix.evaluation.results import MAIN, Evaluation

SEQUENCES = ("t1", "t2")


def _bank(seed: int = 0, generated_seed: int = 1) -> SliceBank:
    """Real slices per half and sequence, generated ones per pair, lesion crops of both."""
    rng, made = np.random.default_rng(seed), np.random.default_rng(generated_seed)
    bank = SliceBank()
    for half in ("A", "B"):
        for s in SEQUENCES:
            bank.add_real(half, s, rng.uniform(0, 255, (4, 32, 32)).astype(np.float32))
    for t in SEQUENCES:
        bank.add_crops(t, rng.uniform(0, 255, (4, 32, 32)).astype(np.float32))
        for s in SEQUENCES:
            if s != t:
                bank.add_generated(MAIN, s, t, made.uniform(0, 255, (4, 32, 32)).astype(
                    np.float32))
                bank.add_crops(t, made.uniform(0, 255, (4, 32, 32)).astype(np.float32), MAIN, s)
    return bank


class CountingMetric:
    """An image-set metric with cheap, deterministic features that counts its calls."""

    def __init__(self, scale: float = 1.0):
        self.scale, self._calls = scale, 0

    def features(self, slices: np.ndarray) -> np.ndarray:
        self._calls += 1
        flat = np.asarray(slices, np.float64).reshape(len(slices), -1)
        return np.stack([flat.mean(1), flat.std(1), flat.max(1)], axis=1) * self.scale

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum((a.std(0) - b.std(0)) ** 2))


def _values(bank, metric, cache: FeatureCache, monkeypatch) -> list[tuple]:
    monkeypatch.setattr(fid_module, "FEATURES", cache)
    ev = Evaluation(rows=[], settings={}, sequences=SEQUENCES)
    compute_fid(ev, bank, SEQUENCES, [MAIN], metrics={"fid": metric}, fid_slices=3, seed=0,
                progress=False)
    return [(r["kind"], r["strategy"], r["source"], r["sequence"], r["value"]) for r in ev.rows]


def test_cached_features_give_the_same_numbers_and_are_computed_once(monkeypatch):
    uncached_metric, cached_metric = CountingMetric(), CountingMetric()
    cache = FeatureCache()
    uncached = _values(_bank(), uncached_metric, FeatureCache(enabled=False), monkeypatch)
    cached = _values(_bank(), cached_metric, cache, monkeypatch)
    assert cached == uncached and len(cached) >= 8  # every value equal, to the last digit
    # a second evaluation of the same test site with another generator: the real sets again
    again = _values(_bank(generated_seed=2), cached_metric, cache, monkeypatch)
    assert cache.reused == 2 * len(SEQUENCES) + len(SEQUENCES)  # halves A, B and lesion crops
    fresh = _values(_bank(generated_seed=2), CountingMetric(), FeatureCache(enabled=False),
                    monkeypatch)
    assert again == fresh
    # a metric with other settings never shares features
    other = _values(_bank(), CountingMetric(scale=2.0), cache, monkeypatch)
    assert other != cached


def test_cached_and_uncached_fid_are_identical(monkeypatch):
    fid_plugin = pytest.importorskip("harmonix_metrics.fid")
    try:
        metric = fid_plugin.FIDMetric()
        metric.features(np.zeros((2, 32, 32), np.float32))
    except Exception as exc:  # noqa: BLE001 - the offline weights are an optional download
        pytest.skip(f"FID network not available: {exc}")
    uncached = _values(_bank(), metric, FeatureCache(enabled=False), monkeypatch)
    cache = FeatureCache()
    cached = _values(_bank(), metric, cache, monkeypatch)
    again = _values(_bank(), metric, cache, monkeypatch)  # every set from the cache
    assert cached == uncached == again
    assert cache.reused > 0
