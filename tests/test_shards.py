"""A site too large for one machine: ``harmonize --shard K/N`` and ``manifest merge``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_harmonize import InvertingGenerator, case_dirs, drop, manifest_rows, no_leftovers

from harmonix.api import harmonize
from harmonix.harmonization.outputs import STAGING_MARKER, mark_staging, read_manifest, remove_stale
from harmonix.harmonization.shards import Shard, merge_manifest

N_CASES = 5


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    """Five built-in ``brats`` cases at 4 mm, some sequences missing, so that work is done."""
    from harmonix.data.synth import synthesize_site

    root = synthesize_site(tmp_path_factory.mktemp("shards") / "site", N_CASES, center="brats",
                           spacing=4.0, workers=1)
    for index, case_dir in enumerate(case_dirs(root)):
        drop(root, case_dir.name, [("t1ce", "flair", "t2")[index % 3]])
    return root


@pytest.fixture(scope="module")
def unsharded(five, tmp_path_factory) -> str:
    """The manifest.csv of an unsharded run of ``five``."""
    out = tmp_path_factory.mktemp("unsharded") / "out"
    assert harmonize(five, target="brats", model=InvertingGenerator(), out=out).ok
    return (out / "manifest.csv").read_text()


@pytest.fixture
def fake_model(monkeypatch):
    import harmonix.harmonization.pipeline

    generator = InvertingGenerator()
    monkeypatch.setattr(harmonix.harmonization.pipeline,
                        "as_generator", lambda model, device="cpu": generator)
    return generator


def cases_of(rows) -> list[str]:
    """The sorted case ids of manifest rows (``ManifestRow``s or dicts of a csv reader)."""
    return sorted({row["case"] if isinstance(row, dict) else row.case for row in rows})


# -- which cases a shard takes ---------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_cover_every_case_exactly_once(count):
    ids = [f"case-{i:03d}" for i in (9, 2, 5, 11, 0, 7, 3, 1, 4, 10)]  # unsorted on purpose
    taken = [case for k in range(1, count + 1) for case in Shard(k, count).select(ids, key=str)]
    assert sorted(taken) == sorted(ids) and len(taken) == len(set(taken))
    ordered = sorted(ids)  # deterministic: position i of the sorted ids goes to shard i % N + 1
    for k in range(1, count + 1):
        assert Shard(k, count).select(reversed(ids), key=str) == ordered[k - 1::count]


@pytest.mark.parametrize("text, shard", [("1/1", (1, 1)), ("3/8", (3, 8)), (" 8 / 8 ", (8, 8))])
def test_shard_parse(text, shard):
    parsed = Shard.parse(text)
    assert (parsed.index, parsed.count) == shard
    assert parsed.part_name == f"manifest.shard-{shard[0]}-of-{shard[1]}.csv"


# -- sharded runs and the merge --------------------------------------------------------------------
def test_shards_then_merge_equal_an_unsharded_run(five, unsharded, tmp_path):
    out = tmp_path / "out"
    ids = [d.name for d in case_dirs(five)]
    seen = []
    for k in (1, 2, 3):
        result = harmonize(five, target="brats", model=InvertingGenerator(), out=out,
                                shard=f"{k}/3")
        assert result.ok and result.manifest == out / f"manifest.shard-{k}-of-3.csv"
        assert [c.case for c in result.cases] == ids[k - 1::3]
        assert cases_of(read_manifest(result.manifest)) == ids[k - 1::3]
        seen += [c.case for c in result.cases]
        # only the shard that writes the last part merges
        assert (result.merged is not None) == (k == 3)
        assert (out / "manifest.csv").exists() == (k == 3)
    assert sorted(seen) == ids and len(seen) == len(set(seen))
    assert (out / "manifest.csv").read_text() == unsharded
    assert all((out / case / f"{case}_t1.nii.gz").exists() for case in ids)
    no_leftovers(out)
    # an explicit merge gives the same, and a re-run of a shard skips its cases
    (out / "manifest.csv").unlink()
    merged = merge_manifest(out)
    assert (out / "manifest.csv").read_text() == unsharded and len(merged.parts) == 3
    again = harmonize(five, target="brats", model=InvertingGenerator(), out=out, shard="2/3")
    assert again.count("skipped") == len(ids[1::3]) and again.merged is not None
    assert (out / "manifest.csv").read_text() == unsharded


def test_shards_running_at_once_on_one_out_do_not_interfere(five, unsharded, tmp_path):
    out = tmp_path / "out"
    errors: list[BaseException] = []
    results = {}
    start = threading.Barrier(3)

    class Slow(InvertingGenerator):
        def translate(self, images, source, target, **kwargs):
            time.sleep(0.05)  # the shards' cases overlap in time
            return super().translate(images, source, target, **kwargs)

    def shard(k: int) -> None:
        try:
            start.wait()
            results[k] = harmonize(five, target="brats", model=Slow(), out=out,
                                        shard=f"{k}/3")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=shard, args=(k,)) for k in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert all(results[k].ok for k in (1, 2, 3))
    assert sum(r.merged is not None for r in results.values()) >= 1  # the last one merged
    assert (out / "manifest.csv").read_text() == unsharded
    no_leftovers(out)


def test_a_missing_shard_is_reported_and_nothing_written(five, tmp_path, cli, fake_model):
    out = tmp_path / "out"
    for k in (1, 3):
        result = cli("harmonize", five, "--model", tmp_path / "run", "--out", out,
                     "--shard", f"{k}/3")
        assert result.exit_code == 0, result.output
        assert "harmonix manifest merge" in result.output
    assert not (out / "manifest.csv").exists()
    merged = cli("manifest", "merge", out)
    text = " ".join(merged.output.split())
    assert merged.exit_code == 1, merged.output
    assert "1 of 3 manifest parts missing" in text and "manifest.shard-2-of-3.csv" in text
    assert "--shard 2/3" in text and "Traceback" not in text
    assert not (out / "manifest.csv").exists()
    done = cli("harmonize", five, "--model", tmp_path / "run", "--out", out, "--shard", "2/3")
    assert done.exit_code == 0 and "merged 3 manifest parts" in " ".join(done.output.split())
    assert cases_of(manifest_rows(out)) == [d.name for d in case_dirs(five)]
    again = cli("manifest", "merge", out)
    assert again.exit_code == 0 and f"({N_CASES} cases" in " ".join(again.output.split())


@pytest.mark.parametrize("value", ["0/3", "4/3", "3", "1/0", "-1/3", "a/b", "1/3/5", ""])
def test_bad_shard_values_are_usage_errors(value, five, tmp_path, cli, fake_model):
    out = tmp_path / "out"
    result = cli("harmonize", five, "--model", tmp_path / "run", "--out", out, "--shard", value)
    assert result.exit_code == 2, result.output
    assert "--shard" in result.output
    assert not out.exists() and not fake_model.calls


def test_merge_refuses_what_is_not_a_complete_set_of_parts(five, tmp_path):
    out = tmp_path / "out"
    for k in (1, 2):
        harmonize(five, target="brats", model=InvertingGenerator(), out=out, shard=f"{k}/2")
    assert (out / "manifest.csv").exists()
    part = out / "manifest.shard-1-of-2.csv"
    # a foreign manifest.csv is never replaced
    (out / "manifest.csv").write_text("my notes\n")
    with pytest.raises(Exception, match="not a harmonix manifest"):
        merge_manifest(out)
    assert (out / "manifest.csv").read_text() == "my notes\n"
    (out / "manifest.csv").unlink()
    # parts of two runs with different N
    stray = out / "manifest.shard-1-of-4.csv"
    shutil.copy(part, stray)
    with pytest.raises(Exception, match="disagree on the number of shards") as info:
        merge_manifest(out)
    assert stray.name in str(info.value)
    stray.unlink()
    # a case in two parts
    saved = part.read_text()
    shutil.copy(out / "manifest.shard-2-of-2.csv", part)
    with pytest.raises(Exception, match="is also in"):
        merge_manifest(out)
    part.write_text(saved)
    # a part that is not a manifest, and no part at all
    part.write_text("case;status\n")
    with pytest.raises(Exception, match="not a harmonix manifest"):
        merge_manifest(out)
    assert not (out / "manifest.csv").exists()
    with pytest.raises(Exception, match="holds no manifest part"):
        merge_manifest(tmp_path)


# -- data safety: staging folders of others are left alone ----------------------------------------
def test_remove_stale_keeps_live_and_other_machines_staging(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    mine_dead = out / f".partial-A-{dead.pid}"
    other_host = out / f".partial-B-{dead.pid}"
    alive = out / f".partial-C-{os.getpid()}"
    for folder in (mine_dead, other_host, alive):
        folder.mkdir()
        mark_staging(folder)
    assert socket.gethostname() in (alive / STAGING_MARKER).read_text()
    (other_host / STAGING_MARKER).write_text(f"not-{socket.gethostname()} {dead.pid}\n")
    legacy = out / f".partial-D-{dead.pid}"  # an empty mark: this machine's
    legacy.mkdir()
    (legacy / STAGING_MARKER).touch()
    tmp_file = out / f".tmp-{dead.pid}-manifest.csv"
    tmp_file.write_text("half")
    remove_stale(out, shared=True)  # a shard: a fresh .tmp- may be another machine's
    assert {p.name for p in out.iterdir()} == {other_host.name, alive.name, tmp_file.name}
    remove_stale(out)
    assert {p.name for p in out.iterdir()} == {other_host.name, alive.name}
