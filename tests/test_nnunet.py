"""nnU-Net v2 raw datasets read as a site: dataset.json channel names through the registry,
imagesTr / imagesTs / labelsTr, exactly as nnU-Net v2 documents its raw layout."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harmonix.data.labels import to_canonical
from harmonix.data.load import load_case
from harmonix.data.site import read_site

SHAPE = (12, 12, 8)
RNG = np.random.default_rng(0)
# nnU-Net v2's own BraTS 2021 conversion (Dataset137_BraTS2021): channel names and region labels
DATASET = {
    "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
               "enhancing tumor": [3]},
    "regions_class_order": [1, 2, 3],
    "numTraining": 2,
    "file_ending": ".nii.gz",
}


def write(path: Path, data=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = RNG.uniform(1, 100, SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), path)


def nnunet_dataset(root: Path, dataset=DATASET, train=("BraTS2021_00000", "BraTS2021_00002"),
                   test=("BraTS2021_00005",)) -> Path:
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    label = np.zeros(SHAPE, np.uint8)
    label[3:9, 3:9, 2:6] = 1  # edema
    label[4:8, 4:8, 3:5] = 3  # enhancing
    label[5:7, 5:7, 3:5] = 2  # non-enhancing
    for folder, cases in (("imagesTr", train), ("imagesTs", test)):
        for case in cases:
            for channel in dataset["channel_names"]:
                write(root / folder / f"{case}_{int(channel):04d}.nii.gz")
    for case in train:
        write(root / "labelsTr" / f"{case}.nii.gz", label)
    return root


def test_an_nnunet_v2_raw_dataset_is_a_site(tmp_path):
    root = nnunet_dataset(tmp_path / "Dataset137_BraTS2021")
    site = read_site(root)
    assert site.layout == "nnunet"
    assert site.ok, site.all_problems
    assert [c.id for c in site.cases] == ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00005"]
    case = site.cases[0]
    assert set(case.sequences) == {"t1", "t1ce", "t2", "flair"}
    assert case.sequences["t1ce"].name == "BraTS2021_00000_0001.nii.gz"
    assert case.label.name == "BraTS2021_00000.nii.gz"
    assert site.cases[2].label is None  # imagesTs: no label map
    assert site.label_convention == "nnunet-brats"
    loaded = load_case(case)
    assert set(loaded.images) == {"t1", "t1ce", "t2", "flair"}
    canonical = to_canonical(np.asarray(loaded.label.dataobj), site.label_convention)
    assert sorted(np.unique(canonical)) == [0, 1, 2, 4]  # NCR, ED, ET in harmonix's values


def test_channel_names_go_through_registry_aliases_and_unknown_ones_are_named(tmp_path):
    dataset = {**DATASET, "channel_names": {"0": "T1w", "1": "T1Gd", "2": "Flari"}}
    site = read_site(nnunet_dataset(tmp_path / "Dataset002_X", dataset, test=()))
    case = site.cases[0]
    assert set(case.sequences) == {"t1", "t1ce"}
    [problem] = case.problems
    assert problem.kind == "unknown" and problem.path.name.endswith("_0002.nii.gz")
    assert "'Flari'" in problem.message and "did you mean 'flair'?" in problem.message


def test_files_outside_the_nnunet_layout_are_reported(tmp_path):
    root = nnunet_dataset(tmp_path / "Dataset003_X", test=())
    write(root / "imagesTr" / "BraTS2021_00000_0007.nii.gz")  # a channel dataset.json lacks
    write(root / "labelsTr" / "Orphan.nii.gz")
    site = read_site(root)
    messages = " ".join(p.message for p in site.problems)
    assert "channel 0007" in messages and "no case Orphan" in messages
    assert all(case.ok for case in site.cases)


def test_label_convention_from_dataset_json_names_or_site_file(tmp_path):
    dataset = {**DATASET, "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3}}
    assert read_site(nnunet_dataset(tmp_path / "a", dataset)).label_convention == "brats2023"
    root = nnunet_dataset(tmp_path / "b")
    assert read_site(root).label_convention == "nnunet-brats"  # nnU-Net's BraTS regions
    other = {**DATASET, "labels": {"background": 0, "lesion": 1}}
    assert read_site(nnunet_dataset(tmp_path / "c", other)).label_convention == "brats2019"
    (root / "harmonix-site.json").write_text(json.dumps({"center": "x", "labels": "brats2023"}))
    site = read_site(root)
    assert (site.center, site.label_convention) == ("x", "brats2023")


@pytest.mark.parametrize("ending", [".png", ".mha"])
def test_non_nifti_nnunet_datasets_are_refused_with_what_to_do(tmp_path, ending):
    from harmonix.errors import InputError

    root = nnunet_dataset(tmp_path / "d")
    (root / "dataset.json").write_text(json.dumps({**DATASET, "file_ending": ending}))
    with pytest.raises(InputError, match="NIfTI"):
        read_site(root)


def test_inspect_reads_an_nnunet_dataset(tmp_path):
    from typer.testing import CliRunner

    import harmonix.cli.inspect  # noqa: F401 - registers the command
    from harmonix.cli import app

    root = nnunet_dataset(tmp_path / "Dataset137_BraTS2021")
    result = CliRunner().invoke(app, ["inspect", str(root)])
    assert result.exit_code == 0, result.output
    assert "unknown sequence" not in result.output
    assert "BraTS2021_00005" in result.output or "3 case" in result.output


def test_split_of_an_nnunet_dataset_reads_back(tmp_path):
    from harmonix.data.split import split_site

    root = nnunet_dataset(tmp_path / "Dataset137_BraTS2021",
                          train=("A_001", "A_002", "A_003", "A_004"), test=())
    result = split_site(root, tmp_path / "split", test=0.5, seed=0)
    for part in (result.train, result.test):
        site = read_site(part)
        assert site.layout == "nnunet" and site.ok and len(site.cases) == 2
        assert site.label_convention == "nnunet-brats"


def test_harmonize_reads_an_nnunet_dataset(tmp_path):
    from test_outputs import IdentityGenerator

    from harmonix.api import harmonize
    from harmonix.data.labels import from_canonical
    from harmonix.data.synth import synthesize_site

    built = synthesize_site(tmp_path / "brats", 1, center="brats", spacing=4.0, workers=1)
    [case] = read_site(built).cases
    root = tmp_path / "Dataset001_X"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    dataset = {**DATASET, "channel_names": {"0": "T1", "1": "T2"}}
    (root / "dataset.json").write_text(json.dumps(dataset))
    for channel, seq in enumerate(("t1", "t2")):
        (root / "imagesTr" / f"P1_{channel:04d}.nii.gz").write_bytes(
            case.sequences[seq].read_bytes())
    label = nib.load(case.label)  # brats2019 values, rewritten as nnU-Net's BraTS conversion
    values = from_canonical(np.asarray(label.dataobj), "nnunet-brats").astype(np.uint8)
    nib.save(nib.Nifti1Image(values, label.affine), root / "labelsTr" / "P1.nii.gz")
    result = harmonize(root, target="brats", model=IdentityGenerator(), out=tmp_path / "out",
                       center="brats")
    assert result.ok, result.rows
    written = {r.sequence: r.status for r in result.rows}
    assert written == {"t1": "real", "t2": "real", "seg": "real", "t1ce": "generated",
                       "flair": "generated"}
    seg = nib.load(tmp_path / "out" / "P1" / "P1_seg.nii.gz")  # in the target's labels again
    assert np.array_equal(np.asarray(seg.dataobj), np.asarray(label.dataobj))
