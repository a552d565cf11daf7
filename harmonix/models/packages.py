"""Model packages: hand a trained model to a site that cannot train (as nnU-Net's export/install).

A package is one zip archive holding one folder, named after the model::

    NAME/model_card.json     the model card (no absolute local path: harmonix.cards.portable_card)
    NAME/model.safetensors   the weights (the EMA generator's or the segmenter's)
    NAME/README.md           the card for people (harmonix.models.model_card.readme)
    NAME/SHA256SUMS          SHA-256 of every other file, in ``sha256sum -c`` format

:func:`export_model` writes one from a generator run (``harmonix train``) or a segmenter folder
(``harmonix segment train``); the optimiser state is left out. :func:`install_model` unpacks one
into the models folder (:func:`harmonix.models.installed.models_dir`: ``$HARMONIX_MODELS``, else the
user data folder), refusing members outside the archive's folder (absolute paths, ``..``, links) and
files whose SHA-256 differs from ``SHA256SUMS``; it unpacks into a temporary folder inside the
models folder, verifies, then renames, so an installed model is always complete. Every command that
takes a run or segmenter folder also takes the name of an installed model
(:func:`harmonix.models.checkpoints.resolve_checkpoint` looks it up with
:func:`harmonix.models.installed_model`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from harmonix.cards import (
    CARD_FILE,
    card_kind,
    load_card,
    local_paths,
    portable_card,
    validate_card,
)
from harmonix.data.fingerprint import RECORD_KEY, training_record
from harmonix.errors import CheckpointError, InputError
from harmonix.io import atomic_folder, atomic_path, file_digest
from harmonix.models.checkpoints import MODEL_FILE, read_card, resolve_checkpoint, verify_file
from harmonix.models.installed import is_model_name, models_dir
from harmonix.version import __version__

README_FILE = "README.md"
SUMS_FILE = "SHA256SUMS"
PACKAGE_FORMAT = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same model gives the same bytes
_PLUGIN_FIELD = {"generator": "trainer", "segmenter": "segmenter"}


def _check_name(name: str, what: Path | str) -> str:
    if not is_model_name(name):
        raise InputError(what, f"'{name}' is not a usable model name (letters, digits, '.', '_' "
                               "and '-', starting with a letter or digit; at most 100)")
    return name


@dataclass
class InstalledModel:
    """One entry of :func:`list_models`; ``problem`` says why a folder is not a usable model."""

    name: str
    path: Path
    kind: str = ""
    plugin: str = ""
    inputs: list[str] | None = None  # a generator's domains, a segmenter's sequences
    preset: str = ""
    iteration: int | None = None
    problem: str = ""


def list_models() -> list[InstalledModel]:
    """The models in :func:`models_dir`, by name (temporary install folders are left out)."""
    root = models_dir()
    found = []
    for folder in sorted(root.iterdir() if root.is_dir() else []):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            card = load_card(folder / CARD_FILE)
        except CheckpointError as exc:
            found.append(InstalledModel(folder.name, folder, problem=exc.problem))
            continue
        kind = card_kind(card) or ""
        found.append(InstalledModel(
            folder.name, folder, kind, str(card.get(_PLUGIN_FIELD[kind], "")),
            list(card.get("domains") or card.get("sequences") or []),
            str(card.get("preset") or ""), card.get("iteration"),
            "" if (folder / MODEL_FILE).is_file() else f"no {MODEL_FILE}",
        ))
    return found


# -- export ----------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    archive: Path
    name: str
    kind: str
    files: dict[str, str]  # member (inside NAME/) -> sha256
    warnings: tuple[str, ...] = ()  # e.g. trained for fewer than MIN_EXPORT_ITERATIONS


#: ``models export`` warns about a model trained for fewer iterations (docs/reliability.md)
MIN_EXPORT_ITERATIONS = 1000


def training_warnings(card: dict[str, Any]) -> list[str]:
    """What ``models export`` warns about: a model trained for fewer than
    :data:`MIN_EXPORT_ITERATIONS` iterations (a smoke run, not a model to share)."""
    iteration = card.get("iteration")
    if iteration is None or int(iteration) >= MIN_EXPORT_ITERATIONS:
        return []
    seconds = (card.get("training") or {}).get("seconds")
    spent = f" ({float(seconds):.0f} s)" if seconds else ""
    return [f"this model was trained for {iteration} iteration(s){spent}, fewer than "
            f"{MIN_EXPORT_ITERATIONS}: a test run, not a model to share; its outputs will be "
            "poor"]


def package_card(card: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    """The card that travels: only the weights listed under ``files``, the generator's training
    data recorded by content (ids and file hashes, while its sites are still readable here, so
    that ``harmonix evaluate`` can refuse training cases without them), a ``package`` record, and
    no absolute local path (:func:`harmonix.cards.portable_card`)."""
    card = dict(card)
    if "files" in card:
        card["files"] = {k: v for k, v in card["files"].items() if k == MODEL_FILE}
    data = card.get("data")
    if kind == "generator" and isinstance(data, dict):
        named = data.get("sites") or []  # absolute in a run's card; a bare name is no folder
        sites = [s for s in named if Path(s).is_absolute() and Path(s).is_dir()]
        if RECORD_KEY not in data and sites and len(sites) == len(named):
            card["data"] = {**data, RECORD_KEY: training_record(sites)}
    card["package"] = {
        "name": name,
        "format": PACKAGE_FORMAT,
        "harmonix_version": __version__,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return portable_card(card)


def export_model(
    run: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    report: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the package of ``run`` (a generator run or checkpoint, a segmenter folder, or an
    installed model's name) to the zip ``out``. ``name`` defaults to ``out``'s stem; ``report``
    is a ``harmonix evaluate`` folder whose figures go into the README."""
    from harmonix.models.model_card import read_evaluation, readme

    out = Path(out)
    name = _check_name(name or out.name.removesuffix(".zip"), out)
    if out.is_dir():
        raise InputError(out, "is a folder; give the zip file to write")
    if out.exists() and not overwrite:
        raise InputError(out, "already exists; choose another file or use --force")
    folder = resolve_checkpoint(run)
    card = read_card(folder)
    kind = card_kind(card)
    if "files" in card and MODEL_FILE in card["files"]:
        weights = verify_file(folder, MODEL_FILE, card)
    else:
        weights = folder / MODEL_FILE
        if not weights.is_file():
            raise CheckpointError(weights, "missing")
    shipped = package_card(card, name, kind)
    left = local_paths(shipped)
    if left:  # portable_card leaves none; a guard, not a code path
        raise CheckpointError(folder / CARD_FILE, f"local paths left in {', '.join(left)}")
    validate_card(shipped, folder / CARD_FILE, kind)
    if report is not None:
        check_report(card, kind, Path(report))
    evaluation = read_evaluation(report) if report is not None else None
    members: dict[str, bytes | Path] = {
        CARD_FILE: (json.dumps(shipped, indent=2) + "\n").encode(),
        MODEL_FILE: weights,
        README_FILE: readme(shipped, name, evaluation=evaluation).encode(),
    }
    sums = {m: _digest(v) for m, v in members.items()}
    members[SUMS_FILE] = "".join(f"{h}  {m}\n" for m, h in sorted(sums.items())).encode()
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, content in members.items():
                info = zipfile.ZipInfo(f"{name}/{member}", date_time=_ZIP_TIME)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                if isinstance(content, Path):
                    with open(content, "rb") as src, archive.open(
                            info, "w", force_zip64=True) as dst:  # weights may pass 2 GiB
                        shutil.copyfileobj(src, dst, 1 << 20)
                else:
                    archive.writestr(info, content)
    return ExportResult(out, name, kind, sums, tuple(training_warnings(card)))


