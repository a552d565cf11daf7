"""harmonize: complete cases on their own grids, flag synthetic volumes, never touch inputs."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from harmonix.api import harmonize
from harmonix.data.preprocess import PreprocessConfig, preprocess_case
from harmonix.harmonization.outputs import CASE_RECORD, STAGING_MARKER, card_hash, read_manifest
from harmonix.harmonization.translate import fill_missing, plan_translations, resolve_target
from harmonix.interfaces import Generator

SEQUENCES = ("t1", "t1ce", "t2", "flair")
CONFIG = PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 40))
BRATS_DOMAINS = tuple(f"brats/{s}" for s in SEQUENCES)


class InvertingGenerator(Generator):
    """A stand-in model: 255 - image, so every output voxel is traceable to its source voxel."""

    def __init__(self, domains=BRATS_DOMAINS, config=CONFIG):
        self.domains = tuple(domains)
        self.image_size = config.crop_shape[0]
        self.card = {"trainer": "fake", "preprocess": config.to_dict(), "domains": self.domains}
        self.calls: list[tuple[str, str, int, bool]] = []

    def translate(self, images, source, target, *, reference=None, seed=0):
        assert images.ndim == 4 and images.shape[1] == 1
        assert tuple(images.shape[2:]) == (self.image_size, self.image_size)
        self.calls.append((source, target, images.shape[0], reference is not None))
        return 255.0 - images

    def style_codes(self, images, domain, *, lesion=False):
        return torch.zeros(images.shape[0], 4)


# -- data ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built_in(tmp_path_factory) -> Path:
    """Built-in data at 4 mm (60x60x39, LPS, int16): 5 ``brats`` cases and 1 ``local`` case."""
    from harmonix.data.synth import synthesize_site

    root = tmp_path_factory.mktemp("built_in")
    synthesize_site(root / "brats", 5, center="brats", spacing=4.0, workers=1)
    synthesize_site(root / "local", 1, center="local", spacing=4.0, workers=1)
    return root


def copy_site(built_in: Path, name: str, dest: Path, n_cases: int | None = None) -> Path:
    shutil.copytree(built_in / name, dest)
    for case_dir in case_dirs(dest)[n_cases:] if n_cases else []:
        shutil.rmtree(case_dir)
    return dest


def case_dirs(site: Path) -> list[Path]:
    return sorted(p for p in site.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def drop(site: Path, case_id: str, sequences) -> None:
    for seq in sequences:
        (site / case_id / f"{case_id}_{seq}.nii.gz").unlink()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


DROPPED = {0: [], 1: ["t1ce", "flair"], 2: ["t1", "t1ce", "flair"], 3: ["t2"]}


@pytest.fixture
def site(built_in, tmp_path) -> Path:
    """Four built-in cases with different subsets of sequences deleted (``DROPPED``)."""
    root = copy_site(built_in, "brats", tmp_path / "site", n_cases=4)
    for index, case_dir in enumerate(case_dirs(root)):
        drop(root, case_dir.name, DROPPED[index])
    return root


@pytest.fixture
def fake_model(monkeypatch):
    """The pipeline's ``as_generator`` returns an :class:`InvertingGenerator` (for the CLI)."""
    import harmonix.harmonization.pipeline

    generator = InvertingGenerator()
    monkeypatch.setattr(harmonix.harmonization.pipeline,
                        "as_generator", lambda model, device="cpu": generator)
    return generator


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def no_leftovers(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith(".partial-")]
    assert not leftovers, leftovers


# -- planning --------------------------------------------------------------------------------------
def test_plan_uses_registry_priority_then_sources():
    target = resolve_target("brats")
    present = ["flair", "t2"]
    fills, aligns, errors = plan_translations(present, target, BRATS_DOMAINS, center="brats")
    assert not errors and not aligns
    assert {t.sequence: t.source for t in fills} == {"t1": "t2", "t1ce": "t2"}
    fills, _, _ = plan_translations(
        ["flair", "t2"], target, BRATS_DOMAINS, center="brats", sources=["flair"]
    )
    assert {t.source for t in fills} == {"flair"}
    _, _, errors = plan_translations(["t2"], target, BRATS_DOMAINS, center="brats", sources=["t1"])
    assert set(errors) == {"t1", "t1ce", "flair"} and "no usable source" in errors["t1"]


