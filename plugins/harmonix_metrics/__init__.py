"""Built-in metrics: Dice and HD95 per tumour region, SSIM, PSNR, offline FID and the official
BraTS lesion-wise Dice and HD95 (with the ``brats`` extra)."""

from harmonix.sdk import hookimpl

METRICS = {
    "dice": "harmonix_metrics.segmentation:DiceMetric",
    "hd95": "harmonix_metrics.segmentation:HD95Metric",
    "ssim": "harmonix_metrics.image:SSIMMetric",
    "psnr": "harmonix_metrics.image:PSNRMetric",
    "fid": "harmonix_metrics.fid:FIDMetric",
    "lesion_dice": "harmonix_metrics.brats:LesionwiseDice",
    "lesion_hd95": "harmonix_metrics.brats:LesionwiseHD95",
}


@hookimpl
def register_metrics(register):
    for name, reference in METRICS.items():
        register(name, reference)
