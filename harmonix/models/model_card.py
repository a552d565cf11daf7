"""The model card for people: the ``README.md`` of a model package (``harmonix models export``).

:func:`readme` is the one writer. It renders, from the package's (portable) ``model_card.json``:
the intended use (synthetic images are for models, not for reading), the training data (sites,
centers, case counts from the card's data record; domains), the preset, preprocessing and
recipe, the evaluation figures when a ``harmonix evaluate`` report is given
(:func:`read_evaluation`, read-only) and the limitations (a summary of docs/limitations.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmonix.cards import card_kind, portable_path, preprocessing_of
from harmonix.data.fingerprint import RECORD_KEY
from harmonix.errors import InputError

# docs/limitations.md, section by section (tests/test_models.py keeps the headings in step)
LIMITATIONS: dict[str, str] = {
    "Synthetic images are not scans": (
        "A generated sequence carries only what the generator learned to expect from the "
        "present ones: a generated T1ce has never seen contrast agent. Never show generated "
        "volumes to a reader as real, never use them for diagnosis, keep the synthetic flags "
        "(NIfTI `descrip`, JSON sidecar, `manifest.csv`) with the data and report which inputs "
        "were generated."),
    "Where synthesis does not help": (
        "Information absent from the present sequences cannot be made (enhancing tumour recovers "
        "least without T1ce); anatomy, pathology or scanners far from the training centers are "
        "out of distribution; domains with few patients get weak style codes; generation is "
        "slice-wise (axial), so reformats can show striping; inputs are expected skull-stripped "
        "and co-registered, and a brain larger than the model's crop is cut."),
    "The built-in data": (
        "Numbers measured on harmonix's built-in synthetic cases (`harmonix synth`) exercise the "
        "pipeline; they say nothing about performance on real patients."),
    "The quick demo is not a trained model": (
        "A model from `harmonix demo` (quick profile: 600 CPU iterations at 3 mm) shows the "
        "pipeline working, with patch artefacts; train with the paper's recipe for a model worth "
        "using."),
    "Where harmonix's UMMGAT departs from the paper": (
        "2x2 patches in the Swin-Unet, PyTorch's default init inside the Swin blocks, real "
        "lesion codes as lesion style targets (the paper's LAM effect on FID is not "
        "reproduced), a target domain different from the source and an EMA warm-up; GPU speed "
        "is not yet compared with the paper's."),
}

_INTENDED = {
    "generator": (
        "This generator fills missing MRI sequences of brain-tumour cases and maps a center's "
        "sequences into a target domain, so that AI models (tumour segmenters, radiomics "
        "pipelines) trained on complete data can run on incomplete, multi-center data. "
        "**Synthetic images are for models, not for reading.** Every volume it makes is "
        "flagged synthetic (NIfTI `descrip`, a JSON sidecar, the site manifest); it must never "
        "stand in for a scan that was not acquired, be shown to a reader as real or be used "
        "for diagnosis."),
    "segmenter": (
        "This segmenter labels brain tumours (BraTS regions) on complete cases, real or "
        "completed by a harmonix generator; it is meant for research pipelines and for "
        "measuring what generated sequences are worth (`harmonix evaluate`), not for clinical "
        "decisions."),
}


# -- evaluation figures ----------------------------------------------------------------------------
@dataclass
class EvaluationSummary:
    """The figures of a ``harmonix evaluate`` folder that a model card shows."""

    test_site: str = ""
    cases: int = 0
    dice: list[dict[str, Any]] = field(default_factory=list)  # strategy, region, median, n
    cross_center: list[dict[str, Any]] = field(default_factory=list)  # strategy, median, n
    quality: list[dict[str, Any]] = field(default_factory=list)  # metric, sequence, median, n
    fid: list[dict[str, Any]] = field(default_factory=list)  # group, median, n (pairs)
    models: dict[str, str] = field(default_factory=dict)  # generator/segmenter: folder name


def _label(strategy: str, generator: str) -> str:
    return f"{strategy} ({generator})" if generator and strategy == "generated" else strategy


def read_evaluation(report: str | Path) -> EvaluationSummary:
    """Medians from ``results.csv`` and the test site from ``evaluation.json`` of the
    ``harmonix evaluate`` folder ``report`` (read, never written)."""
    from harmonix.evaluation.results import CROSS, load_results, report_settings  # pandas

    report = Path(report)
    for needed in ("results.csv", "evaluation.json"):
        if not (report / needed).is_file():
            raise InputError(report / needed, "missing; give --report the --out folder of "
                                              "'harmonix evaluate'")
    try:
        results = load_results(report)
        settings = report_settings(report)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(report, f"unreadable evaluation report: {exc}") from None
    summary = EvaluationSummary(
        test_site=portable_path(settings.get("data")),
        cases=len(settings.get("cases") or []),
        models={k: portable_path(settings[k]) for k in ("generator", "segmenter")
                if settings.get(k)},
    )
    results = results[results["value"].notna()]
    dice = results[(results["metric"] == "dice")]
    main = dice[~dice["kind"].isin([CROSS, "pairs"])]
    for (strategy, generator, region), rows in main.groupby(
            ["strategy", "generator", "region"], sort=False):
        summary.dice.append({"strategy": _label(strategy, generator), "region": region,
                             "median": float(rows["value"].median()),
                             "n": int(rows["case"].nunique())})
    for (strategy, generator), rows in dice[dice["kind"] == CROSS].groupby(
            ["strategy", "generator"], sort=False):
        summary.cross_center.append({"strategy": _label(strategy, generator),
                                     "median": float(rows["value"].median()), "n": len(rows)})
    quality = results[results["metric"].isin(["ssim", "psnr"]) & (results["kind"] == "pairs")]
    for (metric, sequence), rows in quality.groupby(["metric", "sequence"], sort=True):
        summary.quality.append({"metric": metric.upper(), "sequence": sequence,
                                "median": float(rows["value"].median()), "n": len(rows)})
    fid = results[(results["metric"] == "fid") & (results["kind"] == "fid")]
    for (strategy, generator), rows in fid.groupby(["strategy", "generator"], sort=False):
        summary.fid.append({"group": _label(strategy, generator),
                            "median": float(rows["value"].median()), "n": len(rows)})
    return summary


# -- rendering -------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_fmt, value))
    if isinstance(value, Mapping):
        return ", ".join(f"{k}=[{_fmt(v)}]" if isinstance(v, (list, tuple)) else f"{k}={_fmt(v)}"
                         for k, v in value.items()) or "-"
    return "-" if value is None or value == "" else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines + [""]


def _cases_by_site(record: Mapping[str, Any] | None) -> list[tuple[str, str, int]]:
    cases = (record or {}).get("cases") or []
    counts = Counter((portable_path(c.get("site")) or "-", c.get("center") or "-") for c in cases)
    return [(site, center, n) for (site, center), n in sorted(counts.items())]


def _training_data(card: Mapping[str, Any], kind: str) -> list[str]:
    lines = ["## Training data", ""]
    if kind == "generator":
        data = card.get("data") or {}
        record = data.get(RECORD_KEY)
        sites = [portable_path(s) for s in data.get("sites") or []]
    else:
        training = card.get("training") or {}
        record = training.get(RECORD_KEY)
        sites = [portable_path(s) for s in training.get("data") or []]
        data = {}
    by_site = _cases_by_site(record)
    if by_site:
        total = sum(n for *_, n in by_site)
        lines += [f"{total} case(s) from {len(by_site)} site(s), recorded by id and file content "
                  "(SHA-256) in `model_card.json`, so that `harmonix evaluate` refuses them as "
                  "test cases:", ""]
        lines += _table(["site", "center", "cases"], by_site)
    elif sites:
        lines += [f"Sites: {', '.join(f'`{s}`' for s in sites)} (no per-case record).", ""]
    else:
        lines += ["Not recorded in the model card.", ""]
    if kind == "generator":
        per_domain = data.get("per_domain") or {}
        if per_domain:
            lines += ["Domains (center/sequence) and what each contributed:", ""]
            lines += _table(["domain", "patients", "slices"], [
                (d, v.get("patients", "-") if isinstance(v, Mapping) else "-",
                 v.get("slices", "-") if isinstance(v, Mapping) else v)
                for d, v in per_domain.items()])
        pairing = data.get("pairing")
        if pairing:
            lines += [f"Pairing: `{pairing}` ("
                      + ("each patient contributes one sequence, unpaired" if pairing != "all"
                         else "every sequence of every patient")
                      + f"); horizontal flips: {'yes' if data.get('flip') else 'no'}.", ""]
    else:
        cases = (card.get("training") or {}).get("cases") or []
        if cases and not by_site:
            lines += [f"{len(cases)} training case(s), by id.", ""]
    return lines


def _model_section(card: Mapping[str, Any], kind: str) -> list[str]:

    rows: list[tuple[str, Any]] = []
    if kind == "generator":
        backbone = card.get("backbone") or {}
        rows += [("trainer", card.get("trainer")), ("domains", card.get("domains")),
                 ("lesion-aware module (LAM)", (card.get("recipe") or {}).get("lam", "-")),
                 ("backbone", f"{backbone.get('name', '-')} ({_fmt(backbone.get('options'))})"),
                 ("preset", card.get("preset")), ("slice size", card.get("image_size")),
                 ("style / latent dim", f"{card.get('style_dim', '-')} / "
                                         f"{card.get('latent_dim', '-')}")]
    else:
        rows += [("segmenter", card.get("segmenter")), ("input sequences", card.get("sequences")),
                 ("options", card.get("options"))]
    iters = (card.get("recipe") or {}).get("iters") or card.get("iters")
    rows.append(("iteration", f"{card.get('iteration', '-')}" + (f" of {iters}" if iters else "")))
    prep = preprocessing_of(card) or {}
    if prep:
        percentiles = "-".join(_fmt(p) for p in prep.get("percentiles") or []) or "-"
        crop = "x".join(_fmt(n) for n in prep.get("crop_shape") or []) or "-"
        rows += [("preprocessing", f"RAS, {_fmt(prep.get('spacing'))} mm, crop {crop} voxels, "
                                   f"intensity percentiles {percentiles} to 0..255")]
    rows.append(("harmonix version", card.get("harmonix_version")))
    lines = ["## Model", ""] + _table(["", ""], rows)
    recipe = card.get("recipe") if kind == "generator" else card.get("training")
    if isinstance(recipe, Mapping):
        shown = {k: v for k, v in recipe.items() if not isinstance(v, (Mapping, list))}
        if shown:
            lines += ["## Recipe", ""] + _table(["setting", "value"], list(shown.items()))
    return lines


def _evaluation(summary: EvaluationSummary | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if summary is None:
        return lines + ["No evaluation report was given at export (`harmonix models export RUN "
                        "model.zip --report REPORT_DIR` adds the figures of `harmonix evaluate`).",
                        ""]
    used = ", ".join(f"{k} `{v}`" for k, v in summary.models.items())
    lines += [f"From `harmonix evaluate` on the test site `{summary.test_site or '-'}` "
              f"({summary.cases} case(s){'; ' + used if used else ''}); medians.", ""]
    if summary.dice:
        regions = list(dict.fromkeys(r["region"] for r in summary.dice))
        strategies = list(dict.fromkeys(r["strategy"] for r in summary.dice))
        value = {(r["strategy"], r["region"]): r["median"] for r in summary.dice}
        cases = {r["strategy"]: r["n"] for r in summary.dice}
        lines += ["Dice over the missing-sequence scenarios, by strategy (complete: all "
                  "sequences real; copy: a missing one replaced by a present one; generated: "
                  "filled by the generator):", ""]
        lines += _table(["strategy", *regions, "cases"],
                        [(s, *[value.get((s, r), "-") for r in regions], cases[s])
                         for s in strategies])
    if summary.cross_center:
        lines += ["Cross-center Dice (WT):", ""]
        lines += _table(["strategy", "median", "n"],
                        [(r["strategy"], r["median"], r["n"]) for r in summary.cross_center])
    if summary.quality:
        lines += ["Image quality of generated sequences against the real ones:", ""]
        lines += _table(["metric", "sequence", "median", "n"],
                        [(r["metric"], r["sequence"], r["median"], r["n"])
                         for r in summary.quality])
    if summary.fid:
        lines += ["FID per sequence pair (lower is closer to the real target sequence):", ""]
        lines += _table(["group", "median", "pairs"],
                        [(r["group"], r["median"], r["n"]) for r in summary.fid])
    if not (summary.dice or summary.quality or summary.fid or summary.cross_center):
        lines += ["The report holds no Dice, image-quality or FID rows.", ""]
    return lines


def readme(card: Mapping[str, Any], name: str, *,
           evaluation: EvaluationSummary | None = None) -> str:
    """The ``README.md`` of the package ``name`` holding the model of ``card``."""
    kind = card_kind(card) or "generator"
    plugin = card.get("trainer") if kind == "generator" else card.get("segmenter")
    use = (f"harmonix harmonize SITE_DIR --model {name} --target brats --out OUT_DIR"
           if kind == "generator" else
           f"harmonix segment predict SITE_DIR --model {name} --out OUT_DIR")
    lines = [f"# {name}: a harmonix {kind} ({plugin})", "",
             "## Intended use", "", _INTENDED[kind], "",
             "## Use it", "", "```bash", f"harmonix models install {name}.zip", use, "```", ""]
    if kind == "generator":
        lines += ["In Python, for a case held in memory (a notebook, a PACS bridge):", "",
                  "```python", "import harmonix", "",
                  f'filled = harmonix.fill_case({{"t1": t1_image, "t2": t2_image}}, "{name}", '
                  'target="brats")', "```", ""]
    lines += _model_section(card, kind)
    lines += _training_data(card, kind)
    lines += _evaluation(evaluation)
    lines += ["## Limitations", ""]
    lines += [f"* **{title}.** {text}" for title, text in LIMITATIONS.items()]
    lines += ["", "The full text is docs/limitations.md in the harmonix sources.", "",
              "## Files", "",
              "`model_card.json` (what rebuilds the model, read by harmonix), `model.safetensors` "
              "(the weights), this README and `SHA256SUMS` (check with `sha256sum -c "
              "SHA256SUMS`; `harmonix models install` checks it and refuses a mismatch).", ""]
    return "\n".join(lines)


__all__ = ["LIMITATIONS", "EvaluationSummary", "read_evaluation", "readme"]
