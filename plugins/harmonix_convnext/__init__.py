"""The ``convnext`` backbone: a U-Net with timm ConvNeXt encoder stages and an AdaIN decoder."""

from __future__ import annotations

import harmonix
from harmonix_convnext.convnext_unet import PRESETS, ConvNeXtUnet, build_convnext_unet

__all__ = ["PRESETS", "ConvNeXtUnet", "build_convnext_unet"]


@harmonix.hookimpl
def register_backbones(register):
    register("convnext", build_convnext_unet)
