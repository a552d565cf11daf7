"""The Python API takes what Python users hold (NIfTI paths, nibabel images, TorchIO subjects)
and follows the CLI's device rules and errors (``device="auto"`` by default; a device this
machine lacks is one clear DeviceError, not torch's "Found no NVIDIA driver")."""

from __future__ import annotations

import inspect
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

import harmonix
from harmonix.device import DeviceError
from harmonix.errors import InputError
from harmonix.interfaces import Generator

CASE = "BraTS19_SYN_0001"


class Inverting(Generator):
    def __init__(self):
        self.domains = ["brats/t1", "brats/t1ce", "brats/t2", "brats/flair"]
        self.image_size = 24
        self.card = {"trainer": "fake", "domains": self.domains,
                     "preprocessing": {"spacing": 8.0, "crop_shape": [24, 24, 20]}}

    def translate(self, images, source, target, *, reference=None, seed=0):
        return 255.0 - images

    def style_codes(self, images, domain, *, lesion=False):
        return torch.zeros(images.shape[0], 4)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    from harmonix.data.synth import synthesize_site

    site = synthesize_site(tmp_path_factory.mktemp("api") / "brats", 1, center="brats",
                           spacing=6.0, workers=1)
    return site / CASE


def files(case: Path, keys=("t1", "t2")) -> dict[str, Path]:
    return {k: case / f"{CASE}_{k}.nii.gz" for k in keys}


def test_fill_case_takes_paths_images_and_torchio_subjects(case):
    by_image = harmonix.fill_case({k: nib.load(p) for k, p in files(case).items()}, Inverting(),
                                  device="cpu")
    by_path = harmonix.fill_case(files(case), Inverting())  # str or Path values
    by_str = harmonix.fill_case({k: str(p) for k, p in files(case).items()}, Inverting())
    subject = tio.Subject(t1=tio.ScalarImage(files(case)["t1"]),
                          t2=tio.ScalarImage(files(case)["t2"]),
                          seg=tio.LabelMap(case / f"{CASE}_seg.nii.gz"), age=42)
    by_subject = harmonix.fill_case(subject, Inverting())
    in_memory = tio.Subject(t1=tio.ScalarImage(tensor=torch.from_numpy(np.asarray(
        nib.load(files(case)["t1"]).dataobj, np.float32))[None],
        affine=nib.load(files(case)["t1"]).affine))
    by_tensor = harmonix.fill_case(in_memory, Inverting())
    for filled in (by_path, by_str, by_subject):
        assert list(filled) == ["t1", "t1ce", "t2", "flair"]
        for seq in ("t1ce", "flair"):
            assert np.array_equal(filled[seq].dataobj, by_image[seq].dataobj), seq
    assert list(by_tensor) == ["t1", "t1ce", "t2", "flair"]
    assert b"SYNTHETIC" in by_tensor["flair"].header["descrip"].tobytes()


def test_fill_case_names_a_missing_path_and_suggests_a_sequence(case, tmp_path):
    with pytest.raises(InputError, match="no such NIfTI file") as err:
        harmonix.fill_case({"t1": tmp_path / "missing.nii.gz"}, Inverting())
    assert err.value.path == tmp_path / "missing.nii.gz"
    with pytest.raises(ValueError, match="did you mean 'flair'"):
        harmonix.fill_case({"flari": files(case)["t1"]}, Inverting())


def test_api_device_defaults_to_auto_like_the_cli():
    for function in (harmonix.harmonize, harmonix.evaluate, harmonix.fill_case,
                     harmonix.load_generator):
        assert inspect.signature(function).parameters["device"].default == "auto", function


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_api_cuda_without_a_gpu_is_the_clis_error(case, tmp_path):
    out = tmp_path / "out"
    calls = [
        lambda: harmonix.harmonize(case.parent, model=Inverting(), out=out, device="cuda"),
        lambda: harmonix.fill_case(files(case), Inverting(), device="cuda"),
        lambda: harmonix.load_generator(tmp_path / "run", device="cuda"),
        lambda: harmonix.evaluate(case.parent, segmenter=tmp_path / "seg", out=out,
                                  device="cuda"),
    ]
    for call in calls:
        with pytest.raises(DeviceError, match="no CUDA GPU is available.*use --device cpu"):
            call()
    assert not out.exists()  # refused before anything is written
    with pytest.raises(DeviceError, match="not a device name"):
        harmonix.fill_case(files(case), Inverting(), device="gpu7")
