"""The typer app, the consoles every command prints to, and the conventions every command shares.

Exit codes, the same for every command: 0 done; 1 error (a HarmonixError or an OSError anywhere
in a command prints one ``error:`` line, no traceback); 2 usage error (click's); 3 partial (some
cases failed, the others are written).

Output, the same for every command (docs/cli.md, "Output for scripts"):

* ``console`` (stdout) takes tables and messages; ``err_console`` (stderr) warnings and errors;
  progress bars go to stderr (:mod:`harmonix.progress`).
* ``--quiet`` (root or command) silences ``console`` and the progress bars: what is left is
  errors and the final result line (:func:`conclude`). ``--verbose`` adds :func:`detail` lines
  and debug logging of the ``harmonix`` loggers on stderr.
* ``--json`` (inspect, harmonize, evaluate, plugins, models list) moves everything ``console``
  prints to stderr and writes one JSON document on stdout (:func:`emit_json`); an error before
  the document is written writes ``{"command", "exit_code", "error"}`` instead.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, get_args

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from harmonix.errors import HarmonixError
from harmonix.progress import set_quiet as set_progress_quiet
from harmonix.version import __version__

EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 1, 2, 3
QUIET, NORMAL, VERBOSE = -1, 0, 1

#: ``harmonix --help`` lists the commands in the order of the workflow; others (plugins') follow.
WORKFLOW_ORDER = ("synth", "inspect", "split", "train", "harmonize", "segment", "evaluate",
                  "models", "manifest", "demo", "plugins", "registry", "info")

console = Console()
err_console = Console(stderr=True)
_result_console = Console()  # the final line, which --quiet keeps
logger = logging.getLogger("harmonix")


# -- output: verbosity and --json ------------------------------------------------------------------
@dataclass
class _Output:
    verbosity: int = NORMAL
    json: bool = False
    emitted: bool = False  # the one JSON document is written
    command: str = ""
    handler: logging.Handler | None = None


_output = _Output()


def verbosity() -> int:
    """:data:`QUIET`, :data:`NORMAL` or :data:`VERBOSE`, as set by ``--quiet``/``--verbose``."""
    return _output.verbosity


def set_verbosity(level: int) -> None:
    """The one switch behind ``--quiet``/``--verbose``: the console, progress bars, logging."""
    _output.verbosity = level
    console.quiet = level == QUIET
    set_progress_quiet(level == QUIET)
    if level == QUIET:  # library warnings too (restored when the command ends: main)
        warnings.simplefilter("ignore")
    if _output.handler is not None:
        logger.removeHandler(_output.handler)
        _output.handler = None
    if level == VERBOSE:
        _output.handler = RichHandler(console=err_console, show_path=False)
        logger.addHandler(_output.handler)
        logger.setLevel(logging.DEBUG)
    else:
        logger.setLevel(logging.NOTSET)


def set_json(command: str) -> None:
    """``--json``: human output goes to stderr; stdout is kept for the one document."""
    _output.json, _output.command, _output.emitted = True, command, False
    console.stderr = True


def reset_output() -> None:
    """Back to the defaults (each invocation starts from them; tests run many in one process)."""
    set_verbosity(NORMAL)
    _output.json, _output.emitted, _output.command = False, False, ""
    console.stderr = False


def emit_json(document: dict[str, Any]) -> None:
    """Write the command's one JSON document to stdout (``--json``); a no-op otherwise.

    Every document starts with ``command``, ``version`` and ``exit_code``; paths are strings."""
    if not _output.json or _output.emitted:
        return
    _output.emitted = True
    head = {"command": _output.command, "version": __version__}
    text = json.dumps(plain({**head, **document}), indent=2, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def plain(value: Any) -> Any:
    """``value`` as strict JSON: paths as strings, NaN and infinities as null, numpy scalars as
    numbers, tuples and sets as lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    return str(value)


def conclude(message: str) -> None:
    """The final result line: printed also under ``--quiet`` (to stderr under ``--json``)."""
    target = err_console if _output.json else _result_console
    target.print(message, soft_wrap=True, highlight=False)


def detail(message: str) -> None:
    """A line for ``--verbose`` only (per-case messages and the like)."""
    if _output.verbosity == VERBOSE:
        err_console.print(message, soft_wrap=True, highlight=False, markup=False)


