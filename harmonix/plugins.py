"""Plugin discovery: pluggy hooks with a ``register`` callback per kind of component.

A plugin is a module with hook implementations, published through the ``harmonix`` entry-point
group::

    import harmonix

    @harmonix.hookimpl
    def register_backbones(register):
        register("mine", build_my_backbone)

``obj`` may also be a ``"package.module:attribute"`` string: it is imported on first use, so that
listing plugins or starting the CLI does not import every heavy dependency.

Loading is tolerant, like conda's entry-point loading: a plugin that fails to import (any
exception, ``SystemExit`` included; only ``KeyboardInterrupt`` passes), whose hook has a signature
pluggy rejects, or whose hook raises is recorded as failed (with its distribution and the error),
warned about and skipped; every other plugin keeps working. Two plugins that register the same
name for one kind make only that name unusable: asking for it raises an error naming both.

Lookup, one convention for every kind: ``get_backbone``/``get_trainer``/``get_segmenter``/
``get_metric(name)`` return what the plugin registered (the class, or a backbone's factory);
``build_backbone``/``build_trainer``/``build_segmenter``/``build_metric(name, ...)`` call it and
return a new instance (as timm's ``create_model``).

Environment variables:

* ``HARMONIX_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry-point discovery;
* ``HARMONIX_PLUGINS=pkg.mod,other.mod`` imports extra plugin modules by name (after autoload).
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from harmonix.errors import PluginError

if TYPE_CHECKING:  # the interfaces import torch; listing plugins must not
    from harmonix.interfaces import Backbone, Metric, Segmenter, Trainer

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
        """Register :class:`harmonix.interfaces.Trainer` subclasses (the class)."""

    @hookspec
    def register_segmenters(self, register: Register) -> None:
        """Register :class:`harmonix.interfaces.Segmenter` subclasses (the class)."""

    @hookspec
    def register_metrics(self, register: Register) -> None:
        """Register metric classes: subclasses of ``SegmentationMetric``, ``ImageMetric`` or
        ``ImageSetMetric`` (:mod:`harmonix.interfaces`), constructed with no arguments."""

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
    kind: str = "?"  # the kind whose hook failed; "?" when the plugin failed to load


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
        self._clashes: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
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
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a broken plugin must not break harmonix
                self._record_failure(ep.name, dist, version, exc)
                continue
            self.add(module, name=ep.name, distribution=dist, version=version)

    def add_module_by_name(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
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
        if self.pm.has_plugin(name) or self.pm.is_registered(plugin):
            return
        if distribution is None:
            distribution, version = _distribution_of(plugin)
        version = version or "?"
        try:
            self.pm.register(plugin, name=name)
            unknown = [c.name for c in self.pm.get_hookcallers(plugin) or [] if not c.has_spec()]
            if unknown:
                known = ", ".join(n for n in dir(HookSpecs) if n.startswith("register_"))
                raise PluginError(f"unknown hook {', '.join(unknown)} (hooks are {known})")
        except Exception as exc:  # noqa: BLE001 - pluggy's PluginValidationError: bad signature
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._record_failure(name, distribution, version, exc)
            return
        self._origins[name] = _Origin(distribution, version)
        self._components = None

    def _record_failure(
        self, name: str, dist: str, version: str, exc: BaseException, kind: str = "?"
    ) -> None:
        error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line (pluggy's are not)
        what = "failed to load" if kind == "?" else f"failed in {_hook_name(kind)}"
        self.failed.append(FailedPlugin(name, dist, version, error, kind))
        warnings.warn(
            f"harmonix plugin '{name}' from distribution '{dist}' {what} and is skipped: {error}",
            RuntimeWarning,
            stacklevel=3,
        )

    def _call_hook(
        self, impl: Any, kind: str, argument: Any, check: Callable[[], None] | None = None
    ) -> bool:
        """Call one plugin's hook (then ``check``); a failure is recorded and gives False."""
        args = {"register": argument, "cli": argument}
        try:
            impl.function(*(args[a] for a in impl.argnames))
            if check is not None:
                check()
            return True
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - one plugin's bug must not break the rest
            origin = self._origins.get(impl.plugin_name, _Origin("unknown", "?"))
            self._record_failure(impl.plugin_name, origin.distribution, origin.version, exc, kind)
            return False

    def register_commands(self, cli: Any) -> None:
        """Let each plugin add its typer commands to ``cli``. A plugin whose hook raises, or
        whose commands reuse a name or cannot be built, is recorded as failed and its additions
        are undone."""
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            commands, groups = list(cli.registered_commands), list(cli.registered_groups)
            check = functools.partial(_check_new_commands, cli, commands, groups)
            if not self._call_hook(impl, "command", cli, check):
                cli.registered_commands[:], cli.registered_groups[:] = commands, groups

    # -- lookup ------------------------------------------------------------------------------
    def components(self, kind: str) -> dict[str, Component]:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind '{kind}'; kinds are {', '.join(KINDS)}")
        if self._components is None:
            self._components = self._collect()
        return self._components[kind]

    def get(self, kind: str, name: str) -> Component:
        found = self.components(kind)
        if name in self._clashes[kind]:
            first, *others = self._clashes[kind][name]
            also = " and ".join(f"'{c.plugin}' ({c.distribution})" for c in others)
            raise PluginError(
                f"two plugins register a {kind} named '{name}': '{first.plugin}' "
                f"({first.distribution}) and {also}; uninstall or disable one of them"
            )
        if name not in found:
            available = ", ".join(sorted(found)) or "none"
            hint = ""
            if self.failed:
                hint = "; failed plugins: " + ", ".join(sorted({f.name for f in self.failed}))
            raise PluginError(f"no {kind} named '{name}' (available: {available}){hint}")
        return found[name]

    def _collect(self) -> dict[str, dict[str, Component]]:
        """Call every registration hook; a hook that raises contributes nothing, and a name
        registered more than once is set aside in ``_clashes`` (an error only when asked for)."""
        registered: dict[str, list[Component]] = {}
        self.failed = [f for f in self.failed if f.kind not in KINDS]  # re-collected below
        for kind in KINDS:
            hook = getattr(self.pm.hook, _hook_name(kind))
            for impl in hook.get_hookimpls():  # in registration order: entry points first
                plugin = impl.plugin_name
                origin = self._origins.get(plugin, _Origin("unknown", "?"))
                mine: list[Component] = []

                def register(name: str, obj: Any, _kind=kind, _plugin=plugin, _origin=origin,
                             _mine=mine):
                    if not isinstance(name, str) or not name:
                        raise PluginError(f"plugin '{_plugin}' registered a {_kind} without a name")
                    if isinstance(obj, str) and ":" not in obj:
                        raise PluginError(
                            f"plugin '{_plugin}' registered {_kind} '{name}' as '{obj}'; "
                            "a lazy reference is 'package.module:attribute'"
                        )
                    _mine.append(Component(
                        _kind, name, obj, _plugin, _origin.distribution, _origin.version
                    ))

                if self._call_hook(impl, kind, register):
                    for comp in mine:
                        registered.setdefault(f"{kind}\0{comp.name}", []).append(comp)
        collected: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self._clashes = {kind: {} for kind in KINDS}
        for comps in registered.values():
            kind, name = comps[0].kind, comps[0].name
            if len(comps) == 1:
                collected[kind][name] = comps[0]
            else:
                self._clashes[kind][name] = comps
                names = ", ".join(f"'{c.plugin}' ({c.distribution})" for c in comps)
                warnings.warn(f"harmonix plugins {names} all register a {kind} named '{name}'; "
                              "it cannot be used until one is removed", RuntimeWarning,
                              stacklevel=3)
        return collected

    def plugin_rows(self) -> list[dict[str, str]]:
        """One row per registered component and per failed plugin, for ``harmonix plugins``."""
        rows = []
        for kind in KINDS:
            listed = [(c, "ok") for c in self.components(kind).values()]
            for comps in self._clashes[kind].values():
                for comp in comps:
                    others = ", ".join(f"'{o.plugin}' ({o.distribution})" for o in comps
                                       if o is not comp)
                    listed.append((comp, f"clash: also registered by {others}"))
            for comp, status in sorted(listed, key=lambda row: (row[0].name, row[0].plugin)):
                rows.append(
                    dict(
                        kind=kind,
                        name=comp.name,
                        distribution=comp.distribution,
                        version=comp.version,
                        status=status,
                        plugin=comp.plugin,
                    )
                )
        for failed in self.failed:
            rows.append(
                dict(
                    kind=failed.kind,
                    name=failed.name,
                    distribution=failed.distribution,
                    version=failed.version,
                    status=f"failed: {failed.error}",
                    plugin=failed.name,
                )
            )
        return rows


