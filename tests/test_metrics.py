"""Metric plugins against independent computations: Dice (MONAI, hand counts), HD95 (scipy
surface distances), SSIM/PSNR (formulas by hand), FID (TorchScript reference network)."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.distance import directed_hausdorff

from harmonix.interfaces import ImageMetric, ImageSetMetric, SegmentationMetric
from harmonix.plugins import (
    ENTRY_POINT_GROUP,
    PluginHost,
    build_metric,
    get_host,
    get_metric,
    reset_host,
)
from harmonix_metrics import fid as fid_module
from harmonix_metrics.image import psnr, ssim
from harmonix_metrics.segmentation import dice_scores, hd95, hd95_scores

# canonical label values per region, written out here rather than read from the registry
REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


# -- plugin host -------------------------------------------------------------------------------
def test_metrics_are_registered_through_the_plugin_host():
    (entry_point,) = metadata.entry_points(group=ENTRY_POINT_GROUP, name="metrics")
    assert entry_point.value == "harmonix_metrics"
    # a host with only this plugin: loading every other entry point is test_plugins' business
    reset_host(PluginHost(autoload=False, extra=[entry_point.value]))
    expected = {"dice": (True, SegmentationMetric), "hd95": (False, SegmentationMetric),
                "ssim": (True, ImageMetric), "psnr": (True, ImageMetric),
                "fid": (False, ImageSetMetric)}
    for name, (higher_is_better, kind) in expected.items():
        assert get_host().get("metric", name).plugin == "harmonix_metrics"
        assert issubclass(get_metric(name), kind)  # get_X: the registered class
        metric = build_metric(name)  # build_X: an instance
        assert isinstance(metric, kind)
        assert metric.name == name and metric.higher_is_better is higher_is_better
        assert metric.by_default is (name != "hd95")  # HD95 is slow: evaluate runs it on request


# -- Dice --------------------------------------------------------------------------------------
def _random_labels(rng, shape=(20, 18, 12)) -> np.ndarray:
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    labels = np.zeros(shape, np.uint8)
    labels[smooth > 0.02] = 2
    labels[smooth > 0.05] = 1
    labels[smooth > 0.08] = 4
    return labels


def test_dice_agrees_with_monai_per_region():
    from monai.metrics import compute_dice

    rng = np.random.default_rng(0)
    for _ in range(4):
        pred, ref = _random_labels(rng), _random_labels(rng)
        scores = build_metric("dice").compute(pred, ref)
        assert set(scores) == set(REGIONS)
        for region, values in REGIONS.items():
            p = torch.from_numpy(np.isin(pred, values))[None, None].float()
            r = torch.from_numpy(np.isin(ref, values))[None, None].float()
            expected = compute_dice(p, r, include_background=True).item()
            assert 0.0 < expected < 1.0
            assert scores[region] == pytest.approx(expected, abs=1e-6)


def test_dice_by_hand_and_empty_regions():
    pred = np.zeros((8, 8, 8), np.uint8)
    ref = np.zeros_like(pred)
    pred[0:4, 0:4, 0:4] = 2  # edema cube, 64 voxels
    ref[2:6, 0:4, 0:4] = 2  # shifted by 2: overlap 2*4*4 = 32 voxels
    scores = dice_scores(pred, ref)
    assert scores["WT"] == pytest.approx(2 * 32 / (64 + 64), abs=1e-12)
    assert scores["TC"] == 1.0 and scores["ET"] == 1.0  # empty in both: defined as 1
    ref[7, 7, 7] = 4  # ET only in the reference
    assert dice_scores(pred, ref)["ET"] == 0.0


def test_dice_rejects_non_canonical_labels_and_shape_mismatch():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = 3  # a BraTS 2023 ET label that was not converted
    with pytest.raises(ValueError, match="not canonical"):
        dice_scores(labels, np.zeros_like(labels))
    with pytest.raises(ValueError, match="shapes differ"):
        dice_scores(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


# -- HD95 --------------------------------------------------------------------------------------
def _surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    surface = mask & ~ndimage.binary_erosion(mask)
    return np.argwhere(surface) * np.asarray(spacing)


def test_hd95_agrees_with_scipy_surface_distances():
    grid = np.indices((28, 26, 20)).astype(float)
    spacing = (1.0, 1.5, 2.0)
    centre_a, centre_b = np.array([13, 12, 9]), np.array([15, 13, 10])
    a = ((grid - centre_a[:, None, None, None]) ** 2 / np.array([64, 36, 25])[:, None, None, None]
         ).sum(0) <= 1
    b = np.zeros_like(a)
    b[8:22, 7:19, 6:15] = True
    b &= ((grid - centre_b[:, None, None, None]) ** 2).sum(0) <= 60
    pa, pb = _surface_points(a, spacing), _surface_points(b, spacing)
    d_ab = cKDTree(pb).query(pa)[0]
    d_ba = cKDTree(pa).query(pb)[0]
    expected = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert expected > 1.0
    assert hd95(a, b, spacing) == pytest.approx(expected, abs=1e-4)
    # and it never exceeds the full Hausdorff distance (scipy's directed distances)
    full = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hd95(a, b, spacing) <= full + 1e-6


def test_hd95_empty_region_conventions_and_regions():
    shape, spacing = (10, 12, 8), (2.0, 2.0, 3.0)
    empty = np.zeros(shape, np.uint8)
    some = empty.copy()
    some[3:6, 3:6, 2:5] = 2
    assert hd95(empty, empty, spacing) == 0.0
    diagonal = np.sqrt(20.0**2 + 24.0**2 + 24.0**2)
    assert hd95(some > 0, empty > 0, spacing) == pytest.approx(diagonal)
    scores = build_metric("hd95").compute(some, some, spacing=spacing)
    assert scores == {"WT": 0.0, "TC": 0.0, "ET": 0.0}
    shifted = np.roll(some, 1, axis=0)
    assert hd95_scores(some, shifted, spacing)["WT"] == pytest.approx(2.0)


# -- SSIM and PSNR -----------------------------------------------------------------------------
def _ssim_map_by_hand(x: np.ndarray, y: np.ndarray, win: int = 7, data_range: float = 255.0):
    """Wang et al. 2004 with a uniform window and sample covariances (no skimage)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    n = win**x.ndim
    mean = lambda img: ndimage.uniform_filter(img, size=win)  # noqa: E731
    mx, my = mean(x), mean(y)
    vx = (mean(x * x) - mx * mx) * n / (n - 1)
    vy = (mean(y * y) - my * my) * n / (n - 1)
    cxy = (mean(x * y) - mx * my) * n / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def _pair(rng, shape, noise):
    ref = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 1.5)
    ref = (ref - ref.min()) / np.ptp(ref) * 255
    gen = np.clip(ref + rng.normal(0, noise, shape), 0, 255)
    return gen.astype(np.float32), ref.astype(np.float32)


