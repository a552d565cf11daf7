"""The ``attention-unet`` backbone: a U-Net with attention-gated skips and an AdaIN decoder."""

from __future__ import annotations

import harmonix
from harmonix_attention_unet.attention_unet import PRESETS, AttentionUnet, build_attention_unet

__all__ = ["PRESETS", "AttentionUnet", "build_attention_unet"]


@harmonix.hookimpl
def register_backbones(register):
    register("attention-unet", build_attention_unet)
