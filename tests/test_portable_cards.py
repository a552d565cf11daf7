"""Model cards travel (issue 16): no absolute local path, nor the folder they were made in, in a
generator's or a segmenter's card; the generator's run keeps its site folders in the run-local
``run.json`` for ``--resume``; the training data are recorded by content (issue 13), so overlap
is found after the training site has gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_runs import ummgat_request

from harmonix.cards import CARD_FILE, local_paths
from harmonix.errors import CheckpointError, InputError
from harmonix.models import checkpoints as ckpt

SPACING, SIZE = 6.0, 32


def _train(run, **options):
    """What ``harmonix train --data SITE --out RUN --backbone-option preset=tiny ...`` does."""
    from harmonix.plugins import build_trainer

    kw = dict(backbone="swin", backbone_options={"preset": "tiny"}, iters=1, batch=2, size=SIZE,
              spacing=SPACING, pairing="all", lam=False, device="cpu", checkpoint_every=1,
              sample_every=1000, progress=False)
    return build_trainer("ummgat").train(ummgat_request(run, **{**kw, **options}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-case site at 6 mm, a 1-iteration UMMGAT run on it and a 1-iteration unet2d with the
    run's preprocessing."""
    from harmonix.data.synth import synthesize_site
    from harmonix.harmonization.translate import preprocess_config_from_card
    from harmonix.models.checkpoints import load_generator
    from harmonix.segmentation import train_segmenter

    root = tmp_path_factory.mktemp("portable")
    site = synthesize_site(root / "brats", 3, center="brats", spacing=SPACING, workers=1)
    _train(root / "run", data=[site])
    like = preprocess_config_from_card(load_generator(root / "run"))  # --preprocess-like RUN
    train_segmenter(site, root / "seg", segmenter="unet2d", preprocess=like, iters=1,
                    options={"channels": (4, 8)}, progress=False)
    return SimpleNamespace(root=root, site=site, run=root / "run", seg=root / "seg")


