"""harmonix's built-in segmenters: MONAI SegResNet (3D, the BraTS bundle's network) and a small
2D U-Net for CPU-only users. Both train on complete preprocessed cases and predict canonical
label maps (0, NCR 1, ED 2, ET 4)."""

from harmonix.sdk import hookimpl


@hookimpl
def register_segmenters(register):
    register("segresnet", "harmonix_segmenters.segresnet:SegResNetSegmenter")
    register("unet2d", "harmonix_segmenters.unet2d:UNet2DSegmenter")
