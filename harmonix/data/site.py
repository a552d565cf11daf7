"""Read a site: a folder of cases, each a set of NIfTI sequences and maybe a tumour label map.

Layouts (detected, or named in ``harmonix-site.json``):

* ``brats2019``: ``CASE/CASE_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg`` (BraTS
  2017-2021);
* ``brats2023``: ``CASE/CASE-t1n.nii.gz``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg`` (BraTS 2023);
* ``bids``: ``sub-X[/ses-Y]/anat/sub-X_[ses-Y_]..._T1w.nii.gz``; each subject or session is a
  case; label maps (``_dseg``) in ``anat/`` or ``derivatives/*/sub-X[/ses-Y]/anat/``;
* ``nnunet``: an nnU-Net v2 raw dataset, ``dataset.json`` + ``imagesTr/CASE_0000.nii.gz``,
  ``imagesTs``, ``labelsTr/CASE.nii.gz`` (:mod:`harmonix.data.nnunet`);
* ``flat``: one folder of ``CASE_sequence.nii.gz`` files.

Sequence names come from ``registry.yaml`` aliases; an unknown name is reported, never guessed.
Bad input becomes a :class:`Problem` of its case and never stops the other cases. Images in other
formats (DICOM, MGH/MGZ, NRRD, MetaImage) are reported with what to do, never skipped in silence.
Warnings (kind ``"warning"``: a scan that does not look skull-stripped, thick or strongly
anisotropic slices) go to ``Case.warnings``; they never make a case fail.
:func:`read_site` reads headers (cheap, nibabel loads lazily) and, with ``check_voxels``, streams
every file once for NaN/Inf/all-zero voxels without keeping volumes (:mod:`harmonix.data.checks`).
:func:`~harmonix.data.load.load_case` loads one case, checks it again and raises
:class:`~harmonix.errors.InputError` for the first bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harmonix.data import nnunet
from harmonix.data.checks import (
    ImageInfo,
    Problem,
    grid_difference,
    image_info,
    read_header,
    scan_voxels,
    slice_warning,
)
from harmonix.data.formats import (
    FORMATS,
    folder_format,
    folder_problem,
    foreign_problems,
    ignored_problem,
    visible,
)
from harmonix.data.labels import from_canonical, to_canonical
from harmonix.data.layouts import (
    BRATS2023_TOKENS,
    LAYOUT_ALIASES,
    LAYOUTS,
    SITE_FILE,
    choose_run,
    run_of,
)
from harmonix.errors import InputError, did_you_mean
from harmonix.registry import NIFTI_SUFFIX, Registry, load_registry

DEFAULT_LABELS = "brats2019"
# problem kinds; load_case(resample=True) accepts the grid ones and resamples
GRID_KINDS = frozenset({"grid", "label-grid"})

__all__ = [
    "LAYOUTS",
    "SITE_FILE",
    "Case",
    "ImageInfo",
    "Problem",
    "Site",
    "from_canonical",
    "read_site",
    "to_canonical",
]


@dataclass
class Case:
    id: str
    root: Path
    center: str
    layout: str
    sequences: dict[str, Path]
    label: Path | None
    problems: list[Problem] = field(default_factory=list)
    label_convention: str = DEFAULT_LABELS
    reference: str | None = None  # the sequence whose grid the others must share
    info: dict[str, ImageInfo] = field(default_factory=dict)  # by sequence name and "label"
    warnings: list[Problem] = field(default_factory=list)  # kind "warning": never fail a case

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Site:
    root: Path
    center: str
    layout: str
    label_convention: str
    cases: list[Case]
    problems: list[Problem] = field(default_factory=list)  # files that belong to no case

    @property
    def ok(self) -> bool:
        return not self.problems and all(case.ok for case in self.cases)

    @property
    def all_problems(self) -> list[Problem]:
        return [*self.problems, *(p for case in self.cases for p in case.problems)]

    @property
    def warnings(self) -> list[Problem]:
        """Every case's warnings (kind ``"warning"``): reported, never a failure."""
        return [w for case in self.cases for w in case.warnings]

    def sequences(self, registry: Registry | None = None) -> list[str]:
        """Sequences present in any case, in registry order."""
        order = list((registry or load_registry()).sequences)
        present = {s for case in self.cases for s in case.sequences}
        return sorted(present, key=lambda s: (order.index(s) if s in order else len(order), s))