def warn(message: str) -> None:
    """A warning on stderr (hidden by ``--quiet``)."""
    if _output.verbosity != QUIET:
        err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True,
                          highlight=False)


def grouped_problems(problems: Iterable[Any], root: Path) -> list[str]:
    """Site problems or warnings as lines, identical messages once with a count and the first
    three files (``inspect`` and ``harmonize`` print these)."""
    groups: dict[str, list[str]] = {}
    for problem in problems:
        path = Path(problem.path)
        where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        groups.setdefault(problem.message, []).append(where)
    lines = []
    for message, paths in groups.items():
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        where = paths[0] if len(paths) == 1 else (
            f"{len(paths)} files ({', '.join(paths[:3])}{more})")
        lines.append(f"{where}: {message}")
    return lines


def _report_error(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    emit_json({"exit_code": code, "error": message})


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print one ``error:`` line and exit with ``code`` (under ``--json``: the error document,
    unless the command already wrote its document)."""
    _report_error(message, code)
    raise typer.Exit(code)


def _on_quiet(value: bool) -> None:
    if value:
        set_verbosity(QUIET)


def _on_verbose(value: bool) -> None:
    if value:
        set_verbosity(VERBOSE)


def _on_json(ctx: typer.Context, value: bool) -> bool:
    if value:
        names = []
        while ctx.parent is not None:  # "models list", not the program's name
            names.append(ctx.info_name or "")
            ctx = ctx.parent
        set_json(" ".join(reversed(names)))
    return value


def json_option() -> Any:
    """``--json``: one JSON document on stdout, everything else on stderr."""
    return typer.Option(False, "--json", callback=_on_json,
                        help="Write one JSON document on stdout (docs/cli.md, Output for "
                             "scripts); tables, progress and messages go to stderr.")


# -- the root group: command order, metavars, --quiet/--verbose on every command -------------------
class _Argument(TyperArgument):
    """An argument shown as its metavar alone (``SITE_DIR``), in usage and help alike."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


#: metavars of options named alike in several commands
METAVARS = {"data": "SITE_DIR", "reference": "SITE_DIR", "cross_center_data": "SITE_DIR",
            "correlation_data": "SITE_DIR", "out": "OUT_DIR", "registry": "REGISTRY_YAML",
            "model": "MODEL", "generator": "MODEL", "generator_no_lam": "MODEL",
            "segmenter": "MODEL", "metric": "NAME"}


def _metavar(param: Any) -> str:
    """A real metavar for a parameter typer would show as ``<path>`` or ``{name}``."""
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper()
    if param.is_flag or param.count:
        return ""  # a flag takes no value: nothing shown (typer shows <bool>)
    if param.name in METAVARS:
        return METAVARS[param.name]
    described = param.type_descriptor
    if described.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in described.choices) + "]"
    annotation = described.annotation
    if described.is_list:
        annotation = get_args(annotation)[0]
    if annotation is int:
        return "N"
    if annotation is float:
        return "NUMBER"
    return (param.name or "value").upper()


def _flag_copy(option: Any) -> Any:
    """The root's --quiet/--verbose for a command: the same callback, no value passed on."""
    clone = copy.copy(option)
    clone.expose_value = False
    return clone


