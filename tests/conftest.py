"""Shared test setup: headless plotting, few threads, a clean plugin host per test."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny networks: one intra-op thread beats two on a shared 2-core runner (measured several
# times faster under load); benchmarks, not tests, measure multi-threaded speed.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_plugin_host(monkeypatch):
    """Each test starts from a freshly discovered plugin host and the built-in registry."""
    from harmonix import plugins, registry

    monkeypatch.delenv(plugins.AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(plugins.EXTRA_PLUGINS_ENV, raising=False)
    monkeypatch.delenv(registry.REGISTRY_ENV, raising=False)
    plugins.reset_host()
    yield
    # The CLI's --registry sets the variable for the process; never let it outlive the test.
    for name in (plugins.AUTOLOAD_ENV, plugins.EXTRA_PLUGINS_ENV, registry.REGISTRY_ENV):
        os.environ.pop(name, None)
    plugins.reset_host()


@pytest.fixture
def cli():
    """Invoke the ``harmonix`` CLI in-process: ``cli("plugins")`` -> typer Result."""
    from typer.testing import CliRunner

    from harmonix.cli import _load_commands, app
    from harmonix.cli.app import console, err_console

    _load_commands()
    for stream in (console, err_console):
        stream.width = 200  # no wrapping of long messages in captured output
    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke
