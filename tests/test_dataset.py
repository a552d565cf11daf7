"""Slice cache, unpaired / all datasets, flips, determinism and reference sampling on tiny sites."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from harmonix.data.cache import CachedCase, SliceCache, valid_slices
from harmonix.data.dataset import (
    ReferenceSampler,
    SliceDataset,
    make_training_data,
    unpaired_assignment,
)
from harmonix.data.preprocess import GridRecord, PreparedCase, PreprocessConfig

CONFIG = PreprocessConfig(spacing=4.0, crop_shape=(32, 32, 24))
SHAPE = (40, 40, 30)  # 3 mm voxels
CONTRASTS = {"t1": (120, 60), "t1ce": (130, 250), "t2": (60, 200), "flair": (80, 230)}
BRATS_DOMAINS = [f"brats/{s}" for s in ("flair", "t1", "t1ce", "t2")]
LOCAL_DOMAINS = ["local/t1", "local/t2"]


def write_case(folder, case_id, sequences, *, seed, label=True, nan=False):
    """A textured ellipsoid brain with a lesion, BraTS 2019 file names, 3 mm voxels."""
    rng = np.random.default_rng(seed)
    affine = np.diag([-3.0, -3.0, 3.0, 1.0])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1) * 3.0
    centre = np.array([60.0, 60.0, 45.0]) + rng.uniform(-6, 6, 3)
    brain = ((((ijk - centre) / [42, 48, 30]) ** 2).sum(-1)) < 1
    lesion = brain & (np.linalg.norm(ijk - centre - rng.uniform(-12, 12, 3), axis=-1) < 10)
    texture = np.sin(ijk[..., 0] / 7) * np.cos(ijk[..., 1] / 9)
    (folder / case_id).mkdir(parents=True)
    for name in sequences:
        tissue, tumour = CONTRASTS[name]
        data = np.where(brain, tissue * (1 + 0.3 * texture), 0)
        data = np.where(lesion, tumour, data).astype(np.float32)
        if nan:
            data[0, 0, 0] = np.nan
        nib.save(nib.Nifti1Image(data, affine), folder / case_id / f"{case_id}_{name}.nii.gz")
    if label:
        seg = np.where(lesion, 2, 0).astype(np.int16)
        nib.save(nib.Nifti1Image(seg, affine), folder / case_id / f"{case_id}_seg.nii.gz")


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    brats, local = root / "brats", root / "hospital"
    for n in range(5):
        write_case(brats, f"B{n}", CONTRASTS, seed=n)
    for n in range(3):
        write_case(local, f"L{n}", ("t1", "t2"), seed=10 + n, label=False)
    local.mkdir(exist_ok=True)
    (local / "harmonix-site.json").write_text(json.dumps({"center": "local"}))
    write_case(local, "L8", ("t1", "t2"), seed=20, label=False, nan=True)  # NaN voxels
    write_case(local, "L9", ("t1",), seed=21, label=False)
    (local / "L9" / "L9_mystery.nii.gz").write_bytes((local / "L9" / "L9_t1.nii.gz").read_bytes())
    return [brats, local]


@pytest.fixture(scope="module")
def cache(sites, tmp_path_factory):
    with pytest.warns(UserWarning, match="skipped 2 case") as caught:
        built = SliceCache.build(sites, tmp_path_factory.mktemp("cache"), CONFIG, progress=False)
    message = str(caught[0].message)
    assert "local/L8" in message and "NaN" in message
    assert "local/L9" in message and "mystery" in message
    return built


def test_cache_contents(cache):
    assert cache.domains == BRATS_DOMAINS + LOCAL_DOMAINS
    assert sorted(c.patient for c in cache.cases) == [
        *(f"brats/B{n}" for n in range(5)),
        *(f"local/L{n}" for n in range(3)),
    ]
    for index, case in enumerate(cache.cases):
        for sequence in case.sequences:
            slices = cache.slices(index, sequence)
            assert isinstance(slices, np.memmap)  # opened with mmap, not read
            assert slices.shape == (len(case.slices), 32, 32)
        lesions = cache.lesions(index)
        assert (lesions is None) == (case.center == "local")
        if lesions is not None:
            assert set(np.unique(lesions)) == {0, 1}


def test_unpaired_gives_each_patient_one_sequence_and_covers_every_domain(cache):
    patients = {c.patient for c in cache.cases}
    for seed in range(8):
        dataset = SliceDataset(cache, seed=seed)
        assignment = dataset.assignment
        assert set(assignment) == patients
        assert all(len(sequences) == 1 for sequences in assignment.values())
        assert dataset.domains == BRATS_DOMAINS + LOCAL_DOMAINS
        assert set(dataset.item_domains.tolist()) == set(range(len(dataset.domains)))
        counts = dataset.summary()
        assert sum(c["patients"] for c in counts.values()) == len(patients)
        assert min(c["patients"] for c in counts.values()) >= 1
    # the draw depends on the seed
    draws = {json.dumps(SliceDataset(cache, seed=s).assignment, sort_keys=True) for s in range(8)}
    assert len(draws) > 1


def test_unpaired_rebalances_along_a_chain():
    """P0 has only a, P1 a or b, P2 b or c: the only cover is P0 a, P1 b, P2 c."""
    cases = [
        CachedCase("x", "P0", {"a": ""}, None, (0,)),
        CachedCase("x", "P1", {"a": "", "b": ""}, None, (0,)),
        CachedCase("x", "P2", {"b": "", "c": ""}, None, (0,)),
        CachedCase("y", "Q0", {"a": ""}, None, (0,)),
    ]
    for seed in range(20):
        assert unpaired_assignment(cases, seed)[:3] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="'x/c'.*pairing='all'"):
        unpaired_assignment(cases[:2] + [CachedCase("x", "P2", {"c": "", "d": ""}, None, (0,))], 0)


def test_all_mode_uses_every_sequence(cache):
    dataset = SliceDataset(cache, pairing="all")
    assert dataset.assignment == {c.patient: sorted(c.sequences) for c in cache.cases}
    assert len(dataset) == sum(len(c.slices) * len(c.sequences) for c in cache.cases)
    assert np.bincount(dataset.item_domains).min() > 0
    with pytest.raises(ValueError, match="pairing"):
        SliceDataset(cache, pairing="paired")


def test_slices_without_brain_are_skipped(cache):
    dataset = SliceDataset(cache, pairing="all", flip=False)
    assert all(len(c.slices) < CONFIG.crop_shape[2] for c in cache.cases)
    for index in range(0, len(dataset), 7):
        image = dataset[index]["image"]
        assert (image > 0).float().mean() >= 0.01
    # exactly the slices with at least 1 % brain
    mask = np.zeros((20, 20, 10), bool)
    mask[5:15, 5:15, 3:7] = True
    mask[10, 10, 8] = True  # a single voxel is not a brain slice
    assert valid_slices(mask) == [3, 4, 5, 6]


def test_flips_flip_image_and_lesion_together(cache):
    dataset = SliceDataset(cache, pairing="all", seed=3)
    flipped = [i for i in range(len(dataset)) if dataset.flipped(i)]
    assert 0.3 < len(flipped) / len(dataset) < 0.7
    with_lesion = [i for i in flipped if dataset.load(i)["lesion"].sum() > 0]
    assert with_lesion
    for index in with_lesion[:5]:
        plain, item = dataset.load(index), dataset[index]
        assert torch.equal(item["image"], plain["image"].flip(1))
        assert torch.equal(item["lesion"], plain["lesion"].flip(1))
        assert not torch.equal(item["lesion"], plain["lesion"])
    unflipped = next(i for i in range(len(dataset)) if not dataset.flipped(i))
    assert torch.equal(dataset[unflipped]["image"], dataset.load(unflipped)["image"])
    assert not any(SliceDataset(cache, flip=False).flipped(i) for i in range(50))


def test_items_and_determinism(cache):
    first, second = SliceDataset(cache, seed=5), SliceDataset(cache, seed=5)
    assert first.assignment == second.assignment and len(first) == len(second)
    for index in range(0, len(first), 5):
        a, b = first[index], second[index]
        assert torch.equal(a["image"], b["image"]) and a["domain"] == b["domain"]
    item = first[0]
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 255
    assert item["lesion"].shape == (1, 32, 32) and set(item["lesion"].unique().tolist()) <= {0, 1}
    # another epoch flips other items
    before = [first.flipped(i) for i in range(len(first))]
    first.set_epoch(1)
    assert [first.flipped(i) for i in range(len(first))] != before
    batch = next(iter(torch.utils.data.DataLoader(second, batch_size=4)))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["domain"].shape == (4,)


def test_reference_sampler_returns_slices_of_the_requested_domain(cache):
    dataset = SliceDataset(cache, pairing="all", seed=1)
    sampler = ReferenceSampler(dataset, seed=7)
    wanted = torch.tensor([0, 2, 2, 5])
    state = sampler.state_dict()
    ref1, ref2, lesion1, lesion2 = sampler.sample(wanted)
    for tensor in (ref1, ref2, lesion1, lesion2):
        assert tensor.shape == (4, 1, 32, 32)
    for row, domain in enumerate(wanted.tolist()):
        pool = np.flatnonzero(dataset.item_domains == domain)
        candidates = [dataset.load(int(i), flip=f)["image"] for i in pool for f in (False, True)]
        for ref in (ref1, ref2):
            assert any(torch.equal(ref[row], c) for c in candidates), (row, domain)
        others = np.flatnonzero(dataset.item_domains != domain)[:40]
        assert not any(torch.equal(ref1[row], dataset.load(int(i))["image"]) for i in others)
    assert lesion1[3].sum() == 0  # local/t2 has no label maps
    sampler.load_state_dict(state)  # resuming replays the same draws
    again = sampler.sample(wanted)
    assert torch.equal(again[0], ref1) and torch.equal(again[3], lesion2)
    assert not torch.equal(ReferenceSampler(dataset, seed=8).sample(wanted)[0], ref1)


def test_cache_is_reused_without_reading_nifti(sites, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    with pytest.warns(UserWarning, match="skipped"):
        first = make_training_data(sites, cache_dir, CONFIG, seed=0, progress=False)
    index_time = (cache_dir / "index.json").stat().st_mtime_ns

    def no_nifti(*args, **kwargs):
        raise AssertionError("NIfTI was read again")

    with monkeypatch.context() as patch:
        patch.setattr(nib, "load", no_nifti)
        with pytest.warns(UserWarning, match="skipped 2 case"):  # reported again, from the index
            second = make_training_data(sites, cache_dir, CONFIG, seed=0, progress=False)
        assert second.cache.key == first.cache.key
        assert (cache_dir / "index.json").stat().st_mtime_ns == index_time
        assert torch.equal(second[3]["image"], first[3]["image"])
        # a changed config is a new key: it would have to read the NIfTI files again
        with pytest.raises(AssertionError, match="NIfTI was read again"):
            make_training_data(sites, cache_dir, PreprocessConfig(4.0, (28, 28, 24)))

    # changed inputs rebuild: a case removed
    removed = sites[1] / "L9"
    backup = tmp_path / "L9"
    removed.rename(backup)
    try:
        with pytest.warns(UserWarning, match="skipped 1 case"):
            third = make_training_data(sites, cache_dir, CONFIG, progress=False)
    finally:
        backup.rename(removed)
    assert third.cache.key != first.cache.key
    assert len(list(cache_dir.glob("data-*"))) == 1  # the old arrays are gone


def test_build_from_prepared_cases(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16, 8), bool)
    mask[4:12, 4:12, 2:6] = True
    record = GridRecord((16, 16, 8), np.eye(4), (16, 16, 8), np.eye(4))

    def case(name):
        volumes = {
            s: np.where(mask, rng.uniform(1, 255, mask.shape), 0).astype(np.float32)
            for s in ("t1", "t2")
        }
        return PreparedCase(name, volumes, mask, None, record)

    config = PreprocessConfig(crop_shape=(16, 16, 8))
    prepared = {"a": [case("c1"), case("c2")], "b": [case("c3")]}
    built = SliceCache.build(prepared, tmp_path, config, progress=False)
    assert built.domains == ["a/t1", "a/t2", "b/t1", "b/t2"]
    assert built.cases[0].slices == (2, 3, 4, 5)
    expected = prepared["a"][0].volumes["t2"][:, :, 3]
    np.testing.assert_allclose(built.slices(0, "t2")[1], expected, atol=0.07)  # float16
    assert SliceCache.build(prepared, tmp_path, config, progress=False).key == built.key
    with pytest.raises(ValueError, match="'b/t[12]'"):
        SliceDataset(built)  # one patient cannot cover two domains
    assert len(SliceDataset(built, pairing="all")) == 3 * 2 * 4
    with pytest.raises(ValueError, match="expected"):
        SliceCache.build(prepared, tmp_path / "other", PreprocessConfig(), progress=False)


def test_cache_inside_a_site_folder_is_reused(sites, tmp_path, monkeypatch):
    site = tmp_path / "brats"
    shutil.copytree(sites[0], site)
    first = make_training_data(site, site / "cache", CONFIG, progress=False)
    monkeypatch.setattr(nib, "load", lambda *a, **k: pytest.fail("NIfTI was read again"))
    second = make_training_data(site, site / "cache", CONFIG, progress=False)
    assert second.cache.key == first.cache.key and second.domains == BRATS_DOMAINS
