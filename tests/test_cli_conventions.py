"""One CLI convention for every command: --json (one document on stdout), --quiet/--verbose,
--batch-size, --device auto, one KEY=VALUE parser, workflow order, real metavars, plain help."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from test_harmonize import InvertingGenerator, case_dirs, drop, manifest_rows
from test_site import brats2019_case
from typer.testing import CliRunner

from harmonix.cli import _load_commands, app, reference_markdown
from harmonix.cli.app import WORKFLOW_ORDER, parse_key_values

ROOT = Path(__file__).parents[1]
BAR = "━"  # rich's progress bar


@pytest.fixture
def run():
    """Invoke the CLI in-process; the result keeps stdout and stderr apart."""
    from harmonix.cli.app import console, err_console

    _load_commands()
    for stream in (console, err_console):
        stream.width = 200
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def document(result) -> dict:
    """The one JSON document of a --json run: stdout alone parses, and holds nothing else."""
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == result.exit_code
    return doc


def all_commands() -> dict[str, typer.core.TyperCommand]:
    """Every leaf command of the real CLI, by its path (``segment train``)."""
    _load_commands()
    found = {}

    def walk(command, path: str) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found[path] = command

    walk(typer.main.get_command(app), "")
    return found


# -- small sites -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Three built-in ``brats`` cases at 4 mm."""
    from harmonix.data.synth import synthesize_site

    return synthesize_site(tmp_path_factory.mktemp("conventions") / "brats", 3, center="brats",
                           spacing=4.0, workers=1)


@pytest.fixture
def site(built, tmp_path) -> Path:
    """The built-in cases with 2, 1 and 0 sequences missing: 3 to generate."""
    root = shutil.copytree(built, tmp_path / "site")
    for case_dir, missing in zip(case_dirs(root), (["t2", "flair"], ["t1ce"], []), strict=True):
        drop(root, case_dir.name, missing)
    return root


@pytest.fixture
def fake_model(monkeypatch):
    import harmonix.harmonization.pipeline

    generator = InvertingGenerator()
    monkeypatch.setattr(harmonix.harmonization.pipeline,
                        "as_generator", lambda model, device="cpu": generator)
    return generator


@pytest.fixture
def small_site(tmp_path) -> Path:
    """Two good cases (one without T2) and one with a truncated FLAIR."""
    root = tmp_path / "small"
    brats2019_case(root, "c1")
    brats2019_case(root, "c2", sequences=("t1", "t1ce", "flair"))
    brats2019_case(root, "c3")
    flair = root / "c3" / "c3_flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[:100])
    return root


# -- --json ----------------------------------------------------------------------------------------
def test_inspect_json_holds_the_counts_cases_and_problems(run, small_site):
    result = run("inspect", small_site, "--json")
    assert result.exit_code == 1  # a problem: as without --json
    doc = document(result)
    assert doc["command"] == "inspect" and doc["site"]["center"] == "small"
    warnings = doc["counts"].pop("warnings")  # random voxels: no skull stripping
    assert doc["counts"] == {"cases": 3, "ok": 2, "with_problems": 1, "complete": 2,
                             "labelled": 3, "problems": 1, "ignored": 0,
                             "per_sequence": {"t1": 3, "t1ce": 3, "t2": 2, "flair": 3}}
    assert warnings == len(doc["warnings"]) > 0
    assert all(w["path"] and "skull-stripped" in w["message"] for w in doc["warnings"])
    by_id = {case["id"]: case for case in doc["cases"]}
    assert by_id["c2"]["missing"] == ["t2"] and by_id["c2"]["status"] == "ok"
    assert by_id["c1"]["shape"] == [12, 12, 8] and by_id["c1"]["orientation"] == "RAS"
    [problem] = doc["problems"]
    assert problem["case"] == "c3" and problem["path"] == str(small_site / "c3/c3_flair.nii.gz")
    assert problem["message"] and by_id["c3"]["problems"] == [problem]
    # the table and the problem list are still shown, on stderr
    assert "c3_flair.nii.gz" in result.stderr and "1 problem" in result.stderr