def test_plan_center_fallback_and_alignment():
    target = resolve_target("brats")
    domains = (*BRATS_DOMAINS, "local/t1", "local/t2")
    fills, aligns, errors = plan_translations(
        ["t1", "t2"], target, domains, center="local", align=True
    )
    assert not errors
    assert [(t.source_domain, t.target_domain) for t in aligns] == [
        ("local/t1", "brats/t1"), ("local/t2", "brats/t2")]
    assert {t.source_domain for t in fills} == {"local/t1"}
    # a center the model never saw: read as the target center's domain, with a note
    fills, _, _ = plan_translations(["t2"], target, BRATS_DOMAINS, center="elsewhere")
    assert {t.source_domain for t in fills} == {"brats/t2"}
    assert all("elsewhere" in t.note for t in fills)
    _, _, errors = plan_translations(["t2"], target, ("brats/t2", "brats/t1"), center="brats")
    assert "no domain brats/flair" in errors["flair"]


def test_fill_missing_translates_brain_slices_only(built_in):
    from harmonix.data.load import load_case
    from harmonix.data.site import read_site

    case = read_site(built_in / "brats").cases[0]
    prepared = preprocess_case(dict(load_case(case).images), CONFIG)
    generator = InvertingGenerator()
    filled = fill_missing(prepared, generator, "brats", present=["t2"], batch_size=7)
    assert set(filled) == {"t1", "t1ce", "flair"}
    in_brain = prepared.brain_mask.any(axis=(0, 1))
    assert 0 < in_brain.sum() < len(in_brain)  # the test needs slices without brain
    assert sum(n for *_, n, _ in generator.calls) == 3 * in_brain.sum()
    assert max(n for *_, n, _ in generator.calls) == 7
    assert {(src, dst) for src, dst, *_ in generator.calls} == {
        ("brats/t2", "brats/t1"), ("brats/t2", "brats/t1ce"), ("brats/t2", "brats/flair")}
    expected = (255 - prepared.volumes["t2"]) * prepared.brain_mask
    for volume in filled.values():
        assert volume.dtype == np.float32 and volume.shape == CONFIG.crop_shape
        np.testing.assert_allclose(volume, expected, atol=1e-4)  # slice order and axes kept
        assert not volume[:, :, ~in_brain].any()
    with pytest.raises(ValueError, match="no usable source"):
        fill_missing(prepared, generator, "brats", present=["t2"], sources=["t1"])


# -- the site --------------------------------------------------------------------------------------
def test_every_case_complete_on_its_own_grid_and_flagged(site, tmp_path):
    before = tree_digest(site)
    set_writable(site, False)  # a read-only input works
    out = tmp_path / "out"
    try:
        result = harmonize(site, target="brats", model=InvertingGenerator(), out=out)
    finally:
        set_writable(site, True)
    assert result.ok and result.count("done") == 4
    assert tree_digest(site) == before  # inputs untouched

    rows = {(r["case"], r["sequence"]): r for r in manifest_rows(out)}
    ids = [d.name for d in case_dirs(site)]
    generated = {(ids[i], seq) for i, seqs in DROPPED.items() for seq in seqs}
    assert {k for k, r in rows.items() if r["status"] == "generated"} == generated
    for case_id in ids:
        reference = nib.load(next((site / case_id).glob("*.nii.gz")))
        for seq in (*SEQUENCES, "seg"):
            path = out / case_id / f"{case_id}_{seq}.nii.gz"
            image = nib.load(path)
            assert image.shape == reference.shape
            np.testing.assert_allclose(image.affine, reference.affine, atol=1e-5)
            assert nib.aff2axcodes(image.affine) == nib.aff2axcodes(reference.affine)
            row = rows[(case_id, seq)]
            sidecar = path.with_name(f"{case_id}_{seq}.json")
            if (case_id, seq) in generated:
                assert row["status"] == "generated" and row["source"].startswith("brats/")
                assert b"SYNTHETIC" in image.header["descrip"].tobytes()
                # on the scale and dtype of the real sequence it was made from
                assert image.get_data_dtype() == reference.get_data_dtype() == np.int16
                meta = json.loads(sidecar.read_text())
                assert meta["synthetic"] is True and meta["target_domain"] == f"brats/{seq}"
                assert meta["source_sequences"] and len(meta["model_card_sha256"]) == 64
                assert meta["harmonix_version"] and meta["created"]
                scale = meta["intensity"]
                assert scale["scale"] == "input" and scale["dtype"] == "int16"
                assert scale["like_sequence"] == meta["source_sequences"][0]
                data = np.asarray(image.dataobj)
                inside = data != 0
                assert inside.any() and data.min() >= 0
                assert scale["low"] - 1 <= data[inside].min() <= data.max() <= scale["high"] + 1
            else:
                assert row["status"] == "real"
                assert digest(path) == digest(site / case_id / path.name)  # byte-identical
                assert not sidecar.exists()
                assert b"SYNTHETIC" not in image.header["descrip"].tobytes()
    assert rows[(ids[2], "t1")]["source"] == "brats/t2"  # only t2 was left
    assert rows[(ids[1], "flair")]["source"] == "brats/t1"  # t1 before t2 in the registry
    no_leftovers(out)


