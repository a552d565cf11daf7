"""Evaluation: scenarios, the copy and generated strategies, and the report end to end."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import friedmanchisquare, wilcoxon

from harmonix.data.load import load_case
from harmonix.data.preprocess import PreprocessConfig, preprocess_case
from harmonix.data.site import read_site
from harmonix.data.split import split_site
from harmonix.data.synth import synthesize_site
from harmonix.evaluation.cases import lesion_crops
from harmonix.evaluation.scenarios import (
    SEQUENCES,
    fixed_scenarios,
    parse_kinds,
    random_distribution,
    random_missing,
)
from harmonix.evaluation.strategies import (
    GeneratedFiller,
    copy_fill,
    copy_sources,
    parse_strategies,
    sequence_correlations,
)
from harmonix.evaluation.targets import headline
from harmonix.harmonization.fusion import FillPolicy
from harmonix.interfaces import Generator
from harmonix.registry import load_registry
from harmonix.requests import TrainRequest

CONFIG = PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 39))


# -- scenarios ---------------------------------------------------------------------------------
def test_fixed_scenarios_are_the_14_distinct_subsets():
    scenarios = fixed_scenarios()
    assert len(scenarios) == 14
    assert len({s.missing for s in scenarios}) == 14 and len({s.name for s in scenarios}) == 14
    sizes = pd.Series([len(s.missing) for s in scenarios]).value_counts().to_dict()
    assert sizes == {1: 4, 2: 6, 3: 4}
    assert {s.kind for s in scenarios if len(s.missing) == 2} == {"double"}
    assert all(s.missing < set(SEQUENCES) and s.missing for s in scenarios)
    assert [len(fixed_scenarios(kinds=[k])) for k in ("single", "double", "triple")] == [4, 6, 4]
    assert parse_kinds("all") == ["single", "double", "triple", "random", "brasyn",
                                  "cross-center"]
    assert parse_kinds("triple,single") == ["single", "triple"]
    with pytest.raises(ValueError, match="quadruple"):
        parse_kinds("quadruple")
    assert parse_strategies("generated,copy") == ["copy", "generated"]
    with pytest.raises(ValueError, match="zero"):
        parse_strategies("zero")


def test_random_missing_keeps_one_loses_at_most_three_and_follows_the_seed():
    ids = [f"case{i:03d}" for i in range(600)]
    drawn = random_missing(ids, seed=7)
    assert all(1 <= len(m) <= 3 and m < set(SEQUENCES) for m in drawn.values())
    assert drawn == random_missing(ids, seed=7)
    assert drawn != random_missing(ids, seed=8)
    assert len(set(drawn.values())) == 14  # every fixed set can be drawn
    table = random_distribution(drawn)
    sets = table[table["what"] == "missing set"]
    assert len(sets) == 14 and sets["cases"].sum() == len(ids)
    counts = table[table["what"] == "number missing"].set_index("value")["cases"]
    assert counts.sum() == len(ids)
    assert counts["2"] == sum(len(m) == 2 for m in drawn.values())


# -- strategies --------------------------------------------------------------------------------
def _case(case_id, volumes, mask):
    return SimpleNamespace(case_id=case_id, volumes=volumes, brain_mask=mask, label=None)


def test_copy_follows_the_measured_correlation_order():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 20, 10), bool)
    mask[3:17, 3:17, 2:8] = True
    cases = []
    for i in range(3):
        a = rng.normal(size=mask.shape)
        volumes = {
            "t1": a,
            "t1ce": a + 0.3 * rng.normal(size=mask.shape),  # r ~ 0.96 with t1
            "flair": a + 1.0 * rng.normal(size=mask.shape),  # r ~ 0.7 with t1
            "t2": rng.normal(size=mask.shape),  # r ~ 0
        }
        cases.append(_case(f"c{i}", {k: (v * 20 + 100) * mask for k, v in volumes.items()}, mask))
    table = sequence_correlations(cases, SEQUENCES)
    expected = np.mean([np.corrcoef(c.volumes["t1"][mask], c.volumes["flair"][mask])[0, 1]
                        for c in cases])
    assert table.loc["t1", "flair"] == pytest.approx(expected)
    assert table.attrs["cases"] == 3
    assert table.loc["t1", "t1ce"] > table.loc["t1", "flair"] > 0.5 > abs(table.loc["t1", "t2"])

    assert copy_sources(table, ["t1"], ["t1ce", "t2", "flair"]) == {"t1": "t1ce"}
    assert copy_sources(table, ["t1", "t1ce"], ["t2", "flair"]) == {"t1": "flair",
                                                                   "t1ce": "flair"}
    assert copy_sources(table, ["flair"], ["t2", "t1ce"]) == {"flair": "t1ce"}
    filled = copy_fill(cases[0].volumes, {"t1": "t1ce"})
    assert filled["t1"] is cases[0].volumes["t1ce"] and filled["t2"] is cases[0].volumes["t2"]


class CountingGenerator(Generator):
    """A stand-in generator: intensity curves per target, codes from simple statistics."""

    def __init__(self, domains, image_size=48):
        self.domains, self.image_size, self.card, self.calls = list(domains), image_size, {}, 0

    def translate(self, images, source, target, *, reference=None, seed=0):
        self.calls += 1
        gamma = 0.5 + 0.4 * (self.domains.index(target) % 4)
        return 255.0 * (images / 255.0).clamp(0, 1) ** gamma

    def style_codes(self, images, domain, *, lesion=False):
        x = images.flatten(1) / 255.0
        return torch.stack([x.mean(1), x.std(1) + (10.0 if lesion else 0.0)], 1)


def test_generated_filler_plans_like_harmonize_and_generates_each_pair_once():
    target = load_registry().target("brats")
    generator = CountingGenerator(target.domains)
    filler = GeneratedFiller(generator, target, SEQUENCES, batch_size=64)
    mask = np.zeros((8, 8, 4), bool)
    mask[2:6, 2:6, :] = True
    case = _case("c0", {s: np.full(mask.shape, 100.0, np.float32) * mask for s in SEQUENCES},
                 mask)
    # registry source_priority: t1, t2, flair, t1ce
    assert filler.plan(["t2", "t1ce"]) == {"t1": ["t2"], "flair": ["t2"]}
    volumes, sources = filler.fill(case, ["t2", "t1ce"])
    assert sources == {"t1": "t2", "flair": "t2"} and volumes["t2"] is case.volumes["t2"]
    assert generator.calls == 2
    filler.fill(case, ["t2"])  # t1 and flair from t2 again (cached), t1ce from t2 (new)
    assert generator.calls == 3
    expected = 255.0 * (100 / 255.0) ** (0.5 + 0.4 * (generator.domains.index("brats/flair") % 4))
    assert np.allclose(volumes["flair"][mask], expected, rtol=1e-5)
    filler.forget("c0")
    filler.fill(case, ["t2"])
    assert generator.calls == 6
    with pytest.raises(ValueError, match="brats/flair"):
        GeneratedFiller(CountingGenerator(["brats/t1", "brats/t2"]), target, SEQUENCES).check()


def test_a_fused_filler_averages_every_present_source_with_the_policy_weights():
    target = load_registry().target("brats")
    generator = CountingGenerator(target.domains)
    table = {"flair": {"t2": 0.8, "t1ce": 0.4}}  # weights 0.64 : 0.16 -> 0.8 : 0.2
    filler = GeneratedFiller(generator, target, SEQUENCES, policy=FillPolicy("fused", table))
    mask = np.zeros((8, 8, 4), bool)
    mask[2:6, 2:6, :] = True
    volumes_in = {"t2": np.full(mask.shape, 100.0, np.float32) * mask,
                  "t1ce": np.full(mask.shape, 200.0, np.float32) * mask}
    case = _case("c0", {**volumes_in, "t1": volumes_in["t2"], "flair": volumes_in["t2"]}, mask)
    assert filler.plan(["t2", "t1ce"])["flair"] == ["t2", "t1ce"]  # best (|r|) first
    volumes, sources = filler.fill(case, ["t2", "t1ce"])
    assert sources["flair"] == "t2+t1ce"
    gamma = 0.5 + 0.4 * (generator.domains.index("brats/flair") % 4)
    expected = 0.8 * 255 * (100 / 255) ** gamma + 0.2 * 255 * (200 / 255) ** gamma
    assert np.allclose(volumes["flair"][mask], expected, rtol=1e-5)
    assert generator.calls == 4  # t1 and flair, each from both sources


def test_correlated_sources_fill_each_sequence_from_its_most_similar_present_one():
    from harmonix.harmonization.translate import source_ranking

    r = pd.DataFrame([[1.0, 0.9, 0.2, 0.3], [0.9, 1.0, 0.1, 0.4], [0.2, 0.1, 1.0, 0.8],
                      [0.3, 0.4, 0.8, 1.0]], index=SEQUENCES, columns=SEQUENCES)
    ranking = source_ranking(r)
    assert ranking == {"t1": ["t1ce", "flair", "t2"], "t1ce": ["t1", "flair", "t2"],
                       "t2": ["flair", "t1", "t1ce"], "flair": ["t2", "t1ce", "t1"]}
    target = load_registry().target("brats")
    filler = GeneratedFiller(CountingGenerator(target.domains), target, SEQUENCES)
    assert filler.plan(["t1ce", "t2"]) == {"t1": ["t2"], "flair": ["t2"]}  # registry priority
    filler.ranking = ranking
    assert filler.plan(["t1ce", "t2"]) == {"t1": ["t1ce"], "flair": ["t2"]}
    assert filler.plan(["t1ce"]) == {"t1": ["t1ce"], "t2": ["t1ce"], "flair": ["t1ce"]}


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A BraTS-like site split (harmonix split) into training and test cases, a local site
    split alike; a UMMGAT run (2 iterations) and a 2D U-Net segmenter (3 iterations) trained on
    the training parts only."""
    from harmonix.plugins import build_trainer
    from harmonix.segmentation import train_segmenter

    root = tmp_path_factory.mktemp("evaluate")
    brats = synthesize_site(root / "brats", 5, center="brats", seed=0, spacing=4.0, workers=1)
    local = synthesize_site(root / "local-all", 4, center="local", seed=2, spacing=4.0,
                            workers=1)
    brats_split = split_site(brats, root / "brats-split", test=3, seed=0)
    local_split = split_site(local, root / "local-split", test=2, seed=0)
    train, test = brats_split.train, brats_split.test
    generator = build_trainer("ummgat").train(TrainRequest(
        out=root / "gen", data=[train, local_split.train], backbone="swin",
        backbone_options={"preset": "tiny"}, iters=2, batch_size=2, size=48, spacing=4.0,
        pairing="all", checkpoint_every=2, sample_every=1000, progress=False,
        options={"style_dim": 16, "latent_dim": 8},
    ))
    segmenter = train_segmenter(train, root / "seg", segmenter="unet2d", preprocess=CONFIG,
                                iters=3, options={"channels": (4, 8, 16)}, progress=False)
    return SimpleNamespace(root=root, train=train, test=test, local=local_split.test,
                           local_train=local_split.train, generator=generator,
                           segmenter=segmenter)


