"""The ``convnext`` backbone: a U-Net with timm ConvNeXt encoder stages and an AdaIN decoder."""

import harmonix


@harmonix.hookimpl
def register_backbones(register):
    register("convnext", "harmonix_convnext.convnext_unet:build_convnext_unet")
