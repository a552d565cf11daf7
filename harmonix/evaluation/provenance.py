"""Trust in the test cases: were they seen in training, how were they split off, and where does
the copy strategy's mapping come from (never from the test cases).

* :func:`check_overlap`: the test cases (ids and content hashes of their input files,
  :mod:`harmonix.data.fingerprint`) against the training data recorded in the segmenter's and the
  generator's model cards; :class:`OverlapError` on overlap unless it is allowed.
* :func:`describe_split`: the ``harmonix split`` record of the test site, if it is one.
* :func:`copy_mapping`: the copy strategy's table: correlations measured on sites given
  explicitly, else recorded in the segmenter's (or generator's) card, else measured on the
  training sites the card names, else the fixed clinical mapping (:func:`clinical_mapping`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmonix.cards import portable_path
from harmonix.data.fingerprint import (
    RECORD_KEY,
    Overlap,
    case_record,
    find_overlap,
    ids_only_record,
    training_record,
)
from harmonix.evaluation.strategies import (
    CORRELATIONS_KEY,
    MAX_CORRELATION_CASES,
    correlations_from_record,
    sequence_correlations,
)
from harmonix.segmentation import prepare_site

#: The fixed fallback: each sequence's clinical partner first (T1 with T1ce, T2 with FLAIR), then
#: the registry's preferred sources T1 and T2, then the rest.
CLINICAL_ORDER = {
    "t1": ("t1ce", "t2", "flair"),
    "t1ce": ("t1", "t2", "flair"),
    "t2": ("flair", "t1", "t1ce"),
    "flair": ("t2", "t1", "t1ce"),
}


class OverlapError(ValueError):
    """Test cases were seen in training and ``--allow-overlap`` was not given."""


# -- training records in model cards ---------------------------------------------------------------
def _card(model) -> Mapping[str, Any]:
    return (getattr(model, "card", None) or {}) if model is not None else {}


def _local_sites(named: Sequence[Any]) -> list[str]:
    """The folders of ``named`` that can be read here: only absolute entries (older cards)
    name a folder; a bare name (what cards record now) is not looked up in the current one."""
    return [str(s) for s in named
            if isinstance(s, str) and Path(s).is_absolute() and Path(s).is_dir()]


def segmenter_record(card: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The segmenter's training record and a phrase saying how complete it is."""
    training = card.get("training") or {}
    if isinstance(training.get(RECORD_KEY), Mapping):
        return dict(training[RECORD_KEY]), "ids and file hashes recorded in its card"
    sites = _local_sites(training.get("data") or [])
    if sites:
        return training_record(sites), "ids and file hashes of the training sites its card names"
    if training.get("cases"):
        return ids_only_record(training["cases"]), "case ids only (its card has no file hashes)"
    return None, _unrecorded(training.get("data"))


