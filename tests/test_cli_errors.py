"""CLI-wide errors: one line and exit 1 for expected errors, exit 2 for usage, --device checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import typer

from harmonix.cli import _load_commands, app
from harmonix.data.synth import synthesize_site
from harmonix.device import DeviceError, resolve_device
from harmonix.errors import InputError

COMMANDS_WITH_DEVICE = {"train", "harmonize", "evaluate", "demo", "segment train",
                        "segment predict"}


def error_line(result) -> str:
    """The single line a failing command printed (asserting that it is one, no traceback)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def device_commands() -> dict:
    """Every (sub)command of the real CLI that has a --device option."""
    _load_commands()
    found = {}

    def walk(command, path: str) -> None:
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        elif any("--device" in p.opts for p in command.params):
            found[path] = command

    walk(typer.main.get_command(app), "")
    return found


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_every_command_with_a_device_option_checks_it_before_any_work(cli, no_gpu, tmp_path):
    commands = device_commands()
    assert set(commands) >= COMMANDS_WITH_DEVICE
    for path in commands:
        # --device first and nothing else: it is checked before any other option or argument
        # is looked at, let alone a site read or a model loaded
        result = cli(*path.split(), "--device", "cuda")
        assert result.exit_code == 1, path
        assert "--device cuda: no CUDA GPU is available" in error_line(result), path
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("device", ["cuda", "GPU", "cuda:1"])
def test_a_missing_gpu_is_one_line_naming_the_device(cli, no_gpu, device):
    result = cli("harmonize", "--device", device, "--model", "run", "--out", "out", "site")
    assert result.exit_code == 1
    line = error_line(result)
    assert f"--device {device}: no CUDA GPU is available" in line and "use --device cpu" in line


def test_an_unknown_device_is_a_usage_error(cli):
    result = cli("segment", "predict", "--device", "tpu")
    assert result.exit_code == 2 and "'tpu' is not a device name" in result.output


def test_resolver_names_and_gpu_counts(monkeypatch, no_gpu):
    assert resolve_device("auto") == "cpu" and resolve_device(" CPU ") == "cpu"
    with pytest.raises(DeviceError, match="no CUDA GPU") as excinfo:
        resolve_device("gpu")
    assert not excinfo.value.usage
    for name in ("tpu", "meta", "cuda:x"):
        with pytest.raises(DeviceError) as excinfo:
            resolve_device(name)
        assert excinfo.value.usage, name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("gpu") == "cuda" and resolve_device("auto") == "cuda"
    assert resolve_device("GPU:1") == "cuda:1"
    with pytest.raises(DeviceError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")


@pytest.fixture
def extra_command():
    """Add a throw-away command to the real app (removed afterwards)."""
    _load_commands()
    before = list(app.registered_commands)

    def add(function):
        app.command("raise-for-test")(function)

    yield add
    app.registered_commands[:] = before


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InputError("/data/site/CASE_t1.nii.gz", "[truncated] file"),
         "error: /data/site/CASE_t1.nii.gz: [truncated] file"),
        (PermissionError(13, "Permission denied", "/data/out"),
         "error: [Errno 13] Permission denied: '/data/out'"),
    ],
)
def test_an_uncaught_harmonix_or_os_error_is_one_line_exit_1(cli, extra_command, error, expected):
    def raise_it() -> None:
        raise error

    extra_command(raise_it)
    result = cli("raise-for-test")
    assert result.exit_code == 1 and error_line(result) == expected  # markup kept as text


def test_other_exceptions_are_not_hidden(cli, extra_command):
    def bug() -> None:
        raise ZeroDivisionError("a bug")

    extra_command(bug)
    with pytest.raises(ZeroDivisionError):
        cli("raise-for-test")


@pytest.mark.parametrize(
    "args",
    [("harmonize",), ("no-such-command",), ("segment", "train", "--iters", "zero"),
     ("train", "--batch-size", "0", "--out", "x")],
)
def test_usage_errors_exit_2(cli, args):
    assert cli(*args).exit_code == 2


def test_the_installed_entry_point_prints_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "300"}
    run = subprocess.run(
        [sys.executable, "-m", "harmonix", "harmonize", tmp_path / "site", "--model",
         tmp_path / "run", "--out", tmp_path / "out", "--device", "cuda"],
        env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("error: --device cuda: no CUDA GPU is available")
    assert run.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


def test_segment_train_prints_the_cases_it_skipped(cli, tmp_path):
    site = synthesize_site(tmp_path / "site", 2, center="brats", seed=0, spacing=4.0, workers=1)
    cases = sorted(p for p in site.iterdir() if p.is_dir())
    [flair] = cases[1].glob("*flair*")
    flair.unlink()
    result = cli("segment", "train", "--data", site, "--out", tmp_path / "seg", "--segmenter",
                 "unet2d", "--iters", "1", "--spacing", "4", "--option", "channels=4,8,16")
    assert result.exit_code == 0, result.output
    assert f"{site}/{cases[1].name}: lacks flair" in result.output
    assert "1 case(s) skipped" in result.output and cases[0].name not in result.output
