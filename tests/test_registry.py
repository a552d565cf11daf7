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


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_a_directory_or_binary_registry_is_refused_naming_it(tmp_path):
    folder = tmp_path / "regdir"
    folder.mkdir()
    binary = tmp_path / "scan.nii.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00\x01" * 64)
    nul = tmp_path / "nul.yaml"
    nul.write_text("sequences:\n  t2: {aliases: [t2]}\n\0\0")
    for path, problem in ((folder, "is a directory"), (binary, "binary"), (nul, "binary")):
        with pytest.raises(RegistryError) as excinfo:
            load_registry(path)
        assert excinfo.value.file == path.resolve() and problem in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        (  # the second t2 would silently drop the first's aliases
            "sequences:\n  t2:\n    aliases: [t2, t2tse]\n  t2:\n    aliases: [t2]\n",
            "sequences.t2",
            (2, 4),
        ),
        ("defaults:\n  backbone: swin\ndefaults:\n  backbone: convnext\n", "defaults", (1, 3)),
        (
            "targets:\n  h:\n    sequences: [t1]\n    sequences: [t2]\n",
            "targets.h.sequences",
            (3, 4),
        ),
    ],
)
def test_a_key_written_twice_is_an_error_naming_file_key_and_lines(tmp_path, text, key, lines):
    user = tmp_path / "twice.yaml"
    user.write_text(text)
    with pytest.raises(RegistryError) as excinfo:
        load_registry(user)
    assert excinfo.value.file == user.resolve() and excinfo.value.key == key
    assert f"lines {lines[0]} and {lines[1]}" in str(excinfo.value)


def test_cli_bad_registry_is_one_line_before_any_command(tmp_path, cli):
    folder = tmp_path / "regdir"
    folder.mkdir()
    result = cli("--registry", folder, "registry")
    assert result.exit_code == 1
    assert str(folder.resolve()) in _one_error_line(result)
    twice = tmp_path / "twice.yaml"
    twice.write_text("defaults:\n  target: brats\ndefaults:\n  target: local\n")
    result = cli("--registry", twice, "plugins")  # checked even for a command that ignores it
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "twice.yaml" in line and "'defaults'" in line


def test_derived_maps_are_not_read_as_acquisitions():
    """ADC and DTI maps are computed from diffusion imaging: their own sequences, never dwi or
    hardi, and in no built-in target (harmonize neither generates nor copies them)."""
    reg = load_registry()
    assert reg.resolve_sequence("UCSF-PDGM-004_ADC.nii.gz") == "adc"
    assert reg.resolve_sequence("case_dti.nii.gz") == "dti"
    assert reg.resolve_sequence("UCSF-PDGM-004_DWI.nii.gz") == "dwi"
    assert reg.resolve_sequence("case_hardi.nii.gz") == "hardi"
    assert "adc" not in reg.sequences["dwi"].aliases and "dti" not in reg.sequences["hardi"].aliases
    for target in reg.targets.values():
        assert not {"adc", "dti"} & set(target.sequences), target.name
