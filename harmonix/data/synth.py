"""Built-in synthetic multi-center, multi-sequence brain-tumour data.

Anatomy comes from a real brain: the MNI152 2009a symmetric template shipped inside the nilearn
wheel (T1 plus grey- and white-matter probability maps, BSD-3; CSF = brain - GM - WM). Each
patient gets a random affine, a smooth elastic deformation and a ventricle-size change, so no two
patients share anatomy; a tumour (necrotic core inside an enhancing rim inside white-matter
oedema, irregular, with mass effect) is placed at random (all of which lives in
:mod:`harmonix.data.anatomy`). Every sequence is rendered from the
tissue fractions with literature-ordered contrasts, so the data's contrasts are known exactly,
then a center's scanner effects (blur, thick slices, bias field, Rician noise, gamma, scale) are
applied per scan. Cases are written in a real layout (BraTS 2019 / 2023 naming) on the BraTS grid
(240 x 240 x 155 at 1 mm, LPS like the BraTS release), skull-stripped (background 0), int16.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from harmonix.data.anatomy import (
    CONTROL_MM,
    axes_mm,
    crop_box,
    draw_tumour,
    grid_affine,
    grid_shape,
    load_template,
    patient_coords,
    place,
    radial_map,
    resample,
    smooth_noise,
    template_smoothing,
    tumour_fractions,
)
from harmonix.data.labels import from_canonical
from harmonix.data.layouts import NAMINGS, SITE_FILE
from harmonix.errors import InputError
from harmonix.extras import require
from harmonix.io import atomic_write_json, atomic_write_nifti

TISSUES = ("csf", "gm", "wm", "ed", "et", "ncr", "vessel")
TRUTH_CLASSES = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "tumour": 4}



# -- appearance ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SequenceModel:
    """How one sequence renders tissue: relative signal per tissue in ``TISSUES`` order."""

    contrast: tuple[float, float, float, float, float, float, float]
    blur_mm: float = 0.0  # intrinsic resolution (FWHM) of the acquisition
    noise: float = 1.0  # noise relative to the center's level
    texture: float = 0.04  # amplitude of the tissue microstructure texture


#                      csf   gm    wm    oedema ET   NCR   vessel
SEQUENCES: dict[str, SequenceModel] = {
    "t1": SequenceModel((0.20, 0.56, 0.82, 0.54, 0.50, 0.28, 0.56)),
    "t1ce": SequenceModel((0.19, 0.57, 0.82, 0.54, 1.05, 0.22, 1.10)),
    "t2": SequenceModel((1.00, 0.56, 0.38, 0.80, 0.62, 0.90, 0.12)),
    "flair": SequenceModel((0.14, 0.56, 0.42, 0.95, 0.68, 0.42, 0.30)),
    "pd": SequenceModel((0.86, 0.78, 0.62, 0.88, 0.78, 0.82, 0.35)),
    "swi": SequenceModel((0.75, 0.56, 0.62, 0.66, 0.50, 0.30, 0.06), blur_mm=0.8),
    "dwi": SequenceModel((0.12, 0.58, 0.50, 0.42, 0.85, 0.15, 0.30), blur_mm=2.0, noise=1.8),
    "asl": SequenceModel((0.05, 0.80, 0.30, 0.22, 1.00, 0.05, 0.90), blur_mm=3.5, noise=2.5),
    "hardi": SequenceModel((0.05, 0.18, 0.70, 0.32, 0.22, 0.05, 0.10), blur_mm=2.0, noise=1.5),
}


@dataclass(frozen=True)
class CenterProfile:
    """A center: what it acquires, how it names and labels files, how its scanners look."""

    name: str
    sequences: tuple[str, ...]
    case_id: str  # format with the 1-based case number
    naming: str = "brats2019"  # a key of harmonix.data.layouts.NAMINGS
    labels: str = "brats2019"  # a label convention of registry.yaml
    tumour: str = "glioma"  # "glioma" (intra-axial, in white matter) or "meningioma" (dural)
    bias: float = 0.08  # std of the log bias field
    gamma: tuple[float, float] = (0.95, 1.05)  # per-scan range
    noise: float = 0.02  # Rician sigma, relative to white-matter signal
    blur_mm: float = 0.0  # in-plane FWHM
    slice_mm: float = 1.0  # through-plane FWHM (thick slices)
    scale: tuple[float, float] = (400.0, 1200.0)  # output value of relative signal 1, per scan
    jitter: float = 0.03  # per-scan relative jitter of each tissue's contrast
    contrast: dict[str, dict[str, float]] = field(default_factory=dict)  # overrides per sequence

    def model(self, sequence: str) -> SequenceModel:
        base = SEQUENCES[sequence]
        override = self.contrast.get(sequence, {})
        values = tuple(override.get(t, v) for t, v in zip(TISSUES, base.contrast, strict=True))
        return SequenceModel(values, base.blur_mm, base.noise, base.texture)


PROFILES: dict[str, CenterProfile] = {
    "brats": CenterProfile("brats", ("t1", "t1ce", "t2", "flair"), "BraTS19_SYN_{:04d}"),
    "brats-men": CenterProfile(
        "brats-men", ("t1", "t1ce", "t2", "flair"), "BraTS-MEN-SYN{:04d}-000",
        naming="brats2023", labels="brats2023", tumour="meningioma", bias=0.1,
        gamma=(0.9, 1.1), noise=0.025, scale=(300.0, 3000.0),
    ),
    # a 1.5 T scanner with spin-echo T1 (low grey/white contrast) and 5 mm T2 slices: strong bias
    # field, more noise, blurrier, a different gamma and intensity range
    "local": CenterProfile(
        "local", ("t1", "t2"), "LOCAL_{:04d}", bias=0.3, gamma=(1.35, 1.6), noise=0.06,
        blur_mm=1.2, slice_mm=5.0, scale=(1800.0, 2600.0), jitter=0.02,
        contrast={"t1": {"csf": 0.30, "gm": 0.60, "wm": 0.76, "ed": 0.62, "et": 0.56, "ncr": 0.36},
                  "t2": {"csf": 0.90, "gm": 0.62, "wm": 0.46, "ed": 0.78}},
    ),
    "ucsf-pdgm": CenterProfile(
        "ucsf-pdgm", ("t1", "t1ce", "t2", "flair", "swi", "dwi", "asl", "hardi"),
        "UCSF-PDGM-SYN{:04d}", naming="ucsf", bias=0.04, gamma=(1.0, 1.1), noise=0.015,
        scale=(2000.0, 4000.0),
    ),
}


@dataclass
class SyntheticCase:
    """One synthetic case on its grid; ``label`` is canonical (NCR 1, ED 2, ET 4)."""

    case_id: str
    center: str
    affine: np.ndarray
    images: dict[str, np.ndarray]  # int16
    label: np.ndarray  # uint8, canonical
    tissue: np.ndarray  # uint8, TRUTH_CLASSES


def profile(center: str) -> CenterProfile:
    """The profile of ``center``; ``ValueError`` listing the known ones otherwise."""
    if center not in PROFILES:
        raise ValueError(f"unknown center '{center}'; known: {', '.join(PROFILES)}")
    return PROFILES[center]


def case_id(center: str, index: int) -> str:
    """The id of case ``index`` (0-based) of ``center``: ``BraTS19_SYN_0001``, ``LOCAL_0001``."""
    return profile(center).case_id.format(index + 1)


def case_rng(seed: int, center: str, index: int) -> np.random.Generator:
    """The generator of one case: a function of (seed, center, case index) only."""
    return np.random.default_rng([int(seed), zlib.crc32(center.encode()), int(index)])


def synthesize_case(
    index: int, *, center: str = "brats", seed: int = 0, spacing: float = 1.0
) -> SyntheticCase:
    """Make case ``index`` of ``center`` (deterministic in ``seed``, ``center``, ``index``)."""
    prof = profile(center)
    if spacing < 1.0:
        raise ValueError(f"spacing must be >= 1 mm, got {spacing}")
    threadpoolctl = require("threadpoolctl", "harmonix synth")  # the synth extra brings it
    with threadpoolctl.threadpool_limits(1, user_api="blas"):  # small products; threads spin
        return _synthesize(prof, index, seed, spacing)


def _synthesize(prof: CenterProfile, index: int, seed: int, spacing: float) -> SyntheticCase:
    rng = case_rng(seed, prof.name, index)
    template = load_template(template_smoothing(spacing))
    shape = grid_shape(spacing)

    # 1. the patient's anatomy on the control grid; a tumour site; its mass effect
    ctrl_axes, points, coords = patient_coords(rng, shape, spacing)
    csf_c, gm_c, wm_c = (ndi.map_coordinates(m, coords, order=1) for m in template.maps)
    tumour = draw_tumour(rng, prof.tumour, points, wm_c, csf_c + gm_c + wm_c, spacing)
    low = np.array([a[0] for a in ctrl_axes], dtype=np.float32)
    pushed = radial_map(points, tumour.center, tumour.mass_effect, 1.3 * tumour.r_tc + 6.0)
    pushed = (pushed - low.reshape(3, 1, 1, 1)) / CONTROL_MM
    unpushed, coords = coords, np.stack(
        [ndi.map_coordinates(c, pushed, order=1, mode="nearest") for c in coords]
    )

    # 2. tissue fractions at full resolution, in a box around the brain and the tumour
    brain_c = sum(ndi.map_coordinates(m, coords, order=1) for m in template.maps)
    crop = crop_box(brain_c > 0.02, ctrl_axes, tumour, shape, spacing)
    axes = tuple(a[s] for a, s in zip(axes_mm(shape, spacing), crop, strict=True))
    positions = tuple((a - lo) / CONTROL_MM for a, lo in zip(axes, low, strict=True))
    # sample the template only near the brain: the crop's corners hold none of it
    near = ndi.binary_dilation(brain_c > 0.02)
    nearest = [np.clip(np.rint(q).astype(int), 0, n - 1)
               for q, n in zip(positions, near.shape, strict=True)]
    sampled = np.flatnonzero(near[np.ix_(*nearest)])
    fine = np.empty((3, sampled.size), dtype=np.float32)
    for k in range(3):
        fine[k] = resample(coords[k], positions).ravel()[sampled]
    csf, gm, wm = (np.zeros(tuple(len(a) for a in axes), dtype=np.float32) for _ in range(3))
    for tissue_map, source in zip((csf, gm, wm), template.maps, strict=True):
        tissue_map.ravel()[sampled] = ndi.map_coordinates(source, fine, order=1)
    del fine
    brain = csf + gm + wm
    sharp = [m * np.sqrt(m) for m in (csf, gm, wm)]  # crisper borders than an average brain
    norm = brain / (sharp[0] + sharp[1] + sharp[2] + 1e-6)
    csf, gm, wm = (m * norm for m in sharp)

    # 3. the tumour replaces tissue; vessels run in the CSF spaces
    box = tuple(
        slice(int(np.searchsorted(a, c - tumour.reach)), int(np.searchsorted(a, c + tumour.reach)))
        for a, c in zip(axes, tumour.center, strict=True)
    )
    # the skull (the brain's outline before the mass effect) stays put: what the tumour pushed
    # past it is cut, as the skull compresses it (effaced sulci)
    box_axes = tuple(a[b] for a, b in zip(axes, box, strict=True))
    box_positions = tuple((a - lo) / CONTROL_MM for a, lo in zip(box_axes, low, strict=True))
    skull = np.stack([resample(c, box_positions) for c in unpushed])
    skull = ndi.grey_dilation(sum(ndi.map_coordinates(m, skull, order=1)
                                  for m in template.maps), size=3)
    skull = np.clip(skull, 0, 1)
    for tissue_map in (csf, gm, wm, brain):
        tissue_map[box] *= skull
    # a meningioma grows from the dura, inside the skull; a glioma inside the brain
    bounds = skull if tumour.kind == "meningioma" else brain[box]
    s_wt, s_tc, s_ncr = (np.zeros(brain.shape, dtype=np.float32) for _ in range(3))
    s_wt[box], s_tc[box], s_ncr[box] = tumour_fractions(
        rng, tumour, box_axes, wm[box], gm[box], bounds, spacing
    )
    normal = 1 - s_wt
    vessels = np.clip(1 - np.abs(smooth_noise(rng, axes, 5.0)) / 0.12, 0, 1)
    vessels *= (smooth_noise(rng, axes, 9.0) > 0.6) * (0.8 * csf)
    fractions = {
        "csf": (csf - vessels) * normal, "gm": gm * normal, "wm": wm * normal,
        "ed": s_wt - s_tc, "et": s_tc - s_ncr, "ncr": s_ncr, "vessel": vessels * normal,
    }
    mask = (brain * normal + s_wt) > 0.5
    inside = np.flatnonzero(mask)
    # microstructure everywhere, coarser and stronger heterogeneity inside the tumour
    texture = smooth_noise(rng, axes, 2.0)
    texture += (1.5 * (s_wt + s_tc)) * smooth_noise(rng, axes, 4.0)

    # 4. label and tissue truth (canonical labels), on the brain voxels
    label = np.zeros(inside.size, dtype=np.uint8)
    label[s_wt.ravel()[inside] >= 0.5] = 2
    label[s_tc.ravel()[inside] >= 0.5] = 4
    label[s_ncr.ravel()[inside] >= 0.5] = 1
    c_in, g_in, w_in = (m.ravel()[inside] for m in (csf, gm, wm))
    tissue = np.where((w_in >= g_in) & (w_in >= c_in), 3, np.where(g_in >= c_in, 2, 1))
    tissue[label > 0] = TRUTH_CLASSES["tumour"]

    # 5. every sequence: the tissue model, then this center's scanner on this scan
    scan = _Scan(fractions, {t: f.ravel()[inside] for t, f in fractions.items()},
                 texture, texture.ravel()[inside], inside, axes, spacing)
    images = {s: place(_render(rng, prof, s, scan), inside, crop, shape, np.int16)
              for s in prof.sequences}
    return SyntheticCase(
        case_id(prof.name, index), prof.name, grid_affine(spacing), images,
        place(label, inside, crop, shape, np.uint8),
        place(tissue.astype(np.uint8), inside, crop, shape, np.uint8),
    )


@dataclass
class _Scan:
    """What every sequence of a case renders from: tissue fractions and texture on the crop
    (3D, for blurring) and at the brain voxels (1D, the fast path)."""

    fractions: dict[str, np.ndarray]
    fractions_inside: dict[str, np.ndarray]
    texture: np.ndarray
    texture_inside: np.ndarray
    inside: np.ndarray
    axes: tuple[np.ndarray, ...]
    spacing: float

    def mix(self, weights: dict[str, float], texture: float, blur_mm: tuple[float, float]):
        """Partial-volume signal at the brain voxels, blurred by (in-plane, through-plane)
        FWHM in mm."""
        sigma = np.array([blur_mm[0], blur_mm[0], blur_mm[1]]) / 2.355 / self.spacing
        blurred = sigma.max() > 0.3
        fractions = self.fractions if blurred else self.fractions_inside
        signal = sum(f * np.float32(weights[t]) for t, f in fractions.items())
        signal *= 1 + np.float32(texture) * (self.texture if blurred else self.texture_inside)
        if blurred:
            signal = ndi.gaussian_filter(signal, np.where(sigma > 0.3, sigma, 0), truncate=3.0)
            signal = signal.ravel()[self.inside]
        return signal



def _render(rng, prof: CenterProfile, sequence: str, scan: _Scan) -> np.ndarray:
    """One scan's values at the brain voxels: partial-volume mix of tissue signals, blur,
    bias field, Rician noise, gamma and intensity scale."""
    model = prof.model(sequence)
    jitter = 1 + prof.jitter * np.clip(rng.standard_normal(len(TISSUES)), -2, 2)
    weights = {t: c * j for t, c, j in zip(TISSUES, model.contrast, jitter, strict=True)}
    fwhm_xy = float(np.hypot(model.blur_mm, prof.blur_mm))
    fwhm_z = float(np.hypot(fwhm_xy, prof.slice_mm if prof.slice_mm > 1 else 0.0))
    values = scan.mix(weights, model.texture, (fwhm_xy, fwhm_z))
    # bias field: exp of a smooth random field plus a linear gradient
    log_bias = smooth_noise(rng, scan.axes, 60.0, gradient=rng.normal(0, 0.8 / 0.6, 3))
    values *= np.exp(np.float32(0.6 * prof.bias) * log_bias.ravel()[scan.inside])
    sigma = np.float32(prof.noise * model.noise * 0.8)  # 0.8 ~ white matter's signal
    real = values + sigma * rng.standard_normal(values.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(values.shape, dtype=np.float32)
    values = np.sqrt(real * real + imag * imag)
    top = np.float32(max(model.contrast))
    values = (values / top) ** np.float32(rng.uniform(*prof.gamma)) * top
    values *= np.float32(rng.uniform(*prof.scale))
    return np.clip(np.rint(values), 1, np.iinfo(np.int16).max).astype(np.int16)


# -- writing a site -----------------------------------------------------------------------------
def case_files(center: str, cid: str) -> tuple[dict[str, str], str]:
    """File names (relative to the site) of a case's sequences and its label map."""
    prof = profile(center)
    naming = NAMINGS[prof.naming]
    files = {s: f"{cid}/{naming.file_name(cid, s)}" for s in prof.sequences}
    return files, f"{cid}/{naming.file_name(cid, 'seg')}"


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def _write_case(out_dir: Path, index: int, center: str, seed: int, spacing: float,
                write_truth: bool, prefix: str = "") -> str:
    case = synthesize_case(index, center=center, seed=seed, spacing=spacing)
    if prefix:  # --prefix: ids of separately made sites never collide
        sep = NAMINGS[profile(center).naming].separator
        case = dataclasses.replace(case, case_id=f"{prefix}{sep}{case.case_id}")
    files, label_file = case_files(center, case.case_id)
    for sequence, name in files.items():
        atomic_write_nifti(out_dir / name, _nifti(case.images[sequence], case.affine))
    label = from_canonical(case.label, profile(center).labels).astype(np.uint8)
    atomic_write_nifti(out_dir / label_file, _nifti(label, case.affine))
    if write_truth:
        truth = out_dir / "_truth" / f"{case.case_id}_tissue.nii.gz"
        atomic_write_nifti(truth, _nifti(case.tissue, case.affine))
    return case.case_id