# -- files and names ---------------------------------------------------------------------------
def _nifti_files(folder: Path) -> list[Path]:
    """Visible entries named like NIfTI: files, and broken links or folders in their place, so
    that an unusable one is reported instead of read as a missing sequence."""
    return sorted(p for p in folder.iterdir() if visible(p) and NIFTI_SUFFIX.search(p.name))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and visible(p) and not NIFTI_SUFFIX.search(p.name))


def _unusable_file(path: Path) -> Problem | None:
    """A Problem for a file named like a sequence that cannot be opened: never a missing one."""
    if path.is_symlink() and not path.exists():
        return Problem(path, f"broken link to {path.readlink()}; fix or remove the link",
                       "unreadable")
    if not path.is_file():
        return Problem(path, "not a regular file", "unreadable")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return Problem(path, f"cannot be opened: {exc.strerror or exc}", "unreadable")
    return None


def _stem(path: Path) -> str:
    return NIFTI_SUFFIX.sub("", path.name)


def _is_brats2023_name(path: Path) -> bool:
    head, sep, token = _stem(path).rpartition("-")
    return bool(sep and head) and token.lower() in BRATS2023_TOKENS


def _flat_case_id(path: Path, registry: Registry) -> str:
    """``CASE_t1.nii.gz`` -> ``CASE`` (label aliases may hold a ``_``: ``_tumor_segmentation``)."""
    stem = _stem(path)
    for alias in sorted(registry.label_aliases, key=len, reverse=True):
        for sep in "_-":
            if stem.lower().endswith(sep + alias.lower()) and len(stem) > len(alias) + 1:
                return stem[: -len(alias) - 1]
    return re.split(r"[-_](?=[^-_]*$)", stem, maxsplit=1)[0]


def _known_names(registry: Registry) -> str:
    return "; ".join(f"{s.name} ({', '.join(s.aliases)})" for s in registry.sequences.values())


# -- site description --------------------------------------------------------------------------
def _read_site_file(root: Path, registry: Registry) -> dict[str, str]:
    path = root / SITE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, 'must be a JSON object like {"center": ..., "labels": ...}')
    labels = data.get("labels")
    if labels is not None and (not isinstance(labels, str)
                               or labels not in registry.label_conventions):
        known = ", ".join(registry.label_conventions)
        raise InputError(path, f"'labels': unknown label convention '{labels}'; known: {known}")
    layout = data.get("layout")
    if layout is not None and (not isinstance(layout, str)
                               or LAYOUT_ALIASES.get(layout, layout) not in LAYOUTS):
        raise InputError(path, f"'layout': unknown layout '{layout}'; known: {', '.join(LAYOUTS)}")
    center = data.get("center")
    if center is not None and (not isinstance(center, str) or not center or "/" in center):
        raise InputError(path, "'center' must be a non-empty name without '/'")
    return {k: v for k, v in data.items() if k in ("center", "labels", "layout") and v}


def _detect_layout(root: Path) -> str:
    if nnunet.is_nnunet(root):
        return "nnunet"
    dirs = _subdirs(root)
    if any(d.name.startswith("sub-") for d in dirs):
        return "bids"
    case_files = [f for d in dirs for f in _nifti_files(d)]
    if case_files:
        brats2023 = sum(_is_brats2023_name(f) for f in case_files)
        return "brats2023" if brats2023 * 2 > len(case_files) else "brats2019"
    if _nifti_files(root):
        return "flat"
    kind = folder_format(root)
    hint = f"; it holds {FORMATS[kind][0]} files: {FORMATS[kind][1]}" if kind else ""
    raise InputError(
        root,
        "no cases found: expected case folders (CASE/CASE_t1.nii.gz, CASE/CASE-t1n.nii.gz), "
        "BIDS subjects (sub-X/anat/sub-X_T1w.nii.gz), an nnU-Net raw dataset (dataset.json, "
        "imagesTr/CASE_0000.nii.gz) or a flat folder of CASE_t1.nii.gz files"
        + hint,
    )


def _label_convention(
    site_file: dict[str, str], files: list[Path], center: str, registry: Registry
) -> str:
    """harmonix-site.json > BraTS 2023 naming > the registry target of the center > brats2019."""
    if "labels" in site_file:
        return site_file["labels"]
    sequence_files = [f for f in files if registry.classify_file(f)[0] == "sequence"]
    if sequence_files and sum(map(_is_brats2023_name, sequence_files)) * 2 > len(sequence_files):
        return "brats2023"
    for target in registry.targets.values():
        if center in (target.center, target.name):
            return target.labels
    return DEFAULT_LABELS


