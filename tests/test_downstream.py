"""Downstream of harmonize (issue 23): synthetic inputs seen and refused, --align writes a
target-domain site, one field-of-view check for harmonize, segment predict and train, training
time recorded, model provenance (card hashes, --report check, URL install, hidden names)."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import json
import shutil
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_harmonize import BRATS_DOMAINS, InvertingGenerator
from tiny_runs import SIZE, SPACING, train_tiny_run, train_tiny_segmenter

from harmonix.api import harmonize
from harmonix.data.preprocess import PreprocessConfig
from harmonix.data.provenance import file_flag, refuse_synthetic, synthetic_inputs
from harmonix.data.site import read_site
from harmonix.errors import CheckpointError, InputError
from harmonix.models.installed import MODELS_ENV

SEQUENCES = ("t1", "t1ce", "t2", "flair")


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 3-case built-in site at 6 mm, its harmonized copy (t2 and flair of case 1 generated),
    a 1-iteration UMMGAT run and a 1-iteration unet2d segmenter, a 1-case ``local`` site."""
    from harmonix.cli import _load_commands
    from harmonix.data.synth import synthesize_site

    root = tmp_path_factory.mktemp("downstream")
    site = synthesize_site(root / "brats", 3, center="brats", spacing=SPACING, workers=1)
    local = synthesize_site(root / "local", 1, center="local", spacing=SPACING, workers=1)
    _load_commands()
    run, seg = root / "run", root / "seg"
    train_tiny_run(site, run)
    train_tiny_segmenter(site, seg, like=run)
    partial = root / "partial"
    shutil.copytree(site, partial)
    first = sorted(p for p in partial.iterdir() if p.is_dir())[0]
    for seq in ("t2", "flair"):
        (first / f"{first.name}_{seq}.nii.gz").unlink()
    config = PreprocessConfig(spacing=SPACING, crop_shape=(SIZE, SIZE, 32))
    harmonized = root / "harmonized"
    assert harmonize(partial, target="brats", model=InvertingGenerator(config=config),
                     out=harmonized).ok
    return SimpleNamespace(root=root, site=site, local=local, run=run, seg=seg,
                           harmonized=harmonized, case=first.name)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models-home"
    monkeypatch.setenv(MODELS_ENV, str(folder))
    return folder


# -- 1. synthetic inputs ---------------------------------------------------------------------------
def test_synthetic_inputs_found_by_header_sidecar_and_manifest(built, tmp_path):
    found = synthetic_inputs(read_site(built.harmonized))
    assert found == {built.case: {"t2": "header", "flair": "header"}}
    assert synthetic_inputs(read_site(built.site)) == {}
    real = built.site / built.case / f"{built.case}_t1.nii.gz"
    # the sidecar alone, and the manifest alone, are enough
    copy = tmp_path / "c" / "c_t1.nii.gz"
    copy.parent.mkdir()
    shutil.copy(real, copy)
    assert file_flag(copy) == ""
    copy.with_name("c_t1.json").write_text(json.dumps({"synthetic": True}))
    assert file_flag(copy) == "sidecar"
    assert file_flag(copy, {copy.resolve(): "generated"}) == "sidecar"
    copy.with_name("c_t1.json").unlink()
    assert file_flag(copy, {copy.resolve(): "generated"}) == "manifest"


def test_train_and_segment_train_refuse_synthetic_inputs(built, tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", "--data", built.harmonized, "--out", run, "--iters", 1,
                 "--size", SIZE, "--spacing", SPACING, "--backbone-option", "preset=tiny")
    assert result.exit_code == 1
    assert "synthetic" in result.output and "--allow-synthetic" in result.output
    assert built.case in result.output and "artefacts" in result.output
    assert not (run / "cache").exists()  # refused before anything is written
    result = cli("segment", "train", "--data", built.harmonized, "--out", tmp_path / "seg",
                 "--segmenter", "unet2d", "--iters", 1, "--preprocess-like", built.run)
    assert result.exit_code == 1 and "--allow-synthetic" in result.output
    refuse_synthetic([built.harmonized], allow=True)  # --allow-synthetic lifts it
    with pytest.raises(InputError, match="will not train a segmenter"):
        refuse_synthetic([built.harmonized], what="train a segmenter")


