"""The demo runs every stage end to end and resumes instead of redoing.

The module's run is the ``validate`` profile (issue 14) at the ``smoke`` profile's sizes: the
same function the CLI calls with validate's training options, every scenario (14 fixed, random,
cross-center), the fidelity table and ``summary.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from harmonix.data.site import read_site
from harmonix.demo import PROFILES, run_demo
from harmonix.evaluation.fidelity import BASELINES, METRICS, VERDICT
from harmonix.evaluation.targets import SUMMARY_COLUMNS
from harmonix.models.checkpoints import latest_checkpoint

#: what the smoke profile sizes; everything else (training options, scenarios) is validate's
SIZES = ("spacing", "size", "depth", "train_cases", "local_cases", "test_cases",
         "local_test_cases", "iters", "batch", "backbone_options", "segmenter_iters",
         "checkpoint_every")
VALIDATE_SMOKE = dataclasses.replace(
    PROFILES["validate"], **{k: getattr(PROFILES["smoke"], k) for k in SIZES},
    eval_options={**PROFILES["validate"].eval_options, "fid_slices": 4, "umap": False},
    compare_lam=True)  # --compare-lam: a second generator, without LAM, for FID


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # what a run killed while synthesizing leaves behind: made again, not refused
    for partial in (out / "data" / "brats", out / "data" / ".local.partial"):
        partial.mkdir(parents=True)
        (partial / "half-written.nii.gz").write_bytes(b"")
    stages: list[str] = []
    result = run_demo(out, profile=VALIDATE_SMOKE, seed=0, stage=stages.append)
    return out, result, stages


def test_every_stage_runs_and_the_report_is_written(demo_run):
    out, result, stages = demo_run
    assert [title.split()[0] for title in stages] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert result.report.exists() and result.report.stat().st_size > 0
    results = pd.read_csv(result.report.parent / "results.csv")
    assert {"complete", "copy", "generated"} <= set(results["strategy"])
    assert set(results["region"].dropna()) >= {"WT", "TC", "ET"}
    assert result.summary and all("scenario" in row for row in result.summary)
    for row in result.summary:
        values = [v for k, v in row.items() if k != "scenario"]
        assert values and all(0.0 <= v <= 1.0 for v in values)
    # the profiles' filling (docs/validation.md): reference-guided, correlated sources
    settings = json.loads((result.report.parent / "evaluation.json").read_text())
    assert settings["guidance"] == "reference: train"  # brats-split/train, by name (portable)
    assert settings["sources"] == "correlated"


def test_a_site_half_written_by_a_killed_run_is_made_again(demo_run):
    out, _, _ = demo_run
    assert not (out / "data" / "brats" / "half-written.nii.gz").exists()
    assert not (out / "data" / ".local.partial").exists()
    assert len(read_site(out / "data" / "brats").cases) == (VALIDATE_SMOKE.train_cases
                                                            + VALIDATE_SMOKE.test_cases)


def test_missing_sequences_are_filled_on_the_input_grid(demo_run):
    _, result, _ = demo_run
    incomplete = read_site(result.paths["incomplete"])
    filled = read_site(result.paths["filled"])
    assert any(len(case.sequences) < 4 for case in incomplete.cases)
    by_name = {case.id: case for case in filled.cases}
    for case in incomplete.cases:
        completed = by_name[case.id]
        assert set(completed.sequences) == {"t1", "t1ce", "t2", "flair"}
        grid = next(iter(case.info.values()))
        for sequence in completed.sequences:
            info = completed.info[sequence]
            assert info.shape == grid.shape
            np.testing.assert_allclose(info.affine, grid.affine, atol=1e-5)


def test_local_center_is_aligned_into_the_target_domain(demo_run):
    _, result, _ = demo_run
    manifest = pd.read_csv(result.paths["aligned"] / "manifest.csv")
    assert (manifest["status"] == "failed").sum() == 0
    assert len(manifest) > 0


def test_rerun_resumes_finished_stages(demo_run):
    out, _, _ = demo_run
    card = latest_checkpoint(out / "runs" / "ummgat") / "model_card.json"
    weights = sorted((out / "runs").rglob("*.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in weights}
    iteration = json.loads(card.read_text())["iteration"]
    report = out / "report" / "report.md"
    written = report.stat().st_mtime_ns
    run_demo(out, profile=VALIDATE_SMOKE, seed=0)
    assert json.loads(card.read_text())["iteration"] == iteration == VALIDATE_SMOKE.iters
    assert {p: p.stat().st_mtime_ns for p in weights} == before
    assert report.stat().st_mtime_ns == written  # the finished evaluation is not redone


def test_summary_csv_has_every_scenario_and_region(demo_run):
    out, _, _ = demo_run
    summary = pd.read_csv(out / "report" / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    fixed = [s for s in dict.fromkeys(summary["scenario"]) if s.startswith("missing ")]
    assert len(fixed) == 14
    assert list(dict.fromkeys(summary["scenario"]))[14:] == [
        "random", "brasyn", "cross-center", "only t1", "only t1ce", "only t2", "only flair"]
    assert len(summary) == 20 * 3 + 1  # WT/TC/ET per scenario; cross-center scores WT only
    assert not summary.duplicated(["scenario", "region"]).any()
    # the single-source scenarios are the triple-missing ones, under their own names
    only_t2 = summary[summary["scenario"] == "only t2"].drop(columns="scenario")
    triple = summary[summary["scenario"] == "missing t1+t1ce+flair"].drop(columns="scenario")
    pd.testing.assert_frame_equal(only_t2.reset_index(drop=True), triple.reset_index(drop=True))
    within = summary[summary["scenario"] != "cross-center"]
    assert set(within["region"]) == {"WT", "TC", "ET"}
    values = within[["complete", "copy", "generated"]].to_numpy()
    assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    assert np.isfinite(summary["p_generated_vs_copy"]).all()
    assert summary["p_generated_vs_copy"].between(0, 1).all()
    cross = summary[summary["scenario"] == "cross-center"].iloc[0]
    assert cross["region"] == "WT" and math.isnan(cross["complete"])
    # the medians are those of results.csv
    results = pd.read_csv(out / "report" / "results.csv")
    wt = results[(results["metric"] == "dice") & (results["region"] == "WT")
                 & (results["scenario"] == "random") & (results["strategy"] == "copy")]
    row = summary[(summary["scenario"] == "random") & (summary["region"] == "WT")].iloc[0]
    assert row["copy"] == pytest.approx(wt["value"].median())


def test_fidelity_table_covers_every_sequence_pair(demo_run):
    out, result, _ = demo_run
    table = pd.read_csv(out / "report" / "fidelity.csv")
    pairs = {(a, b) for a in ("t1", "t1ce", "t2", "flair") for b in ("t1", "t1ce", "t2", "flair")
             if a != b}
    assert set(zip(table["source"], table["target"], strict=True)) == pairs and len(table) == 12
    columns = [f"{m}_{b}" for m in METRICS for b in BASELINES]
    assert np.isfinite(table[columns].to_numpy()).all()
    assert (table["cases"] == PROFILES["smoke"].test_cases).all()
    assert table[VERDICT].str.match(r"^(yes|no \(.+\))$").all()
    assert "## Image fidelity vs trivial baselines" in result.report.read_text()


def test_compare_lam_trains_a_generator_without_lam_for_fid(demo_run):
    out, _, _ = demo_run
    card = json.loads((latest_checkpoint(out / "runs" / "ummgat-no-lam")
                       / "model_card.json").read_text())
    assert card["recipe"]["lam"] is False
    fid = pd.read_csv(out / "report" / "fid.csv")
    assert {"lam", "no-lam"} <= set(fid["generator"].dropna())


def test_cli_checks_the_iterations(cli, tmp_path):
    result = cli("demo", "--out", tmp_path / "demo", "--iters", "0")
    assert result.exit_code != 0 and not (tmp_path / "demo").exists()


def test_validate_profile_is_the_quick_sizes_trained_longer_on_more_cases():
    quick, validate = PROFILES["quick"], PROFILES["validate"]
    assert (validate.spacing, validate.crop_shape) == (quick.spacing, quick.crop_shape)
    assert validate.iters > quick.iters and validate.test_cases >= 10
    assert validate.train_cases >= quick.train_cases
    assert "scenarios" not in validate.eval_options  # all: 14 fixed, random, cross-center
    assert validate.checkpoint_every < validate.iters  # a killed run loses little


def test_paper_profile_is_the_papers_recipe():
    paper = PROFILES["paper"]
    assert (paper.spacing, paper.crop_shape) == (1.0, (176, 176, 155))
    assert (paper.batch, paper.iters, paper.backbone) == (8, 20_000, "swin")
    assert not paper.recipe  # the recipe's defaults: lr 1e-4, Adam(0, 0.99), EMA 0.999
    assert paper.test_cases and paper.local_test_cases  # held out by harmonix split


def test_cli_rejects_an_unknown_profile(cli, tmp_path):
    result = cli("demo", "--out", tmp_path / "demo", "--profile", "huge")
    assert result.exit_code != 0 and "unknown profile 'huge'" in result.output
    assert not (tmp_path / "demo").exists()


def test_lesion_preservation_and_grid_tables_cover_every_pair(demo_run):
    """Issue 20: lesion contrast, BraSyn SSIM, tissue contrast (the demo writes tissue maps),
    structure and the grid share in every report; the lesion-code spread in the card."""
    out, _, _ = demo_run
    table = pd.read_csv(out / "report" / "lesion.csv")
    assert len(table) == 12
    for column in ("contrast_sign_agrees", "ssim_lesion_generated", "ssim_lesion_copy",
                   "ssim_lesion_remap", "tissue_CSF_generated", "tissue_CSF_real",
                   "nmi_generated", "nmi_real", "nmi_ratio"):
        assert np.isfinite(table[column]).all(), column
    assert set(table["contrast_sign_agrees"]) <= {0.0, 1.0}
    grid = pd.read_csv(out / "report" / "grid.csv")
    assert set(grid["target"]) == {"t1", "t1ce", "t2", "flair"} and (grid["ratio"] > 0).all()
    table = pd.read_csv(out / "report" / "brasyn.csv").set_index("strategy")
    assert set(table.index) == {"complete", "copy", "remapped", "generated"}
    assert np.isfinite(table.loc["generated", ["ssim_lesion", "ssim_outside", "dice_WT"]]).all()
    drops = json.loads((out / "report" / "evaluation.json").read_text())["brasyn_drops"]
    assert set(drops.values()) <= {"t1", "t1ce", "t2", "flair"} and len(drops) >= 1
    planes = pd.read_csv(out / "report" / "through_plane.csv")
    assert set(planes["target"]) == {"t1", "t1ce", "t2", "flair"} and (planes["ratio"] > 0).all()
    report = (out / "report" / "report.md").read_text()
    assert "## Lesion preservation" in report and "## Grid artifact" in report
    assert "## Through-plane consistency" in report and "## BraSyn protocol" in report
    card = json.loads(next((out / "runs" / "ummgat" / "checkpoints").glob(
        "*/model_card.json")).read_text())
    spread = card["lesion_code_spread"]
    assert set(spread["per_domain"]) == set(card["domains"]) and spread["history"]
    assert card["fill"]["policy"] == "single" and card["fill"]["correlations"]["cases"] > 0