def test_inspect_json_of_a_clean_site_exits_0(run, tmp_path):
    root = tmp_path / "clean"
    brats2019_case(root, "c1")
    result = run("inspect", root, "--quick", "--json")
    doc = document(result)
    assert result.exit_code == 0 and doc["quick"] is True
    assert doc["counts"]["cases"] == 1 and doc["problems"] == []


def test_harmonize_json_holds_counts_cases_and_output_paths(run, site, fake_model, tmp_path):
    out = tmp_path / "out"
    result = run("harmonize", site, "--model", tmp_path / "run", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    doc = document(result)
    assert doc["command"] == "harmonize" and doc["out"] == str(out)
    assert doc["manifest"] == str(out / "manifest.csv") and doc["site"] == str(site)
    assert doc["counts"]["cases"] == 3 and doc["counts"]["done"] == 3
    assert doc["counts"]["failed"] == doc["counts"]["skipped"] == 0
    rows = manifest_rows(out)
    assert doc["counts"]["generated"] == sum(r["status"] == "generated" for r in rows) == 3
    generated = [f for case in doc["cases"] for f in case["files"] if f["status"] == "generated"]
    assert {Path(f["file"]).name for f in generated} == {
        r["file"].split("/")[-1] for r in rows if r["status"] == "generated"}
    assert all(Path(f["file"]).is_file() for f in generated)
    assert "harmonize ->" in result.stderr  # the summary table, on stderr

    again = run("harmonize", site, "--model", tmp_path / "run", "--out", out, "--json")
    assert document(again)["counts"]["skipped"] == 3


def test_harmonize_json_reports_a_failed_case_with_exit_3(run, site, fake_model, tmp_path):
    bad = case_dirs(site)[2]
    t1 = next(bad.glob("*_t1.nii.gz"))
    t1.write_bytes(t1.read_bytes()[:200])
    result = run("harmonize", site, "--model", tmp_path / "run", "--out", tmp_path / "out",
                 "--json")
    assert result.exit_code == 3
    doc = document(result)
    assert doc["failed"] == [bad.name] and doc["counts"]["failed"] == 1
    [case] = [c for c in doc["cases"] if c["case"] == bad.name]
    assert case["status"] == "failed" and any(t1.name in f["message"] for f in case["files"])
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: 1 case(s) failed")


def test_an_error_before_the_document_is_an_error_document(run, tmp_path):
    result = run("harmonize", tmp_path / "nowhere", "--model", tmp_path / "run", "--out",
                 tmp_path / "out", "--json")
    assert result.exit_code == 1
    doc = document(result)
    assert doc["command"] == "harmonize" and "nowhere" in doc["error"]
    assert result.stderr.startswith("error: ")


def test_plugins_json(run):
    result = run("plugins", "--json")
    doc = document(result)
    assert result.exit_code == 0 and doc["command"] == "plugins"
    names = {(p["kind"], p["name"]) for p in doc["plugins"]}
    assert {("trainer", "ummgat"), ("backbone", "swin"), ("segmenter", "unet2d")} <= names
    assert doc["counts"]["plugins"] == len(doc["plugins"])
    assert doc["counts"]["ok"] + doc["counts"]["not_ok"] == len(doc["plugins"])
    assert sum(doc["counts"]["by_kind"].values()) == len(doc["plugins"])


@pytest.fixture(scope="module")
def segmenter(built, tmp_path_factory) -> Path:
    from harmonix.data.preprocess import PreprocessConfig
    from harmonix.segmentation import train_segmenter

    config = PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 39))
    return train_segmenter(built, tmp_path_factory.mktemp("seg") / "seg", segmenter="unet2d",
                           preprocess=config, iters=1, options={"channels": (4, 8)},
                           progress=False)


