"""One resolver for every ``--device``: ``auto``, ``cpu``, ``cuda``/``gpu``, ``cuda:N``, ``mps``.

A device that this machine does not have is refused with one line before any work starts, not
discovered by torch in the middle of a run.
"""

from __future__ import annotations

import torch

from harmonix.errors import HarmonixError

ALIASES = {"gpu": "cuda"}


class DeviceError(HarmonixError):
    """A ``--device`` that is not a device name (``usage``) or not present on this machine."""

    def __init__(self, device: str, problem: str, *, usage: bool = False):
        self.device = device
        self.problem = problem
        self.usage = usage
        super().__init__(f"--device {device}: {problem}")


def resolve_device(name: str) -> str:
    """The torch device string for ``name``; raises :class:`DeviceError` when it is unknown or
    absent (``auto`` picks CUDA when present, else the CPU)."""
    text = str(name).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    base, sep, index = text.partition(":")
    text = ALIASES.get(base, base) + sep + index
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(name, "not a device name; use cpu, cuda, cuda:N, mps or auto",
                          usage=True) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"with CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
            raise DeviceError(name, f"no CUDA GPU is available (torch {torch.__version__}, built "
                                    f"{build}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(name, f"this machine has {count} CUDA GPU(s), cuda:0 to "
                                    f"cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(name, "Apple MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(name, "not a device harmonix runs on; use cpu, cuda, cuda:N, mps or auto",
                          usage=True)
    return str(device)