def test_odd_real_world_grid_is_kept(built_in, tmp_path):
    """Anisotropic 0.8x0.8x6 mm, LPS, int16, 256x256x25: outputs keep exactly that grid."""
    from nibabel.processing import resample_from_to

    source_case = case_dirs(built_in / "brats")[0]
    affine = np.diag([-0.8, -0.8, 6.0, 1.0])
    affine[:3, 3] = [102.0, 102.0, -72.0]
    site = tmp_path / "odd"
    (site / "odd001").mkdir(parents=True)
    for seq in ("t1", "t2"):
        image = nib.load(source_case / f"{source_case.name}_{seq}.nii.gz")
        moved = resample_from_to(image, ((256, 256, 25), affine), order=1)
        data = np.asarray(moved.dataobj).round().astype(np.int16)
        nib.Nifti1Image(data, affine).to_filename(site / "odd001" / f"odd001_{seq}.nii.gz")
    result = harmonize(site, target="brats", model=InvertingGenerator(), out=tmp_path / "out")
    assert result.ok, result.rows
    source = nib.load(site / "odd001" / "odd001_t1.nii.gz")
    assert nib.aff2axcodes(source.affine) == ("L", "P", "S")
    for seq in SEQUENCES:
        image = nib.load(tmp_path / "out" / "odd001" / f"odd001_{seq}.nii.gz")
        assert image.shape == (256, 256, 25)
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
        np.testing.assert_allclose(image.header.get_zooms(), (0.8, 0.8, 6.0), atol=1e-5)
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        assert image.get_data_dtype() == np.int16  # generated ones on their source's dtype
    flair = np.asarray(nib.load(tmp_path / "out" / "odd001" / "odd001_flair.nii.gz").dataobj)
    inside = np.asarray(source.dataobj) > 0
    # the generated volume lies where the brain is, on the input's own voxels
    assert flair[inside].mean() > 10 * max(flair[~inside].mean(), 1e-3)


def test_bad_inputs_fail_per_case_with_nonzero_exit(built_in, tmp_path, cli, fake_model):
    site = copy_site(built_in, "brats", tmp_path / "site")
    ids = [d.name for d in case_dirs(site)]
    drop(site, ids[0], ["flair"])
    truncated = site / ids[1] / f"{ids[1]}_t2.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:500])
    t1 = nib.load(site / ids[2] / f"{ids[2]}_t1.nii.gz")  # t1 on another grid than the rest
    t1_data = np.asarray(t1.dataobj)
    nib.Nifti1Image(t1_data[:50], t1.affine).to_filename(site / ids[2] / f"{ids[2]}_t1.nii.gz")
    for seq in SEQUENCES:  # only a sequence the model has no domain for: nothing to start from
        (site / ids[3] / f"{ids[3]}_{seq}.nii.gz").unlink()
    nib.Nifti1Image(t1_data, t1.affine).to_filename(
        site / ids[3] / f"{ids[3]}_swi.nii.gz")
    out = tmp_path / "out"
    result = cli("harmonize", site, "--target", "brats", "--model", tmp_path / "run", "--out", out)
    assert result.exit_code != 0
    rows = manifest_rows(out)
    messages = {r["case"]: r["message"] for r in rows if r["status"] == "failed"}
    assert set(messages) == {ids[1], ids[2], ids[3]}
    assert truncated.name in messages[ids[1]]
    assert f"{ids[2]}_t1.nii.gz" in messages[ids[2]] and "grid" in messages[ids[2]]
    assert "no usable source" in messages[ids[3]]
    for case_id in (ids[0], ids[4]):  # the good cases are done
        assert len(list((out / case_id).glob("*.nii.gz"))) == 5
    for case_id in ids[1:4]:
        assert not (out / case_id).exists() and case_id in result.output
    no_leftovers(out)


