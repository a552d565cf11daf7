"""The demo runs every stage end to end (tiny "smoke" profile) and resumes instead of redoing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harmonix.checkpoints import latest_checkpoint
from harmonix.data.site import read_site
from harmonix.demo import PROFILES, run_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    stages: list[str] = []
    result = run_demo(out, profile="smoke", seed=0, stage=stages.append)
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
    run_demo(out, profile="smoke", seed=0)
    assert json.loads(card.read_text())["iteration"] == iteration == PROFILES["smoke"].iters
    assert {p: p.stat().st_mtime_ns for p in weights} == before


def test_paper_profile_is_the_papers_recipe():
    paper = PROFILES["paper"]
    assert (paper.spacing, paper.crop_shape) == (1.0, (176, 176, 155))
    assert (paper.batch, paper.iters, paper.backbone) == (8, 20_000, "swin")
    assert not paper.train_options  # the recipe's defaults: lr 1e-4, Adam(0, 0.99), EMA 0.999


def test_cli_rejects_an_unknown_profile(cli, tmp_path):
    result = cli("demo", "--out", tmp_path / "demo", "--profile", "huge")
    assert result.exit_code != 0 and "unknown profile 'huge'" in result.output
    assert not (tmp_path / "demo").exists()
