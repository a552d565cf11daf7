"""The anatomy of a built-in case: the MNI152 template's tissue fractions, smooth random fields,
each patient's deformation of the template, and the tumour's shape and memberships.

:mod:`harmonix.data.synth` renders sequences from these fractions and writes sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from harmonix.extras import require

BRATS_SHAPE = (240, 240, 155)
CONTROL_MM = 4.0  # spacing of the control grid that carries every deformation
BRAIN_CENTER_MM = np.array([119.5, 119.5, 77.0])  # where the template's brain centre lands
TEMPLATE_BRAIN_CENTER = np.array([98.0, 117.0, 82.0])  # MNI 2009a voxel (1 mm grid)
TEMPLATE_VENTRICLES = np.array([98.0, 118.0, 86.0])
TEMPLATE_TO_BRATS = np.array([-1.0, -1.0, 1.0])  # BraTS voxel axes point L, P, S; MNI's R, A, S


# -- the template -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """CSF, GM and WM fractions (float32, MNI 2009a 1 mm voxel grid)."""

    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray

    @property
    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.csf, self.gm, self.wm


def template_path(kind: str) -> Path:
    nilearn = require("nilearn", "harmonix synth (the MNI152 template ships in nilearn's wheel)")
    root = Path(next(iter(nilearn.__path__)))
    return root / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"


@lru_cache(maxsize=4)
def load_template(smooth_mm: float = 0.0) -> Template:
    """The template's tissue fractions, averaged over ``smooth_mm`` boxes for coarse grids."""
    t1, gm, wm = (
        np.asarray(nib.load(template_path(k)).dataobj, dtype=np.float32)
        for k in ("t1", "gm", "wm")
    )
    brain = ndi.gaussian_filter(ndi.binary_fill_holes(t1 > 0).astype(np.float32), 0.5)
    gm /= 255.0
    wm /= 255.0
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    maps = [csf, gm, wm]
    if smooth_mm > 1.0:  # a box average: the partial volume of a voxel that size
        maps = [np.maximum(ndi.uniform_filter(m, int(round(smooth_mm))), 0) for m in maps]
    return Template(*maps)


# -- smooth fields ------------------------------------------------------------------------------
def cubic_matrix(q: np.ndarray, n: int) -> np.ndarray:
    """``(len(q), n)`` Catmull-Rom weights that interpolate a length-``n`` signal at ``q``."""
    q = np.clip(np.asarray(q, dtype=np.float64), 0, n - 1)
    base = np.floor(q).astype(int)
    t = q - base
    weights = (
        (-(t**3) + 2 * t**2 - t) / 2,
        (3 * t**3 - 5 * t**2 + 2) / 2,
        (-3 * t**3 + 4 * t**2 + t) / 2,
        (t**3 - t**2) / 2,
    )
    matrix = np.zeros((len(q), n), dtype=np.float32)
    rows = np.arange(len(q))
    for offset, w in zip(range(-1, 3), weights, strict=True):
        np.add.at(matrix, (rows, np.clip(base + offset, 0, n - 1)), w)
    return matrix


def resample(grid: np.ndarray, positions: tuple[np.ndarray, ...]) -> np.ndarray:
    """Cubic interpolation of a 3D ``grid`` at the outer product of per-axis index positions."""
    wx, wy, wz = (cubic_matrix(q, n) for q, n in zip(positions, grid.shape, strict=True))
    out = (wx @ grid.reshape(grid.shape[0], -1)).reshape(len(wx), *grid.shape[1:])
    return (wy @ out) @ wz.T


def smooth_noise(
    rng: np.random.Generator, axes_mm: tuple[np.ndarray, ...], cell_mm: float, gradient=None
) -> np.ndarray:
    """A unit-variance random field with correlation length ~``cell_mm`` at the given axes,
    plus a linear ramp of ``gradient`` per 120 mm (zero in the middle of the axes)."""
    lows = [a[0] - 2 * cell_mm for a in axes_mm]
    shape = [int(np.ceil((a[-1] - a[0]) / cell_mm)) + 5 for a in axes_mm]
    coarse = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 1.0)
    coarse /= coarse.std() + 1e-6
    if gradient is not None:  # cubic interpolation reproduces a linear ramp exactly
        for axis, (lo, n, a, g) in enumerate(zip(lows, shape, axes_mm, gradient, strict=True)):
            ramp = (lo + cell_mm * np.arange(n) - (a[0] + a[-1]) / 2) * (g / 120.0)
            coarse += ramp.astype(np.float32).reshape([-1 if i == axis else 1 for i in range(3)])
    return resample(coarse, tuple((a - lo) / cell_mm for a, lo in zip(axes_mm, lows, strict=True)))


