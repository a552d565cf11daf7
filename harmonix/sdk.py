"""The plugin SDK: the one harmonix module a plugin imports.

A plugin (a built-in one under ``plugins/`` or a third-party package) imports from harmonix only
this module, ``from harmonix.sdk import Backbone, hookimpl, ...``, and otherwise its own package
and third-party libraries. Everything here is a stable name for plugin authors; the modules it
comes from are harmonix's own layout and may move (tests/test_architecture.py checks the rule,
docs/plugins.md lists the names).

What it holds, by the module it comes from:

* the contracts (:mod:`harmonix.interfaces`): :class:`Backbone`, :class:`Generator`,
  :class:`Trainer` and its :class:`TrainRequest`, :class:`Segmenter`, the three kinds of
  :class:`Metric` and :data:`Spacing`;
* the plugin registry (:mod:`harmonix.plugins`): :data:`hookimpl`, and :func:`get_backbone` /
  :func:`build_backbone` to reach another plugin's backbone by name;
* backbone presets (:mod:`harmonix.backbones`) and network building blocks (:mod:`harmonix.nn`);
* model cards (:mod:`harmonix.cards`) and checkpoints (:mod:`harmonix.models.checkpoints`);
* atomic writes, temporary names and digests (:mod:`harmonix.io`), progress bars, errors,
  optional dependencies (:func:`require`), the registry of centers and sequences, the site
  reader, label maps, preprocessing, the training data and its record, and the fill policy
  (:mod:`harmonix.harmonization.fusion`) a trainer measures for its card.

The module is lazy (PEP 562), like the package: a name is imported from its home on first use,
so a plugin's ``__init__`` that takes only :data:`hookimpl` does not import torch, and listing
plugins or ``harmonix --help`` stays light. No module inside harmonix imports this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonix.lazy import lazy_attributes

if TYPE_CHECKING:  # what editors and type checkers see; at run time, __getattr__ below
    from harmonix.backbones import (
        DEFAULT_PRESET,
        UNNAMED_CARD_PRESET,
        from_preset,
        preset_options,
        resolve_preset,
        resolve_presets,
    )
    from harmonix.cards import (
        CARD_FILE,
        PREPROCESSING,
        load_card,
        portable_path,
        preprocessing_of,
        validate_card,
        write_card,
    )
    from harmonix.data.dataset import ReferenceSampler, make_training_data
    from harmonix.data.fingerprint import (
        RECORD_KEY,
        RECORD_VERSION,
        merge_records,
        training_record,
    )
    from harmonix.data.labels import CANONICAL, from_canonical, region_masks, to_canonical
    from harmonix.data.preprocess import PreprocessConfig, preprocess_case
    from harmonix.data.provenance import refuse_synthetic
    from harmonix.data.site import Case, Site, read_site
    from harmonix.errors import (
        CheckpointError,
        HarmonixError,
        InputError,
        PluginError,
        RegistryError,
    )
    from harmonix.extras import MissingExtraError, require
    from harmonix.harmonization.coverage import check_training_coverage
    from harmonix.harmonization.fusion import (
        DEFAULT_POLICY,
        FILL_KEY,
        MAX_CASES,
        FillPolicy,
        measure_correlations,
    )
    from harmonix.interfaces import (
        Backbone,
        Generator,
        ImageMetric,
        ImageSetMetric,
        Metric,
        SegmentationMetric,
        Segmenter,
        Spacing,
        Trainer,
    )
    from harmonix.io import (
        atomic_folder,
        atomic_path,
        atomic_write_bytes,
        atomic_write_json,
        atomic_write_text,
        atomic_write_with,
        file_digest,
        parse_temp_name,
        pid_alive,
        temp_name,
    )
    from harmonix.models.checkpoints import (
        CHECKPOINTS_DIR,
        LATEST_FILE,
        MODEL_FILE,
        checkpoint_name,
        latest_checkpoint,
        list_checkpoints,
        load_tensors,
        load_training_state,
        read_card,
        remove_stale_temporaries,
        resolve_checkpoint,
        save_checkpoint,
        save_weights,
    )
    from harmonix.nn import AdaIN, downsample_factor, he_init
    from harmonix.plugins import build_backbone, get_backbone, hookimpl
    from harmonix.progress import progress_task
    from harmonix.registry import Registry, load_registry, make_domain, split_domain
    from harmonix.requests import TrainRequest
    from harmonix.version import __version__

#: home module -> the names the SDK takes from it (the TYPE_CHECKING block above, at run time)
EXPORTS: dict[str, tuple[str, ...]] = {
    # the contracts a plugin implements, and what a trainer is asked
    "harmonix.interfaces": (
        "Backbone", "Generator", "Trainer", "Segmenter",
        "Metric", "SegmentationMetric", "ImageMetric", "ImageSetMetric", "Spacing",
    ),
    "harmonix.requests": ("TrainRequest",),
    # registering, and reaching another plugin's backbone by name
    "harmonix.plugins": ("hookimpl", "get_backbone", "build_backbone"),
    # backbone presets and network building blocks
    "harmonix.backbones": (
        "from_preset", "preset_options", "resolve_preset", "resolve_presets",
        "DEFAULT_PRESET", "UNNAMED_CARD_PRESET",
    ),
    "harmonix.nn": ("AdaIN", "he_init", "downsample_factor"),
    # model cards and checkpoints
    "harmonix.cards": (
        "CARD_FILE", "PREPROCESSING", "load_card", "write_card", "validate_card",
        "preprocessing_of", "portable_path",
    ),
    "harmonix.models.checkpoints": (
        "CHECKPOINTS_DIR", "LATEST_FILE", "MODEL_FILE", "checkpoint_name", "save_weights",
        "save_checkpoint", "list_checkpoints", "latest_checkpoint", "resolve_checkpoint",
        "read_card", "load_tensors", "load_training_state", "remove_stale_temporaries",
    ),
    # files: atomic writes, temporary names, digests
    "harmonix.io": (
        "atomic_path", "atomic_folder", "atomic_write_bytes", "atomic_write_text",
        "atomic_write_json", "atomic_write_with", "file_digest", "temp_name", "parse_temp_name",
        "pid_alive",
    ),
    # progress, errors, optional dependencies, the version
    "harmonix.progress": ("progress_task",),
    "harmonix.errors": (
        "HarmonixError", "InputError", "RegistryError", "PluginError", "CheckpointError",
    ),
    "harmonix.extras": ("require", "MissingExtraError"),
    "harmonix.version": ("__version__",),
    # centers, sequences and domains; sites, labels, preprocessing, training data
    "harmonix.registry": ("Registry", "load_registry", "split_domain", "make_domain"),
    "harmonix.data.site": ("read_site", "Site", "Case"),
    "harmonix.data.labels": ("CANONICAL", "region_masks", "to_canonical", "from_canonical"),
    "harmonix.data.preprocess": ("PreprocessConfig", "preprocess_case"),
    "harmonix.data.provenance": ("refuse_synthetic",),
    "harmonix.harmonization.coverage": ("check_training_coverage",),
    "harmonix.data.dataset": ("make_training_data", "ReferenceSampler"),
    "harmonix.data.fingerprint": ("RECORD_KEY", "RECORD_VERSION", "merge_records",
                                  "training_record"),
    # the fill policy a trainer measures and records in its card
    "harmonix.harmonization.fusion": (
        "FillPolicy", "DEFAULT_POLICY", "FILL_KEY", "MAX_CASES", "measure_correlations",
    ),
}

_HOME: dict[str, str] = {name: module for module, names in EXPORTS.items() for name in names}

__all__ = [
    "AdaIN",
    "Backbone",
    "CANONICAL",
    "CARD_FILE",
    "CHECKPOINTS_DIR",
    "Case",
    "CheckpointError",
    "check_training_coverage",
    "DEFAULT_POLICY",
    "DEFAULT_PRESET",
    "FILL_KEY",
    "FillPolicy",
    "Generator",
    "HarmonixError",
    "ImageMetric",
    "ImageSetMetric",
    "InputError",
    "LATEST_FILE",
    "MAX_CASES",
    "MODEL_FILE",
    "Metric",
    "MissingExtraError",
    "PREPROCESSING",
    "PluginError",
    "PreprocessConfig",
    "RECORD_KEY",
    "RECORD_VERSION",
    "ReferenceSampler",
    "Registry",
    "RegistryError",
    "SegmentationMetric",
    "Segmenter",
    "Site",
    "Spacing",
    "TrainRequest",
    "Trainer",
    "UNNAMED_CARD_PRESET",
    "__version__",
    "atomic_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "build_backbone",
    "checkpoint_name",
    "downsample_factor",
    "file_digest",
    "from_canonical",
    "from_preset",
    "get_backbone",
    "he_init",
    "hookimpl",
    "latest_checkpoint",
    "list_checkpoints",
    "load_card",
    "load_registry",
    "load_tensors",
    "load_training_state",
    "merge_records",
    "make_domain",
    "make_training_data",
    "measure_correlations",
    "parse_temp_name",
    "pid_alive",
    "portable_path",
    "preprocess_case",
    "preprocessing_of",
    "preset_options",
    "progress_task",
    "read_card",
    "read_site",
    "refuse_synthetic",
    "remove_stale_temporaries",
    "region_masks",
    "require",
    "resolve_checkpoint",
    "resolve_preset",
    "resolve_presets",
    "save_checkpoint",
    "save_weights",
    "split_domain",
    "temp_name",
    "to_canonical",
    "training_record",
    "validate_card",
    "write_card",
]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _HOME)
