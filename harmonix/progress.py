"""One rich progress display for the whole process.

Long-running steps call :func:`progress_task`; when a display is already running (the demo runs
one across all its stages) the task joins it, otherwise a display is opened for the step alone::

    with progress_task("training", total=iters) as advance:
        for step in range(iters):
            ...
            advance(1, losses="G 1.23 D 0.45")

Bars go to stderr, so that stdout keeps a command's result (``--json``); :func:`set_quiet` (the
CLI's ``--quiet``) turns every bar off. When stderr is not a terminal (a SLURM or CI log, a pipe)
there are no bars, whose lines would be cut to the console's width: plain, complete lines are
written instead, ``training: 40/200 (20%) 12s  G 1.234 D 0.456``, at the first step, every 5%
of the total, at the last, and at least every :data:`PLAIN_EVERY_S` seconds of a slow task
(without a total: at most that often).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_active: ContextVar[Progress | None] = ContextVar("harmonix_progress", default=None)
_stderr = Console(stderr=True)
_quiet = False
PLAIN_EVERY_S = 30.0  # plain lines of a task without a total: at most this often


def set_quiet(quiet: bool) -> None:
    """Turn every progress display of the process off (``harmonix --quiet``) or back on."""
    global _quiet
    _quiet = quiet


def make_progress(console: Console | None = None, transient: bool = False) -> Progress:
    """A progress display on ``console`` (default: stderr); disabled under :func:`set_quiet`."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed_text]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console or _stderr,
        transient=transient,
        disable=_quiet,
    )


def _speed(progress: Progress, task_id) -> str:
    task = progress.tasks[task_id]
    return f"{task.speed:.2f} it/s" if task.speed else ""


@contextmanager
def shared_progress(console: Console | None = None) -> Iterator[Progress]:
    """Open a display that every :func:`progress_task` inside the block joins."""
    progress = make_progress(console)
    # not a terminal: the tasks inside write plain lines of their own (progress_task)
    token = _active.set(progress if progress.console.is_terminal else None)
    try:
        with progress:
            yield progress
    finally:
        _active.reset(token)


@contextmanager
def progress_task(
    description: str, total: int | None = None, *, quiet: bool = False
) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **info)``; ``info`` key/values are shown after the bar."""
    if quiet or _quiet:
        yield lambda n=1, **info: None
        return
    progress = _active.get()
    owns = progress is None
    if owns and not _stderr.is_terminal:
        yield _plain_task(description, total)
        return
    if owns:
        progress = make_progress()
        progress.start()
    task_id = progress.add_task(description, total=total, info="", speed_text="")

    def advance(n: int = 1, **info: object) -> None:
        text = "  ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
        )
        progress.update(task_id, advance=n, info=text)
        progress.update(task_id, speed_text=_speed(progress, task_id))

    try:
        yield advance
    finally:
        if owns:
            progress.stop()
        else:
            progress.update(task_id, visible=True)


def _info_text(info: dict) -> str:
    return "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in info.items())


def _plain_task(description: str, total: int | None) -> Callable[..., None]:
    """``advance`` for a log that is no terminal: whole lines on stderr, never cut."""
    start = time.monotonic()
    state = {"done": 0, "printed": 0.0}
    every = max(1, total // 20) if total else 0

    def advance(n: int = 1, **info: object) -> None:
        state["done"] += n
        done, now = state["done"], time.monotonic()
        if total:
            due = (done in (n, total) or done // every > (done - n) // every
                   or now - state["printed"] >= PLAIN_EVERY_S)
        else:
            due = done == n or now - state["printed"] >= PLAIN_EVERY_S
        if not due:
            return
        state["printed"] = now
        count = f"{done}/{total} ({100 * done // total}%)" if total else f"{done}"
        text = _info_text(info)
        print(f"{description}: {count} {now - start:.0f}s" + (f"  {text}" if text else ""),
              file=sys.stderr, flush=True)

    return advance
