"""The ``swin`` backbone: a Swin-Unet with AdaIN style injection in the decoder."""

from harmonix.sdk import hookimpl


@hookimpl
def register_backbones(register):
    register("swin", "harmonix_swin.swin_unet:build_swin_unet")