def test_segment_train_allow_synthetic_is_recorded(built, tmp_path):
    from harmonix.segmentation import default_preprocess, train_segmenter

    out = train_segmenter(built.harmonized, tmp_path / "seg", segmenter="unet2d", iters=1,
                          preprocess=default_preprocess(SPACING, SIZE), progress=False,
                          options={"channels": (4, 8)}, allow_synthetic=True)
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["allow_synthetic"] is True


def test_inspect_shows_synthetic_inputs(built, cli):
    result = cli("inspect", built.harmonized, "--quick")
    assert "synthetic inputs" in result.output and built.case in result.output
    document = json.loads(cli("inspect", built.harmonized, "--quick", "--json").stdout)
    by_case = {c["id"]: c["synthetic"] for c in document["cases"]}
    assert by_case[built.case] == {"t2": "header", "flair": "header"}
    assert all(not v for k, v in by_case.items() if k != built.case)


def test_segment_predict_records_synthetic_inputs(built, tmp_path, cli):
    out = tmp_path / "pred"
    result = cli("segment", "predict", built.harmonized, "--model", built.seg, "--out", out)
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert rows[built.case]["synthetic_inputs"] == "t2,flair"
    assert all(not r["synthetic_inputs"] for c, r in rows.items() if c != built.case)
    sidecar = json.loads((out / built.case / f"{built.case}_seg.json").read_text())
    assert sidecar["synthetic_inputs"] == ["t2", "flair"] and sidecar["synthetic"] is False
    assert 0.9 <= sidecar["coverage"] <= 1.0


def test_evaluation_records_card_hashes_and_synthetic_inputs(built):
    from harmonix.evaluation.run import _provenance
    from harmonix.harmonization.outputs import card_hash

    seg_card = {"segmenter": "unet2d", "files": {"model.safetensors": {"sha256": "s" * 64}}}
    gen_card = {"trainer": "ummgat", "files": {"model.safetensors": {"sha256": "g" * 64}}}
    run = SimpleNamespace(seg=SimpleNamespace(card=seg_card), fillers={
        "lam": SimpleNamespace(generator=SimpleNamespace(card=gen_card))})
    test = SimpleNamespace(site=read_site(built.harmonized, check_voxels=False))
    record = _provenance(run, test)
    assert record["segmenter_card_sha256"] == card_hash(seg_card)
    assert record["generator_card_sha256"] == {"lam": card_hash(gen_card)}
    assert record["segmenter_weights_sha256"] == "s" * 64
    assert record["generator_weights_sha256"] == {"lam": "g" * 64}
    assert record["synthetic_inputs"] == {built.case: {"t2": "header", "flair": "header"}}


# -- 2. --align writes a target-domain site --------------------------------------------------------
@pytest.mark.parametrize("merge", [False, True])
def test_align_output_reads_back_as_the_target_center(built, tmp_path, cli, merge):
    config = PreprocessConfig(spacing=SPACING, crop_shape=(SIZE, SIZE, 32))
    generator = InvertingGenerator(domains=(*BRATS_DOMAINS, "local/t1", "local/t2",
                                            "local/t1ce", "local/flair"), config=config)
    out = tmp_path / "out"
    assert harmonize(built.local, target="brats", model=generator, out=out, align=True,
                     merge_aligned=merge).ok
    site_file = json.loads((out / "harmonix-site.json").read_text())
    assert site_file["center"] == ("brats" if merge else "local")
    assert read_site(out).center == ("brats" if merge else "local")
    if not merge:
        aligned = read_site(out / "_aligned")
        assert aligned.center == "brats" and aligned.ok
        assert cli("inspect", out / "_aligned", "--quick").exit_code == 0
    assert harmonize(built.local, target="brats", model=generator, out=out, align=True,
                     merge_aligned=merge).ok  # a rerun accepts its own site files


