"""The ``attention-unet`` backbone: a U-Net with attention-gated skips and an AdaIN decoder."""

from harmonix.sdk import hookimpl


@hookimpl
def register_backbones(register):
    register("attention-unet", "harmonix_attention_unet.attention_unet:build_attention_unet")
