"""One home for temporary names (issue 21): one writer (``harmonix.io.temp_name``), one parser
(``parse_temp_name``), one name order (``.tmp-PID-NAME``), one ``pid_alive``; the leftovers of a
killed process are cleaned, a live process's never."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from harmonix.harmonization.outputs import CASE_RECORD, remove_stale
from harmonix.io import (
    atomic_folder,
    atomic_path,
    atomic_write_text,
    parse_temp_name,
    pid_alive,
    temp_name,
)
from harmonix.models import checkpoints as ckpt

ROOT = Path(__file__).parents[1]


def dead_pid() -> int:
    pid = 4_194_304 + 7  # above Linux's largest pid_max
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


@pytest.fixture
def live_pid():
    """The pid of another process that is alive while the test runs."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("name", ["manifest.csv", "BraTS19_2013_0_1_t2.nii.gz", "iter_000004",
                                  "123-case-4", "a-1"])
def test_a_written_temporary_name_parses_back(name):
    assert parse_temp_name(temp_name(name)) == (name, os.getpid())
    assert parse_temp_name(temp_name(name, 42)) == (name, 42)
    assert temp_name(name, 42) == f".tmp-42-{name}"  # the one order: pid first, name last
    old = temp_name(name, 42, kind="old")
    assert old == f".old-42-{name}" and parse_temp_name(old, "old") == (name, 42)
    assert parse_temp_name(old) is None and parse_temp_name(temp_name(name), "old") is None


def test_threads_of_one_process_never_share_a_temporary_name(tmp_path):
    """Threads share a pid (three ``--shard`` runs in one process wrote one file at once and one
    lost its temporary file): each name this process makes carries its own serial."""
    names = [temp_name("manifest.csv") for _ in range(3)]
    assert len(set(names)) == 3
    assert all(parse_temp_name(n) == ("manifest.csv", os.getpid()) for n in names)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(k: int) -> None:
        try:
            start.wait()
            for _ in range(50):
                atomic_write_text(tmp_path / "shared.txt", f"writer {k}\n")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert (tmp_path / "shared.txt").read_text().startswith("writer ")
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]  # no temporary file left


@pytest.mark.parametrize("other", [".tmp-notes", ".tmp-iter_000004-123", "x.tmp-1-y", ".tmp-1-",
                                   ".partial-A-12", "iter_000004", ".tmp--1-x"])
def test_other_names_are_not_temporary_names(other):
    assert parse_temp_name(other) is None


def test_a_temporary_name_needs_a_name_and_a_known_kind():
    with pytest.raises(ValueError, match="final name"):
        temp_name("")
    with pytest.raises(ValueError, match="unknown kind"):
        temp_name("x", kind="partial")


def test_the_atomic_writers_use_the_one_name(tmp_path):
    with atomic_path(tmp_path / "a.nii.gz") as tmp:
        assert tmp.parent == tmp_path and parse_temp_name(tmp.name) == ("a.nii.gz", os.getpid())
        tmp.write_text("x")
    with atomic_folder(tmp_path / "iter_000001") as tmp:
        assert parse_temp_name(tmp.name) == ("iter_000001", os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "iter_000001"]


def test_pid_alive(live_pid):
    assert pid_alive(os.getpid()) and pid_alive(live_pid)
    assert not pid_alive(dead_pid())
    assert not pid_alive(0) and not pid_alive(2**80)  # no process has these ids


def test_stale_checkpoint_folders_of_dead_processes_are_removed_a_live_ones_never(
    tmp_path, live_pid
):
    root = tmp_path / "run" / ckpt.CHECKPOINTS_DIR
    root.mkdir(parents=True)
    dead, mine, live = dead_pid(), os.getpid(), live_pid
    removed = [root / temp_name("iter_000004", dead), root / temp_name("iter_000005", mine)]
    kept = [root / temp_name("iter_000006", live), root / "iter_000003",
            root / ".tmp-notes", root / temp_name("notes", dead)]  # not a checkpoint's name
    for folder in removed + kept:
        folder.mkdir()
        (folder / ckpt.MODEL_FILE).write_bytes(b"half written")
    file = root / temp_name("iter_000007", dead)  # a file, not a checkpoint folder
    file.write_text("x")
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = root / temp_name("iter_000008", dead)
    link.symlink_to(target, target_is_directory=True)
    assert ckpt.remove_stale_temporaries(tmp_path / "run") == sorted(removed)
    assert not any(p.exists() for p in removed)
    assert all(p.is_dir() for p in kept) and file.is_file() and link.is_symlink()
    assert target.is_dir()
    assert ckpt.remove_stale_temporaries(tmp_path / "no-run") == []


def test_harmonize_leftovers_of_dead_processes_are_removed_a_live_ones_never(tmp_path, live_pid):
    out = tmp_path / "out"
    out.mkdir()
    dead_file = out / temp_name("manifest.csv", dead_pid())
    live_file = out / temp_name("manifest.csv", live_pid)
    dead_old = out / temp_name("case-1", dead_pid(), kind="old")  # a case folder being replaced
    live_old = out / temp_name("case-2", live_pid, kind="old")
    for file in (dead_file, live_file):
        file.write_text("half")
    for folder in (dead_old, live_old):
        folder.mkdir()
        (folder / CASE_RECORD).write_text("{}")
    remove_stale(out)
    assert sorted(p.name for p in out.iterdir()) == sorted([live_file.name, live_old.name])


def test_temporary_names_and_pid_alive_have_one_home():
    """No module but harmonix/io.py writes or parses a ``.tmp-`` name by hand or checks a pid."""
    sources = {p: p.read_text() for d in ("harmonix", "plugins") for p in (ROOT / d).rglob("*.py")}
    home = ROOT / "harmonix" / "io.py"
    by_hand = [p for p, s in sources.items() if p != home
               and re.search(r"""f?["']\.?(?:tmp|old)-\{|\\\.(?:tmp|old)-|(?:tmp|old)-\(""", s)]
    assert not by_hand, by_hand
    pid_checks = [p for p, s in sources.items() if re.search(r"^def _?pid_alive\b", s, re.M)]
    assert pid_checks == [home]
    cleaners = [p for p, s in sources.items()
                if re.search(r"^def remove_stale_temporaries\b", s, re.M)]
    assert cleaners == [ROOT / "harmonix" / "models" / "checkpoints.py"]
