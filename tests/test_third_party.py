"""A third-party plugin package (examples/harmonix-example-plugins), loaded as a plugin without
installing it: its segmenter trains and evaluates through the interface alone, and its metrics of
each kind run in ``harmonix evaluate`` and appear in results.csv, the tables and report.md."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from harmonix import plugins
from harmonix.data.preprocess import PreprocessConfig, preprocess_case
from harmonix.data.site import read_site
from harmonix.data.split import split_site
from harmonix.data.synth import synthesize_site
from harmonix.errors import PluginError
from harmonix.interfaces import Generator, ImageMetric, Metric, Segmenter, Trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "harmonix-example-plugins"
PACKAGE = "harmonix_example_plugins"
CONFIG = PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 39))  # default_preprocess(4.0, 48)
QUICK = ["--scenarios", "single", "--fid-slices", "0", "--no-umap", "--overlays", "0"]


@pytest.fixture(autouse=True)
def example_plugin(monkeypatch):
    """The example's folder on sys.path and its module named in HARMONIX_PLUGINS, as a plugin
    under development is loaded (no pip install, no entry point)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv(plugins.EXTRA_PLUGINS_ENV, PACKAGE)
    plugins.reset_host()
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("third-party")
    brats = synthesize_site(root / "brats", 4, center="brats", seed=4, spacing=4.0, workers=1)
    split = split_site(brats, root / "split", test=2, seed=0)
    return SimpleNamespace(root=root, train=split.train, test=split.test)


def test_the_example_registers_through_the_documented_contracts():
    host = plugins.get_host()
    assert not host.failed, host.failed
    assert host.get("segmenter", "centroid").plugin == PACKAGE
    segmenter = plugins.get_segmenter("centroid")
    assert issubclass(segmenter, Segmenter) and segmenter.name == "centroid"
    built = plugins.build_segmenter("centroid", ["t1", "t2"])
    assert isinstance(built, segmenter) and built.sequences == ("t1", "t2") and built.card == {}
    with pytest.raises(ValueError, match="unknown options"):
        plugins.build_segmenter("centroid", ["t1"], channels=4)
    assert issubclass(plugins.get_trainer("moments"), Trainer)
    assert isinstance(plugins.build_trainer("moments"), Trainer)
    for name in ("volume-error", "mae", "intensity-gap"):
        assert issubclass(plugins.get_metric(name), Metric)
        assert isinstance(plugins.build_metric(name), plugins.get_metric(name))
    assert isinstance(plugins.build_metric("mae"), ImageMetric)


def test_evaluate_runs_every_registered_metric_unless_named():
    from harmonix.evaluation.metrics import select_metrics

    every = select_metrics().by_kind()
    # hd95 runs only when asked; the official lesion-wise metrics when their extra is installed
    installed = importlib.util.find_spec("brats_evaluation") is not None
    official = ["lesion_dice", "lesion_hd95"] if installed else []
    assert every == {"segmentation": ["dice", *official, "volume-error"],
                     "image": ["ssim", "psnr", "mae"], "image-set": ["fid", "intensity-gap"]}
    assert "hd95" in select_metrics(hd95=True).by_kind()["segmentation"]
    named = select_metrics(["volume-error", "mae"]).by_kind()
    assert named == {"segmentation": ["volume-error"], "image": ["mae"], "image-set": []}
    with pytest.raises(PluginError, match="no metric named 'nope'.*volume-error"):
        select_metrics(["nope"])


