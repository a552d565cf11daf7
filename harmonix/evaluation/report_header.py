"""The top of ``report.md``: warnings (cases seen in training, built-in synthetic data), how the
test cases were split off, the models, the settings as a table, timings and notes.

A test site made by ``harmonix synth`` (its ``harmonix-site.json`` says ``"generator":
"harmonix synth"``; :func:`builtin_synthetic`) gets a banner: its numbers show that the pipeline
runs, not how a model does on real scans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SYNTH_GENERATOR = "harmonix synth"  # what synth writes as "generator" in harmonix-site.json
BUILTIN_KEY = "builtin_synthetic"  # evaluation.json: the sites made by harmonix synth


def builtin_synthetic(root: str | Path, _depth: int = 0) -> bool:
    """Whether the site at ``root`` is harmonix's built-in synthetic data (made by
    ``harmonix synth``/the demo), by its ``harmonix-site.json``; a part of ``harmonix split``
    (the demo's test site) by the site it was split from (``split.json``'s ``source``)."""
    from harmonix.data.layouts import SITE_FILE
    from harmonix.data.split import split_of

    try:
        site = json.loads((Path(root) / SITE_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        site = None
    if isinstance(site, dict) and site.get("generator") == SYNTH_GENERATOR:
        return True
    try:
        record = split_of(root)
    except (OSError, UnicodeDecodeError, ValueError):
        record = None
    source = (record or {}).get("source") if isinstance(record, dict) else None
    return bool(source) and _depth < 3 and builtin_synthetic(source, _depth + 1)


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "–"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items()) or "–"
    if value is None or value == "":
        return "–"
    return str(value).replace("|", "\\|")


def settings_table(settings: dict[str, Any], title: str = "setting") -> list[str]:
    """``settings`` as the lines of a two-column Markdown table (nested values flattened)."""
    lines = [f"| {title} | value |", "|---|---|"]
    lines += [f"| {key} | {_value(value)} |" for key, value in settings.items()]
    return lines


def write_header(report) -> None:
    """The header of ``report`` (a ``harmonix.evaluation.report._Report``)."""
    ev, s, w = report.ev, report.ev.settings, report.w
    provenance = ev.provenance
    n_cases = len(s.get("cases", []))
    w("# harmonix evaluation report")
    w()
    if s.get(BUILTIN_KEY):
        w("> **Built-in synthetic data.** The test site was made by `harmonix synth` (harmonix's "
          "built-in synthetic cases, not scans of patients): the numbers below show that the "
          "pipeline works, not how the models do on real data.")
        w()
    if provenance.overlap_allowed:
        w("> **WARNING: test cases were seen in training** (evaluated with "
          "`--allow-overlap`); every number below may be optimistic:")
        for line in provenance.overlaps:
            w(f"> - {line}")
        w()
    w(f"- **split**: {provenance.split or 'not stated'}")
    w(f"- **overlap check**: {provenance.overlap or 'not run'}")
    if provenance.copy_mapping:
        w(f"- **copy mapping**: {provenance.copy_mapping}")
    w(f"- test site: `{s['data']}` (center `{s['center']}`, {n_cases} complete labelled "
      "cases" + (f"; {len(ev.skipped)} skipped" if ev.skipped else "") + ")"
      + ("; built-in synthetic" if s.get(BUILTIN_KEY) else ""))
    w(f"- segmenter: `{s['segmenter']}` ({s['segmenter_card'].get('segmenter', '?')}, inputs "
      f"{', '.join(ev.sequences)}); preprocessing "
      + ("in the table below" if isinstance(s.get("preprocess"), dict) else
         str(s.get("preprocess", "–"))))
    if s.get("generator"):
        w(f"- generator: `{s['generator']}` (target `{s['target']}`)")
    if s.get("generator_no_lam"):
        w(f"- generator without LAM: `{s['generator_no_lam']}`")
    w(f"- scenarios: {', '.join(s['scenarios'])}; strategies: {', '.join(s['strategies'])}; "
      f"seed {s['seed']}. Filled cases are preprocessed (brain mask, intensity scaling, "
      "crop) from their present sequences only.")
    w(f"- every number is in `{report.rel(report.files['results'])}` (long format, one value "
      f"per row); settings, timings and notes in `{report.rel(report.files['settings'])}`")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in ev.timings.items())
    w(f"- time: {timings}")
    for note in ev.notes:
        w(f"- note: {note}")
    for case_id, reason in ev.skipped:
        w(f"- skipped case {case_id}: {reason}")
    w()
    if isinstance(s.get("preprocess"), dict) and s["preprocess"]:
        w("\n".join(settings_table(s["preprocess"], "preprocessing")))
        w()


__all__ = ["BUILTIN_KEY", "SYNTH_GENERATOR", "builtin_synthetic", "settings_table",
           "write_header"]