def strings(value):
    """Every string in a JSON value (keys too)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def assert_portable(card: dict, root: Path) -> None:
    assert local_paths(card) == []
    here = {str(root), str(root.resolve()), str(Path.home())}
    leaks = [s for s in strings(card) if any(h in s for h in here)]
    assert leaks == []


def test_no_card_names_a_local_folder(trained):
    generator = json.loads((ckpt.resolve_checkpoint(trained.run) / CARD_FILE).read_text())
    segmenter = json.loads((trained.seg / CARD_FILE).read_text())
    for card in (generator, segmenter):
        assert_portable(card, trained.root)
    assert generator["data"]["sites"] == ["brats"]
    assert segmenter["training"]["data"] == ["brats"]
    for record in (generator["data"]["data_record"], segmenter["training"]["data_record"]):
        assert sorted(c["id"] for c in record["cases"]) == [
            f"BraTS19_SYN_{i:04d}" for i in (1, 2, 3)]
        assert {c["site"] for c in record["cases"]} == {"brats"}
        assert all(len(c["files"]) == 5 for c in record["cases"])  # 4 sequences + label
    # the absolute folders stay with the run, in a file that no package carries
    assert json.loads((trained.run / "run.json").read_text()) == {
        "sites": [str(trained.site.resolve())]}


def test_exported_package_carries_no_run_file(trained, tmp_path):
    import zipfile

    from harmonix.models.packages import export_model

    archive = export_model(trained.run, tmp_path / "gen.zip").archive
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        card = json.loads(zf.read(f"gen/{CARD_FILE}"))
    assert not any(n.endswith("run.json") for n in names)
    assert_portable(card, trained.root)
    assert card["data"]["data_record"]["cases"]


def test_resume_without_data_reads_the_run_file(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.run, run, ignore=shutil.ignore_patterns("cache"))
    _train(run, resume=True, iters=2)  # harmonix train --out RUN --resume --iters 2: no --data
    assert ckpt.latest_checkpoint(run).name == "iter_000002"
    card = ckpt.read_card(run)
    assert_portable(card, trained.root)
    assert card["data"]["data_record"] == ckpt.read_card(trained.run)["data"]["data_record"]

    # without run.json, a card naming its sites by name only cannot be resumed without --data
    (run / "run.json").unlink()
    with pytest.raises(InputError, match=r"by name only \(brats\); give them again with --data"):
        _train(run, resume=True, iters=3)
    assert ckpt.latest_checkpoint(run).name == "iter_000002"


def test_runs_made_before_run_json_resume_from_the_card(trained, tmp_path):
    from harmonix_ummgat.trainer import recorded_sites

    old = {"data": {"sites": [str(trained.site.resolve()), "brats"]}}
    assert recorded_sites(tmp_path, old) == [trained.site.resolve()]  # a bare name is no folder
    (tmp_path / "run.json").write_text(json.dumps({"sites": ["/elsewhere/brats"]}))
    assert recorded_sites(tmp_path, old) == [Path("/elsewhere/brats")]  # run.json comes first
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(CheckpointError, match="run.json"):
        recorded_sites(tmp_path, old)


def test_overlap_is_found_from_the_record_after_the_site_has_gone(trained, tmp_path,
                                                                  monkeypatch):
    from harmonix.api import evaluate
    from harmonix.data.fingerprint import case_record
    from harmonix.data.site import read_site
    from harmonix.evaluation.provenance import (
        OverlapError,
        check_overlap,
        generator_record,
        segmenter_record,
    )

    moved = tmp_path / "moved"
    shutil.copytree(trained.site, moved)  # the training site, under another name ...
    gone = trained.root / "brats-gone"
    trained.site.rename(gone)  # ... and the original folder no longer where the card said
    try:
        generator = ckpt.as_generator(trained.run, "cpu")
        record, how = generator_record(generator.card)
        assert how == "ids and file hashes recorded in its card" and len(record["cases"]) == 3
        test = [case_record(c, moved) for c in read_site(moved).cases]
        check = check_overlap(test, {"generator": generator})
        assert sorted(o.test_case for o in check.overlaps) == [
            f"BraTS19_SYN_{i:04d}" for i in (1, 2, 3)]
        assert {o.how for o in check.overlaps} == {"id and content"}

        with pytest.raises(OverlapError, match="in the generator's training data"):
            evaluate(moved, segmenter=trained.seg, generator=trained.run, out=tmp_path / "a",
                     scenarios="single", strategies="complete", fid_slices=0, umap=False,
                     overlays=0, progress=False)
        assert not (tmp_path / "a").exists()

        # a bare site name (what cards hold now) is never looked up in the current folder
        monkeypatch.chdir(tmp_path)
        record, how = segmenter_record({"training": {"data": ["moved"]}})
        assert record is None and "by folder name (moved)" in how
        assert generator_record({"data": {"sites": ["moved"]}})[0] is None
        # an absolute one (cards written before) still is
        record, how = generator_record({"data": {"sites": [str(moved)]}})
        assert len(record["cases"]) == 3 and "training sites its card names" in how
    finally:
        gone.rename(trained.site)


def test_evaluation_json_names_models_not_local_folders(trained, tmp_path, monkeypatch):
    from harmonix.api import evaluate
    from harmonix.evaluation.run import _describe
    from harmonix.models.installed import MODELS_ENV
    from harmonix.models.packages import export_model, install_model

    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "models"))
    install_model(export_model(trained.run, tmp_path / "gen-a.zip").archive)
    monkeypatch.chdir(tmp_path)
    assert _describe("gen-a") == "gen-a (installed model)"
    assert _describe(trained.run) == "run"

    other = tmp_path / "other"
    shutil.copytree(trained.site, other)
    result = evaluate(other, segmenter=trained.seg, generator="gen-a", out=tmp_path / "report",
                      scenarios="single", strategies="complete", fid_slices=0, umap=False,
                      overlays=0, allow_overlap=True, progress=False)
    settings = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert settings["generator"] == "gen-a (installed model)"
    assert settings["data"] == "other"
    assert_portable(settings, tmp_path)
    assert result.report.is_file()


def test_a_resumed_runs_record_keeps_what_it_was_trained_on(trained):
    from harmonix_ummgat.trainer import data_record

    assert data_record([], None) is None
    previous = {"version": 1, "cases": [{"id": "a", "files": {"t1": "sha256:1"}}]}
    assert data_record([trained.site], previous, same=True) is previous  # not read again
    merged = data_record([trained.site], previous)  # resumed on other data: trained on both
    assert [c["id"] for c in merged["cases"]] == ["a"] + [
        f"BraTS19_SYN_{i:04d}" for i in (1, 2, 3)]
    assert data_record([trained.site], merged) == merged  # no case twice


def test_merge_records_keeps_every_case_once_in_order():
    from harmonix.data.fingerprint import RECORD_VERSION, merge_records

    a = {"id": "a", "files": {"t1": "sha256:1"}}
    a_other = {"id": "a", "files": {"t1": "sha256:2"}}  # same id, other content: another case
    b = {"id": "b", "files": {}}
    first = {"version": RECORD_VERSION, "cases": [a, b]}
    merged = merge_records(first, None, {"cases": [dict(a), a_other]}, {})
    assert merged == {"version": RECORD_VERSION, "cases": [a, b, a_other]}
    assert merge_records(merged, first) == merged  # no case twice
    assert merge_records() == merge_records(None) == {"version": RECORD_VERSION, "cases": []}


def test_the_record_merge_has_one_home():
    root = Path(__file__).parents[1]
    sources = {p: p.read_text() for d in ("harmonix", "plugins") for p in (root / d).rglob("*.py")}
    merges = [p for p, s in sources.items() if "seen.add(key)" in s]
    assert merges == [root / "harmonix" / "data" / "fingerprint.py"]
