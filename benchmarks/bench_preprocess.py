"""Seconds per full-size case to preprocess (BraTS grid 240x240x155 at 1 mm, 4 sequences).

    python benchmarks/bench_preprocess.py [--cases 3] [--threads 2] [--site SITE_DIR]

By default cases are made in memory (a textured ellipsoid brain with a lesion on the BraTS LPS
grid), so the figure is preprocessing alone: reorientation, resampling, brain mask, intensity
rescaling and crop (no NIfTI decompression). With ``--site`` the first cases of a real site
(e.g. ``harmonix synth``'s) are timed from disk, loading included. It also times ``restore`` of
one volume, the inverse that harmonize runs per generated sequence.
"""

from __future__ import annotations

import argparse
import time

import nibabel as nib
import numpy as np
import torch

from harmonix.data.preprocess import PreprocessConfig, preprocess_case, restore

SHAPE = (240, 240, 155)
BRATS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
SEQUENCES = {"t1": (0.8, 0.5), "t1ce": (0.9, 0.6), "t2": (0.4, 1.0), "flair": (0.5, 0.9)}


def make_case(seed: int) -> tuple[dict[str, nib.Nifti1Image], nib.Nifti1Image]:
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in SHAPE], indexing="ij")
    r = ((x - 120) / 70) ** 2 + ((y - 125) / 85) ** 2 + ((z - 75) / 60) ** 2
    brain = r < 1
    lesion = ((x - 150) ** 2 + (y - 110) ** 2 + (z - 80) ** 2) < 15**2
    affine = BRATS_AFFINE.copy()
    affine[:3, 3] = [120.0, 120.0, -70.0]
    images = {}
    for name, (wm, lesion_value) in SEQUENCES.items():
        data = np.where(brain, wm * 1000 + 200 * np.sin(x / 9) * np.cos(y / 11), 0)
        data = np.where(lesion, lesion_value * 1000, data)
        data = data + brain * rng.normal(0, 20, SHAPE)
        images[name] = nib.Nifti1Image(data.astype(np.float32), affine)
    label = nib.Nifti1Image((lesion * 2).astype(np.int16), affine)
    return images, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--site", help="time the first cases of this site, loading included")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PreprocessConfig()
    if args.site:
        from harmonix.data.site import read_site

        site = read_site(args.site, check_voxels=False)
        inputs = [(case, None) for case in site.cases if case.ok][: args.cases]
    else:
        inputs = [make_case(seed) for seed in range(args.cases)]
    times, restore_times = [], []
    for case, label in inputs:
        start = time.perf_counter()
        prepared = preprocess_case(case, config, label=label)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        restore(prepared.volumes["t1"], prepared.record)
        restore_times.append(time.perf_counter() - start)
    source = f"site {args.site}, loading included" if args.site else "in memory"
    print(
        f"preprocess: {np.mean(times):.2f} s per case ({len(prepared.volumes)} sequences + "
        f"label -> {config.crop_shape}; {source}), min {min(times):.2f} s over {len(times)} cases"
    )
    print(f"restore:    {np.mean(restore_times):.2f} s per volume")


if __name__ == "__main__":
    main()