def radial_map(points: np.ndarray, center, amount: float, length: float) -> np.ndarray:
    """Sample positions ``c + (p - c)(1 - amount exp(-|p - c|^2 / length^2))`` for ``(3, ...)``
    points: ``amount > 0`` pushes what is near ``c`` outwards (expansion, mass effect); it is
    one-to-one for ``-2 < amount < 1``."""
    center = np.asarray(center, dtype=np.float32).reshape(3, *([1] * (points.ndim - 1)))
    offset = points - center
    factor = 1 - amount * np.exp(-(offset**2).sum(0) / length**2)
    return center + offset * factor


def rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    ax, ay, az = np.deg2rad(rng.uniform(-max_degrees, max_degrees, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# -- geometry of one case -----------------------------------------------------------------------
def grid_shape(spacing: float) -> tuple[int, int, int]:
    """Voxels of the BraTS field of view (240 x 240 x 155 mm) at ``spacing`` mm."""
    return tuple(int(np.ceil(n / spacing - 1e-6)) for n in BRATS_SHAPE)


def grid_affine(spacing: float) -> np.ndarray:
    """BraTS's LPS affine (``diag(-1, -1, 1)``, origin ``(0, 239, 0)``) at ``spacing`` mm."""
    half = 0.5 * spacing - 0.5  # voxel centres sit at -0.5 + (i + 0.5) * spacing mm
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[:3, 3] = [-half, 239.0 - half, half]
    return affine


def axes_mm(shape: tuple[int, ...], spacing: float) -> tuple[np.ndarray, ...]:
    return tuple((-0.5 + (np.arange(n) + 0.5) * spacing).astype(np.float32) for n in shape)


@dataclass
class Tumour:
    center: np.ndarray  # BraTS mm
    r_tc: float
    r_ncr: float  # 0: no necrosis
    r_wt: float
    rim: float
    axes: np.ndarray  # relative semi-axes
    rotation: np.ndarray
    mass_effect: float
    kind: str

    @property
    def reach(self) -> float:
        """Half-size of a box that holds the whole tumour and its irregularities."""
        return 1.6 * float(self.axes.max()) * max(self.r_wt, self.r_tc) + 3.0


def draw_tumour(rng, kind: str, coarse_points, wm, brain, spacing: float) -> Tumour:
    """Sizes, shape and a location: deep in white matter (glioma) or at the surface
    (meningioma), chosen on the control grid."""
    depth = ndi.distance_transform_edt(brain > 0.5) * CONTROL_MM
    r_tc = rng.uniform(10.0, 22.0)
    if kind == "meningioma":
        r_ncr = r_tc * rng.uniform(0.2, 0.4) if rng.random() < 0.3 else 0.0
        r_wt = r_tc * rng.uniform(1.15, 1.6)
        candidates = (brain > 0.5) & (depth <= 1.0 * CONTROL_MM)
        mass_effect = rng.uniform(0.45, 0.65)
    else:
        r_ncr = max(r_tc - rng.uniform(3.0, 8.0), 0.3 * r_tc)  # an enhancing rim 3-8 mm thick
        r_wt = r_tc * rng.uniform(1.4, 2.1)
        candidates = (wm > 0.6) & (depth >= max(0.7 * r_tc, 8.0))
        mass_effect = rng.uniform(0.25, 0.5)
    # adult gliomas and meningiomas: mostly above the tentorium, not in the posterior fossa
    candidates &= coarse_points[2] > (60 if kind == "meningioma" else 45)
    for fallback in (wm > 0.3, brain > 0.5):
        if candidates.any():
            break
        candidates = fallback
    index = rng.choice(np.flatnonzero(candidates))
    center = coarse_points.reshape(3, -1)[:, index] + rng.uniform(-2, 2, 3)
    rim = max(2.5, 1.5 * spacing)
    if r_ncr:
        r_ncr = max(r_ncr, 1.2 * spacing)
        r_tc = max(r_tc, r_ncr + rim + spacing)
    axes = rng.uniform(0.75, 1.25, 3)
    axes /= np.prod(axes) ** (1 / 3)
    return Tumour(center.astype(np.float32), r_tc, r_ncr, r_wt, rim, axes,
                   rotation(rng, 180.0), mass_effect, kind)


_NEIGHBOURS = ndi.generate_binary_structure(3, 1)


def tumour_fractions(rng, tumour: Tumour, axes_mm, wm, gm, bounds, spacing: float):
    """Soft nested memberships (whole tumour >= core >= necrosis) on the given axes; the core
    stays within ``bounds`` (a soft mask: the brain, or the skull for a meningioma)."""
    d = [(a - c).astype(np.float32) for a, c in zip(axes_mm, tumour.center, strict=True)]
    d = [d[0][:, None, None], d[1][None, :, None], d[2][None, None, :]]
    quad = (tumour.rotation @ np.diag(1 / tumour.axes**2) @ tumour.rotation.T).astype(np.float32)
    rho2 = np.zeros(wm.shape, dtype=np.float32)
    for i in range(3):
        for j in range(i, 3):
            rho2 += (quad[i, j] * (1 if i == j else 2)) * (d[i] * d[j])
    rho = np.sqrt(rho2)
    noise = [np.clip(smooth_noise(rng, axes_mm, cell), -2, 2) for cell in (6.0, 4.0, 7.0)]
    width = max(0.8, 0.4 * spacing)

    def soft(threshold, w=width):
        return 0.5 * (1 + np.tanh((threshold - rho) / w))

    t_tc = tumour.r_tc * (1 + 0.22 * noise[0])
    s_tc = soft(t_tc)
    if tumour.r_ncr:
        s_ncr = soft(np.minimum(tumour.r_ncr * (1 + 0.25 * noise[1]), t_tc - tumour.rim))
    else:
        s_ncr = np.zeros_like(s_tc)
    # oedema spreads through white (and deep grey) matter, sparing the cortex and CSF
    white = np.clip((wm + 0.3 * gm - 0.2) / 0.5, 0, 1)
    s_ed = soft(tumour.r_wt * (1 + 0.3 * noise[2]), 2 * width) * white
    s_tc *= bounds
    # necrosis always sits inside enhancing tumour: never next to a voxel outside the core
    s_ncr = np.minimum(s_ncr * bounds, ndi.minimum_filter(s_tc, footprint=_NEIGHBOURS))
    return np.maximum(s_ed, s_tc), s_tc, s_ncr


def template_smoothing(spacing: float) -> float:
    return round(float(spacing), 3) if spacing > 1.0 else 0.0


def patient_coords(rng, shape, spacing: float):
    """Control grid (mm, BraTS voxel axes) and where each control point samples the template:
    random affine, smooth elastic field and ventricle size."""
    extent = np.array(shape) * spacing
    ctrl_axes = tuple(
        np.arange(-2 * CONTROL_MM, e + 2 * CONTROL_MM + 1e-3, CONTROL_MM, dtype=np.float32)
        for e in extent
    )
    points = np.stack(np.meshgrid(*ctrl_axes, indexing="ij"))
    scale = rng.uniform(1.02, 1.14) * rng.uniform(0.96, 1.04, 3)  # MNI152 is a large brain
    linear = TEMPLATE_TO_BRATS[:, None] * (rotation(rng, 6.0) @ np.diag(scale))
    shift = TEMPLATE_BRAIN_CENTER + TEMPLATE_TO_BRATS * rng.uniform(-4, 4, 3) * [1, 1, 0.6]
    offset = (points - BRAIN_CENTER_MM.reshape(3, 1, 1, 1)).reshape(3, -1)
    coords = (linear @ offset).reshape(points.shape) + shift.reshape(3, 1, 1, 1)
    elastic = ndi.gaussian_filter(rng.standard_normal(points.shape), (0, 3, 3, 3))
    coords += elastic * (rng.uniform(2.5, 4.0) / elastic.std())
    coords = radial_map(coords, TEMPLATE_VENTRICLES, rng.uniform(-0.25, 0.35), 28.0)
    return ctrl_axes, points, coords.astype(np.float32)

def crop_box(inside: np.ndarray, ctrl_axes, tumour: Tumour, shape, spacing) -> tuple[slice, ...]:
    """Fine-grid slices around the brain (on the control grid) and the tumour."""
    slices = []
    for axis, (a, n) in enumerate(zip(ctrl_axes, shape, strict=True)):
        hits = np.flatnonzero(inside.any(axis=tuple(i for i in range(3) if i != axis)))
        lo, hi = a[hits[0]] - CONTROL_MM, a[hits[-1]] + CONTROL_MM
        if tumour.kind == "meningioma":  # extra-axial: may reach beyond the brain
            lo = min(lo, tumour.center[axis] - tumour.reach)
            hi = max(hi, tumour.center[axis] + tumour.reach)
        start = int(np.clip(np.floor((lo + 0.5) / spacing), 0, n - 1))
        stop = int(np.clip(np.ceil((hi + 0.5) / spacing) + 1, start + 1, n))
        slices.append(slice(start, stop))
    return tuple(slices)


def place(values: np.ndarray, inside: np.ndarray, crop, shape, dtype) -> np.ndarray:
    """Full-grid array, zero outside the brain, with ``values`` at the ``inside`` voxels."""
    window = np.zeros(tuple(s.stop - s.start for s in crop), dtype=dtype)
    window.ravel()[inside] = values
    out = np.zeros(shape, dtype=dtype)
    out[crop] = window
    return out