def test_evaluate_json(run, built, segmenter, tmp_path):
    out = tmp_path / "report"
    result = run("evaluate", "--data", built, "--segmenter", segmenter, "--out", out,
                 "--scenarios", "single", "--strategies", "complete,copy", "--fid-slices", "0",
                 "--no-umap", "--max-cases", "2", "--overlays", "0", "--allow-overlap", "--json")
    assert result.exit_code == 0, result.stderr
    doc = document(result)
    assert doc["command"] == "evaluate" and doc["report"] == str(out / "report.md")
    assert doc["counts"]["cases"] == 2 and doc["counts"]["strategies"] == 2
    assert doc["counts"]["scenarios"] == 4  # one sequence missing: four scenarios
    assert doc["strategies"] == ["complete", "copy"] and len(doc["cases"]) == 2
    assert Path(doc["files"]["results"]).is_file()
    assert {m["region"] for m in doc["medians"]} >= {"WT", "TC", "ET"}
    assert all(m["dice"] is None or 0 <= m["dice"] <= 1 for m in doc["medians"])
    assert "median Dice" in result.stderr and "report:" in result.stderr


# -- --quiet and --verbose -------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "command"])
def test_quiet_prints_no_table_and_no_progress_only_the_result(run, site, fake_model, tmp_path,
                                                                where):
    args = ["harmonize", site, "--model", tmp_path / "run", "--out", tmp_path / "out"]
    result = run(*(["--quiet", *args] if where == "root" else [*args, "-q"]))
    assert result.exit_code == 0
    assert result.output.strip().splitlines() == [
        f"3 done, 0 skipped (already complete), 0 failed; manifest: {tmp_path / 'out'}/"
        "manifest.csv"]
    loud = run(*args, "--overwrite")
    # what --quiet took away; stderr is no terminal here: plain progress lines, not bars
    assert "harmonize: 3/3 (100%)" in loud.stderr and "harmonize ->" in loud.stdout
    assert BAR not in loud.stderr


def test_quiet_keeps_errors(run, small_site):
    result = run("-q", "inspect", small_site)
    assert result.exit_code == 1
    assert "c3_flair.nii.gz" in result.stderr and "✓" not in result.output  # no table
    assert result.stdout.strip().startswith("3 cases: 2 without problems")


def test_verbose_adds_each_file(run, small_site):
    plain = run("inspect", small_site, "--quick")
    verbose = run("--verbose", "inspect", small_site, "--quick")
    line = "c2 t1ce: c2/c2_t1ce.nii.gz (12x12x8 at 1x1x1 mm, RAS, float32)"
    assert line in verbose.stderr and line not in plain.output


def test_every_command_takes_quiet_and_verbose():
    for path, command in all_commands().items():
        options = {o for p in command.params for o in p.opts}
        assert {"--quiet", "-q", "--verbose", "-v"} <= options, path


# -- one convention --------------------------------------------------------------------------------
def test_help_lists_commands_in_workflow_order(run):
    result = run("--help")
    listed = re.findall(r"^│ (\w+)\s", result.stdout.split("Commands")[1], flags=re.M)
    workflow = [name for name in WORKFLOW_ORDER if name in listed]
    assert listed[:len(workflow)] == workflow
    assert workflow[:10] == ["synth", "inspect", "split", "train", "harmonize", "segment",
                             "evaluate", "models", "manifest", "demo"]
    text = reference_markdown()
    positions = [text.index(f"## `harmonix {name}`") for name in workflow]
    assert positions == sorted(positions)


def test_every_batch_option_is_batch_size_and_every_device_defaults_to_auto():
    batch_commands, device_commands = set(), set()
    for path, command in all_commands().items():
        for param in command.params:
            if any("batch" in o for o in param.opts) and not param.hidden:
                assert param.opts == ["--batch-size"], (path, param.opts)
                batch_commands.add(path)
            if "--device" in param.opts:
                assert param.default == "auto", path
                device_commands.add(path)
    assert {"train", "harmonize", "evaluate", "segment train"} <= batch_commands
    assert {"train", "harmonize", "evaluate", "segment train", "segment predict"} <= (
        device_commands)


