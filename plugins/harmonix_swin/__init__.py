"""The ``swin`` backbone: a Swin-Unet with AdaIN style injection in the decoder."""

from __future__ import annotations

import harmonix
from harmonix_swin.swin_unet import PRESETS, SwinUnet, build_swin_unet

__all__ = ["PRESETS", "SwinUnet", "build_swin_unet"]


@harmonix.hookimpl
def register_backbones(register):
    register("swin", build_swin_unet)
