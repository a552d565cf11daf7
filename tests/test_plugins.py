"""Plugin discovery: entry points, tolerance of broken plugins, duplicate names, autoload switch."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import typer
from plugin_fixtures import (
    BACKBONE_PLUGIN,
    BAD_SIGNATURE,
    COMMAND_PLUGIN,
    COMMANDS_RAISE,
    EXITS_ON_IMPORT,
    HOOK_RAISES,
    UNKNOWN_HOOK,
    make_distribution,
)
from typer.testing import CliRunner

import harmonix
from harmonix import plugins
from harmonix.errors import PluginError

BUILTIN_BACKBONES = {"swin", "convnext", "attention-unet"}


@pytest.fixture
def unique():
    """A fresh module-name prefix, and cleanup of the modules and sys.path entries made."""
    prefix = f"hx_test_{uuid.uuid4().hex[:8]}"
    saved_path = list(sys.path)
    yield prefix
    sys.path[:] = saved_path
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[name]


def test_builtin_plugins_are_discovered_through_entry_points():
    host = plugins.PluginHost()
    backbones = host.components("backbone")
    assert BUILTIN_BACKBONES <= set(backbones)
    assert host.components("trainer")["ummgat"].distribution == "harmonix"
    assert {"dice", "fid"} <= set(host.components("metric"))
    assert host.components("segmenter")
    assert not host.failed, host.failed


def test_third_party_plugin_is_listed_and_built_by_name(tmp_path, unique, cli):
    mod = f"{unique}_echo"
    make_distribution(
        tmp_path,
        "harmonix-echo",
        "1.2.3",
        {mod: BACKBONE_PLUGIN.format(name="echo")},
        {"echo": mod},
    )
    plugins.reset_host()
    component = plugins.get_host().get("backbone", "echo")
    assert (component.distribution, component.version) == ("harmonix-echo", "1.2.3")
    net = harmonix.build_backbone("echo")
    assert isinstance(net, harmonix.Backbone)
    result = cli("plugins")
    assert result.exit_code == 0
    assert "echo" in result.output and "harmonix-echo" in result.output


def test_broken_plugin_is_reported_and_the_rest_keeps_working(tmp_path, unique, cli):
    broken = f"{unique}_broken"
    make_distribution(
        tmp_path,
        "harmonix-broken",
        "0.1",
        {broken: "raise ImportError('no cuda here')\n"},
        {"broken": broken},
    )
    plugins.reset_host()
    with pytest.warns(RuntimeWarning, match="harmonix-broken"):
        host = plugins.get_host()
        backbones = host.components("backbone")
    assert BUILTIN_BACKBONES <= set(backbones)
    [failed] = host.failed
    assert failed.distribution == "harmonix-broken" and "no cuda here" in failed.error
    result = cli("plugins")
    assert result.exit_code == 0
    assert "failed" in result.output and "no cuda here" in result.output


def test_a_clash_is_an_error_only_for_the_clashing_name(tmp_path, unique, cli):
    first, second = f"{unique}_first", f"{unique}_second"
    for dist, mod in (("harmonix-first", first), ("harmonix-second", second)):
        source = BACKBONE_PLUGIN.format(name="same").replace(
            'register("same", Echo)', f'register("same", Echo)\n    register("{dist}", Echo)')
        make_distribution(tmp_path, dist, "1.0", {mod: source}, {mod: mod})
    plugins.reset_host()
    with pytest.warns(RuntimeWarning, match="'same'"):
        host = plugins.get_host()
        backbones = host.components("backbone")
    assert "same" not in backbones
    assert {"harmonix-first", "harmonix-second"} | BUILTIN_BACKBONES <= set(backbones)
    assert isinstance(harmonix.build_backbone("harmonix-first"), harmonix.Backbone)
    assert host.get("trainer", "ummgat").distribution == "harmonix"
    with pytest.raises(PluginError) as excinfo:
        host.get("backbone", "same")
    message = str(excinfo.value)
    assert "'same'" in message and "harmonix-first" in message and "harmonix-second" in message
    result = cli("plugins")
    assert result.exit_code == 0
    clash_lines = [line for line in result.output.splitlines() if "clash" in line]
    assert len(clash_lines) == 2 and all("same" in line for line in clash_lines)


def _broken_host(tmp_path, unique, source, name="bad"):
    mod = f"{unique}_{name}"
    make_distribution(tmp_path, f"harmonix-{name}", "0.2", {mod: source}, {name: mod})
    with pytest.warns(RuntimeWarning, match=f"harmonix-{name}"):
        host = plugins.PluginHost()
        backbones = host.components("backbone")
    assert BUILTIN_BACKBONES <= set(backbones)
    [failed] = host.failed
    assert (failed.name, failed.distribution, failed.version) == (name, f"harmonix-{name}", "0.2")
    return host, failed


def test_a_hook_that_raises_is_skipped_with_what_it_registered(tmp_path, unique):
    host, failed = _broken_host(tmp_path, unique, HOOK_RAISES)
    assert failed.kind == "backbone" and "ValueError: hook exploded" in failed.error
    assert "half-done" not in host.components("backbone")
    [row] = [r for r in host.plugin_rows() if r["name"] == "bad"]
    assert row["kind"] == "backbone" and row["status"] == "failed: ValueError: hook exploded"


def test_a_hook_with_the_wrong_signature_is_skipped(tmp_path, unique):
    host, failed = _broken_host(tmp_path, unique, BAD_SIGNATURE)
    assert "PluginValidationError" in failed.error and "extra" in failed.error
    assert "never" not in host.components("backbone")
    assert not host.pm.has_plugin("bad")  # nothing half-registered stays behind


def test_a_misspelt_hook_is_reported(tmp_path, unique):
    _, failed = _broken_host(tmp_path, unique, UNKNOWN_HOOK)
    assert "unknown hook register_backbone" in failed.error and "register_backbones" in failed.error


def test_system_exit_on_import_is_recorded_not_raised(tmp_path, unique):
    _, failed = _broken_host(tmp_path, unique, EXITS_ON_IMPORT)
    assert failed.kind == "?" and failed.error == "SystemExit: plugin gave up"


def test_keyboard_interrupt_on_import_still_stops(tmp_path, unique):
    mod = f"{unique}_interrupt"
    make_distribution(tmp_path, "harmonix-interrupt", "1.0",
                      {mod: "raise KeyboardInterrupt\n"}, {"interrupt": mod})
    with pytest.raises(KeyboardInterrupt):
        plugins.PluginHost()


def test_register_commands_that_raise_or_clash_are_undone(tmp_path, unique):
    raising, clashing, good = (f"{unique}_{n}" for n in ("raising", "clashing", "good"))
    make_distribution(tmp_path, "harmonix-raising", "1.0", {raising: COMMANDS_RAISE},
                      {"raising": raising})
    make_distribution(tmp_path, "harmonix-clashing", "1.0",
                      {clashing: COMMAND_PLUGIN.replace("{name}", "existing")},
                      {"clashing": clashing})
    make_distribution(tmp_path, "harmonix-good", "1.0",
                      {good: COMMAND_PLUGIN.replace("{name}", "hello")}, {"good": good})
    cli = typer.Typer()

    @cli.command()
    def existing() -> None:
        print("the core command")

    host = plugins.PluginHost()
    with pytest.warns(RuntimeWarning) as record:
        host.register_commands(cli)
    assert len(record) == 2
    errors = {f.name: f.error for f in host.failed}
    assert errors == {"raising": "RuntimeError: commands exploded",
                      "clashing": "PluginError: command name existing is already taken"}
    assert {f.kind for f in host.failed} == {"command"}
    runner = CliRunner()
    assert runner.invoke(cli, ["hello"]).output == "hello from a plugin\n"
    assert runner.invoke(cli, ["existing"]).output == "the core command\n"
    assert runner.invoke(cli, ["leftover"]).exit_code == 2  # rolled back: no such command


def test_the_cli_survives_every_kind_of_broken_plugin(tmp_path, unique):
    """The real entry point, in a fresh process: broken plugins are listed, commands work."""
    broken = {"raises": HOOK_RAISES, "signature": BAD_SIGNATURE, "exits": EXITS_ON_IMPORT,
              "commands": COMMANDS_RAISE}
    for name, source in broken.items():
        make_distribution(tmp_path, f"harmonix-{name}", "1.0", {f"{unique}_{name}": source},
                          {name: f"{unique}_{name}"})
    for mod in (f"{unique}_a", f"{unique}_b"):
        make_distribution(tmp_path, f"harmonix-{mod[-1]}", "1.0",
                          {mod: BACKBONE_PLUGIN.format(name="swin")}, {mod: mod})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
           "COLUMNS": "250", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "harmonix", "plugins"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    listed = run.stdout
    for name, reason in [("raises", "hook exploded"), ("signature", "PluginValidationError"),
                         ("exits", "SystemExit"), ("commands", "commands exploded")]:
        [line] = [line for line in listed.splitlines() if f" {name} " in line]
        assert "failed" in line and reason in line, listed
    assert listed.count("clash") == 3  # two plugins and the built-in swin
    assert "convnext" in listed and "ummgat" in listed
    other = subprocess.run([sys.executable, "-m", "harmonix", "registry"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 0 and "brats/flair" in other.stdout, other.stderr


def test_autoload_can_be_turned_off_and_modules_added_by_name(monkeypatch):
    monkeypatch.setenv(plugins.AUTOLOAD_ENV, "1")
    host = plugins.PluginHost()
    assert host.components("backbone") == {}
    monkeypatch.setenv(plugins.EXTRA_PLUGINS_ENV, "harmonix_swin")
    host = plugins.PluginHost()
    assert set(host.components("backbone")) == {"swin"}


def test_unknown_name_lists_what_is_available():
    with pytest.raises(PluginError, match="available: .*swin"):
        plugins.get_host().get("backbone", "no-such-backbone")


def test_unknown_kind_is_an_error():
    with pytest.raises(PluginError, match="unknown plugin kind"):
        plugins.get_host().components("optimizer")


def test_lazy_references_import_on_first_use(tmp_path, unique):
    impl = f"{unique}_impl"
    (tmp_path / f"{impl}.py").write_text(
        "LOADED = True\ndef build(**options):\n    return 'built'\n"
    )
    lazy = f"{unique}_lazy"
    make_distribution(
        tmp_path,
        "harmonix-lazy",
        "1.0",
        {
            lazy: f"""
