"""Exceptions that carry the file (and where useful the key) they are about."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 't1ce'?"`` for the closest of ``known`` (case-insensitive, difflib),
    else ``""``: for misspelt sequence, target and model names."""
    lowered = {str(k).lower(): str(k) for k in known}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


class HarmonixError(Exception):
    """Base class for every error harmonix raises on purpose."""


class InputError(HarmonixError):
    """A user's input file is unusable; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class RegistryError(HarmonixError):
    """registry.yaml (or a user override) is malformed."""

    def __init__(self, file: str | Path, key: str, problem: str):
        self.file = Path(file)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.file}: key '{key}': {problem}")


class PluginError(HarmonixError):
    """A plugin is missing, broken or clashes with another one."""


class CheckpointError(HarmonixError):
    """A checkpoint is missing, truncated or does not match its model card."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
