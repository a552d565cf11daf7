"""Example harmonix plugins: the trainer ``moments`` (and its generator), the segmenter
``centroid`` and the metrics ``volume-error`` (segmentation), ``mae`` (image) and
``intensity-gap`` (image set).

Registered lazily (``"module:attribute"``): nothing is imported until harmonix asks for it.
"""

from harmonix.sdk import hookimpl


@hookimpl
def register_trainers(register):
    register("moments", "harmonix_example_plugins.generator:MomentsTrainer")


@hookimpl
def register_segmenters(register):
    register("centroid", "harmonix_example_plugins.segmenter:CentroidSegmenter")


@hookimpl
def register_metrics(register):
    register("volume-error", "harmonix_example_plugins.metrics:VolumeError")
    register("mae", "harmonix_example_plugins.metrics:MeanAbsoluteError")
    register("intensity-gap", "harmonix_example_plugins.metrics:IntensityGap")