def check_report(card: dict[str, Any], kind: str | None, report: Path) -> None:
    """Refuse an evaluation report (``evaluation.json``) that records the hashes of another
    model: its weights' sha256 or, failing that, its card's (``harmonix evaluate`` records both
    for the generator and the segmenter). A report that records none (older harmonix) passes."""
    from harmonix.harmonization.outputs import card_hash

    path = report / "evaluation.json"
    try:
        settings = json.loads(path.read_text())
        settings = {**settings, **(settings.get("settings") or {})}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return  # read_evaluation reports an unreadable report
    role = "segmenter" if kind == "segmenter" else "generator"

    def recorded(key: str) -> set[str]:
        value = settings.get(f"{role}_{key}_sha256")
        values = value.values() if isinstance(value, dict) else [value]
        return {str(v) for v in values if v}

    weights = str(((card.get("files") or {}).get(MODEL_FILE) or {}).get("sha256", ""))
    for key, mine in (("weights", weights), ("card", card_hash(card))):
        known = recorded(key)
        if known and mine:
            if mine in known:
                return
            raise InputError(report, f"is the evaluation of another {role}: it records "
                             f"{role} {key} sha256 {', '.join(sorted(k[:12] for k in known))}, "
                             f"this model's is {mine[:12]}; give --report the evaluation of "
                             "this model (harmonix evaluate with it)")