def test_rerun_skips_and_overwrite_regenerates(site, tmp_path):
    out = tmp_path / "out"
    generator = InvertingGenerator()

    def files():  # inode and mtime: a rewritten file differs in one of them (copies keep mtime)
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.nii.gz")}

    harmonize(site, target="brats", model=generator, out=out)
    first = files()
    generator.calls.clear()
    again = harmonize(site, target="brats", model=generator, out=out)
    assert again.count("skipped") == 4 and not generator.calls
    assert files() == first
    assert len(read_manifest(out / "manifest.csv")) == len(again.rows) > 0
    redo = harmonize(site, target="brats", model=generator, out=out, overwrite=True)
    assert redo.count("done") == 4 and generator.calls
    now = files()
    assert now.keys() == first.keys() and all(now[p] != first[p] for p in first)
    # other settings are another job: the cases are redone without --overwrite
    generator.calls.clear()
    other = harmonize(site, target="brats", model=generator, out=out, sources=["t2", "t1"])
    assert other.count("done") == 4 and generator.calls
    no_leftovers(out)


def test_interrupt_leaves_no_partial_file(site, tmp_path):
    out = tmp_path / "out"
    generator = InvertingGenerator()
    original = generator.translate
    ids = [d.name for d in case_dirs(site)]

    def interrupting(images, source, target, **kwargs):
        if len(generator.calls) == 3:  # inside the second generated volume of ids[1]
            raise KeyboardInterrupt
        return original(images, source, target, **kwargs)

    generator.translate = interrupting
    with pytest.raises(KeyboardInterrupt):
        harmonize(site, target="brats", model=generator, out=out, batch_size=16)
    no_leftovers(out)
    assert (out / ids[0] / CASE_RECORD).exists()
    assert not (out / ids[1]).exists()  # the interrupted case is absent, not half there
    assert {r["case"] for r in manifest_rows(out)} == {ids[0]}
    for path in out.rglob("*.nii.gz"):
        nib.load(path).get_fdata()  # every file that exists is whole
    # a run killed outright (no Ctrl-C handling) leaves its staging folder; the next run clears it
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".partial-{ids[1]}-{dead.pid}"
    (stale / "case").mkdir(parents=True)
    (stale / STAGING_MARKER).touch()
    foreign = out / f".partial-notes-{dead.pid}"  # named alike but not harmonix's: kept
    foreign.mkdir()
    generator.translate = original
    resumed = harmonize(site, target="brats", model=generator, out=out)
    assert resumed.count("skipped") == 1 and resumed.count("done") == 3
    assert list(out.glob(".partial-*")) == [foreign]


def test_align_keeps_originals_and_flags_aligned(built_in, tmp_path):
    site = copy_site(built_in, "local", tmp_path / "local")
    case_id = case_dirs(site)[0].name
    generator = InvertingGenerator(domains=(*BRATS_DOMAINS, "local/t1", "local/t2"))
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=generator, out=out, align=True)
    assert result.ok
    by_status = {(r.sequence, r.status): r for r in result.rows}
    assert {seq for seq, status in by_status if status == "aligned"} == {"t1", "t2"}
    assert {seq for seq, status in by_status if status == "generated"} == {"t1ce", "flair"}
    assert by_status[("flair", "generated")].source == "local/t1"
    assert {("local/t1", "brats/t1"), ("local/t2", "brats/t2")} <= {
        (src, dst) for src, dst, *_ in generator.calls}
    for seq in ("t1", "t2"):
        original = out / case_id / f"{case_id}_{seq}.nii.gz"
        assert digest(original) == digest(site / case_id / original.name)
        aligned = out / "_aligned" / case_id / f"{case_id}_{seq}.nii.gz"
        assert b"SYNTHETIC aligned" in nib.load(aligned).header["descrip"].tobytes()
        meta = json.loads(aligned.with_name(f"{case_id}_{seq}.json").read_text())
        assert meta["status"] == "aligned" and meta["source_domain"] == f"local/{seq}"
    from harmonix.data.site import read_site

    assert [c.id for c in read_site(out).cases] == [case_id]  # _aligned is not a case


def test_reference_guidance_and_center_fallback(built_in, tmp_path):
    """A site from a center the model does not know, styled by real BraTS references."""
    site = copy_site(built_in, "brats", tmp_path / "site", n_cases=1)
    case_id = case_dirs(site)[0].name
    drop(site, case_id, ["flair"])
    reference = copy_site(built_in, "brats", tmp_path / "reference", n_cases=1)
    generator = InvertingGenerator()
    out = tmp_path / "out"
    result = harmonize(site, target="brats", model=generator, out=out, reference=reference,
                            center="hospital-x")
    assert generator.calls and all(has_reference for *_, has_reference in generator.calls)
    meta = json.loads((out / case_id / f"{case_id}_flair.json").read_text())
    assert meta["guidance"] == "reference"
    row = next(r for r in result.rows if r.status == "generated")
    assert row.source == "brats/t1" and "hospital-x" in row.message


