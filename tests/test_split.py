"""harmonix split: a seeded train/test split of a site, links or copies, never touching the input;
training-data fingerprints and the overlap check they allow."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from harmonix.data.fingerprint import content_hash, find_overlap, ids_only_record, training_record
from harmonix.data.site import read_site
from harmonix.data.split import count_test_cases, plan_split, split_of, split_site
from harmonix.data.synth import synthesize_site
from harmonix.errors import InputError


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    return synthesize_site(root / "site", 6, center="brats", seed=3, spacing=8.0, workers=1)


def _snapshot(folder):
    """Every file under ``folder``: (size, mtime, content hash)."""
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns, content_hash(p))
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_plan_is_seeded_disjoint_and_sized():
    ids = [f"c{i:02d}" for i in range(10)]
    train, test = plan_split(ids, 0.2, seed=0)
    assert len(test) == 2 and len(train) == 8 and sorted(train + test) == ids
    assert plan_split(list(reversed(ids)), 0.2, seed=0) == (train, test)  # order-free
    assert {tuple(plan_split(ids, 0.2, seed=s)[1]) for s in range(20)} != {tuple(test)}
    assert count_test_cases(28, 12) == 12 and count_test_cases(5, 0.2) == 1
    assert count_test_cases(3, 0.01) == 1
    with pytest.raises(ValueError, match="no training case"):
        count_test_cases(4, 4)
    with pytest.raises(ValueError, match="fraction"):
        count_test_cases(10, 1.5)


def test_split_links_cases_records_them_and_leaves_the_site_alone(site, tmp_path):
    before = _snapshot(site)
    result = split_site(site, tmp_path / "split", test=0.34, seed=1)
    assert _snapshot(site) == before  # nothing written, moved or touched in the input
    record = json.loads((tmp_path / "split" / "split.json").read_text())
    source = read_site(site)
    train, test = read_site(result.train), read_site(result.test)
    assert [c.id for c in test.cases] == record["test"] and len(record["test"]) == 2
    assert [c.id for c in train.cases] == record["train"] and len(record["train"]) == 4
    assert not set(record["train"]) & set(record["test"])
    assert (train.center, test.center) == (source.center, source.center)
    assert test.label_convention == source.label_convention
    originals = {c.id: c for c in source.cases}
    for case in test.cases:
        for sequence, path in case.sequences.items():
            assert path.is_symlink()
            assert path.resolve() == originals[case.id].sequences[sequence].resolve()
            assert record["files"][case.id][sequence] == content_hash(path)
        assert case.label is not None and case.label.is_symlink()
    assert (record["seed"], record["test"]) == (1, sorted(record["test"]))
    assert split_of(result.test)["test"] == record["test"] and split_of(site) is None

    again = split_site(site, tmp_path / "split", test=0.34, seed=1)  # same settings: reused
    assert again.reused and again.record["created"] == record["created"]
    with pytest.raises(InputError, match="other settings"):
        split_site(site, tmp_path / "split", test=0.34, seed=2)


def test_copies_and_refusals(site, tmp_path):
    result = split_site(site, tmp_path / "copied", test=2, seed=0, copy=True)
    for case in read_site(result.train).cases:
        for path in case.sequences.values():
            assert not path.is_symlink() and path.is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="did not"):
        split_site(site, foreign)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    with pytest.raises(InputError, match="outside the site"):
        split_site(site, site / "split")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert split_site(site, empty, test=0.5).test.is_dir()  # an empty folder is fine


def test_split_cli(cli, site, tmp_path):
    result = cli("split", site, "--test", "0.5", "--seed", "0", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "s" / "split.json").read_text())
    assert len(record["test"]) == 3 and record["mode"] == "symlink"
    assert "3 training and 3 test cases" in result.output
    result = cli("split", site, "--out", tmp_path / "s", "--test", "0.2")
    assert result.exit_code == 1 and "other settings" in result.output


def test_content_hash_sees_through_names_and_gzip_headers(site, tmp_path):
    case = read_site(site).cases[0]
    original = case.sequences["t1"]
    renamed = tmp_path / "renamed.nii.gz"
    shutil.copy(original, renamed)
    raw = tmp_path / "plain.nii"
    raw.write_bytes(gzip.decompress(original.read_bytes()))
    regzipped = tmp_path / "again.nii.gz"
    regzipped.write_bytes(gzip.compress(raw.read_bytes(), mtime=12345))
    assert content_hash(renamed) == content_hash(raw) == content_hash(regzipped) == \
        content_hash(original)
    assert content_hash(case.sequences["t2"]) != content_hash(original)


def test_overlap_by_id_and_by_content(site, tmp_path):
    split = split_site(site, tmp_path / "split", test=2, seed=0)
    training = training_record([split.train])
    test = training_record([split.test])["cases"]
    assert len(training["cases"]) == 4 and not find_overlap(test, training)
    # a renamed copy of a training case: caught by content only
    leaked = read_site(split.train).cases[0]
    copy = tmp_path / "leak" / "BraTS19_NEW_0099"
    copy.mkdir(parents=True)
    for sequence, path in leaked.sequences.items():
        shutil.copy(path, copy / f"BraTS19_NEW_0099_{sequence}.nii.gz")
    renamed = training_record([tmp_path / "leak"])["cases"]
    found = find_overlap(test + renamed, training, "segmenter")
    assert [(o.test_case, o.training_case, o.how) for o in found] == [
        ("BraTS19_NEW_0099", leaked.id, "content")]
    assert set(found[0].files) == set(leaked.sequences) and "segmenter" in str(found[0])
    # the same id with other content (an older card without hashes): caught by id
    by_id = find_overlap(test, ids_only_record([test[0]["id"]]), "generator")
    assert [(o.test_case, o.how) for o in by_id] == [(test[0]["id"], "id")]
