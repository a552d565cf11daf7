"""Messages and conventions (issue 23): --quiet silences every warning, identical warnings are
grouped, "did you mean" for misspelt names, plain progress lines in logs that are no terminal,
and synth --prefix for sites made separately."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_cli_conventions import built, fake_model, run  # noqa: F401 - fixtures
from test_harmonize import case_dirs

from harmonix.data.site import read_site


def thicken(site: Path, cases: int) -> None:
    """Give the first ``cases`` cases 3x thicker slices (every file: one grid per case)."""
    for case_dir in case_dirs(site)[:cases]:
        for path in case_dir.glob("*.nii.gz"):
            image = nib.load(path)
            affine = image.affine @ np.diag([1.0, 1.0, 3.0, 1.0])
            nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), affine, image.header), path)


@pytest.fixture
def thick_site(built, tmp_path) -> Path:  # noqa: F811
    site = shutil.copytree(built, tmp_path / "site")
    thicken(site, 3)
    for case_dir in case_dirs(site):
        (case_dir / f"{case_dir.name}_flair.nii.gz").unlink()
    return site


def test_quiet_silences_every_warning(run, thick_site, fake_model, tmp_path, monkeypatch):  # noqa: F811
    import harmonix.harmonization.pipeline as pipeline

    original = pipeline.check_grid

    def noisy(*args, **kwargs):  # a library warning during the run
        warnings.warn("a library warning", RuntimeWarning, stacklevel=2)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "check_grid", noisy)
    args = ["harmonize", thick_site, "--model", tmp_path / "run", "--out", tmp_path / "out",
            "--min-coverage", "0"]
    with pytest.warns(RuntimeWarning, match="a library warning"):
        loud = run(*args)
    assert loud.exit_code == 0, loud.output
    assert "thick or anisotropic slices" in loud.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet = run("--quiet", *args, "--overwrite")
    assert not [w for w in caught if "library warning" in str(w.message)]
    assert quiet.exit_code == 0, quiet.output
    assert "warning" not in quiet.output.lower() and "thick" not in quiet.output
    assert len(quiet.output.strip().splitlines()) == 1  # the result line alone


def test_inspect_groups_identical_warnings(run, built, tmp_path):  # noqa: F811
    site = shutil.copytree(built, tmp_path / "site")
    thicken(site, 3)
    result = run("inspect", site, "--quick")
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert text.count("thick or anisotropic slices") == 1  # one paragraph for 12 files
    assert "12 files (" in text and "and 9 more)" in text


def test_harmonize_groups_identical_warnings_and_quiet_hides_them(run, built, tmp_path):  # noqa: F811
    site = shutil.copytree(built, tmp_path / "site")
    thicken(site, 3)
    result = run("harmonize", site, "--model", tmp_path / "no-run", "--out", tmp_path / "out")
    text = " ".join(result.stderr.split())
    assert text.count("thick or anisotropic slices") == 1, result.stderr  # before the model
    assert "12 files (" in text and "and 9 more)" in text
    quiet = run("harmonize", site, "--model", tmp_path / "no-run", "--out", tmp_path / "out",
                "--quiet")
    assert "thick or anisotropic" not in quiet.stderr and quiet.exit_code == result.exit_code


def test_did_you_mean_for_sequence_target_and_model(run, built, tmp_path, monkeypatch):  # noqa: F811
    site = shutil.copytree(built, tmp_path / "site")
    case = case_dirs(site)[0]
    (case / f"{case.name}_flair.nii.gz").rename(case / f"{case.name}_flari.nii.gz")
    [problem] = read_site(site).all_problems
    assert "unknown sequence name 'flari'; did you mean 'flair'?" in problem.message
    result = run("harmonize", site, "--target", "brast", "--model", tmp_path / "run",
                 "--out", tmp_path / "out")
    assert result.exit_code == 1 and "did you mean 'brats'?" in result.stderr
    models = tmp_path / "models"
    (models / "tiny-gen").mkdir(parents=True)
    (models / "tiny-gen" / "model_card.json").write_text("{}")
    monkeypatch.setenv("HARMONIX_MODELS", str(models))
    monkeypatch.chdir(tmp_path)
    result = run("harmonize", site, "--model", "tiny-gne", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "did you mean 'tiny-gen'?" in result.stderr
    result = run("harmonize", site, "--model", tmp_path / "run", "--out", tmp_path / "out",
                 "--sources", "t2w,flari")
    assert "did you mean 'flair'?" in result.stderr


def test_progress_is_plain_whole_lines_when_stderr_is_no_terminal(capsys):
    from harmonix.progress import progress_task

    losses = "G 1.234  D 0.456  " + "x" * 150  # longer than any console
    with progress_task("training", total=40) as advance:
        for _ in range(40):
            advance(1, losses=losses)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("training: 1/40 (2%) ") and lines[-1].startswith("training: 40/40")
    assert all(line.endswith(losses) for line in lines) and "…" not in "".join(lines)
    assert len(lines) == 21  # the first step, every 5%, the last


def test_synth_prefix_keeps_separately_made_sites_apart(run, tmp_path):  # noqa: F811
    for name, prefix in (("train", []), ("test", ["--prefix", "test"])):
        result = run("synth", tmp_path / name, "--cases", "1", "--spacing", "8", "-j", "1",
                     *prefix)
        assert result.exit_code == 0, result.output
    [train], [test] = (read_site(tmp_path / n).cases for n in ("train", "test"))
    assert train.id == "BraTS19_SYN_0001" and test.id == "test_BraTS19_SYN_0001"
    assert test.sequences["t1"].name == "test_BraTS19_SYN_0001_t1.nii.gz"
    result = run("synth", tmp_path / "bad", "--prefix", "a/b", "--spacing", "8")
    assert result.exit_code == 1 and "prefix" in result.stderr