# -- 3. one field-of-view check; segment predict --json/--shard/--overwrite/exit codes -------------
def test_segment_predict_coverage_json_shard_overwrite_and_exit_codes(built, tmp_path, cli):
    out = tmp_path / "pred"
    result = cli("segment", "predict", built.site, "--model", built.seg, "--out", out,
                 "--shard", "1/2", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["command"] == "segment predict" and document["shard"] == "1/2"
    assert document["counts"] == {"cases": 2, "done": 2, "skipped": 0, "failed": 0}
    assert (out / "predictions.shard-1-of-2.csv").is_file()
    assert all(c["coverage"] > 0.9 for c in document["cases"])
    again = json.loads(cli("segment", "predict", built.site, "--model", built.seg, "--out", out,
                           "--shard", "1/2", "--json").stdout)
    assert again["counts"]["skipped"] == 2
    redo = json.loads(cli("segment", "predict", built.site, "--model", built.seg, "--out", out,
                          "--shard", "1/2", "--json", "--overwrite").stdout)
    assert redo["counts"]["done"] == 2
    # the same check and message as harmonize: every case below --min-coverage fails -> 1
    result = cli("segment", "predict", built.site, "--model", built.seg, "--out",
                 tmp_path / "strict", "--min-coverage", "1.0", "--overwrite")
    if "field of view" in result.output:  # coverage < 0.99 on built-in cases at 6 mm
        assert result.exit_code in (1, 3) and "--min-coverage" in result.output
    # some cases fail (a case lacks t2): exit 3, the others written
    partial = tmp_path / "partial"
    shutil.copytree(built.site, partial)
    (partial / built.case / f"{built.case}_t2.nii.gz").unlink()
    result = cli("segment", "predict", partial, "--model", built.seg, "--out", tmp_path / "p3")
    assert result.exit_code == 3, result.output
    assert "harmonize" in result.output


def test_coverage_message_is_shared(built):
    from harmonix.data.preprocess import preprocess_case
    from harmonix.harmonization.coverage import CoverageError, check_coverage

    small = PreprocessConfig(spacing=4.0, crop_shape=(16, 16, 16))
    prepared = preprocess_case(read_site(built.site).cases[0], small)
    with pytest.raises(CoverageError, match=r"field of view \(64x64x64 mm.*--min-coverage"):
        check_coverage(prepared, small, 0.9)


# -- 4. train checks its settings ------------------------------------------------------------------
def test_train_refuses_a_crop_that_cuts_the_brain(built, tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", "--data", built.site, "--out", run, "--iters", 1, "--size", 16,
                 "--spacing", 4, "--backbone-option", "preset=tiny", "--device", "cpu")
    assert result.exit_code == 1
    assert "training crop (64x64" in result.output and "--size 48" in result.output
    assert not (run / "cache").exists()


def test_train_prints_its_time_and_the_card_records_it(built, tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", "--data", built.site, "--out", run, "--iters", 2, "--batch-size", 2,
                 "--size", SIZE, "--spacing", SPACING, "--pairing", "all", "--no-lam",
                 "--device", "cpu", "--checkpoint-every", 2, "--sample-every", 1000,
                 "--backbone-option", "preset=tiny")
    assert result.exit_code == 0, result.output
    assert "s per iteration; 2 iterations take about" in result.output
    card = json.loads((run / "checkpoints" / "iter_000002" / "model_card.json").read_text())
    assert card["training"]["iterations"] == 2 and card["training"]["seconds"] > 0
    assert card["training"]["seconds_per_iteration"] > 0


def test_an_impractical_run_is_warned_about(monkeypatch):
    import harmonix_ummgat.loop as loop

    assert loop.duration(30) == "30.0 s" and loop.duration(591 * 20000).endswith("days")
    fake = SimpleNamespace(main=True, show_progress=False, card={"training": {}},
                           _started=0.0, solver=SimpleNamespace(
                               device=SimpleNamespace(type="cpu"),
                               config=SimpleNamespace(preset="paper")))
    monkeypatch.setattr(loop.time, "perf_counter", lambda: 591.0 * 4)
    with pytest.warns(RuntimeWarning, match="impractical.*--preset fast or small"):
        loop.Loop._estimate(fake, 4, 0, 20000, 591.0)
    assert fake.card["training"]["seconds_per_iteration"] == pytest.approx(591.0)


def test_the_paper_preset_on_a_cpu_is_called_impractical_before_training():
    from harmonix_ummgat.trainer import impractical

    assert "impractical" in impractical("paper", "cpu") and "--preset fast" in impractical(
        "paper", "mps")
    assert impractical("paper", "cuda:0") is None and impractical("small", "cpu") is None


def test_export_warns_about_a_short_training(built, tmp_path, cli):
    result = cli("models", "export", built.run, tmp_path / "m.zip")
    assert result.exit_code == 0
    assert "trained for 1 iteration(s)" in result.output and "fewer than 1000" in result.output


# -- 5. model provenance ---------------------------------------------------------------------------
def test_export_report_of_another_model_is_refused(built, tmp_path, cli):
    from harmonix.models.checkpoints import read_card

    card = read_card(built.run)
    mine = card["files"]["model.safetensors"]["sha256"]
    report = tmp_path / "report"
    report.mkdir()
    from harmonix.evaluation.results import COLUMNS

    (report / "results.csv").write_text(",".join(COLUMNS) + "\n")
    for weights, ok in (("0" * 64, False), (mine, True)):
        (report / "evaluation.json").write_text(json.dumps({
            "data": "test", "cases": [], "generator": "ummgat",
            "generator_weights_sha256": {"lam": weights}}))
        result = cli("models", "export", built.run, tmp_path / f"{ok}.zip", "--report", report)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1 and "evaluation of another generator" in result.output


@pytest.fixture
def http_folder(tmp_path):
    """A local http.server on 127.0.0.1 serving ``tmp_path / "www"``: ``(folder, base URL)``."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_install_from_an_http_url_checks_the_sha256(built, home, tmp_path, cli, http_folder):
    folder, base = http_folder
    archive = folder / "gen.zip"
    assert cli("models", "export", built.run, archive).exit_code == 0
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    url = f"{base}/gen.zip"
    result = cli("models", "install", url)
    assert result.exit_code == 1 and "--sha256" in result.output
    result = cli("models", "install", url, "--sha256", "0" * 64)
    assert result.exit_code == 1 and "SHA-256 mismatch" in result.output
    assert not home.exists() or not list(home.iterdir())
    result = cli("models", "install", url, "--sha256", digest)
    assert result.exit_code == 0, result.output
    assert (home / "gen" / "model_card.json").is_file()
    result = cli("models", "install", f"{base}/nosuch.zip", "--sha256", digest, "--name", "x")
    assert result.exit_code == 1 and "could not be downloaded" in result.output


def test_a_local_folder_that_hides_an_installed_model_is_named(built, home, tmp_path, cli,
                                                              monkeypatch):
    from harmonix.models.checkpoints import resolve_checkpoint

    archive = tmp_path / "gen.zip"
    assert cli("models", "export", built.run, archive).exit_code == 0
    assert cli("models", "install", archive).exit_code == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gen").mkdir()
    with pytest.raises(CheckpointError, match="hides the installed model 'gen'"):
        resolve_checkpoint("gen")
    shutil.rmtree(tmp_path / "gen")
    shutil.copytree(built.run, tmp_path / "gen")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_checkpoint("gen").parent.parent == Path("gen")
    assert any("hides the installed model" in str(w.message) for w in caught)
