"""The choices of harmonize's options, in a module without heavy imports (the CLI lists them in
``--help`` without loading numpy, nibabel or torch)."""

from __future__ import annotations

#: ``--fill``: each missing sequence from one present source, or fused from every present one
POLICIES = ("single", "fused")
#: ``--intensity``: the real counterpart's scale and dtype (default), or float32 0..255
INTENSITY_MODES = ("input", "model")
#: ``--layout``: the target's file names (BraTS) or a BIDS derivative
OUTPUT_LAYOUTS = ("target", "bids")
#: ``--min-coverage``: a generated volume whose brain the model's crop covers less fails
MIN_COVERAGE = 0.9
