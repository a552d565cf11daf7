"""Plugin discovery: entry points, tolerance of broken plugins, duplicate names, autoload switch."""

from __future__ import annotations

import sys
import uuid

import pytest
from plugin_fixtures import BACKBONE_PLUGIN, make_distribution

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


def test_two_plugins_with_one_name_are_refused_naming_both(tmp_path, unique):
    first, second = f"{unique}_first", f"{unique}_second"
    make_distribution(
        tmp_path,
        "harmonix-first",
        "1.0",
        {first: BACKBONE_PLUGIN.format(name="same")},
        {"first": first},
    )
    make_distribution(
        tmp_path,
        "harmonix-second",
        "1.0",
        {second: BACKBONE_PLUGIN.format(name="same")},
        {"second": second},
    )
    host = plugins.PluginHost()
    with pytest.raises(PluginError) as excinfo:
        host.components("backbone")
    message = str(excinfo.value)
    assert "'same'" in message and "harmonix-first" in message and "harmonix-second" in message


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
    import subprocess

    code = (
        "import sys, harmonix; harmonix.get_host().plugin_rows(); "
        "print(sorted(m for m in ('monai', 'timm', 'pytorch_fid') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