def _command_names(infos: Iterable[Any]) -> list[str]:
    """The names typer gives registered commands and sub-apps."""
    names = []
    for info in infos:
        name = getattr(info, "name", None)
        if not name and getattr(info, "callback", None) is not None:
            name = info.callback.__name__.lower().replace("_", "-")
        elif not name and getattr(info, "typer_instance", None) is not None:
            name = info.typer_instance.info.name
        names.append(str(name))
    return names


def _check_new_commands(cli: Any, commands: list, groups: list) -> None:
    """Refuse commands a plugin just added that reuse a name or that typer cannot build."""
    import typer

    new = cli.registered_commands[len(commands):] + cli.registered_groups[len(groups):]
    before = set(_command_names(commands + groups))
    added = _command_names(new)
    taken = sorted({n for n in added if n in before or added.count(n) > 1})
    if taken:
        raise PluginError(f"command name {', '.join(taken)} is already taken")
    typer.main.get_command(cli)


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


# -- lookup: ``get_X(name)`` is what the plugin registered (a class, or a backbone's factory);
# ``build_X(name, ...)`` makes one from it (as timm's ``create_model``) -------------------------
def get_backbone(name: str) -> Callable[..., Backbone]:
    """The registered backbone factory ``factory(**options) -> Backbone``."""
    return get_component("backbone", name)


def build_backbone(name: str, **options: Any) -> Backbone:
    """A new backbone network: ``get_backbone(name)(**options)``."""
    return get_backbone(name)(**options)


def get_trainer(name: str) -> type[Trainer]:
    """The registered :class:`~harmonix.interfaces.Trainer` class."""
    return get_component("trainer", name)


def build_trainer(name: str, **options: Any) -> Trainer:
    """A new trainer: ``get_trainer(name)(**options)``."""
    return get_trainer(name)(**options)


def get_segmenter(name: str) -> type[Segmenter]:
    """The registered :class:`~harmonix.interfaces.Segmenter` class (``.load(path)`` rebuilds a
    trained one)."""
    return get_component("segmenter", name)


def build_segmenter(name: str, sequences: Sequence[str], **options: Any) -> Segmenter:
    """A new, untrained segmenter: ``get_segmenter(name)(sequences, **options)``."""
    return get_segmenter(name)(sequences, **options)


def get_metric(name: str) -> type[Metric]:
    """The registered metric class (a subclass of one of the kinds in
    :mod:`harmonix.interfaces`)."""
    return get_component("metric", name)


def build_metric(name: str, **options: Any) -> Metric:
    """A new metric: ``get_metric(name)(**options)``."""
    return get_metric(name)(**options)