def test_generated_values_follow_the_model(site, tmp_path):
    """The fake model is 255 - source on the processed grid; back on the input grid the
    generated volume must be bright where the source is dark inside the brain and vice versa."""
    out = tmp_path / "out"
    harmonize(site, target="brats", model=InvertingGenerator(), out=out)
    case_id = case_dirs(site)[2].name
    t2 = np.asarray(nib.load(site / case_id / f"{case_id}_t2.nii.gz").dataobj, np.float32)
    t1 = np.asarray(nib.load(out / case_id / f"{case_id}_t1.nii.gz").dataobj)
    inside = t2 > 0
    assert np.corrcoef(t2[inside], t1[inside])[0, 1] < -0.5


def test_labels_converted_to_the_target_convention(tmp_path):
    from harmonix.data.synth import synthesize_site

    site = synthesize_site(tmp_path / "men", 1, center="brats-men", spacing=4.0, workers=1)
    case_id = case_dirs(site)[0].name
    (site / case_id / f"{case_id}-t2f.nii.gz").unlink()
    out = tmp_path / "out"
    import harmonix  # the documented entry point, callable although the submodule is imported

    result = harmonix.harmonize(site, target="brats", model=InvertingGenerator(), out=out)
    assert result.ok, result.rows
    original = np.asarray(nib.load(site / case_id / f"{case_id}-seg.nii.gz").dataobj)
    converted = np.asarray(nib.load(out / case_id / f"{case_id}_seg.nii.gz").dataobj)
    assert 3 in original and 4 not in original
    np.testing.assert_array_equal(converted, np.where(original == 3, 4, original))
    real = out / case_id / f"{case_id}_t1.nii.gz"  # BraTS 2019 names for target brats
    assert digest(real) == digest(site / case_id / f"{case_id}-t1n.nii.gz")
    assert (out / case_id / f"{case_id}_flair.json").exists()


def test_cli_sources_and_summary(site, tmp_path, cli, fake_model):
    out = tmp_path / "out"
    ids = [d.name for d in case_dirs(site)]
    result = cli("harmonize", site, "--model", tmp_path / "run", "--out", out, "--sources", "t2,t1")
    assert result.exit_code == 0, result.output
    assert "4 done, 0 skipped" in result.output and ids[2] in result.output
    sources = {(r["case"], r["source"]) for r in manifest_rows(out) if r["status"] == "generated"}
    # t2 first wherever it is present; ids[3] has no t2 and falls back to t1
    assert sources == {(ids[1], "brats/t2"), (ids[2], "brats/t2"), (ids[3], "brats/t1")}
    again = cli("harmonize", site, "--model", tmp_path / "run", "--out", out, "--sources", "t2,t1")
    assert again.exit_code == 0 and "0 done, 4 skipped" in again.output


# -- a real (tiny, untrained) UMMGAT checkpoint ----------------------------------------------------
def save_tiny_ummgat(run_dir: Path) -> Path:
    """An untrained tiny UMMGAT saved the way the ummgat trainer saves its checkpoints."""
    from harmonix.models.checkpoints import save_checkpoint
    from harmonix_ummgat.networks import ModelConfig
    from harmonix_ummgat.recipe import Recipe
    from harmonix_ummgat.solver import Solver

    torch.manual_seed(0)
    config = ModelConfig(
        domains=(*BRATS_DOMAINS, "local/t1", "local/t2"), image_size=CONFIG.crop_shape[0],
        backbone="swin", backbone_options={"preset": "tiny"}, style_dim=16, latent_dim=8,
        encoder_dim=8, encoder_max_dim=32, mapper_dim=32,
    )
    solver = Solver(config, Recipe(iters=1, batch=2))
    card = {"trainer": "ummgat", "model": config.to_dict(), "domains": list(config.domains),
            "preprocessing": CONFIG.to_dict()}
    save_checkpoint(run_dir, 1, tensors=solver.state_tensors(), card=card)
    return run_dir


