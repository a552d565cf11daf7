"""The ``convnext`` backbone: a U-Net with timm ConvNeXt encoder stages and an AdaIN decoder."""

from harmonix.sdk import hookimpl


@hookimpl
def register_backbones(register):
    register("convnext", "harmonix_convnext.convnext_unet:build_convnext_unet")
