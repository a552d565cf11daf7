"""Model cards: one reader, one schema for generators and segmenters, one preprocessing key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import harmonix
from harmonix import cards
from harmonix.data.preprocess import PreprocessConfig
from harmonix.errors import CheckpointError
from harmonix.models import checkpoints
from harmonix.plugins import get_segmenter
from harmonix.segmentation import load_segmenter, segmenter_preprocess

ROOT = Path(__file__).parents[1]
GENERATOR = {"trainer": "ummgat", "domains": ["brats/t1", "brats/t2"], "image_size": 32,
             "model": {"domains": ["brats/t1", "brats/t2"], "image_size": 32},
             "preprocessing": {"spacing": 4.0, "crop_shape": [32, 32, 39]}}
SEGMENTER = {"segmenter": "unet2d", "sequences": ["t1", "t2"], "options": {},
             "preprocessing": {"spacing": 4.0, "crop_shape": [48, 48, 39]}, "iteration": 1}


def write_card(folder: Path, card: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / cards.CARD_FILE).write_text(json.dumps(card))
    return folder / cards.CARD_FILE


def edited(card: dict, field: str, value=None) -> dict:
    """``card`` with ``field`` ("a" or "a.b") set to ``value``, or removed when it is None."""
    card = json.loads(json.dumps(card))
    parent, _, child = field.rpartition(".")
    holder = card[parent] if parent else card
    if value is None:
        del holder[child]
    else:
        holder[child] = value
    return card


@pytest.mark.parametrize(
    ("base", "field", "value"),
    [
        (GENERATOR, "domains", None),
        (GENERATOR, "image_size", "big"),
        (GENERATOR, "image_size", True),
        (GENERATOR, "domains", ["t1", "t2"]),
        (GENERATOR, "trainer", ""),
        (GENERATOR, "model.image_size", -4),
        (GENERATOR, "preprocessing.crop_shape", [32, 32]),
        (GENERATOR, "preprocessing", "1mm"),
        (SEGMENTER, "sequences", None),
        (SEGMENTER, "sequences", "t1,t2"),
        (SEGMENTER, "iteration", 1.5),
        (SEGMENTER, "preprocessing.spacing", 0),
    ],
)
def test_a_bad_field_is_one_line_naming_the_card_file_and_field(tmp_path, base, field, value):
    file = write_card(tmp_path / "ckpt", edited(base, field, value))
    with pytest.raises(CheckpointError) as excinfo:
        checkpoints.read_card(tmp_path / "ckpt")
    message = str(excinfo.value)
    assert excinfo.value.path == file and f"'{field}'" in message and "\n" not in message
    assert ("missing" in message) == (value is None)


def test_valid_cards_of_both_kinds_pass_and_the_kind_is_checked(tmp_path):
    assert checkpoints.read_card(write_card(tmp_path / "gen", GENERATOR)) == GENERATOR
    assert checkpoints.read_card(write_card(tmp_path / "seg", SEGMENTER), "segmenter") == SEGMENTER
    with pytest.raises(CheckpointError, match="segmenter's model card, not a generator's"):
        harmonix.load_generator(tmp_path / "seg")
    write_card(tmp_path / "other", {"name": "x"})
    with pytest.raises(CheckpointError, match="not a harmonix model card"):
        checkpoints.read_card(tmp_path / "other")


def test_the_old_preprocess_key_is_read_as_preprocessing(tmp_path):
    old = edited(SEGMENTER, "preprocessing")
    old["preprocess"] = SEGMENTER["preprocessing"]
    write_card(tmp_path / "seg", old)
    card = checkpoints.read_card(tmp_path / "seg")
    assert card["preprocessing"] == SEGMENTER["preprocessing"] and "preprocess" not in card
    assert cards.preprocessing_of(old) == cards.preprocessing_of(SEGMENTER)
    assert cards.preprocessing_of({"trainer": "x"}) is None


def test_an_old_segmenter_checkpoint_loads_with_its_preprocessing(tmp_path):
    out = tmp_path / "seg"
    model = get_segmenter("unet2d")(("t1", "t2"), channels=(4, 8, 16), dropout=0.0)
    model.card = {**SEGMENTER, "options": {"channels": [4, 8, 16], "dropout": 0.0}}
    model.save(out)
    card = json.loads((out / cards.CARD_FILE).read_text())
    card["preprocess"] = card.pop("preprocessing")  # as harmonix wrote it before
    (out / cards.CARD_FILE).write_text(json.dumps(card))
    loaded = load_segmenter(out)
    assert segmenter_preprocess(loaded) == PreprocessConfig(spacing=4.0, crop_shape=(48, 48, 39))


def test_a_file_given_as_model_is_named_as_a_file(tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match=r"weights.pt: is a file, not a run directory"):
        harmonix.load_generator(weights)
    with pytest.raises(CheckpointError, match=r"nowhere: no such file or folder; give a run"):
        harmonix.load_generator(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="'harmonix segment train' folder"):
        load_segmenter(weights)


def test_cli_reports_a_bad_card_and_a_model_file_in_one_line(tmp_path, cli):
    write_card(tmp_path / "seg", edited(SEGMENTER, "sequences", {"t1": 1}))
    (tmp_path / "site").mkdir()
    result = cli("segment", "predict", tmp_path / "site", "--model", tmp_path / "seg",
                 "--out", tmp_path / "out")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert str(tmp_path / "seg" / cards.CARD_FILE) in lines[0] and "'sequences'" in lines[0]
    weights = tmp_path / "g.pt"
    weights.write_bytes(b"x")
    result = cli("segment", "train", "--data", tmp_path / "site", "--out", tmp_path / "s2",
                 "--preprocess-like", weights)
    assert result.exit_code == 1 and "g.pt: is a file, not a run directory" in result.output


def test_there_is_one_card_reader_and_one_card_file_constant():
    sources = {p: p.read_text() for d in ("harmonix", "plugins") for p in (ROOT / d).rglob("*.py")}
    readers = [p for p, s in sources.items() if re.search(r"^def read_card\b", s, re.M)]
    assert readers == [ROOT / "harmonix" / "models" / "checkpoints.py"]
    constants = [p for p, s in sources.items() if re.search(r'^\w+ = "model_card.json"', s, re.M)]
    assert constants == [ROOT / "harmonix" / "cards.py"]
    writes_old_key = [p for p, s in sources.items() if re.search(r'"preprocess":', s)
                      and "segmenter" in s and "card" in s]
    assert not [p for p in writes_old_key if p.parent.name == "harmonix_segmenters"]


def test_a_trainer_cannot_save_a_card_that_would_not_load(tmp_path):
    with pytest.raises(CheckpointError, match="'domains' is missing"):
        checkpoints.save_checkpoint(tmp_path / "run", 1, tensors={"w": torch.zeros(1)},
                                    card={"trainer": "mine"})
    assert not (tmp_path / "run").exists()


def test_write_card_checks_the_card_and_leaves_a_bad_one_unwritten(tmp_path):
    file = tmp_path / cards.CARD_FILE
    written = cards.write_card(file, {**SEGMENTER, "sequences": ("t1", "t2")}, "segmenter")
    assert written["sequences"] == ["t1", "t2"]  # as JSON
    assert cards.load_card(file, "segmenter") == written
    with pytest.raises(CheckpointError, match="'sequences' is missing"):
        cards.write_card(file, edited(SEGMENTER, "sequences"), "segmenter")
    with pytest.raises(CheckpointError, match="not a segmenter's"):
        cards.write_card(file, GENERATOR, "segmenter")
    assert cards.load_card(file, "segmenter") == written  # left as it was
    assert [p.name for p in tmp_path.iterdir()] == [cards.CARD_FILE]


def test_every_card_read_and_write_goes_through_cards_py():
    """No raw ``json.loads`` of a card, nor a card written without the schema check."""
    sources = {p: p.read_text() for d in ("harmonix", "plugins") for p in (ROOT / d).rglob("*.py")}
    card = r"[^,)]*(?:card|CARD_FILE|model_card\.json)"
    raw = re.compile(rf"json\.loads?\({card}|(?:atomic_write_json|atomic_write_text)\({card}|"
                     rf"write_text\(\s*json\.dumps\({card}|CARD_FILE\)\.write_(?:text|bytes)\(",
                     re.I)
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p, s in sources.items()
             if p != ROOT / "harmonix" / "cards.py" for m in raw.finditer(s)]
    assert not found, found


def test_the_demo_reads_its_segmenter_card_through_the_schema(tmp_path):
    from harmonix.demo import _finished

    folder = tmp_path / "segmenter"
    assert not _finished(folder, 1)
    write_card(folder, {**SEGMENTER, "iteration": 3})
    assert _finished(folder, 3) and not _finished(folder, 4)
    write_card(folder, edited(SEGMENTER, "iteration", "three"))
    with pytest.raises(CheckpointError, match="'iteration' must be a whole number"):
        _finished(folder, 3)
    write_card(folder, GENERATOR)
    with pytest.raises(CheckpointError, match="not a segmenter's"):
        _finished(folder, 3)


def test_a_segmenter_plugin_cannot_save_a_card_that_would_not_load(tmp_path):
    segmenter = get_segmenter("unet2d")(["t1", "t2"], channels=(4, 8))
    segmenter.card = {**SEGMENTER, "iteration": -1}
    with pytest.raises(CheckpointError, match="'iteration' must be a whole number >= 0"):
        segmenter.save(tmp_path / "seg")
    assert not (tmp_path / "seg" / cards.CARD_FILE).exists()