@pytest.mark.parametrize("shape", [(32, 30), (16, 18, 14)])
def test_ssim_agrees_with_formula_by_hand(shape):
    rng = np.random.default_rng(1)
    gen, ref = _pair(rng, shape, noise=20.0)
    full = _ssim_map_by_hand(gen, ref)
    interior = tuple(slice(3, n - 3) for n in shape)
    assert build_metric("ssim").compute(gen, ref) == pytest.approx(full[interior].mean(), abs=1e-6)
    mask = np.zeros(shape, bool)
    mask[tuple(slice(n // 4, n) for n in shape)] = True  # touches the border on one side
    inside = np.zeros(shape, bool)
    inside[interior] = True
    expected = full[mask & inside].mean()
    assert ssim(gen, ref, mask=mask) == pytest.approx(expected, abs=1e-6)
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(gen, ref) < ssim(_pair(np.random.default_rng(1), shape, 5.0)[0], ref)


def test_psnr_agrees_with_formula_by_hand():
    rng = np.random.default_rng(2)
    gen, ref = _pair(rng, (24, 24, 10), noise=10.0)
    mse = np.mean((gen.astype(np.float64) - ref) ** 2)
    assert build_metric("psnr").compute(gen, ref) == pytest.approx(10 * np.log10(255**2 / mse))
    mask = ref > np.median(ref)
    mse_in = np.mean((gen[mask].astype(np.float64) - ref[mask]) ** 2)
    assert psnr(gen, ref, mask=mask) == pytest.approx(10 * np.log10(255**2 / mse_in))
    assert psnr(ref, ref) == np.inf
    with pytest.raises(ValueError, match="mask is empty"):
        psnr(gen, ref, mask=np.zeros(ref.shape, bool))


# -- FID ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fid_cache(tmp_path_factory):
    """Map the weights once for this module into a temporary cache (never the user's)."""
    cache = tmp_path_factory.mktemp("harmonix-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(fid_module.CACHE_ENV, str(cache))
        fid_module.load_fid_inception.cache_clear()
        yield cache
    fid_module.load_fid_inception.cache_clear()


@pytest.fixture(scope="module")
def script():
    return fid_module.load_torchscript()


def test_mapped_inception_reproduces_the_torchscript_features(fid_cache, script):
    net = fid_module.load_fid_inception("cpu")
    assert (fid_cache / fid_module.CACHE_FILE).is_file()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        expected = script(x)  # the TorchScript takes [-1, 1]
        mapped = net((x + 1) / 2)[0].flatten(1)  # pytorch-fid takes [0, 1] and maps to [-1, 1]
    assert mapped.shape == expected.shape == (2, 2048)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(mapped, expected, atol=1e-5, rtol=1e-5)


def test_mapping_checks_layer_shapes(script):
    script_state = script.state_dict()
    keys = list(script_state)
    swapped = {k: script_state[k] for k in keys[4:8] + keys[:4] + keys[8:]}  # layers 0, 1 swapped
    with pytest.raises(Exception, match="layer mismatch"):
        fid_module.map_torchscript_weights(swapped, fid_module.build_unweighted_inception())


def test_broken_cache_is_rebuilt_then_reused(fid_cache, tmp_path, monkeypatch):
    cache = tmp_path / "broken.safetensors"
    cache.write_bytes(b"not a safetensors file")
    state = fid_module.mapped_state_dict(cache)
    assert len([k for k in state if k.endswith("conv.weight")]) == fid_module.N_LAYERS
    assert cache.stat().st_size > 1_000_000

    def no_source():
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(fid_module, "torchscript_path", no_source)
    cached = fid_module.mapped_state_dict(cache)
    assert cached.keys() == state.keys()
    assert all(torch.equal(cached[k], state[k]) for k in state)


def _brain_like_slices(rng, n=3, size=32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    slices = []
    for _ in range(n):
        r = rng.uniform(0.3, 0.45)
        disc = (xx**2 + yy**2 < r**2) * rng.uniform(120, 200)
        blob = 80 * np.exp(-((xx - rng.uniform(-0.1, 0.1)) ** 2 + yy**2) / 0.01)
        slices.append(np.clip(disc + blob, 0, 255))
    return np.stack(slices)[:, None].astype(np.float32)


def test_fid_is_zero_for_identical_sets_and_grows_with_distortion(fid_cache):
    rng = np.random.default_rng(3)
    real = _brain_like_slices(rng)
    feats = fid_module.inception_features(real)
    assert feats.shape == (3, 2048)
    assert abs(fid_module.frechet_distance(feats, feats)) < 1e-6
    distances = []
    for sigma in (10.0, 40.0):
        noisy = np.clip(real + np.random.default_rng(4).normal(0, sigma, real.shape), 0, 255)
        distances.append(fid_module.frechet_distance(feats, fid_module.inception_features(noisy)))
    assert 0 < distances[0] < distances[1]
    pair = real[:2]
    assert build_metric("fid").compute(pair[:, 0], pair) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_agrees_with_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(5)
    for n in (10, 80):  # fewer samples than dimensions (low-rank path) and more (pytorch-fid's)
        a = rng.normal(size=(n, 24))
        b = 1.3 * rng.normal(size=(n + 3, 24)) + 0.2
        expected = calculate_frechet_distance(
            a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        )
        assert fid_module.frechet_distance(a, b) == pytest.approx(expected, rel=1e-5)


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="slices"):
        fid_module.fid_between(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="at least 2"):
        fid_module.frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))