import harmonix

@harmonix.hookimpl
def register_backbones(register):
    register("lazy", "{impl}:build")
    register("missing", "{impl}:no_such_factory")
"""
        },
        {"lazy": lazy},
    )
    host = plugins.PluginHost()
    assert {"lazy", "missing"} <= set(host.components("backbone"))
    assert impl not in sys.modules  # listing does not import
    assert host.get("backbone", "lazy").obj() == "built"
    with pytest.raises(PluginError, match="harmonix-lazy.*no_such_factory"):
        _ = host.get("backbone", "missing").obj


def test_listing_plugins_does_not_import_heavy_dependencies():
    code = (
        "import sys, harmonix; harmonix.get_host().plugin_rows(); "
        "print(sorted(m for m in ('monai', 'timm', 'pytorch_fid') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_get_returns_what_was_registered_and_build_makes_an_instance():
    """One lookup convention for every kind (docs/plugins.md): get_X(name) is the registered
    class or factory, build_X(name, ...) an instance made from it."""
    from harmonix.interfaces import SegmentationMetric, Segmenter, Trainer

    factory = plugins.get_backbone("attention-unet")
    assert callable(factory) and not isinstance(factory, harmonix.Backbone)
    assert isinstance(plugins.build_backbone("attention-unet", preset="tiny"), harmonix.Backbone)
    assert isinstance(plugins.get_trainer("ummgat"), type)
    assert issubclass(plugins.get_trainer("ummgat"), Trainer)
    assert isinstance(plugins.build_trainer("ummgat"), plugins.get_trainer("ummgat"))
    segmenter = plugins.build_segmenter("unet2d", ["t1", "t2"], channels=(4, 8))
    assert isinstance(segmenter, plugins.get_segmenter("unet2d"))
    assert isinstance(segmenter, Segmenter) and segmenter.sequences == ("t1", "t2")
    assert issubclass(plugins.get_metric("dice"), SegmentationMetric)
    assert plugins.build_metric("dice").compute(np.ones((2, 2, 2), np.uint8),
                                                np.ones((2, 2, 2), np.uint8))["WT"] == 1.0