def _nested(folder: Path, why: str) -> list[Problem]:
    """Each visible sub-folder of ``folder`` that holds anything, reported as ignored."""
    return [folder_problem(d, why) for d in _subdirs(folder) if any(d.iterdir())]


def _group_files(root: Path, layout: str, registry: Registry):
    """``{case_id: (case_root, [files])}``, a Problem for every visible file named like NIfTI and
    every non-empty folder that belongs to no case, and images in other formats (nothing is
    dropped in silence): ``(groups, ignored, {case_id: [Problem]})``."""
    groups: dict[str, tuple[Path, list[Path]]] = {}
    ignored: list[Problem] = []
    attached: dict[str, list[Problem]] = {}

    def foreign(folder: Path, case_of) -> None:
        by_case, loose = foreign_problems(folder, registry, case_of)
        ignored.extend(loose)
        for case_id, problems in by_case.items():
            attached.setdefault(case_id, []).extend(problems)

    if layout == "flat":
        for f in _nifti_files(root):
            groups.setdefault(_flat_case_id(f, registry), (root, []))[1].append(f)
        ignored += _nested(root, "a flat site's cases are the files at its top level")
        foreign(root, lambda stem: _flat_case_id(Path(stem + ".nii.gz"), registry))
        return groups, ignored, attached
    stray = "not part of any case; move it into a case folder"
    ignored += [ignored_problem(f, stray) for f in _nifti_files(root)]
    foreign(root, None)
    if layout in ("brats2019", "brats2023"):
        for d in _subdirs(root):
            files = _nifti_files(d)
            if files:
                groups[d.name] = (d, files)
                foreign(d, lambda stem, case_id=d.name: case_id)
            elif any(d.iterdir()):
                ignored.append(folder_problem(d, "a folder without NIfTI files"))
                continue
            ignored += _nested(d, f"cases of a '{layout}' site hold their files directly")
        return groups, ignored, attached
    # BIDS: each subject, or each session of a subject, is a case
    for d in _subdirs(root):
        if not d.name.startswith("sub-") and d.name not in ("derivatives", "sourcedata", "code"):
            ignored.append(folder_problem(d, "not a BIDS subject folder (sub-*) in a BIDS site"))
    for sub in (d for d in _subdirs(root) if d.name.startswith("sub-")):
        sessions = [d for d in _subdirs(sub) if d.name.startswith("ses-")]
        for folder in sessions or [sub]:
            case_id = sub.name if folder == sub else f"{sub.name}_{folder.name}"
            anat = folder / "anat"
            groups[case_id] = (folder, _nifti_files(anat) if anat.is_dir() else [])
            if anat.is_dir():
                foreign(anat, lambda stem, case_id=case_id: case_id)
            for other in _subdirs(folder):
                if other.name == "anat":
                    continue
                if any(NIFTI_SUFFIX.search(f.name) for f in other.rglob("*")):
                    ignored.append(ignored_problem(other, "harmonix reads BIDS anat/ folders only"))
                elif folder_format(other):
                    ignored.append(folder_problem(other, ""))
    # label maps of a derivatives pipeline: derivatives/<pipeline>/sub-X[/ses-Y]/anat/*_dseg
    derivatives = _subdirs(root / "derivatives") if (root / "derivatives").is_dir() else []
    for pipeline in derivatives:
        for folder, files in groups.values():
            anat = pipeline / folder.relative_to(root) / "anat"
            if anat.is_dir():
                files += [f for f in _nifti_files(anat) if registry.classify_file(f)[0] == "label"]
    return groups, ignored, attached


# -- cases -------------------------------------------------------------------------------------
def reference_sequence(sequences, registry: Registry) -> str | None:
    order = [*registry.source_priority, *registry.sequences]
    present = sorted(sequences, key=lambda s: (order.index(s) if s in order else len(order), s))
    return present[0] if present else None