def _digest(content: bytes | Path) -> str:
    if isinstance(content, Path):
        return file_digest(content)
    return hashlib.sha256(content).hexdigest()


# -- install ---------------------------------------------------------------------------------------
def _members(archive: Path, zf: zipfile.ZipFile) -> tuple[str, list[tuple[zipfile.ZipInfo, str]]]:
    """The archive's folder name and its files (info, path inside the folder); refuses any
    member that could land outside that folder or is not a plain file or folder."""
    top, files = None, []
    for info in zf.infolist():
        raw = info.filename
        mode = info.external_attr >> 16
        refuse = None
        if "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
            refuse = "an absolute or Windows path"
        elif any(part in ("..", ".") for part in PurePosixPath(raw).parts):
            refuse = "a '..' or '.' path component"
        elif stat.S_ISLNK(mode):
            refuse = "a symbolic link"
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded
            refuse = "not a plain file"
        if refuse:
            raise InputError(archive, f"refused: member '{raw}' is {refuse}; a model package "
                                      "holds plain files inside one folder")
        parts = PurePosixPath(raw).parts
        if top is None:
            top = parts[0]
        if parts[0] != top or (len(parts) == 1 and not info.is_dir()):
            raise InputError(archive, f"refused: member '{raw}' is outside the package folder "
                                      f"'{top}/'; a model package holds one folder")
        if not info.is_dir():
            files.append((info, "/".join(parts[1:])))
    if top is None:
        raise InputError(archive, "empty archive; not a model package")
    return top, files