def test_real_ummgat_checkpoint_end_to_end(built_in, tmp_path, cli):
    pytest.importorskip("harmonix_ummgat")
    run = save_tiny_ummgat(tmp_path / "run")
    site = copy_site(built_in, "local", tmp_path / "local")
    case_id = case_dirs(site)[0].name
    out = tmp_path / "out"
    result = cli("harmonize", site, "--target", "brats", "--model", run, "--out", out,
                 "--align", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    reference = nib.load(site / case_id / f"{case_id}_t1.nii.gz")
    statuses = {(r["sequence"], r["status"]) for r in manifest_rows(out)}
    assert {("t1ce", "generated"), ("flair", "generated"), ("t1", "aligned")} <= statuses
    for path in [*(out / case_id).glob("*.nii.gz"), *(out / "_aligned").rglob("*.nii.gz")]:
        image = nib.load(path)
        assert image.shape == reference.shape
        np.testing.assert_allclose(image.affine, reference.affine, atol=1e-5)
    flair = nib.load(out / case_id / f"{case_id}_flair.nii.gz")
    data = np.asarray(flair.dataobj)
    meta = json.loads((out / case_id / f"{case_id}_flair.json").read_text())
    low, high = meta["intensity"]["low"], meta["intensity"]["high"]
    assert data.dtype == np.int16 and data.std() > 0
    assert data.min() >= 0 and data[data != 0].min() >= low - 1 and data.max() <= high + 1
    card = json.loads(next(run.rglob("model_card.json")).read_text())
    assert meta["model_card_sha256"] == card_hash(card)


def test_cli_ctrl_c_exits_130_with_manifest(site, tmp_path, cli, fake_model):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    fake_model.translate = interrupted
    out = tmp_path / "out"
    result = cli("harmonize", site, "--model", tmp_path / "run", "--out", out)
    assert result.exit_code == 130 and "interrupted" in result.output
    first = case_dirs(site)[0].name  # complete without generation, so done before Ctrl-C
    assert {r["case"] for r in manifest_rows(out)} == {first}
    no_leftovers(out)


def test_a_field_of_view_that_cuts_the_brain_fails_or_is_recorded(site, tmp_path):
    """A model whose crop holds only part of the brain: the case fails naming the field of view,
    or with a lower --min-coverage is written with its coverage in manifest and sidecar."""
    narrow = PreprocessConfig(spacing=4.0, crop_shape=(24, 24, 40))  # 96 mm across
    generator = InvertingGenerator(config=narrow)
    failed = harmonize(site, target="brats", model=generator, out=tmp_path / "strict")
    incomplete = [c for c in failed.cases if c.status != "done"]
    assert incomplete and all(c.status == "failed" for c in incomplete)
    message = incomplete[0].rows[0].message
    assert "field of view (96x96x160 mm" in message and "--min-coverage" in message
    assert not (tmp_path / "strict" / incomplete[0].case).exists()

    loose = harmonize(site, target="brats", model=generator, out=tmp_path / "loose",
                           min_coverage=0.0)
    assert loose.ok
    generated = [r for r in read_manifest(loose.manifest) if r.status == "generated"]
    coverages = [float(r.coverage) for r in generated]
    assert generated and all(0 < c < 0.99 for c in coverages)
    assert all("field of view" in r.message for r in generated)
    sidecar = json.loads((tmp_path / "loose" / generated[0].file).with_suffix("").with_suffix(
        ".json").read_text())
    assert sidecar["brain_coverage"] == pytest.approx(coverages[0], abs=1e-4)


def test_full_field_of_view_records_full_coverage(site, tmp_path):
    result = harmonize(site, target="brats", model=InvertingGenerator(), out=tmp_path / "o")
    generated = [r for r in read_manifest(result.manifest) if r.status == "generated"]
    assert generated and all(float(r.coverage) >= 0.99 for r in generated)
    assert not any("field of view" in r.message for r in generated)


def test_own_case_folder_is_replaced_but_a_foreign_file_blocks_it(site, tmp_path):
    out = tmp_path / "out"
    harmonize(site, target="brats", model=InvertingGenerator(), out=out)
    case = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("_"))[0]
    redone = harmonize(site, target="brats", model=InvertingGenerator(), out=out,
                            overwrite=True)
    assert redone.ok and redone.count("done") == 4
    (case / "mine.txt").write_text("keep")
    blocked = harmonize(site, target="brats", model=InvertingGenerator(), out=out,
                             overwrite=True)
    assert blocked.failed == [case.name]
    assert "mine.txt was not written by harmonix" in blocked.cases[0].rows[0].message
    assert (case / "mine.txt").read_text() == "keep" and (case / CASE_RECORD).exists()