def _read_case(
    case_id: str, case_root: Path, files: list[Path], *, center: str, layout: str,
    convention: str, registry: Registry, check_voxels: bool, classify=None,
    run: str | None = None,
) -> Case:
    case = Case(case_id, case_root, center, layout, {}, None, [], convention)
    aliases = [a for s in registry.sequences.values() for a in (s.name, *s.aliases)]
    classify = classify or registry.classify_file
    files = choose_run(files, classify, run)
    for f in files:
        kind, value = classify(f)
        if kind == "unknown":
            case.problems.append(Problem(
                f, f"unknown sequence name '{value}'{did_you_mean(value, aliases)}; known names: "
                f"{_known_names(registry)} (add an alias in a user registry.yaml to map it)",
                "unknown"))
            continue
        key = value if kind == "sequence" else "label"
        first = case.sequences.get(key) if kind == "sequence" else case.label
        if first is not None:
            what = f"sequence '{key}'" if kind == "sequence" else "the label map"
            runs = [r for r in (run_of(first), run_of(f)) if r]
            how = (f"choose a run with --run ({', '.join(runs)})" if len(runs) == 2
                   else "keep one of the two")
            case.problems.append(Problem(f, f"maps to {what} like {first.name}; {how}",
                                         "duplicate"))
            continue
        if kind == "sequence":
            case.sequences[key] = f
        else:
            case.label = f
    if not case.sequences:
        case.problems.append(Problem(case_root, "no image sequence in this case", "empty"))
    case.reference = reference_sequence(case.sequences, registry)

    label_values = registry.label_values(convention)
    named = [*case.sequences.items(), *([("label", case.label)] if case.label else [])]
    for key, path in named:
        problem = _unusable_file(path)
        if problem:
            case.problems.append(problem)
            continue
        img, problem = read_header(path)
        if problem:
            case.problems.append(problem)
            continue
        case.info[key] = image_info(img)
        if key != "label" and (warning := slice_warning(path, case.info[key])):
            case.warnings.append(warning)
        if check_voxels:
            values = label_values if key == "label" else None
            problems, warnings = scan_voxels(path, img, values, convention)
            case.problems += problems
            case.warnings += warnings

    ref = case.info.get(case.reference)
    for key, info in case.info.items():
        if ref is None or key == case.reference:
            continue
        difference = grid_difference(info, ref)
        if difference:
            what = "label map" if key == "label" else f"sequence {key}"
            case.problems.append(Problem(
                case.sequences.get(key, case.label),
                f"{what} is on a different grid from the reference sequence {case.reference} "
                f"({case.sequences[case.reference].name}): {difference}; "
                "resample only on request (harmonize --resample, load_case(resample=True))",
                "label-grid" if key == "label" else "grid",
            ))
    return case


def read_site(
    root: str | Path,
    *,
    center: str | None = None,
    registry: Registry | None = None,
    check_voxels: bool = True,
    progress: Callable[[int, int], None] | None = None,
    run: str | None = None,
) -> Site:
    """Read every case of the site at ``root``; bad input becomes per-case :class:`Problem`\\ s.

    ``check_voxels`` streams each file once for NaN/Inf/all-zero voxels (and label values);
    without it only headers are read. ``progress(done, total)`` is called after each case.
    ``run`` (BIDS ``run-`` label) chooses among several runs of one sequence in a case.
    Raises :class:`InputError` if ``root`` is missing, not a folder, or holds no case.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "site folder not found")
    if not root.is_dir():
        raise InputError(root, "not a folder; a site is a folder of cases")
    registry = registry or load_registry()
    site_file = _read_site_file(root, registry)
    center = center or site_file.get("center") or root.resolve().name
    layout = LAYOUT_ALIASES.get(site_file.get("layout", ""), site_file.get("layout"))
    layout = layout or _detect_layout(root)
    classify = None
    if layout == "nnunet":
        groups, ignored, classify = nnunet.group_files(root, registry)
        attached: dict[str, list[Problem]] = {}
        if "labels" not in site_file:
            dataset = nnunet.read_dataset_json(root)
            site_file = {**site_file, "labels": nnunet.label_convention(dataset, registry)
                         or _label_convention(site_file, [], center, registry)}
    else:
        groups, ignored, attached = _group_files(root, layout, registry)
    if not groups:
        kind = folder_format(root)
        hint = f"; it holds {FORMATS[kind][0]} files: {FORMATS[kind][1]}" if kind else ""
        raise InputError(root, f"no cases found for layout '{layout}'{hint}")
    for case_id in [c for c in attached if c not in groups]:  # no case: the site's problem
        ignored += attached.pop(case_id)
    all_files = [f for _, files in groups.values() for f in files]
    convention = _label_convention(site_file, all_files, center, registry)

    cases = []
    for done, (case_id, (case_root, files)) in enumerate(sorted(groups.items()), start=1):
        cases.append(_read_case(
            case_id, case_root, files, center=center, layout=layout, convention=convention,
            registry=registry, check_voxels=check_voxels, classify=classify, run=run,
        ))
        cases[-1].problems += attached.get(case_id, [])
        if progress:
            progress(done, len(groups))
    return Site(root, center, layout, convention, cases, ignored)
