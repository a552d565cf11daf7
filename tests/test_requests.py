"""The typed requests at the boundaries: built once, checked once, presets resolved in one place,
and the public functions show real signatures."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import harmonix
from harmonix.backbones import DEFAULT_PRESET, MODEL_PRESETS, resolve_presets
from harmonix.evaluation.request import EvaluateRequest
from harmonix.harmonization.request import HarmonizeRequest
from harmonix.requests import TrainRequest


def test_train_request_resolves_the_presets_once_with_one_default(tmp_path):
    plain = TrainRequest(out=tmp_path)
    assert plain.preset == DEFAULT_PRESET == "paper"
    assert plain.backbone_options == {"preset": "paper"} and plain.out == tmp_path
    named = TrainRequest(out=tmp_path, backbone_options={"preset": "tiny", "width": 4})
    assert named.preset == "tiny" and named.backbone_options == {"preset": "tiny", "width": 4}
    own = TrainRequest(out=tmp_path, preset="fast", backbone_options={"preset": "mine"})
    assert own.preset == "fast" and own.backbone_options["preset"] == "mine"
    assert resolve_presets(None, {"preset": "default"}) == ("fast", {"preset": "default"})
    assert resolve_presets(None, {"preset": "mine"})[0] == "paper"  # a backbone-only preset


def test_the_trainers_presets_are_the_core_model_presets():
    from harmonix_ummgat.networks import MODEL_PRESETS as UMMGAT_PRESETS

    assert tuple(UMMGAT_PRESETS) == MODEL_PRESETS


@pytest.mark.parametrize("fields, message", [
    ({"preset": "huge"}, "unknown model preset 'huge'"),
    ({"pairing": "paired"}, "pairing must be one of unpaired, all"),
    ({"iters": 0}, "iters must be at least 1"),
    ({"spacing": -1.0}, "spacing must be positive"),
])
def test_train_request_refuses_bad_fields(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        TrainRequest(out=tmp_path, **fields)


def test_ummgat_options_name_an_unknown_key(tmp_path):
    from harmonix.plugins import build_trainer

    request = TrainRequest(out=tmp_path / "run", options={"style_dim": 8, "stlye_dim": 8})
    with pytest.raises(ValueError, match="'stlye_dim' for the ummgat trainer"):
        build_trainer("ummgat").train(request)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_recipe_overrides_are_typed_and_checked_by_the_trainer():
    from harmonix_ummgat.settings import new_recipe

    recipe = new_recipe(TrainRequest(out=Path("r"), iters=7, batch_size=3,
                                     recipe={"lr": "3e-4", "lambda_ds": 0}))
    assert (recipe.iters, recipe.batch, recipe.lr, recipe.lambda_ds) == (7, 3, 3e-4, 0.0)
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        new_recipe(TrainRequest(out=Path("r"), recipe={"lrr": 1}))


def test_harmonize_and_evaluate_requests_normalise_and_check_once(tmp_path):
    request = HarmonizeRequest(site=str(tmp_path), model="run", out=str(tmp_path / "o"),
                               sources=["t2", "t1"], shard="2/3", merge_aligned=True)
    assert request.site == tmp_path and request.sources == ("t2", "t1")
    assert request.align and (request.shard.index, request.shard.count) == (2, 3)
    for bad in ({"intensity": "raw"}, {"layout": "nnunet"}, {"fill": "mean"},
                {"min_coverage": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HarmonizeRequest(site=tmp_path, model="run", out=tmp_path / "o", **bad)
    evaluation = EvaluateRequest(data=str(tmp_path), segmenter="seg", out=tmp_path / "r",
                                 scenarios="triple,single", strategies="generated,copy")
    assert evaluation.scenarios == ("single", "triple")
    assert evaluation.strategies == ("copy", "generated")
    with pytest.raises(ValueError, match="unknown scenarios"):
        EvaluateRequest(data=tmp_path, segmenter="seg", out=tmp_path, scenarios="single,half")
    with pytest.raises(ValueError, match="'correlated'"):
        EvaluateRequest(data=tmp_path, segmenter="seg", out=tmp_path, sources="t1")


@pytest.mark.parametrize("name, first", [("harmonize", "site"), ("evaluate", "data"),
                                         ("fill_case", "images"), ("load_generator", "path")])
def test_public_functions_have_real_signatures_and_docstrings(name, first):
    function = getattr(harmonix, name)
    parameters = inspect.signature(function).parameters
    assert next(iter(parameters)) == first and function.__doc__
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    if name in ("harmonize", "evaluate"):  # the request's fields, and nothing else
        request = HarmonizeRequest if name == "harmonize" else EvaluateRequest
        fields = set(inspect.signature(request).parameters)
        assert set(parameters) == fields
