"""Plugin discovery: pluggy hooks with a ``register`` callback per kind of component.

A plugin is a module with hook implementations, published through the ``harmonix`` entry-point
group::

    import harmonix

    @harmonix.hookimpl
    def register_backbones(register):
        register("mine", build_my_backbone)

``obj`` may also be a ``"package.module:attribute"`` string: it is imported on first use, so that
listing plugins or starting the CLI does not import every heavy dependency.

Loading is tolerant: an entry point that fails to import is recorded (with its distribution and
the error) and warned about, and every other plugin keeps working. Two plugins that register the
same name for one kind are refused with an error naming both.

Environment variables:

* ``HARMONIX_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry-point discovery;
* ``HARMONIX_PLUGINS=pkg.mod,other.mod`` imports extra plugin modules by name (after autoload).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from harmonix.errors import PluginError

ENTRY_POINT_GROUP = "harmonix"
AUTOLOAD_ENV = "HARMONIX_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "HARMONIX_PLUGINS"
KINDS = ("backbone", "trainer", "segmenter", "metric")

hookspec = pluggy.HookspecMarker("harmonix")
hookimpl = pluggy.HookimplMarker("harmonix")

Register = Callable[[str, Any], None]


class HookSpecs:
    """Each hook receives ``register(name, obj)``; what ``obj`` is depends on the kind."""

    @hookspec
    def register_backbones(self, register: Register) -> None:
        """Register backbone factories: ``factory(**options) -> harmonix.Backbone``."""

    @hookspec
    def register_trainers(self, register: Register) -> None:
        """Register :class:`harmonix.interfaces.Trainer` subclasses."""

    @hookspec
    def register_segmenters(self, register: Register) -> None:
        """Register :class:`harmonix.interfaces.Segmenter` subclasses."""

    @hookspec
    def register_metrics(self, register: Register) -> None:
        """Register :class:`harmonix.interfaces.Metric` subclasses."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add typer commands to the ``harmonix`` CLI app."""


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    target: Any
    plugin: str
    distribution: str
    version: str

    @property
    def obj(self) -> Any:
        """The registered object, importing a ``"module:attribute"`` reference on first use."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attribute = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{self.kind} '{self.name}' from plugin '{self.plugin}' ({self.distribution}) "
                f"could not be loaded from '{self.target}': {type(exc).__name__}: {exc}"
            ) from exc


@dataclass(frozen=True)
class FailedPlugin:
    name: str
    distribution: str
    version: str
    error: str


@dataclass(frozen=True)
class _Origin:
    distribution: str
    version: str


def _hook_name(kind: str) -> str:
    return f"register_{kind}s"


class PluginHost:
    """Owns the pluggy manager and the components its plugins registered."""

    def __init__(self, autoload: bool | None = None, extra: Iterable[str] | None = None):
        self.pm = pluggy.PluginManager("harmonix")
        self.pm.add_hookspecs(HookSpecs)
        self.failed: list[FailedPlugin] = []
        self._origins: dict[str, _Origin] = {}
        self._components: dict[str, dict[str, Component]] | None = None
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in {"1", "true", "yes"}
        if autoload:
            self.load_entry_points()
        if extra is None:
            extra = [m for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(",") if m.strip()]
        for module_name in extra:
            self.add_module_by_name(module_name.strip())

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "?"
            if self.pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break harmonix
                self._record_failure(ep.name, dist, version, exc)
                continue
            self.add(module, name=ep.name, distribution=dist, version=version)

    def add_module_by_name(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            self._record_failure(module_name, module_name.split(".")[0], "?", exc)
            return
        self.add(module, name=module_name)

    def add(
        self,
        plugin: ModuleType | object,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object or module directly (used by tests and embedding code)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self.pm.has_plugin(name):
            return
        if distribution is None:
            distribution, version = _distribution_of(plugin)
        self.pm.register(plugin, name=name)
        self._origins[name] = _Origin(distribution, version or "?")
        self._components = None

    def _record_failure(self, name: str, dist: str, version: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.failed.append(FailedPlugin(name, dist, version, error))
        warnings.warn(
            f"harmonix plugin '{name}' from distribution '{dist}' failed to load: {error}",
            RuntimeWarning,
            stacklevel=3,
        )

    # -- lookup ------------------------------------------------------------------------------
    def components(self, kind: str) -> dict[str, Component]:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind '{kind}'; kinds are {', '.join(KINDS)}")
        if self._components is None:
            self._components = self._collect()
        return self._components[kind]

    def get(self, kind: str, name: str) -> Component:
        found = self.components(kind)
        if name not in found:
            available = ", ".join(sorted(found)) or "none"
            hint = ""
            if self.failed:
                hint = "; plugins that failed to load: " + ", ".join(f.name for f in self.failed)
            raise PluginError(f"no {kind} named '{name}' (available: {available}){hint}")
        return found[name]

    def _collect(self) -> dict[str, dict[str, Component]]:
        collected: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            hook = getattr(self.pm.hook, _hook_name(kind))
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                origin = self._origins.get(plugin_name, _Origin("unknown", "?"))

                def register(name: str, obj: Any, _kind=kind, _plugin=plugin_name, _origin=origin):
                    if not isinstance(name, str) or not name:
                        raise PluginError(f"plugin '{_plugin}' registered a {_kind} without a name")
                    if isinstance(obj, str) and ":" not in obj:
                        raise PluginError(
                            f"plugin '{_plugin}' registered {_kind} '{name}' as '{obj}'; "
                            "a lazy reference is 'package.module:attribute'"
                        )
                    if name in collected[_kind]:
                        other = collected[_kind][name]
                        raise PluginError(
                            f"two plugins register a {_kind} named '{name}': "
                            f"'{other.plugin}' ({other.distribution}) and '{_plugin}' "
                            f"({_origin.distribution}); uninstall or disable one of them"
                        )
                    collected[_kind][name] = Component(
                        _kind, name, obj, _plugin, _origin.distribution, _origin.version
                    )

                impl.function(register)
        return collected

    def plugin_rows(self) -> list[dict[str, str]]:
        """One row per registered component and per failed plugin, for ``harmonix plugins``."""
        rows = []
        for kind in KINDS:
            for comp in sorted(self.components(kind).values(), key=lambda c: c.name):
                rows.append(
                    dict(
                        kind=kind,
                        name=comp.name,
                        distribution=comp.distribution,
                        version=comp.version,
                        status="ok",
                        plugin=comp.plugin,
                    )
                )
        for failed in self.failed:
            rows.append(
                dict(
                    kind="?",
                    name=failed.name,
                    distribution=failed.distribution,
                    version=failed.version,
                    status=f"failed: {failed.error}",
                    plugin=failed.name,
                )
            )
        return rows


def _distribution_of(plugin: object) -> tuple[str, str]:
    top = (getattr(plugin, "__name__", "") or type(plugin).__module__).split(".")[0]
    for dist_name in metadata.packages_distributions().get(top, []):
        try:
            return dist_name, metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            continue
    return top or "unknown", "?"


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, created on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def reset_host(host: PluginHost | None = None) -> PluginHost | None:
    """Replace the process-wide host (tests); ``None`` makes the next lookup rediscover."""
    global _host
    _host = host
    return _host


def get_component(kind: str, name: str) -> Any:
    """The object a plugin registered under ``name`` for ``kind``."""
    return get_host().get(kind, name).obj


def build_backbone(name: str, **options: Any):
    """Build a registered backbone by name (timm-style factory lookup)."""
    return get_component("backbone", name)(**options)


def get_trainer(name: str):
    return get_component("trainer", name)()


def get_segmenter(name: str):
    return get_component("segmenter", name)


def get_metric(name: str):
    return get_component("metric", name)()