def test_segmenter_trains_and_evaluates_through_the_cli(sites, tmp_path, cli):
    from harmonix_example_plugins.metrics import VolumeError

    seg = tmp_path / "centroid"
    result = cli("segment", "train", "--segmenter", "centroid", "--data", sites.train, "--out",
                 seg, "--spacing", "4", "--size", "48")
    assert result.exit_code == 0, result.output
    card = json.loads((seg / "model_card.json").read_text())
    assert card["segmenter"] == "centroid" and card["preprocessing"] == CONFIG.to_dict()
    assert card["training"]["data_record"]["cases"]  # harmonix adds the training record
    assert (seg / "centroids.json").is_file()

    out = tmp_path / "report"
    result = cli("evaluate", "--data", sites.test, "--segmenter", seg, "--out", out, *QUICK,
                 "--strategies", "complete,copy", "--metric", "dice", "--metric", "volume-error",
                 "--metric", "mae")
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(results["metric"]) - {"pearson_r"} == {"dice", "volume-error", "mae"}
    volume = results[results["metric"] == "volume-error"]
    assert set(volume["region"]) == {"WT", "TC", "ET"}
    assert len(volume) == 4 * 2 * 3 * 2  # scenarios x strategies x regions x cases
    assert (results.loc[results["metric"] == "mae", "value"] > 0).all()

    # one value recomputed outside harmonix evaluate: the plugin's own classes, loaded by name
    case = read_site(sites.test).cases[0]
    prepared = preprocess_case(case, CONFIG)
    model = plugins.get_segmenter("centroid").load(seg)
    expected = VolumeError().compute(model.predict(prepared.volumes), prepared.label, spacing=4.0)
    row = volume[(volume["case"] == case.id) & (volume["strategy"] == "complete")
                 & (volume["scenario"] == "missing t1") & (volume["region"] == "WT")]
    assert row["value"].item() == pytest.approx(expected["WT"])

    table = pd.read_csv(out / "median_volume-error.csv", header=[0, 1], index_col=0)
    copy_wt = volume[(volume["scenario"] == "missing t2") & (volume["strategy"] == "copy")
                     & (volume["region"] == "WT")]["value"]
    assert table.loc["missing t2", ("copy", "WT")] == pytest.approx(copy_wt.median())
    report = (out / "report.md").read_text()
    assert "## Median volume-error per scenario" in report
    assert "median_volume-error.csv" in report
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["metrics"]["segmentation"] == ["dice", "volume-error"]

    result = cli("evaluate", "--data", sites.test, "--segmenter", seg, "--out",
                 tmp_path / "bad", *QUICK, "--strategies", "complete", "--metric", "nope")
    assert result.exit_code == 1 and "no metric named 'nope'" in result.output


def test_trainer_and_generator_work_through_the_interface_alone(sites, tmp_path, cli):
    from harmonix.models.checkpoints import load_generator

    run = tmp_path / "moments"
    result = cli("train", "--trainer", "moments", "--data", sites.train, "--out", run,
                 "--size", "48", "--spacing", "4")
    assert result.exit_code == 0, result.output
    generator = load_generator(run)  # the card's "trainer" names the plugin that rebuilds it
    assert isinstance(generator, Generator) and type(generator).__name__ == "MomentsGenerator"
    assert {"brats/t1", "brats/flair"} <= set(generator.domains) and generator.image_size == 48
    slices = torch.zeros(2, 1, 48, 48)
    slices[:, :, 10:30, 10:30] = 100.0
    made = generator.translate(slices, "brats/t1", "brats/flair")
    mean_t, std_t = generator.moments["brats/flair"]
    assert made.shape == slices.shape and (made[slices == 0] == 0).all()
    expected = (100.0 - generator.moments["brats/t1"][0]) / generator.moments["brats/t1"][1]
    assert made[0, 0, 20, 20].item() == pytest.approx(min(max(expected * std_t + mean_t, 0), 255),
                                                      rel=1e-5)


def test_a_third_party_trainer_receives_the_request_and_rejects_unknown_options(sites, tmp_path,
                                                                                cli):
    from harmonix.cards import load_card

    run = tmp_path / "moments"
    result = cli("train", "--trainer", "moments", "--data", sites.train, "--out", run,
                 "--size", "48", "--spacing", "4", "--iters", "1", "--backbone", "my-net")
    assert result.exit_code == 0, result.output
    card = load_card(run / "model_card.json", "generator")
    assert card["request"] == {"iters": 1, "backbone": "my-net"}  # --iters and --backbone arrive
    all_cases = load_card(_moments(sites, tmp_path / "all", cli), "generator")["moments"]
    assert card["moments"] != all_cases  # --iters 1: the first case of the site only
    result = cli("train", "--trainer", "moments", "--data", sites.train, "--out", tmp_path / "x",
                 "--trainer-option", "depth_weight=2")
    assert result.exit_code == 1 and "depth_weight" in result.output


def _moments(sites, run, cli):
    assert cli("train", "--trainer", "moments", "--data", sites.train, "--out", run,
               "--size", "48", "--spacing", "4").exit_code == 0
    return run / "model_card.json"


def test_image_and_image_set_metrics_reach_the_tables_and_the_report(sites, tmp_path, cli):
    from harmonix.api import evaluate
    from harmonix.segmentation import train_segmenter

    seg = train_segmenter(sites.train, tmp_path / "seg", segmenter="centroid",
                          preprocess=CONFIG, progress=False)
    generator = tmp_path / "moments"
    assert cli("train", "--trainer", "moments", "--data", sites.train, "--out", generator,
               "--size", "48", "--spacing", "4").exit_code == 0
    result = evaluate(sites.test, segmenter=seg, generator=generator, out=tmp_path / "report",
                      scenarios="single", strategies="generated", fid_slices=4, umap=False,
                      overlays=0, progress=False, metrics=["dice", "mae", "intensity-gap"])
    results, out = result.results, result.out
    gap = results[(results["metric"] == "intensity-gap") & (results["kind"] == "fid")]
    assert len(gap[gap["strategy"] == "real"]) == 4  # the real-vs-real baseline per sequence
    generated = gap[gap["strategy"] == "generated"]
    assert len(generated) == 12 and np.isfinite(generated["value"]).all()
    lesion = results[(results["metric"] == "intensity-gap") & (results["kind"] == "fid-lesion")]
    assert len(lesion[lesion["strategy"] == "generated"]) == 12  # and on the lesion crops
    assert (gap["value"] >= 0).all() and (generated["value"] > 0).any()
    assert not (results["metric"] == "fid").any()  # not named, not run
    assert (out / "pairs_intensity-gap.csv").is_file() and not (out / "fid.csv").exists()

    quality = pd.read_csv(out / "image_quality.csv")
    assert "mae" in quality.columns and "ssim" not in quality.columns
    pairs = results[(results["kind"] == "pairs") & (results["metric"] == "mae")]
    one = quality[(quality["source"] == "t1") & (quality["target"] == "flair")]
    flair_from_t1 = pairs[(pairs["source"] == "t1") & (pairs["sequence"] == "flair")]
    assert one["mae"].item() == pytest.approx(flair_from_t1["value"].mean())

    report = result.report.read_text()
    assert "## MAE of generated sequences" in report
    assert "## intensity-gap per (source, target) pair" in report
    matrix = report.split("## intensity-gap per (source, target) pair")[1]
    value = generated[(generated["source"] == "t2") & (generated["sequence"] == "t1")]["value"]
    assert f"{value.item():.3f}" in matrix


def test_docs_quote_the_example_package_verbatim():
    """docs/plugins.md shows each contract with this package's files; they must not drift."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    quoted = dict(re.findall(r"<!-- example-plugins file: (\S+) -->\n```\w*\n(.*?)```", docs,
                             flags=re.S))
    files = {p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*")
             if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts}
    assert set(quoted) == files
    for path, text in quoted.items():
        assert text == (EXAMPLE / path).read_text(), f"docs/plugins.md is out of date for {path}"


def test_a_generator_on_another_grid_is_refused_with_the_fix(sites, tmp_path, cli):
    from harmonix.api import evaluate
    from harmonix.segmentation import train_segmenter

    seg = train_segmenter(sites.train, tmp_path / "seg", segmenter="centroid",
                          preprocess=CONFIG, progress=False)
    assert cli("train", "--trainer", "moments", "--data", sites.train, "--out", tmp_path / "g40",
               "--size", "40", "--spacing", "4").exit_code == 0
    with pytest.raises(ValueError, match=r"--generator: the segmenter's preprocessing crop "
                       r"\(48, 48, 39\) does not match the model's 40x40 .*--preprocess-like"):
        evaluate(sites.test, segmenter=seg, generator=tmp_path / "g40", out=tmp_path / "r",
                 scenarios="single", strategies="generated", fid_slices=0, umap=False,
                 progress=False)