def test_train_batch_is_a_hidden_deprecated_alias(run, monkeypatch, tmp_path):
    import harmonix.plugins

    seen = {}
    trainer = SimpleNamespace(train=lambda request: seen.update(request=request) or tmp_path)
    monkeypatch.setattr(harmonix.plugins, "build_trainer", lambda name: trainer)
    result = run("train", "--data", tmp_path, "--out", tmp_path / "run", "--batch", "3")
    assert result.exit_code == 0, result.output
    assert seen["request"].batch_size == 3
    assert "--batch is deprecated; use --batch-size" in result.stderr
    result = run("train", "--data", tmp_path, "--out", tmp_path / "run", "--batch-size", "5")
    assert seen["request"].batch_size == 5 and "deprecated" not in result.output
    assert "--batch " not in run("train", "--help").stdout


def test_no_metavar_in_the_reference_is_a_type_or_a_brace():
    text = (ROOT / "docs" / "cli.md").read_text()
    assert text == reference_markdown()
    entries = re.findall(r"^\* `([^`]+)`", text, flags=re.M)
    usages = re.findall(r"^\$ (harmonix .+)$", text, flags=re.M)
    assert len(entries) > 50 and len(usages) > 10
    for spec in entries + usages:
        assert "<" not in spec and "{" not in spec, spec
    assert "* `harmonize SITE_DIR`" not in text  # arguments are shown by their metavar alone
    assert "$ harmonix harmonize [OPTIONS] SITE_DIR" in text
    assert "* `--batch-size N`" in text and "* `--recipe KEY=VALUE`" in text


def test_terminal_help_shows_no_bool_or_type_placeholders(run):
    for path in ("", "harmonize", "train", "segment train", "evaluate", "models export"):
        out = run(*path.split(), "--help").stdout
        assert not re.search(r"<(bool|path|str|int|float|list)", out), (path, out)


def test_no_rst_markup_in_help_text():
    _load_commands()
    texts = {}

    def walk(command, path: str) -> None:
        texts[path] = f"{command.help or ''} {command.epilog or ''}"
        for param in command.params:
            texts[f"{path} {param.name}"] = getattr(param, "help", None) or ""
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "harmonix")
    assert {"harmonix segment", "harmonix segment train", "harmonix train recipe"} <= set(texts)
    for where, text in texts.items():
        assert "``" not in text, where
        assert not re.search(r":(func|class|mod|meth|attr|data):", text), where


# -- KEY=VALUE -------------------------------------------------------------------------------------
def test_key_value_parser_types_values():
    assert parse_key_values(["dim=16", "depths=[1, 1]", "lr=1e-4", "channels=8,16,32",
                             "norm=batch", "flag=true", " key = text "], "--x") == {
        "dim": 16, "depths": [1, 1], "lr": 1e-4, "channels": [8, 16, 32], "norm": "batch",
        "flag": True, "key": "text"}
    assert parse_key_values(["lr=1e-4"], "--recipe", typed=False) == {"lr": "1e-4"}


@pytest.mark.parametrize("pair", ["oops", "=1", "key=", "x=[1,"])
def test_key_value_parser_errors_name_the_option(pair):
    with pytest.raises(typer.BadParameter) as excinfo:
        parse_key_values([pair], "--backbone-option")
    assert excinfo.value.param_hint == "'--backbone-option'"


@pytest.mark.parametrize(
    ("command", "option"),
    [(("train",), "--recipe"), (("train",), "--backbone-option"),
     (("segment", "train"), "--option")],
)
def test_a_malformed_pair_is_a_usage_error_naming_the_option(run, tmp_path, command, option):
    result = run(*command, "--data", tmp_path, "--out", tmp_path / "out", option, "oops")
    assert result.exit_code == 2
    message = " ".join(result.output.replace("│", " ").split())
    assert f"Invalid value for '{option}': 'oops' is not KEY=VALUE" in message
    assert not (tmp_path / "out").exists()
