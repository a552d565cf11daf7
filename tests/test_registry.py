"""registry.yaml: validation with file and key, user overrides, file-name alias resolution."""

from __future__ import annotations

import pytest
import yaml

from harmonix.errors import RegistryError
from harmonix.registry import BUILTIN_REGISTRY, load_registry, split_domain


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("BraTS-GLI-00000-000-t2f.nii.gz", "flair"),
        ("BraTS-GLI-00000-000-t1c.nii.gz", "t1ce"),
        ("BraTS-GLI-00000-000-t1n.nii.gz", "t1"),
        ("BraTS-GLI-00000-000-t2w.nii.gz", "t2"),
        ("BraTS19_2013_0_1_t1ce.nii.gz", "t1ce"),
        ("BraTS19_2013_0_1_t1.nii.gz", "t1"),
        ("BraTS19_2013_0_1_flair.nii", "flair"),
        ("sub-01_ce-gadolinium_T1w.nii.gz", "t1ce"),
        ("sub-01_ses-1_T1w.nii.gz", "t1"),
        ("sub-01_T2w.nii.gz", "t2"),
        ("sub-01_FLAIR.nii.gz", "flair"),
        ("UCSF-PDGM-004_FLAIR.nii.gz", "flair"),
        ("UCSF-PDGM-004_T1c.nii.gz", "t1ce"),
        ("UCSF-PDGM-004_SWI.nii.gz", "swi"),
        ("UCSF-PDGM-004_ASL.nii.gz", "asl"),
    ],
)
def test_file_names_resolve_to_canonical_sequences(filename, expected):
    assert load_registry().resolve_sequence(filename) == expected


def test_label_maps_and_unknown_names_are_told_apart():
    reg = load_registry()
    assert reg.classify_file("BraTS19_2013_0_1_seg.nii.gz") == ("label", None)
    assert reg.classify_file("BraTS-GLI-00000-000-seg.nii.gz") == ("label", None)
    assert reg.classify_file("UCSF-PDGM-004_tumor_segmentation.nii.gz") == ("label", None)
    assert reg.classify_file("case_t3.nii.gz") == ("unknown", "t3")
    assert reg.resolve_sequence("case_t3.nii.gz") is None


def test_builtin_targets_and_conventions():
    reg = load_registry()
    assert reg.target("brats").domains == ("brats/t1", "brats/t1ce", "brats/t2", "brats/flair")
    assert reg.target("local").domains == ("local/t1", "local/t2")
    assert len(reg.target("ucsf-pdgm").sequences) == 8
    assert reg.label_values("brats2019") == {"NCR": 1, "ED": 2, "ET": 4}
    assert reg.label_values("brats2023")["ET"] == 3
    assert set(reg.regions["WT"]) == {"NCR", "ED", "ET"} and reg.regions["TC"] == ("NCR", "ET")
    assert reg.defaults["backbone"] == "swin" and reg.source_priority[:2] == ("t1", "t2")
    assert split_domain("local/t2") == ("local", "t2")
    with pytest.raises(ValueError):
        split_domain("t2")


def test_user_registry_extends_and_overrides(tmp_path, monkeypatch):
    user = tmp_path / "mine.yaml"
    user.write_text(
        yaml.safe_dump(
            {
                "sequences": {"t2": {"aliases": ["t2", "t2w", "t2tse"]}},
                "targets": {"hospital": {"center": "hospital", "sequences": ["t1", "t2"]}},
                "defaults": {"backbone": "convnext"},
            }
        )
    )
    monkeypatch.setenv("HARMONIX_REGISTRY", str(user))
    reg = load_registry()
    assert reg.resolve_sequence("x_T2TSE.nii.gz") == "t2"
    assert reg.target("hospital").domains == ("hospital/t1", "hospital/t2")
    assert reg.defaults["backbone"] == "convnext"
    assert reg.defaults["trainer"] == "ummgat"  # untouched keys survive the merge
    assert "brats" in reg.targets
    assert reg.sources[-1] == user.resolve()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        (
            {"targets": {"bad": {"center": "bad", "sequences": ["t1", "t9"]}}},
            "targets.bad.sequences",
        ),
        ({"sequences": {"t2": {"aliases": ["t1n"]}}}, "sequences.t2.aliases"),
        ({"label_conventions": {"odd": {"NCR": 1, "ED": 1, "ET": 4}}}, "label_conventions.odd"),
        ({"regions": {"XX": ["NCR", "CSF"]}}, "regions.XX"),
        ({"defaults": {"target": "nowhere"}}, "defaults.target"),
        ({"targets": {"bad": {"center": "a/b", "sequences": ["t1"]}}}, "targets.bad.center"),
    ],
)
def test_malformed_user_registry_names_file_and_key(tmp_path, override, key):
    user = tmp_path / "broken.yaml"
    user.write_text(yaml.safe_dump(override))
    with pytest.raises(RegistryError) as excinfo:
        load_registry(user)
    assert excinfo.value.key == key
    assert excinfo.value.file == user.resolve()
    assert str(user.resolve()) in str(excinfo.value) and key in str(excinfo.value)


def test_invalid_yaml_is_reported_with_the_file(tmp_path):
    user = tmp_path / "notyaml.yaml"
    user.write_text("sequences: [unclosed\n")
    with pytest.raises(RegistryError, match="notyaml.yaml"):
        load_registry(user)


def test_packaged_registry_is_the_top_level_file():
    from pathlib import Path

    top_level = Path(__file__).parents[1] / "registry.yaml"
    assert BUILTIN_REGISTRY.read_text() == top_level.read_text()
    assert yaml.safe_load(BUILTIN_REGISTRY.read_text())["version"] == 1


def test_cli_registry_prints_sequences_and_targets(cli):
    result = cli("registry")
    assert result.exit_code == 0
    for word in ("t1ce", "t2f", "brats/flair", "local/t2", "brats2023"):
        assert word in result.output


def test_cli_registry_reports_malformed_user_file(tmp_path, cli):
    user = tmp_path / "broken.yaml"
    user.write_text(yaml.safe_dump({"targets": {"bad": {"sequences": ["t9"]}}}))
    result = cli("--registry", user, "registry")
    assert result.exit_code != 0
    assert "broken.yaml" in result.output and "targets.bad.sequences" in result.output


def test_cli_version(cli):
    import harmonix

    result = cli("--version")
    assert result.exit_code == 0 and harmonix.__version__ in result.output