def _check_target_folder(out_dir: Path, center: str) -> None:
    """Synth writes into a new or empty folder, or adds cases to a built-in site of the same
    center; it never rewrites another site's description or cases."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "is a file, not a folder")
    site_file = out_dir / SITE_FILE
    if site_file.exists():
        try:
            site = json.loads(site_file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(site_file, f"not readable JSON: {exc}") from None
        if not isinstance(site, dict) or site.get("generator") != "harmonix synth":
            raise InputError(site_file, "describes a site harmonix synth did not make; "
                                        "choose an empty folder")
        if site.get("center") != center:
            raise InputError(site_file, (
                f"is a site of center '{site.get('center')}'; harmonix synth will not add "
                f"'{center}' cases to it (that would change the domain of the cases there): "
                "choose another folder"))
    elif out_dir.is_dir() and any(p for p in out_dir.iterdir() if not p.name.startswith(".")):
        raise InputError(out_dir, "is not empty and holds no built-in site; harmonix synth "
                                  "writes into a new or empty folder")


def synthesize_site(
    out_dir: str | Path,
    n_cases: int,
    *,
    center: str = "brats",
    seed: int = 0,
    spacing: float = 1.0,
    write_truth: bool = False,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    prefix: str = "",
) -> Path:
    """Write ``n_cases`` synthetic cases of ``center`` into ``out_dir`` in the center's layout,
    plus ``harmonix-site.json``; with ``write_truth`` tissue maps in ``_truth/``. ``prefix``
    starts every case id (``test`` -> ``test_BraTS19_SYN_0001``), so that sites made
    separately (a test site) never share case ids.

    ``workers`` processes (default: the CPU count) make the cases; ``progress(case_id)`` is
    called as each is written. Returns ``out_dir``.
    """
    prof = profile(center)
    if n_cases < 1:
        raise ValueError(f"n_cases must be >= 1, got {n_cases}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if spacing < 1.0:
        raise ValueError(f"spacing must be >= 1 mm, got {spacing}")
    if prefix and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}", prefix):
        raise ValueError(f"prefix must be letters, digits and '-' (up to 40), got {prefix!r}")
    for module in ("nilearn", "threadpoolctl"):  # the synth extra, before anything is written
        require(module, "harmonix synth")
    out_dir = Path(out_dir)
    _check_target_folder(out_dir, prof.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, n_cases))
    jobs = [(out_dir, i, center, seed, float(spacing), write_truth, prefix)
            for i in range(n_cases)]
    if workers == 1:
        for job in jobs:
            done = _write_case(*job)
            if progress:
                progress(done)
    else:
        load_template(template_smoothing(spacing))  # forked workers inherit it
        with ProcessPoolExecutor(workers) as pool:
            for future in as_completed([pool.submit(_write_case, *job) for job in jobs]):
                done = future.result()
                if progress:
                    progress(done)
    site = {"center": prof.name, "labels": prof.labels, "layout": NAMINGS[prof.naming].layout,
            "generator": "harmonix synth", "seed": seed, "spacing": float(spacing),
            "sequences": list(prof.sequences), "cases": n_cases,
            **({"prefix": prefix} if prefix else {})}
    atomic_write_json(out_dir / SITE_FILE, site)
    return out_dir
