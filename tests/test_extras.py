"""Optional extras (issue 16, packaging): what only synth, TensorBoard logs or the evaluation need
is imported where it is used; without it, the work that does not need it goes on, and the work
that does fails with one error naming the extra to install."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from harmonix.extras import MissingExtraError
from harmonix.models import checkpoints as ckpt
from harmonix.requests import TrainRequest

SPACING, SIZE = 6.0, 32


def _unimportable(monkeypatch, *names):
    """As if the packages ``names`` (and their submodules already imported) were not installed."""
    for name in [*names, *(m for m in list(sys.modules) if m.startswith(names))]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from harmonix.data.synth import synthesize_site

    root = tmp_path_factory.mktemp("extras")
    return synthesize_site(root / "brats", 2, center="brats", spacing=SPACING, workers=1)


def _train(site, run):
    from harmonix.plugins import build_trainer

    return build_trainer("ummgat").train(TrainRequest(
        out=run, data=[site], backbone="swin", backbone_options={"preset": "tiny"}, iters=1,
        batch_size=2, size=SIZE, spacing=SPACING, pairing="all", lam=False, device="cpu",
        checkpoint_every=1, sample_every=1000, progress=False,
        options={"log_every": 1, "cache_dir": run.parent / "cache"}))


def test_training_needs_no_tensorboard(site, tmp_path, monkeypatch):
    _train(site, tmp_path / "with")
    assert any((tmp_path / "with" / "tensorboard").iterdir())  # logs when it is installed

    _unimportable(monkeypatch, "torch.utils.tensorboard", "tensorboard")
    with pytest.warns(RuntimeWarning, match=r"no TensorBoard logs.*harmonix\[train\]") as caught:
        _train(site, tmp_path / "without")
    assert len([w for w in caught if "TensorBoard" in str(w.message)]) == 1  # one line
    assert "\n" not in str(caught[0].message)
    assert ckpt.latest_checkpoint(tmp_path / "without").name == "iter_000001"
    assert not (tmp_path / "without" / "tensorboard").exists()


@pytest.mark.parametrize("package", ["nilearn", "threadpoolctl"])
def test_synth_without_its_extra_is_one_clear_error(package, tmp_path, monkeypatch):
    from harmonix.data.anatomy import template_path
    from harmonix.data.synth import synthesize_site

    _unimportable(monkeypatch, package)
    with pytest.raises(MissingExtraError, match=rf"'{package}'.*harmonix\[synth\]"):
        synthesize_site(tmp_path / "site", 1, spacing=SPACING, workers=1)
    assert not (tmp_path / "site").exists()  # refused before anything is written
    if package == "nilearn":
        with pytest.raises(MissingExtraError, match=r"harmonix\[synth\]"):
            template_path("t1")


def test_figures_without_matplotlib_name_the_evaluate_extra(tmp_path, monkeypatch):
    from harmonix.evaluation.figures import plot_umap

    table = pd.DataFrame({"target": ["a"] * 2, "kind": ["real"] * 2, "source": ["real"] * 2,
                          "x": [0.0, 1.0], "y": [1.0, 0.0]})
    _unimportable(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError, match=r"'matplotlib'.*harmonix\[evaluate\]"):
        plot_umap(table, tmp_path / "umap.png")
    assert not (tmp_path / "umap.png").exists()


def test_umap_note_names_the_extra(monkeypatch):
    from harmonix.evaluation.codes import umap_embedding

    _unimportable(monkeypatch, "umap")
    embedding, note = umap_embedding(np.random.default_rng(0).normal(size=(6, 3)))
    assert embedding is None
    assert "umap-learn is not importable" in note and "harmonix[evaluate]" in note
