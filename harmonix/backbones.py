"""Named backbone configurations (presets), shared by every backbone factory.

A backbone plugin keeps a ``PRESETS`` table and builds through :func:`from_preset`::

    PRESETS = {"paper": dict(width=64), "fast": dict(width=32), "tiny": dict(width=8)}

    def build_my_unet(*, in_channels=1, out_channels=1, style_dim=64, img_size=176,
                      preset=DEFAULT_PRESET, **options):
        return from_preset("my-unet", MyUnet, PRESETS, preset, options,
                           in_channels, out_channels, style_dim, img_size)

``paper`` is the paper-scale configuration, ``fast`` the quick one (``default`` in model cards
written before the rename), ``tiny`` the one the backbone test suite builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

#: Old preset names still found in model cards, and what they are called now.
PRESET_ALIASES: dict[str, str] = {"default": "fast"}
#: The presets a whole model has (a trainer's widths and its backbone's preset, chosen together).
MODEL_PRESETS = ("paper", "fast", "small", "tiny")
#: The one default preset: the paper's scale.
DEFAULT_PRESET = "paper"
#: What model cards written before presets existed were (their backbone preset was ``default``).
UNNAMED_CARD_PRESET = "fast"

T = TypeVar("T")


def resolve_preset(name: str) -> str:
    """The current name of preset ``name`` (``default`` -> ``fast``)."""
    return PRESET_ALIASES.get(name, name)


def resolve_presets(
    preset: str | None, backbone_options: Mapping[str, Any], default: str = DEFAULT_PRESET,
) -> tuple[str, dict[str, Any]]:
    """The model preset and the backbone options, resolved once for every caller.

    ``preset`` left ``None``: a model preset named by ``backbone_options["preset"]`` (say
    ``tiny``) is the whole model's, else ``default``. The backbone's preset is the model's unless
    ``backbone_options`` name one. ``ValueError`` names an unknown model preset.
    """
    options = dict(backbone_options)
    if preset is None:
        named = resolve_preset(str(options.get("preset", default)))
        preset = named if named in MODEL_PRESETS else default
    preset = resolve_preset(preset)
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset '{preset}'; presets are {', '.join(MODEL_PRESETS)}")
    options.setdefault("preset", preset)
    return preset, options


def preset_options(
    backbone: str, presets: Mapping[str, Mapping[str, Any]], preset: str,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """``presets[preset]`` with ``options`` over it; ``ValueError`` naming an unknown preset."""
    resolved = resolve_preset(preset)
    if resolved not in presets:
        raise ValueError(
            f"unknown {backbone} preset '{preset}'; presets are {', '.join(presets)}"
        )
    return {**presets[resolved], **options}


def from_preset(
    backbone: str, build: Callable[..., T], presets: Mapping[str, Mapping[str, Any]],
    preset: str, options: Mapping[str, Any], *args: Any,
) -> T:
    """``build(*args, **preset_options(...))``: a backbone from a named preset and overrides."""
    return build(*args, **preset_options(backbone, presets, preset, options))