def settle_conventions(command: Any, flags: list[Any]) -> None:
    """Give every parameter of ``command`` (and of its subcommands) a real metavar, and every
    leaf command the root's ``--quiet``/``--verbose`` (when it has no option of that name)."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for sub in subcommands.values():
            settle_conventions(sub, flags)
    else:
        taken = {o for p in command.params for o in [*p.opts, *p.secondary_opts]}
        names = {p.name for p in command.params}
        command.params.extend(_flag_copy(f) for f in flags
                              if f.name not in names and not taken & set(f.opts))
    help_option = command.get_help_option(typer.Context(command))
    _settle_metavars([*command.params, *([help_option] if help_option else [])])


def _settle_metavars(params: list[Any]) -> None:
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        if isinstance(param, (TyperArgument, TyperOption)) and param.metavar is None:
            param.metavar = _metavar(param)


class HarmonixGroup(TyperGroup):
    """The root command: commands in workflow order, the shared conventions on every command,
    and an expected error raised anywhere below as one line, exit 1."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        flags = [p for p in self.params if p.name in ("quiet", "verbose")]
        settle_conventions(self, flags)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _settle_metavars(params)  # typer adds --install-completion after __init__
        return params

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(self.commands)
        rank = {name: i for i, name in enumerate(WORKFLOW_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        reset_output()
        try:
            with warnings.catch_warnings():  # --quiet silences every warning of this run only
                return super().main(*args, standalone_mode=standalone_mode, **kwargs)
        except (HarmonixError, OSError) as exc:
            if not standalone_mode:
                raise
            _report_error(str(exc), EXIT_ERROR)
            sys.exit(EXIT_ERROR)
        finally:
            reset_output()


app = typer.Typer(
    name="harmonix",
    help="Fill missing MRI sequences and harmonize multi-center brain MRI with UMMGAT.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=HarmonixGroup,
    epilog="Exit codes, the same for every command: 0 done; 1 error (one line naming the file "
    "or option; nothing written, but for the two kept files of docs/reliability.md); 2 usage "
    "error; 3 partial (some cases failed, the others are written). --quiet and --verbose are "
    "accepted before or after the command.",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"harmonix {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    registry: Optional[Path] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None,
        "--registry",
        envvar="HARMONIX_REGISTRY",
        help="A user registry.yaml merged over the built-in one.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", callback=_on_quiet,
        help="Errors and the final result only: no progress bars, tables or warnings.",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", callback=_on_verbose,
        help="Extra detail: per-case messages and debug logging (on stderr).",
    ),
) -> None:
    """harmonix command line."""
    if registry is not None:
        from harmonix.registry import REGISTRY_ENV, load_registry

        os.environ[REGISTRY_ENV] = str(registry)
        load_registry(registry)  # a bad file is one error line before any work


# -- shared options ------------------------------------------------------------------------------
def _device_callback(value: str) -> str:
    from harmonix.device import DeviceError, resolve_device  # torch: only when a command runs

    try:
        return resolve_device(value)
    except DeviceError as exc:
        if exc.usage:  # a name torch does not know: a usage error (exit 2)
            raise typer.BadParameter(f"'{value}' is {exc.problem}") from None
        raise


def device_option(default: str = "auto", help: str | None = None) -> Any:
    """The ``--device`` option of every command: checked (GPU present?) before any work."""
    help = help or "torch device: auto (CUDA when present, else the CPU), cpu, cuda (or gpu), " \
                   "cuda:N or mps."
    return typer.Option(default, "--device", callback=_device_callback, metavar="DEVICE",
                        help=help)


def batch_size_option(default: int | None, help: str) -> Any:
    """``--batch-size N``, the one name of a batch option in every command."""
    return typer.Option(default, "--batch-size", min=1, metavar="N", help=help)


def deprecated_option(old: str, new: str, **kwargs: Any) -> Any:
    """A hidden option kept for old scripts (``--batch`` for ``--batch-size``): it warns once
    and the command uses its value when given."""

    def _warn(value: Any) -> Any:
        if value is not None:
            warn(f"{old} is deprecated; use {new}")
        return value

    return typer.Option(None, old, hidden=True, callback=_warn, **kwargs)


def key_value_option(option: str, help: str) -> Any:
    """A repeatable ``KEY=VALUE`` option; read it with :func:`parse_key_values`."""
    return typer.Option([], option, metavar="KEY=VALUE", help=help + " Repeatable.")


def _value(text: str) -> Any:
    """YAML (``16``, ``true``, ``[1, 2]``, ``{a: 1}``); a number YAML leaves as text (``1e-4``)
    is a number; a comma-separated list of numbers or booleans (``8,16,32``) is a list."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return json.loads(text)
        except ValueError:
            pass
        if "," in text:
            items = [yaml.safe_load(v) for v in text.split(",")]
            if all(isinstance(v, (int, float)) for v in items):
                return items
    return value


def parse_key_values(pairs: list[str], option: str, *, typed: bool = True) -> dict[str, Any]:
    """The one ``KEY=VALUE`` parser of the CLI: ``["dim=16", "depths=[1,1]"]`` ->
    ``{"dim": 16, "depths": [1, 1]}`` (``typed=False`` keeps the values as text, for a consumer
    that types and checks them itself). A malformed pair is a usage error naming ``option``."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise typer.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint=f"'{option}'")
        try:
            found[key] = _value(text) if typed else text
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise typer.BadParameter(f"{key}={text}: not a value ({problem})",
                                     param_hint=f"'{option}'") from None
    return found
