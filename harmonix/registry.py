"""``registry.yaml``: sequences and their file-name aliases, targets, label conventions, defaults.

The built-in file ships with the package; a user file (``--registry`` or ``HARMONIX_REGISTRY``)
is merged over it: mappings merge key by key, anything else is replaced. Every problem is
reported as a :class:`~harmonix.errors.RegistryError` naming the file and the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from harmonix.errors import RegistryError, did_you_mean

BUILTIN_REGISTRY = Path(__file__).with_name("registry.yaml")
REGISTRY_ENV = "HARMONIX_REGISTRY"
LABEL_NAMES = ("NCR", "ED", "ET")
NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class SequenceSpec:
    name: str
    description: str
    aliases: tuple[str, ...]
    bids_ce_of: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    center: str
    sequences: tuple[str, ...]
    labels: str
    description: str = ""

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(make_domain(self.center, s) for s in self.sequences)


@dataclass(frozen=True)
class Registry:
    sequences: dict[str, SequenceSpec]
    label_aliases: tuple[str, ...]
    label_conventions: dict[str, dict[str, int]]
    regions: dict[str, tuple[str, ...]]
    targets: dict[str, Target]
    defaults: dict[str, Any]
    sources: tuple[Path, ...] = field(default=())

    # -- file names --------------------------------------------------------------------------
    def _alias_table(self) -> dict[str, str]:
        return {a.lower(): s.name for s in self.sequences.values() for a in (s.name, *s.aliases)}

    def classify_file(self, filename: str | Path) -> tuple[str, str | None]:
        """Classify a NIfTI file name: ``("sequence", name)``, ``("label", None)`` or
        ``("unknown", token)`` where ``token`` is the unrecognised suffix."""
        stem = NIFTI_SUFFIX.sub("", Path(filename).name)
        tokens = [t for t in re.split(r"[_]", stem) if t]
        last = re.split(r"[-_]", stem)[-1]
        if last.lower() in {a.lower() for a in self.label_aliases} or stem.lower().endswith(
            tuple(f"_{a.lower()}" for a in self.label_aliases)
        ):
            return "label", None
        sequence = self._alias_table().get(last.lower())
        if sequence is None:
            return "unknown", last
        if any(t.lower().startswith("ce-") for t in tokens):  # BIDS contrast-enhancement entity
            for spec in self.sequences.values():
                if spec.bids_ce_of == sequence:
                    return "sequence", spec.name
        return "sequence", sequence

    def resolve_sequence(self, name_or_file: str | Path) -> str | None:
        """Canonical sequence for a name, alias or file name; ``None`` if unknown."""
        kind, value = self.classify_file(name_or_file)
        return value if kind == "sequence" else None

    # -- domains and labels ------------------------------------------------------------------
    def target(self, name: str) -> Target:
        if name not in self.targets:
            raise KeyError(f"unknown target '{name}'{did_you_mean(name, self.targets)}; "
                           f"known: {', '.join(sorted(self.targets))}")
        return self.targets[name]

    def label_values(self, convention: str) -> dict[str, int]:
        if convention not in self.label_conventions:
            known = ", ".join(sorted(self.label_conventions))
            raise KeyError(f"unknown label convention '{convention}'; known: {known}")
        return self.label_conventions[convention]

    @property
    def source_priority(self) -> tuple[str, ...]:
        return tuple(self.defaults.get("source_priority", ()))


def split_domain(domain: str) -> tuple[str, str]:
    """``"brats/t2"`` -> ``("brats", "t2")``."""
    center, sep, sequence = domain.partition("/")
    if not sep or not center or not sequence:
        raise ValueError(f"a domain is 'center/sequence', got '{domain}'")
    return center, sequence


def make_domain(center: str, sequence: str) -> str:
    """``("brats", "t2")`` -> ``"brats/t2"``; the inverse of :func:`split_domain`."""
    if not center or not sequence or "/" in center or "/" in sequence:
        raise ValueError(f"a domain needs a center and a sequence without '/', "
                         f"got {center!r} and {sequence!r}")
    return f"{center}/{sequence}"


# -- loading -----------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in ``path``; a directory, a binary or unreadable file, invalid YAML or a key
    written twice in one mapping (YAML keeps the last one silently) is a ``RegistryError``."""
    if path.is_dir():
        raise RegistryError(path, "<file>", "is a directory, not a registry YAML file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(path, "<file>", "file not found") from None
    except OSError as exc:
        raise RegistryError(path, "<file>", f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if "\0" in text or (raw and not text):
        raise RegistryError(path, "<file>", "is a binary file, not a registry YAML file")
    try:
        _check_duplicate_keys(path, yaml.compose(text, Loader=yaml.SafeLoader), "")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(path, "<file>", f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegistryError(path, "<top level>", "must be a mapping")
    return data


def _check_duplicate_keys(path: Path, node: yaml.Node | None, prefix: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            full = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise RegistryError(path, full, f"written twice (lines {seen[key]} and {line}); "
                                                "keep one")
            seen[key] = line
            _check_duplicate_keys(path, value_node, full)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(path, item, prefix)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _owner(key: str, origins: dict[str, Path], default: Path) -> Path:
    """The file that last set ``key`` (or its nearest parent)."""
    while key:
        if key in origins:
            return origins[key]
        key = key.rpartition(".")[0]
    return default


def _record_origins(data: Any, path: Path, prefix: str, origins: dict[str, Path]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            full = f"{prefix}.{key}" if prefix else str(key)
            origins[full] = path
            _record_origins(value, path, full, origins)


def _str_list(value: Any, key: str, fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        fail(key, "must be a list of non-empty strings")
    return tuple(value)


def _validate(data: dict[str, Any], origins: dict[str, Path], default: Path) -> Registry:
    def fail(key: str, problem: str):
        raise RegistryError(_owner(key, origins, default), key, problem)

    for section in ("sequences", "targets", "label_conventions", "regions", "defaults"):
        if not isinstance(data.get(section), dict) or not data[section]:
            fail(section, "missing or not a non-empty mapping")

    sequences: dict[str, SequenceSpec] = {}
    seen_aliases: dict[str, str] = {}
    for name, spec in data["sequences"].items():
        key = f"sequences.{name}"
        if not isinstance(spec, dict):
            fail(key, "must be a mapping with 'aliases'")
        aliases = _str_list(spec.get("aliases", []), f"{key}.aliases", fail)
        for alias in (name, *aliases):
            other = seen_aliases.setdefault(alias.lower(), name)
            if other != name:
                fail(f"{key}.aliases", f"alias '{alias}' is already used by sequence '{other}'")
        ce_of = spec.get("bids_ce_of")
        if ce_of is not None and ce_of not in data["sequences"]:
            fail(f"{key}.bids_ce_of", f"unknown sequence '{ce_of}'")
        sequences[name] = SequenceSpec(name, str(spec.get("description", "")), aliases, ce_of)

    conventions: dict[str, dict[str, int]] = {}
    for name, values in data["label_conventions"].items():
        key = f"label_conventions.{name}"
        if not isinstance(values, dict) or set(values) != set(LABEL_NAMES):
            fail(key, f"must map exactly {', '.join(LABEL_NAMES)} to integers")
        if not all(isinstance(v, int) and v > 0 for v in values.values()):
            fail(key, "label values must be positive integers")
        if len(set(values.values())) != len(values):
            fail(key, "label values must be distinct")
        conventions[name] = dict(values)

    regions: dict[str, tuple[str, ...]] = {}
    for name, members in data["regions"].items():
        members = _str_list(members, f"regions.{name}", fail)
        bad = [m for m in members if m not in LABEL_NAMES]
        if bad:
            fail(f"regions.{name}", f"unknown labels {bad}; use {', '.join(LABEL_NAMES)}")
        regions[name] = members

    targets: dict[str, Target] = {}
    for name, spec in data["targets"].items():
        key = f"targets.{name}"
        if not isinstance(spec, dict):
            fail(key, "must be a mapping with 'center' and 'sequences'")
        center = spec.get("center", name)
        if not isinstance(center, str) or "/" in center or not center:
            fail(f"{key}.center", "must be a non-empty name without '/'")
        seqs = _str_list(spec.get("sequences"), f"{key}.sequences", fail)
        unknown = [s for s in seqs if s not in sequences]
        if unknown:
            fail(f"{key}.sequences", f"unknown sequences {unknown}; known: {', '.join(sequences)}")
        labels = spec.get("labels", "brats2019")
        if labels not in conventions:
            fail(f"{key}.labels", f"unknown label convention '{labels}'")
        targets[name] = Target(name, center, seqs, labels, str(spec.get("description", "")))

    defaults = dict(data["defaults"])
    priority = _str_list(defaults.get("source_priority", []), "defaults.source_priority", fail)
    unknown = [s for s in priority if s not in sequences]
    if unknown:
        fail("defaults.source_priority", f"unknown sequences {unknown}")
    if defaults.get("target") is not None and defaults["target"] not in targets:
        fail("defaults.target", f"unknown target '{defaults['target']}'")

    label_aliases = _str_list(data.get("label_aliases", ["seg"]), "label_aliases", fail)
    return Registry(sequences, label_aliases, conventions, regions, targets, defaults)


def load_registry(user_file: str | Path | None = None) -> Registry:
    """Load the built-in registry, merged with ``user_file`` or ``$HARMONIX_REGISTRY``."""
    user_file = user_file or os.environ.get(REGISTRY_ENV) or None
    return _load_cached(str(Path(user_file).resolve()) if user_file else None)


@lru_cache(maxsize=8)
def _load_cached(user_file: str | None) -> Registry:
    origins: dict[str, Path] = {}
    data = _read_yaml(BUILTIN_REGISTRY)
    _record_origins(data, BUILTIN_REGISTRY, "", origins)
    sources = [BUILTIN_REGISTRY]
    if user_file:
        path = Path(user_file)
        override = _read_yaml(path)
        _record_origins(override, path, "", origins)
        data = _merge(data, override)
        sources.append(path)
    registry = _validate(data, origins, sources[-1])
    return Registry(**{**registry.__dict__, "sources": tuple(sources)})