def _read_sums(archive: Path, folder: Path) -> dict[str, str]:
    file = folder / SUMS_FILE
    if not file.is_file():
        raise CheckpointError(archive, f"not a harmonix model package: no {SUMS_FILE}")
    sums = {}
    for number, line in enumerate(file.read_text().splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
        if not match:
            raise CheckpointError(archive, f"{SUMS_FILE} line {number} is malformed: {line!r}")
        sums[match.group(2)] = match.group(1)
    return sums


def verify_package(folder: Path, archive: Path | None = None) -> None:
    """Every file of an unpacked package is listed in ``SHA256SUMS`` with its SHA-256, and every
    listed file is there; raises :class:`CheckpointError` naming the file."""
    where = archive or folder
    sums = _read_sums(where, folder)
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    present.discard(SUMS_FILE)
    for member in sorted(present - set(sums)):
        raise CheckpointError(where, f"{member}: not listed in {SUMS_FILE}; refused")
    for member, expected in sorted(sums.items()):
        if member not in present:
            raise CheckpointError(where, f"{member}: listed in {SUMS_FILE} but missing")
        if file_digest(folder / member) != expected:
            raise CheckpointError(where, f"{member}: SHA-256 does not match {SUMS_FILE} (a "
                                         "tampered or corrupt package); refused")
    for needed in (CARD_FILE, MODEL_FILE):
        if needed not in present:
            raise CheckpointError(where, f"not a harmonix model package: no {needed}")


URL_SCHEMES = ("http://", "https://", "file://")


def _urlopen(url: str, timeout: float = 60.0):  # tests replace it; no network in tests
    import urllib.request

    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - schemes checked


def download(url: str, folder: Path, sha256: str | None) -> Path:
    """Fetch the package at ``url`` (http, https or file) into ``folder`` and check its SHA-256;
    an http(s) URL needs ``sha256`` (what was downloaded is otherwise unchecked)."""
    if url.startswith(("http://", "https://")) and not sha256:
        raise InputError(Path(url), "an http(s) package needs --sha256 HASH (the package's "
                                    "SHA-256, from whoever shared it) to be installed")
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "package.zip"
    path = folder / name
    digest = hashlib.sha256()
    try:
        with _urlopen(url) as response, open(path, "wb") as dst:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise InputError(Path(url), f"could not be downloaded: {exc}") from None
    if sha256 and digest.hexdigest() != sha256.strip().lower():
        raise InputError(Path(url), f"SHA-256 mismatch: got {digest.hexdigest()}, expected "
                                    f"{sha256.strip().lower()}; nothing installed")
    return path


def install_model(archive: str | Path, *, name: str | None = None, force: bool = False,
                  sha256: str | None = None) -> Path:
    """Unpack the package ``archive`` (a file, or an http(s)/file URL: :func:`download`) into
    :func:`models_dir` as ``name`` (default: its folder's name) and return the installed folder.
    Refuses a package whose SHA-256 is not ``sha256`` (when given), unsafe members, files that
    do not match ``SHA256SUMS`` and, unless ``force``, a model of that name already installed."""
    if str(archive).startswith(URL_SCHEMES):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="harmonix-download-") as tmp:
            path = download(str(archive), Path(tmp), sha256)
            return install_model(path, name=name, force=force)
    archive = Path(archive)
    if sha256 and archive.is_file() and file_digest(archive) != sha256.strip().lower():
        raise InputError(archive, f"SHA-256 mismatch: got {file_digest(archive)}, expected "
                                  f"{sha256.strip().lower()}; nothing installed")
    if not archive.is_file():
        raise InputError(archive, "no such file; give a model package (.zip) made by "
                                  "'harmonix models export'")
    if not zipfile.is_zipfile(archive):
        raise InputError(archive, "not a zip archive; give a package made by "
                                  "'harmonix models export'")
    root = models_dir()
    with zipfile.ZipFile(archive) as zf:
        top, files = _members(archive, zf)
        name = _check_name(name or top, archive)
        final = root / name
        if final.exists() and not force:
            raise InputError(final, f"a model named '{name}' is already installed; use --force "
                                    "to replace it, or --name to install under another name")
        with atomic_folder(final) as tmp:  # with --force an installed model is swapped out
            for info, member in files:
                target = tmp / member
                if tmp.resolve() not in target.resolve().parents:  # checked above; belt and braces
                    raise InputError(archive, f"refused: member '{info.filename}' leaves the "
                                              "package folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            verify_package(tmp, archive)
            card = load_card(tmp / CARD_FILE)
            if MODEL_FILE in (card.get("files") or {}):
                verify_file(tmp, MODEL_FILE, card)
    return final


__all__ = ["MIN_EXPORT_ITERATIONS", "README_FILE", "SUMS_FILE", "ExportResult", "InstalledModel",
           "check_report", "download", "export_model", "install_model", "list_models",
           "package_card", "verify_package"]