def generator_record(card: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The generator's training record (``data.data_record``, else computed from the training
    sites its card names) and a phrase saying where it came from."""
    data = card.get("data") or {}
    if isinstance(data.get(RECORD_KEY), Mapping):
        return dict(data[RECORD_KEY]), "ids and file hashes recorded in its card"
    named = [s for s in data.get("sites") or [] if isinstance(s, str) and Path(s).is_absolute()]
    sites = _local_sites(named)
    if sites:
        lost = len(named) - len(sites)
        note = f" ({lost} named site(s) no longer exist)" if lost else ""
        return training_record(sites), f"ids and file hashes of the training sites its card " \
                                       f"names{note}"
    return None, _unrecorded(data.get("sites"))


def _unrecorded(named) -> str:
    """Why a card gives no training record: it names no site, or names them only."""
    names = [portable_path(s) for s in named or [] if isinstance(s, str)]
    if names:
        return (f"its card records no file hashes and names its training sites only by "
                f"folder name ({', '.join(names)})")
    return "no training data recorded in its card"


@dataclass
class OverlapCheck:
    """The outcome of :func:`check_overlap`."""

    overlaps: list[Overlap] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # "segmenter: ids and file hashes ..."
    unchecked: list[str] = field(default_factory=list)

    def summary(self, n_test: int) -> str:
        parts = []
        if self.overlaps:
            cases = sorted({o.test_case for o in self.overlaps})
            parts.append(f"**OVERLAP**: {len(cases)} of {n_test} test cases were seen in "
                         f"training ({', '.join(cases)})")
        else:
            parts.append(f"no overlap: none of the {n_test} test cases is in the training data "
                         "(by case id or by file content)")
        if self.checked:
            parts.append("Checked against " + "; ".join(self.checked))
        if self.unchecked:
            parts.append("Not checked: " + "; ".join(self.unchecked))
        return ". ".join(parts)


def check_overlap(
    test_records: Sequence[Mapping[str, Any]], models: Mapping[str, Any]
) -> OverlapCheck:
    """Compare test cases (``case_record``\\ s) with each model's training record.

    ``models`` maps a name ("segmenter", "generator", "generator without LAM") to a loaded
    model (its ``card``) or None; segmenters and generators keep their records in different
    card sections.
    """
    result = OverlapCheck()
    for name, model in models.items():
        if model is None:
            continue
        card = _card(model)
        is_segmenter = "segmenter" in card or name == "segmenter"
        record, how = segmenter_record(card) if is_segmenter else generator_record(card)
        if record is None:
            result.unchecked.append(f"the {name} ({how})")
            continue
        result.checked.append(f"the {name} ({how}, {len(record.get('cases', []))} cases)")
        result.overlaps += find_overlap(test_records, record, name)
    return result


def case_records(prepared_site) -> list[dict[str, Any]]:
    """``case_record`` of each evaluated case of a ``PreparedSite``."""
    used = {c.case_id for c in prepared_site.cases}
    return [case_record(c, prepared_site.site.root) for c in prepared_site.site.cases
            if c.id in used]


def describe_split(test_site: str | Path) -> str:
    """A sentence on how the test site was split off its training data."""
    from harmonix.data.split import split_of

    record = split_of(test_site)
    if record is None:
        return (f"`{portable_path(Path(test_site).resolve())}` was not made by `harmonix split`; "
                "that its cases are held out rests on the overlap check below")
    return (f"the test part of `harmonix split {portable_path(record['source'])} "
            f"--test {record['test_size']} --seed {record['seed']}`: {len(record['train'])} "
            f"training and {len(record['test'])} test cases ({record['mode']}s)")


# -- the copy strategy's mapping -------------------------------------------------------------------
def clinical_mapping(sequences: Sequence[str]) -> pd.DataFrame:
    """The fixed clinical mapping as a table of preferences (higher = copied first; diagonal 1),
    usable wherever a correlation table is: T1 with T1ce, T2 with FLAIR (:data:`CLINICAL_ORDER`;
    other sequences after these, in ``sequences`` order)."""
    table = pd.DataFrame(0.0, index=list(sequences), columns=list(sequences))
    for m in sequences:
        order = [s for s in CLINICAL_ORDER.get(m, ()) if s in sequences]
        order += [s for s in sequences if s not in order and s != m]
        for rank, s in enumerate(order):
            table.loc[m, s] = (len(order) - rank) / (len(order) + 1)
        table.loc[m, m] = 1.0
    table.index.name = "sequence"
    table.attrs["kind"] = "clinical"
    return table


def copy_mapping(
    sequences: Sequence[str],
    *,
    segmenter=None,
    generator=None,
    correlation_data: str | Path | Sequence[str | Path] | None = None,
    config=None,
    test_records: Sequence[Mapping[str, Any]] = (),
) -> tuple[pd.DataFrame, str]:
    """The copy strategy's table and a sentence saying where it came from; never the test
    cases. Sites given as ``correlation_data`` that hold a test case raise ``OverlapError``."""
    sites, origin = None, ""
    if correlation_data is not None:
        sites = [correlation_data] if isinstance(correlation_data, (str, Path)) else list(
            correlation_data)
        origin = "measured on the site(s) given with --correlation-data"
    else:
        for name, model, section in (("segmenter", segmenter, "training"),
                                     ("generator", generator, "data")):
            recorded = (_card(model).get(section) or {}).get(CORRELATIONS_KEY)
            if isinstance(recorded, Mapping):
                table = correlations_from_record(recorded, sequences)
                if table is not None:
                    return table, (f"learned from the {name}'s training data (Pearson's r "
                                   f"recorded in its model card, {table.attrs['cases']} cases)")
        named = ((_card(segmenter).get("training") or {}).get("data") or [])
        if named and len(_local_sites(named)) == len(named):
            sites, origin = named, "measured on the segmenter's training site(s)"
    if sites is None:
        return clinical_mapping(sequences), (
            "the fixed clinical mapping (T1 with T1ce, T2 with FLAIR; then T1, T2), because "
            "neither the segmenter's nor the generator's card records correlations or training "
            "sites and no --correlation-data was given")
    cases = []
    for site in sites:
        left = MAX_CORRELATION_CASES - len(cases)
        if left > 0:
            prepared = prepare_site(site, config, sequences=sequences, need_label=False,
                                    max_cases=left)
            leaks = find_overlap(test_records, {"cases": case_records(prepared)}, "copy mapping")
            if leaks:
                raise OverlapError(f"the copy mapping would be measured on test cases: "
                                   f"{'; '.join(map(str, leaks))}")
            cases += prepared.cases
    table = sequence_correlations(cases, sequences)
    names = ", ".join(portable_path(Path(s).resolve()) for s in sites)  # reports travel too
    return table, f"{origin}: {names} (Pearson's r, {table.attrs['cases']} cases)"


__all__ = ["CLINICAL_ORDER", "OverlapCheck", "OverlapError", "check_overlap", "clinical_mapping",
           "copy_mapping", "describe_split", "generator_record",
           "segmenter_record", "case_records"]
