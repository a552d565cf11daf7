"""Site layouts and file naming: the one table of the file-name tokens harmonix reads and writes.

A case's file is ``CASE{separator}{token}.nii.gz``: BraTS 2019 and 2021 ``CASE_t1ce``, BraTS 2023
``CASE-t1c``, UCSF-PDGM ``CASE_T1c``, BIDS ``sub-X[_ses-Y]_ce-gadolinium_T1w`` (``CASE`` is then
the case's BIDS prefix, see :mod:`harmonix.harmonization.bids`; a ``desc-`` entity marks derived
files). The site reader (:mod:`harmonix.data.site`), the built-in data (:mod:`harmonix.data.synth`),
harmonize's outputs (:mod:`harmonix.harmonization.outputs`) and the evaluation all name files
through :class:`Naming`; sequence aliases for reading live in ``registry.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SITE_FILE = "harmonix-site.json"  # a site's description: center, labels, layout
LAYOUTS = ("brats2019", "brats2023", "bids", "nnunet", "flat")  # nnunet: harmonix.data.nnunet
# BraTS 2021 kept the 2019 names (_t1ce, _flair) and labels (1/2/4); 2023 introduced -t1n ...
LAYOUT_ALIASES = {"brats2021": "brats2019", "folders": "brats2019"}


@dataclass(frozen=True)
class Naming:
    """How a layout names a case's files; sequences without a token keep their own name."""

    name: str
    separator: str
    layout: str  # the site layout a folder of such cases is read as
    tokens: Mapping[str, str] = field(default_factory=dict)
    label_token: str = "seg"
    desc_entity: bool = False  # BIDS: derived files carry a desc-<label> entity before the suffix

    def token(self, sequence: str) -> str:
        """The file token of ``sequence``, or of the label map for ``"seg"``."""
        return self.label_token if sequence == "seg" else self.tokens.get(sequence, sequence)

    def file_name(self, case_id: str, sequence: str, suffix: str = ".nii.gz",
                  desc: str | None = None) -> str:
        """``CASE_t1.nii.gz``; with ``desc`` (BIDS only) ``sub-01_desc-synthetic_T1w.nii.gz``."""
        token = self.token(sequence)
        if desc:
            if not self.desc_entity:
                raise ValueError(f"the {self.name} naming has no desc entity")
            head, _, last = token.rpartition("_")
            token = f"{head}_desc-{desc}_{last}" if head else f"desc-{desc}_{last}"
        return f"{case_id}{self.separator}{token}{suffix}"


NAMINGS: dict[str, Naming] = {
    "brats2019": Naming("brats2019", "_", "brats2019"),
    "brats2023": Naming("brats2023", "-", "brats2023",
                        {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}),
    "ucsf": Naming("ucsf", "_", "brats2019",
                   {"t1": "T1", "t1ce": "T1c", "t2": "T2", "flair": "FLAIR", "swi": "SWI",
                    "dwi": "DWI", "asl": "ASL", "hardi": "HARDI", "pd": "PD"},
                   "tumor_segmentation"),
    # BIDS suffixes (registry.yaml aliases read them back); BIDS has no anat suffix for the
    # scalar dwi, asl, hardi, adc and dti maps, which keep their own names (not BIDS-valid)
    "bids": Naming("bids", "_", "bids",
                   {"t1": "T1w", "t1ce": "ce-gadolinium_T1w", "t2": "T2w", "flair": "FLAIR",
                    "pd": "PDw", "swi": "T2starw"},
                   "dseg", desc_entity=True),
}
# the tokens that tell a BraTS 2023 case folder from a BraTS 2019/2021 one
BRATS2023_TOKENS = frozenset(NAMINGS["brats2023"].tokens.values())


def naming_for_labels(convention: str) -> Naming:
    """The naming harmonix writes for a target with label ``convention``: BraTS 2023 naming for
    BraTS 2023 labels, BraTS 2019 naming otherwise."""
    return NAMINGS["brats2023" if convention == "brats2023" else "brats2019"]


# -- BIDS entities of input file names ---------------------------------------------------------
# the order of BIDS entities in a file name (anat and derivatives); sub and ses come first
BIDS_ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "trc", "rec", "dir", "run", "mod", "echo",
                     "flip", "inv", "mt", "part", "chunk", "space", "res", "den", "label", "desc")
_ENTITY = re.compile(r"^([a-zA-Z]+)-([A-Za-z0-9]+)$")
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


def bids_entities(name: str | Path) -> dict[str, str]:
    """The ``key-value`` entities of a BIDS file name, in order (``sub-01_acq-fast_run-2_T2w``
    -> ``{"sub": "01", "acq": "fast", "run": "2"}``); the suffix is not an entity."""
    stem = _NIFTI.sub("", Path(name).name)
    pairs = (_ENTITY.match(part) for part in stem.split("_")[:-1])
    return {m.group(1): m.group(2) for m in pairs if m}


def run_of(path: str | Path) -> str | None:
    """The BIDS ``run-`` label of a file name (``sub-01_run-2_T2w`` -> ``"2"``), else None."""
    return bids_entities(path).get("run")


def choose_run(files: list[Path], classify, run: str | None) -> list[Path]:
    """With ``run`` (``--run``), of several files that ``classify`` maps to one sequence (or
    label map), keep those of that run; files without a choice are kept as they are."""
    if run is None:
        return files
    by_key: dict[tuple, list[Path]] = {}
    for f in files:
        by_key.setdefault(classify(f), []).append(f)
    kept = []
    for key, group in by_key.items():
        chosen = [f for f in group if (run_of(f) or "").lstrip("0") == run.lstrip("0")]
        kept += chosen if len(group) > 1 and key[0] != "unknown" and chosen else group
    return [f for f in files if f in kept]