def _dice(prediction, truth, values):
    p, t = np.isin(prediction, values), np.isin(truth, values)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else 2.0 * (p & t).sum() / total


REGION_VALUES = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}


def test_evaluate_end_to_end_writes_the_numbers_it_computed(world, monkeypatch):
    from harmonix import load_generator
    from harmonix.api import evaluate
    from harmonix.evaluation.run import load_results
    from harmonix.harmonization.translate import fill_missing
    from harmonix.plugins import build_metric
    from harmonix.segmentation import load_segmenter

    monkeypatch.setitem(sys.modules, "umap", None)  # umap-learn is optional: skipped with a note
    out = world.root / "report"
    result = evaluate(world.test, segmenter=world.segmenter, generator=world.generator,
                      generator_no_lam=world.generator, cross_center_data=world.local, out=out,
                      fid_slices=2, overlays=1, seed=5, progress=False)
    for name in ("results.csv", "report.md", "table1_median_dice.csv", "wilcoxon.csv",
                 "friedman.csv", "dunn.csv", "correlations.csv", "random_missing.csv", "fid.csv",
                 "image_quality.csv", "evaluation.json", "boxplots_dice.png",
                 "fid_heatmap.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "overlays").glob("*.png"))) == 1
    # issue 22: the through-plane figure of one case; issue 23: the built-in data's banner
    page = (out / "report.html").read_text()
    assert (out / "through_plane.png").is_file()
    assert "](through_plane.png)" in (out / "report.md").read_text()
    through = page.split("Through-plane consistency</h2>", 1)[1].split("<h2", 1)[0]
    assert '<img src="data:image/png;base64,' in through
    assert "Built-in synthetic data" in page.split("<h2", 1)[0]
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["builtin_synthetic"] is True
    assert any("umap-learn is not importable" in n for n in settings["notes"])
    assert any("--generator-no-lam's model card says lam=True" in n for n in settings["notes"])
    report = (out / "report.md").read_text()
    top = report.split("## ")[0]  # the report states, at its top, where the numbers come from
    assert "**split**: the test part of `harmonix split" in top and "3 test cases" in top
    assert "**overlap check**: no overlap: none of the 5 test cases" in top  # 3 + 2 local
    assert "Checked against the segmenter (ids and file hashes recorded in its card, 2 cases)" \
        in top and "the generator (ids and file hashes recorded in its card, 4 cases)" in top
    assert "**copy mapping**: learned from the segmenter's training data" in top
    assert settings["provenance"]["overlap_allowed"] is False

    results = load_results(out)
    assert results.equals(result.results.astype({c: str for c in results.columns
                                                 if c != "value"}))
    dice = results[results["metric"] == "dice"]
    fixed = dice[dice["kind"].isin(["single", "double", "triple"])]
    assert fixed["scenario"].nunique() == 14
    assert set(fixed["strategy"]) == {"complete", "copy", "generated"}
    assert len(fixed) == 14 * 3 * 3 * 3  # scenarios x strategies x regions x cases

    # recompute one case and one scenario independently; the filled case is preprocessed
    # from its present sequences only
    case = read_site(world.test).cases[2]
    prepared = preprocess_case(case, CONFIG)
    loaded = load_case(case)
    present = ["t1", "t2"]
    present_only = preprocess_case({s: loaded.images[s] for s in present}, CONFIG,
                                   label=loaded.label, case_id=case.id)
    assert set(present_only.volumes) == set(present)
    segmenter = load_segmenter(world.segmenter)
    generator = load_generator(world.generator)
    card = json.loads((world.segmenter / "model_card.json").read_text())
    recorded = card["training"]["copy_correlations"]
    correlations = pd.DataFrame(recorded["r"], index=recorded["sequences"],
                                columns=recorded["sequences"])
    pd.testing.assert_frame_equal(pd.read_csv(out / "correlations.csv", index_col=0),
                                  correlations, check_names=False)
    sources = {m: max(present, key=lambda p: correlations.loc[m, p]) for m in ("t1ce", "flair")}
    copied = {**present_only.volumes, **{m: present_only.volumes[s] for m, s in sources.items()}}
    made = fill_missing(present_only, generator, "brats", present=present, seed=5)
    generated = {**present_only.volumes, **made}
    rows = dice[(dice["case"] == case.id) & (dice["scenario"] == "missing t1ce+flair")]
    for strategy, volumes, truth in (("copy", copied, present_only.label),
                                     ("generated", generated, present_only.label),
                                     ("complete", prepared.volumes, prepared.label)):
        labels = segmenter.predict(volumes)
        for region, values in REGION_VALUES.items():
            row = rows[(rows["strategy"] == strategy) & (rows["region"] == region)]
            assert len(row) == 1
            assert row["value"].item() == pytest.approx(
                _dice(labels, truth, values), abs=1e-9), (strategy, region)
    ssim = results[(results["case"] == case.id) & (results["scenario"] == "missing t1ce+flair")
                   & (results["strategy"] == "generated") & (results["metric"] == "ssim")
                   & (results["sequence"] == "flair")]
    assert ssim["source"].item() in ("t1", "t2")  # the card's policy: one source
    assert np.allclose(present_only.record.affine, prepared.record.affine)  # one grid here
    assert ssim["value"].item() == pytest.approx(build_metric("ssim").compute(
        made["flair"], prepared.volumes["flair"], mask=present_only.brain_mask), abs=1e-9)

    # the statistics files hold statistics of those numbers
    table1 = pd.read_csv(out / "table1_median_dice.csv", header=[0, 1], index_col=0)
    scenario_rows = fixed[(fixed["scenario"] == "missing t2") & (fixed["strategy"] == "copy")
                          & (fixed["region"] == "WT")]
    assert table1.loc["missing t2", ("copy", "WT")] == pytest.approx(
        scenario_rows["value"].median())
    tests = pd.read_csv(out / "wilcoxon.csv")
    report = (out / "report.md").read_text()
    pairs = fixed[(fixed["scenario"] == "missing t1") & (fixed["region"] == "WT")].pivot(
        index="case", columns="strategy", values="value")
    row = tests[(tests["scenario"] == "missing t1") & (tests["region"] == "WT")]
    if (pairs["generated"] != pairs["copy"]).any():
        assert row["p_value"].item() == pytest.approx(
            wilcoxon(pairs["generated"], pairs["copy"]).pvalue)
    for scenario in fixed["scenario"].unique():
        assert f"**{scenario}** —" in report
    assert "Holm p" in report

    # random missing: the seeded draw, reported
    drawn = random_missing([c.id for c in read_site(world.test).cases], seed=5)
    random_rows = dice[(dice["scenario"] == "random") & (dice["strategy"] == "copy")]
    for case_id, missing in drawn.items():
        text = "+".join(s for s in SEQUENCES if s in missing)
        assert set(random_rows[random_rows["case"] == case_id]["missing"]) == {text}
    distribution = pd.read_csv(out / "random_missing.csv")
    assert distribution[distribution["what"] == "number missing"]["cases"].sum() == 3

    # cross-center: WT only, three strategies, both local cases
    cross = dice[dice["kind"] == "cross-center"]
    assert set(cross["region"]) == {"WT"}
    assert set(cross["strategy"]) == {"copy", "generated", "generated-noalign"}
    assert len(cross) == 2 * 3

    # FID: a real-vs-real baseline per sequence, every pair for both generators
    fid = results[(results["metric"] == "fid") & (results["kind"] == "fid")]
    assert len(fid[fid["strategy"] == "real"]) == 4
    for label in ("lam", "no-lam"):
        pairs = fid[(fid["strategy"] == "generated") & (fid["generator"] == label)]
        assert len(pairs) == 12 and np.isfinite(pairs["value"]).all()

    # the paper's FID tests: pairs are blocks; real (source vs target), without and with LAM
    wide = pd.DataFrame({
        name: rows.set_index(rows["source"] + "->" + rows["sequence"])["value"]
        for name, rows in (("lam", fid[fid["generator"] == "lam"]),
                           ("no-lam", fid[fid["generator"] == "no-lam"]),
                           ("real", fid[fid["strategy"] == "copy"]))})
    assert wide.shape == (12, 3)
    friedman = pd.read_csv(out / "fid_friedman.csv")
    chi2 = friedmanchisquare(wide["lam"], wide["no-lam"], wide["real"]).statistic
    assert friedman["statistic"].item() == pytest.approx(chi2) and friedman["n"].item() == 12
    dunn = pd.read_csv(out / "fid_dunn.csv")
    assert list(dunn["group_a"]) == ["generated with LAM", "generated with LAM",
                                     "generated without LAM"]
    first = dunn.iloc[1]  # with LAM vs real
    ranks = wide.rank(axis=1).mean()
    assert first["z"] == pytest.approx((ranks["lam"] - ranks["real"]) / np.sqrt(12 / 72))
    assert "FID statistics" in report

    # lesion-region FID: every pair for both generators, against the real target's lesion crops
    lesion = results[(results["metric"] == "fid") & (results["kind"] == "fid-lesion")]
    for label in ("lam", "no-lam"):
        made = lesion[(lesion["strategy"] == "generated") & (lesion["generator"] == label)]
        assert len(made) == 12 and np.isfinite(made["value"]).all()
    table = pd.read_csv(out / "fid_lesion.csv", index_col="pair")
    assert len(table) == 12
    assert (table["lam_lower"] == (table["lam"] < table["no-lam"])).all()
    assert "### Lesion-region FID" in report
    figures = headline(out)
    assert figures["lesion_lam_lower"] == int(table["lam_lower"].sum())
    assert figures["fixed"] == 14 and figures["multi"] == 10 and figures["pairs"] == 12


def test_generated_strategy_follows_sources_and_reference(world, tmp_path):
    """``sources`` picks the source of every fill; ``reference`` replaces the mapper's codes by
    codes of real target-domain slices (so the generated volumes change) and is recorded."""
    from harmonix.api import evaluate
    from harmonix.evaluation.run import load_results

    runs = {}
    for name, options in (("latent", {}), ("sources", {"sources": ["flair", "t2", "t1ce", "t1"]}),
                          ("reference", {"reference": world.train}),
                          ("correlated", {"sources": "correlated"}), ("fused", {"fill": "fused"})):
        out = tmp_path / name
        options = {"fill": "single", **options}
        evaluate(world.test, segmenter=world.segmenter, generator=world.generator, out=out,
                 scenarios="single", strategies="generated", fid_slices=0, umap=False,
                 overlays=0, seed=5, progress=False, **options)
        runs[name] = (load_results(out), json.loads((out / "evaluation.json").read_text()))
    quality = {name: r[(r["metric"] == "ssim") & (r["scenario"] == "missing t1")]
               for name, (r, _) in runs.items()}
    # the generator card's correlation table ranks the sources (by |r|): what harmonize uses
    from harmonix import load_generator

    ranking = FillPolicy.from_card(load_generator(world.generator).card).ranking()
    card_best = next(s for s in ranking["t1"] if s in ("t1ce", "t2", "flair"))
    assert set(quality["latent"]["source"]) == {card_best}
    assert set(quality["sources"]["source"]) == {"flair"}
    assert set(quality["reference"]["source"]) == {card_best}
    assert not np.allclose(quality["reference"]["value"].astype(float),
                           quality["latent"]["value"].astype(float))
    settings = {name: s for name, (_, s) in runs.items()}
    assert settings["latent"]["guidance"] == "latent (mapper)"
    assert settings["reference"]["guidance"].startswith("reference: ")
    assert settings["sources"]["sources"] == "flair,t2,t1ce,t1"
    assert settings["correlated"]["sources"] == "correlated"
    table = pd.read_csv(tmp_path / "correlated" / "correlations.csv", index_col=0)
    best = max(["t1ce", "t2", "flair"], key=lambda s: table.loc["t1", s])
    assert set(quality["correlated"]["source"]) == {best}
    assert {frozenset(s.split("+")) for s in quality["fused"]["source"]} == {
        frozenset({"t2", "flair", "t1ce"})}  # every present source
    assert settings["fused"]["fill"] == {"lam": "fused"} and settings["latent"]["fill"] == {
        "lam": "single"}


def test_lesion_crops_resize_the_lesion_square_to_the_slice():
    volume = np.zeros((32, 32, 2), np.float32)
    lesion = np.zeros((32, 32, 2), bool)
    volume[10:14, 20:24, 1] = 200.0
    lesion[10:14, 20:24, 1] = True
    crops = lesion_crops(np.moveaxis(volume, -1, 0), np.moveaxis(lesion, -1, 0), margin=2)
    assert crops.shape == (2, 32, 32)
    assert not crops[0].any()  # no lesion on slice 0
    # a 4x4 lesion plus margins of 2 becomes an 8x8 square, centred: the lesion fills its
    # middle quarter
    assert crops[1][16, 16] == pytest.approx(200.0)
    assert crops[1][0, 0] == 0.0 and crops[1][31, 31] == 0.0
    assert (crops[1] > 100).mean() == pytest.approx(0.25, abs=0.03)
    assert np.allclose(crops[1], crops[1][::-1, ::-1], atol=1e-4)


def test_umap_figure_and_codes(tmp_path):
    from harmonix.evaluation.codes import collect_codes, umap_embedding
    from harmonix.evaluation.report import plot_umap

    generator = CountingGenerator(["brats/t1", "brats/t2"])
    rng = np.random.default_rng(0)
    groups = [("brats/t1", "real", "real", rng.uniform(0, 255, (5, 8, 8))),
              ("brats/t1", "generated", "t2", rng.uniform(0, 100, (3, 8, 8)))]
    table, codes = collect_codes(generator, groups)
    assert codes.shape == (8, 2) and list(table["kind"]) == ["real"] * 5 + ["generated"] * 3
    assert codes[0, 0] == pytest.approx(groups[0][3][0].mean() / 255.0, rel=1e-5)
    assert umap_embedding(codes[:3])[0] is None
    table[["x", "y"]] = codes
    assert plot_umap(table, tmp_path / "umap.png").stat().st_size > 0


def test_lesion_codes_beside_whole_image_codes(tmp_path):
    """Fig. 2d: lesion-masked real and generated slices go through E's lesion head."""
    from harmonix.evaluation.cases import SliceBank
    from harmonix.evaluation.codes import bank_groups, collect_codes
    from harmonix.evaluation.report import plot_umap

    generator = CountingGenerator(["brats/t1", "brats/t2"])
    rng = np.random.default_rng(1)
    bank = SliceBank()
    for half in ("A", "B"):
        for seq in ("t1", "t2"):
            bank.add_real(half, seq, rng.uniform(0, 255, (2, 8, 8)))
    bank.add_generated("lam", "t2", "t1", rng.uniform(0, 255, (2, 8, 8)))
    lesion = np.zeros((3, 8, 8))
    lesion[:, 2:5, 2:5] = 1
    bank.add_lesion("t1", None, rng.uniform(0, 255, (3, 8, 8)) * lesion)
    bank.add_lesion("t1", "t2", rng.uniform(0, 255, (3, 8, 8)) * lesion)
    table, codes = collect_codes(generator, bank_groups(bank, "brats", ("t1", "t2"), "lam"))
    counts = table.groupby(["target", "kind", "region"]).size().to_dict()
    assert counts[("brats/t1", "real", "lesion")] == 3
    assert counts[("brats/t1", "generated", "lesion")] == 3
    assert counts[("brats/t1", "real", "whole")] == 4
    assert counts[("brats/t1", "generated", "whole")] == 2
    # the lesion head was used for exactly the lesion rows (the stand-in shifts their codes)
    assert (codes[table["region"] == "lesion", 1] >= 10).all()
    assert (codes[table["region"] == "whole", 1] < 10).all()
    table[["x", "y"]] = codes
    assert plot_umap(table, tmp_path / "umap.png").stat().st_size > 0


# -- held-out test cases, copy without peeking, present-only preprocessing -----------------------
def _noisy_copy(site, out, sequence, seed=0):
    """A copy of ``site`` whose ``sequence`` files hold noise everywhere (same grid)."""
    import shutil

    import nibabel as nib

    shutil.copytree(site, out, symlinks=False)
    rng = np.random.default_rng(seed)
    for case in read_site(out).cases:
        path = case.sequences[sequence]
        image = nib.load(path)
        noise = rng.uniform(1, 1000, image.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(noise, image.affine, image.header), path)
    return out


def test_filled_case_mask_is_independent_of_the_missing_sequences(world, tmp_path):
    from harmonix.evaluation.cases import CaseVariants

    noisy = _noisy_copy(world.test, tmp_path / "noisy", "flair")
    present = ["t1", "t1ce", "t2"]
    masks, full_masks = [], []
    for site in (world.test, noisy):
        case = read_site(site).cases[0]
        full = preprocess_case(case, CONFIG)
        variants = CaseVariants(case, full, CONFIG, SEQUENCES)
        prepared = variants.present(present)
        assert set(prepared.volumes) == set(present) and prepared.label is not None
        masks.append(prepared.brain_mask)
        full_masks.append(full.brain_mask)
        for s in present:  # the present volumes too: scaled inside the present-only mask
            assert np.isfinite(prepared.volumes[s]).all()
    assert np.array_equal(masks[0], masks[1])
    assert not np.array_equal(full_masks[0], full_masks[1])  # the noise does change a full mask


def test_overlap_with_training_is_refused_by_id_and_by_content(world, tmp_path):
    import shutil

    from harmonix.api import evaluate
    from harmonix.evaluation.provenance import OverlapError

    quick = dict(segmenter=world.segmenter, scenarios="single", strategies="complete,copy",
                 fid_slices=0, umap=False, overlays=0, progress=False)
    with pytest.raises(OverlapError, match="by id and content") as info:
        evaluate(world.train, out=tmp_path / "a", **quick)
    assert "segmenter's training data" in str(info.value) and not (tmp_path / "a").exists()

    # a renamed copy of a training case (new folder, new file names, same images)
    leaked = read_site(world.train).cases[0]
    renamed = tmp_path / "renamed" / "BraTS19_NEW_0001"
    renamed.mkdir(parents=True)
    for sequence, path in {**leaked.sequences, "seg": leaked.label}.items():
        shutil.copy(path, renamed / f"BraTS19_NEW_0001_{sequence}.nii.gz")
    with pytest.raises(OverlapError, match="'BraTS19_NEW_0001' .training case .* by content"):
        evaluate(tmp_path / "renamed", out=tmp_path / "b", **quick)

    result = evaluate(tmp_path / "renamed", out=tmp_path / "c", allow_overlap=True, **quick)
    top = result.report.read_text().split("## ")[0]
    assert "WARNING: test cases were seen in training" in top
    assert "**OVERLAP**: 1 of 1 test cases" in top
    assert report_settings_of(tmp_path / "c")["provenance"]["overlap_allowed"] is True


def report_settings_of(out):
    from harmonix.evaluation.results import report_settings

    return report_settings(out)


def test_copy_choice_never_looks_at_the_test_cases(world, tmp_path):
    from harmonix.api import evaluate
    from harmonix.evaluation.provenance import OverlapError, clinical_mapping, copy_mapping
    from harmonix.segmentation import load_segmenter

    quick = dict(segmenter=world.segmenter, scenarios="double", strategies="copy",
                 fid_slices=0, umap=False, overlays=0, progress=False)
    noisy = _noisy_copy(world.test, tmp_path / "noisy", "flair", seed=1)
    noisy = _noisy_copy(noisy, tmp_path / "noisier", "t1ce", seed=2)
    choices = []
    for site, out in ((world.test, tmp_path / "clean"), (noisy, tmp_path / "noise")):
        results = evaluate(site, out=out, **quick).results
        copy = results[(results["strategy"] == "copy") & (results["metric"] == "dice")]
        choices.append(copy.set_index(["case", "scenario", "region"])["source"].sort_index())
        assert "learned from the segmenter's training data" in \
            (out / "report.md").read_text().split("## ")[0]
    pd.testing.assert_series_equal(choices[0], choices[1])
    assert (choices[0] != "").all()

    # no record, no training site: the fixed clinical mapping, still not the test cases
    segmenter = load_segmenter(world.segmenter)
    segmenter.card = {k: v for k, v in segmenter.card.items() if k != "training"}
    table, origin = copy_mapping(SEQUENCES, segmenter=segmenter)
    assert "clinical" in origin
    assert copy_sources(table, ["t1", "flair"], ["t1ce", "t2"]) == {"t1": "t1ce", "flair": "t2"}
    assert copy_sources(table, ["t1", "t1ce"], ["t2", "flair"]) == {"t1": "t2", "t1ce": "t2"}
    pd.testing.assert_frame_equal(table, clinical_mapping(SEQUENCES))
    # sites given to measure correlations on must not hold test cases
    from harmonix.evaluation.provenance import case_records
    from harmonix.segmentation import prepare_site

    records = case_records(prepare_site(world.test, CONFIG, sequences=SEQUENCES))
    with pytest.raises(OverlapError, match="test cases"):
        copy_mapping(SEQUENCES, segmenter=segmenter, correlation_data=world.test, config=CONFIG,
                     test_records=records)


def test_evaluate_cli(cli, world, tmp_path):
    result = cli("segment", "train", "--data", world.train, "--out", tmp_path / "seg",
                 "--segmenter", "unet2d", "--iters", "1", "--preprocess-like", world.generator,
                 "--option", "channels=4,8")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "seg" / "model_card.json").read_text())
    assert card["preprocessing"] == CONFIG.to_dict()  # the generator's: 4 mm, 48 x 48 x 39

    out = tmp_path / "report"
    result = cli("evaluate", "--data", world.test, "--segmenter", world.segmenter, "--out", out,
                 "--scenarios", "single", "--strategies", "complete,copy", "--fid-slices", "0",
                 "--no-umap", "--hd95", "--max-cases", "2")
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv", keep_default_na=False)
    hd95 = results[results["metric"] == "hd95"]
    assert set(hd95["region"]) == {"WT", "TC", "ET"}
    assert len(hd95) == 4 * 2 * 3 * 2  # scenarios x strategies x regions x cases
    assert "median Dice" in result.output and "report:" in result.output

    result = cli("evaluate", "--data", world.test, "--segmenter", world.segmenter, "--out",
                 tmp_path / "other", "--strategies", "generated")
    assert result.exit_code == 1 and "--generator" in result.output

    args = ["evaluate", "--data", world.train, "--segmenter", world.segmenter, "--scenarios",
            "single", "--strategies", "complete", "--fid-slices", "0", "--no-umap",
            "--max-cases", "1", "--overlays", "0"]
    result = cli(*args, "--out", tmp_path / "seen")
    assert result.exit_code == 1 and "seen in training" in result.output
    assert "--allow-overlap" in result.output
    result = cli(*args, "--out", tmp_path / "seen", "--allow-overlap")
    assert result.exit_code == 0, result.output
    assert "WARNING" in (tmp_path / "seen" / "report.md").read_text().split("## ")[0]
