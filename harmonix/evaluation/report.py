"""Write an evaluation's files: every number, the statistics, the figures and ``report.md``.

``REPORT_DIR/``

* ``results.csv``: every number, one per row (columns :data:`harmonix.evaluation.results.COLUMNS`);
* ``table1_median_dice.csv``, ``wilcoxon.csv``, ``friedman.csv``, ``dunn.csv``: statistics of
  the Dice rows (:mod:`harmonix.evaluation.stats`);
* ``fid_friedman.csv``, ``fid_dunn.csv``: the paper's tests on FID per sequence pair
  (:mod:`harmonix.evaluation.fid`);
* ``correlations.csv``, ``random_missing.csv``, ``fid.csv``, ``image_quality.csv`` (a column
  per image metric), ``umap.csv``: the tables behind the report's sections;
* ``median_NAME.csv`` per segmentation metric other than Dice (HD95, a plugin's), ``pairs_NAME.csv``
  per image-set metric other than FID (:mod:`harmonix.evaluation.metric_tables`);
* ``fid_lesion.csv``: lesion-region FID per pair, with and without LAM;
* ``fidelity.csv``: generated vs the source copied and remapped, per sequence pair
  (:mod:`harmonix.evaluation.fidelity`);
* ``boxplots_dice.png``, ``fid_heatmap.png``, ``umap.png``, ``overlays/*.png``,
  ``examples.png`` (:mod:`harmonix.evaluation.figures`);
* ``evaluation.json`` (settings, provenance, timings, notes) and ``report.md``, which states at
  its top how the test cases were split off, the training/test overlap check and where the copy
  mapping came from; ``report.html``, the same as one self-contained page
  (:mod:`harmonix.evaluation.html`).

Every file is written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harmonix.evaluation import stats as statistics_module
from harmonix.evaluation.artifacts import INTRO as GRID_INTRO
from harmonix.evaluation.artifacts import THROUGH_PLANE_INTRO, grid_table, through_plane_table
from harmonix.evaluation.brasyn import INTRO as BRASYN_INTRO
from harmonix.evaluation.brasyn import brasyn_table
from harmonix.evaluation.fid import fid_statistics, lesion_fid_table
from harmonix.evaluation.fidelity import INTRO as FIDELITY_INTRO
from harmonix.evaluation.fidelity import fidelity_table, image_quality_table
from harmonix.evaluation.figures import (
    REGIONS,
    dice_long,
    fid_matrix,
    plot_boxplots,
    plot_examples,
    plot_fid,
    plot_overlay,
    plot_umap,
)
from harmonix.evaluation.html import write_html
from harmonix.evaluation.lesion import INTRO as LESION_INTRO
from harmonix.evaluation.lesion import lesion_table
from harmonix.evaluation.metric_tables import MetricSection, metric_sections
from harmonix.evaluation.planes import FIGURE as PLANES_FIGURE
from harmonix.evaluation.planes import plot_planes
from harmonix.evaluation.report_header import write_header
from harmonix.evaluation.results import (
    CROSS,
    GENERATOR_LABELS,
    MAIN,
    NO_LAM,
    Evaluation,
    EvaluationResult,
)
from harmonix.evaluation.scenarios import random_distribution
from harmonix.evaluation.strategies import STRATEGIES
from harmonix.evaluation.text import markdown_table, power_note, verdict_lines
from harmonix.io import atomic_write_json, atomic_write_text


# -- small helpers ---------------------------------------------------------------------------------
def _csv(path: Path, table: pd.DataFrame, index: bool = False) -> Path:
    atomic_write_text(path, table.to_csv(index=index))
    return path


# -- statistics ------------------------------------------------------------------------------------
def statistics(results: pd.DataFrame, scenarios: Sequence[str]) -> dict[str, pd.DataFrame]:
    """:func:`harmonix.evaluation.stats.all_statistics` of the Dice rows, in report order."""
    dice = dice_long(results)
    if dice.empty:
        return {}
    strategies = [s for s in (*STRATEGIES, "generated-noalign") if s in set(dice["strategy"])]
    order = [s for s in scenarios if s in set(dice["scenario"])]
    return statistics_module.all_statistics(dice, strategies=strategies, regions=REGIONS,
                                            scenarios=order)


# -- the report ------------------------------------------------------------------------------------
FILE_NAMES = {"medians": "table1_median_dice.csv", "wilcoxon": "wilcoxon.csv",
              "friedman": "friedman.csv", "dunn": "dunn.csv"}


def write_report(ev: Evaluation, out: str | Path) -> EvaluationResult:
    """Write every file of the report into ``out`` and return what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = ev.frame()
    scenarios = [s.name for s in ev.scenarios]
    files: dict[str, Path] = {"results": _csv(out / "results.csv", results)}
    stats = statistics(results, scenarios)
    for key, table in stats.items():
        files[key] = _csv(out / FILE_NAMES[key], table, index=key == "medians")
    if ev.correlations is not None:
        files["correlations"] = _csv(out / "correlations.csv", ev.correlations, index=True)
    distribution = None
    if ev.random_assignment:
        distribution = random_distribution(ev.random_assignment, ev.sequences)
        files["random"] = _csv(out / "random_missing.csv", distribution)
    fid = results[results["metric"] == "fid"]
    if not fid.empty:
        files["fid"] = _csv(out / "fid.csv", fid)
        if (plot := plot_fid(fid[fid["kind"] == "fid"], ev.sequences, out / "fid_heatmap.png")):
            files["fid_heatmap"] = plot
        friedman, dunn, notes = fid_statistics(fid)
        ev.notes.extend(notes)
        if not friedman.empty:
            stats["fid_friedman"] = friedman
            files["fid_friedman"] = _csv(out / "fid_friedman.csv", friedman)
        if not dunn.empty:
            stats["fid_dunn"] = dunn
            files["fid_dunn"] = _csv(out / "fid_dunn.csv", dunn)
        if not (lesion := lesion_fid_table(results)).empty:
            stats["fid_lesion"] = lesion
            files["fid_lesion"] = _csv(out / "fid_lesion.csv", lesion.reset_index())
    quality = image_quality_table(results)
    if not quality.empty:
        files["image_quality"] = _csv(out / "image_quality.csv", quality)
    for key, table in (("fidelity", fidelity_table), ("lesion", lesion_table),
                       ("grid", grid_table), ("through_plane", through_plane_table),
                       ("brasyn", brasyn_table)):
        if not (frame := table(results)).empty:
            stats[key], files[key] = frame, _csv(out / f"{key}.csv", frame)
    if (plot := plot_planes(ev.planes, out / PLANES_FIGURE)):
        files["through_plane_figure"] = plot  # coronal and sagittal, generated beside real
    sections = metric_sections(results, scenarios, ev.sequences, out)
    for section in sections:
        files[section.key] = section.file
        if section.statistic is not None:
            stats[section.key] = section.statistic
    if (plot := plot_boxplots(results, scenarios, out / "boxplots_dice.png")):
        files["boxplots"] = plot
    if ev.codes is not None:
        files["umap_csv"] = _csv(out / "umap.csv", ev.codes)
        files["umap"] = plot_umap(ev.codes, out / "umap.png")
    overlays = []
    for example in ev.overlays:
        path = out / "overlays" / f"{example['case']}.png"
        if (plot := plot_overlay(example, results, ev.sequences, path)):
            overlays.append(plot)
    if (plot := plot_examples(ev.overlays, ev.sequences, out / "examples.png")):
        overlays.insert(0, plot)  # real and generated slices side by side
    files.update({f"overlay_{p.stem}": p for p in overlays})
    settings = {**ev.settings, "provenance": ev.provenance.to_dict(),
                "timings_s": {k: round(v, 2) for k, v in ev.timings.items()},
                "notes": ev.notes, "skipped_cases": [list(s) for s in ev.skipped]}
    files["settings"] = out / "evaluation.json"
    atomic_write_json(files["settings"], settings)
    files["report"] = out / "report.md"
    report = _Report(ev, results, stats, files, out)
    text = report.markdown(distribution, quality, overlays, sections)
    atomic_write_text(files["report"], text)
    files["html"] = write_html(files["report"])  # report.html: one self-contained page
    return EvaluationResult(out, results, stats, files["report"], files, list(ev.notes))


class _Report:
    """``report.md``, section by section."""

    def __init__(self, ev: Evaluation, results, stats, files, out: Path):
        self.ev, self.results, self.stats, self.files, self.out = ev, results, stats, files, out
        self.buffer = io.StringIO()

    def w(self, line: str = "") -> None:
        self.buffer.write(line + "\n")

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def markdown(self, distribution, quality, overlays, sections=()) -> str:
        self.header()
        self.dice()
        self.copy_mapping(distribution)
        self.fid()
        self.image_quality(quality)
        self.table_section("brasyn", "BraSyn protocol", BRASYN_INTRO)
        self.table_section("fidelity", "Image fidelity vs trivial baselines", FIDELITY_INTRO)
        self.table_section("lesion", "Lesion preservation", LESION_INTRO)
        self.table_section("grid", "Grid artifact at the patch period", GRID_INTRO)
        self.table_section("through_plane", "Through-plane consistency", THROUGH_PLANE_INTRO,
                           figure="through_plane_figure")
        for section in sections:
            self.metric_section(section)
        self.cross_center()
        self.codes()
        if overlays:
            self.w("## Examples")
            self.w()
            self.w("NCR red, ED green, ET yellow. `examples` (with a generator): real and "
                   "generated slices side by side; then for each case the scenario where "
                   "generated and copy differ most in WT Dice.")
            self.w()
            for path in overlays:
                self.w(f"![{path.stem}]({self.rel(path)})")
            self.w()
        return self.buffer.getvalue()

    def header(self) -> None:
        write_header(self)

    def dice(self) -> None:
        stats, w, files = self.stats, self.w, self.files
        wilcoxon = stats.get("wilcoxon")
        if wilcoxon is not None and not wilcoxon.empty:
            w("## Does generated beat copy?")
            w()
            w("Paired two-sided Wilcoxon signed-rank test per scenario and region (Dice, paired "
              "by case), generated versus copy; `Holm p` is adjusted over all scenario-region "
              "tests, and a verdict needs Holm p < 0.05.")
            if note := power_note(wilcoxon):
                w()
                w(f"**Too few cases for a verdict:** {note}")
            w()
            for line in verdict_lines(wilcoxon, [s.name for s in self.ev.scenarios]):
                w(line)
            w()
        if "medians" in stats:
            w("## Median Dice per scenario (Table 1 layout)")
            w()
            w(markdown_table(stats["medians"], index=True))
            w()
            w(f"File: `{self.rel(files['medians'])}`.")
            w()
        if "boxplots" in files:
            w(f"![Dice box plots]({self.rel(files['boxplots'])})")
            w()
        if wilcoxon is not None and not wilcoxon.empty:
            w("## Wilcoxon signed-rank, generated vs copy")
            w()
            w(markdown_table(wilcoxon))
            w()
        if "friedman" in stats and not stats["friedman"].empty:
            w("## Friedman test across strategies, Dunn's post hoc")
            w()
            w(markdown_table(stats["friedman"]))
            w()
            if "dunn" in stats and not stats["dunn"].empty:
                w("Dunn's test after Friedman, in the within-case form (strategies ranked "
                  "within each case; z = (R_a - R_b) / sqrt(k(k+1)/(6n)) on the mean ranks), "
                  "Bonferroni-adjusted within each scenario and region as in the paper:")
                w()
                w(markdown_table(stats["dunn"]))
                w()

    def copy_mapping(self, distribution) -> None:
        ev, w = self.ev, self.w
        if ev.correlations is not None:
            clinical = ev.correlations.attrs.get("kind") == "clinical"
            w("## Copy strategy: the mapping")
            w()
            if clinical:
                w(f"From {ev.correlation_source}. Order of preference (higher is copied first):")
            else:
                w("Pearson's r between two sequences' voxels inside the brain mask, averaged "
                  f"over cases, {ev.correlation_source}; never measured on the test cases. A "
                  "missing sequence is replaced by the present sequence with the highest r:")
            w()
            w(markdown_table(ev.correlations, index=True))
            w()
            order = {m: [o for o in ev.correlations.loc[m].sort_values(ascending=False).index
                         if o != m] for m in ev.sequences}
            for m, others in order.items():
                w(f"- {m}: copied from {' > '.join(others)} (first present one)")
            w()
        if distribution is not None:
            w("## Random missing")
            w()
            w("Each case loses one of the 14 fixed missing sets, drawn uniformly "
              f"(seed {ev.settings['seed']}); so it keeps at least one sequence and loses at "
              "most three. What was drawn:")
            w()
            w(markdown_table(distribution))
            w()

    def fid(self) -> None:
        results, w, files, stats = self.results, self.w, self.files, self.stats
        fid = results[(results["metric"] == "fid") & (results["kind"] == "fid")]
        if fid.empty:
            return
        w("## FID per (source, target) pair")
        w()
        w("FID of slices generated from the source for the target sequence (cases of half A) "
          "against real target slices (half B); *real* compares the real source itself with "
          "the real target (what copying it gives); the diagonal is the real-vs-real baseline "
          "FID(real target of A, real target of B). Equal set sizes make the numbers "
          "comparable; with few slices FID is biased upwards, which the baseline shows.")
        w()
        for label in ("real", NO_LAM, MAIN):
            title = ("real source vs real target" if label == "real"
                     else GENERATOR_LABELS[label])
            has = ((fid["strategy"] == "copy").any() if label == "real"
                   else (fid["generator"] == label).any())
            if has:
                w(f"**{title}** (rows: source, columns: target):")
                w()
                w(markdown_table(fid_matrix(fid, label, self.ev.sequences), digits=1,
                                 index=True))
                w()
        if "fid_heatmap" in files:
            w(f"![FID heatmap]({self.rel(files['fid_heatmap'])})")
            w()
        if "fid_friedman" in stats:
            w("### FID statistics (the paper's Fig. 4 tests)")
            w()
            w("Blocks: the sequence pairs. Friedman across the groups, then Dunn's test in "
              "the within-block form, Bonferroni-adjusted; `mean_difference` is the "
              "difference of mean FID (the paper's post-hoc figures; negative: the first group "
              "has lower FID), `rank_sum_difference` the rank statistic; `cohen_d` pools the SD "
              "over all groups (the paper's), `cohen_d_pair` over the pair, `cohen_dz` uses the "
              "SD of the paired differences.")
            w()
            w(markdown_table(stats["fid_friedman"]))
            w()
            if "fid_dunn" in stats:
                w(markdown_table(stats["fid_dunn"]))
                w()
        if "fid_lesion" in stats:
            lesion = stats["fid_lesion"]
            w("### Lesion-region FID")
            w()
            w("The same distance on crops around the lesion (slices with the largest lesions), "
              "generated or real source against the real target's lesions.")
            if "lam_lower" in lesion:
                w(f" With LAM lower than without in {int(lesion['lam_lower'].sum())} of "
                  f"{len(lesion)} pairs (medians {lesion[MAIN].median():.1f} with, "
                  f"{lesion[NO_LAM].median():.1f} without).")
            w()
            w(markdown_table(lesion, digits=1, index=True))
            w()

    def image_quality(self, quality) -> None:
        if quality.empty:
            return
        pairs = self.results[self.results["kind"] == "pairs"]
        names = [n.upper() for n in dict.fromkeys(pairs["metric"])]
        self.w(f"## {' and '.join([', '.join(names[:-1]), names[-1]] if len(names) > 1 else names)}"
               " of generated sequences")
        self.w()
        self.w("Against the real sequence of the same case, inside the brain mask of the case "
               "preprocessed from the source alone, mean over cases:")
        self.w()
        self.w(markdown_table(quality))
        self.w()

    def table_section(self, key: str, title: str, intro: str, figure: str = "") -> None:
        if key not in self.stats:
            return
        self.w(f"## {title}")
        self.w()
        self.w(intro + f" File: `{self.rel(self.files[key])}`.")
        self.w()
        self.w(markdown_table(self.stats[key]))
        self.w()
        if figure in self.files:
            path = self.files[figure]
            self.w(f"![{path.stem}: coronal and sagittal slices, real beside generated]"
                   f"({self.rel(path)})")
            self.w()

    def metric_section(self, section: MetricSection) -> None:
        self.w(f"## {section.title}")
        self.w()
        self.w(section.intro)
        self.w()
        for caption, table in section.tables:
            if caption:
                self.w(f"**{caption}**:")
                self.w()
            self.w(markdown_table(table, index=True))
            self.w()
        self.w(f"File: `{self.rel(section.file)}`.")
        self.w()

    def cross_center(self) -> None:
        w = self.w
        cross = self.results[self.results["kind"] == CROSS]
        if cross.empty:
            return
        w("## Cross-center")
        w()
        w("Each case of the local site is given to the segmenter with only its T2, read as "
          "the local center's domain. `copy`: the local T2 in all four inputs; `generated`: "
          "T1, T1ce and FLAIR generated from it and the T2 itself translated into the target "
          "domain; `generated-noalign`: the three generated, the local T2 kept as acquired. "
          "Only the whole tumour (WT) is scored.")
        w()
        dice = cross[cross["metric"] == "dice"]
        if not dice.empty:
            summary = dice.groupby("strategy")["value"].agg(["count", "median", "mean"])
            w(markdown_table(summary, index=True))
            w()
        for r in cross[cross["metric"] == "fid"].itertuples():
            what = "as acquired" if r.strategy == "copy" else "translated into the target"
            w(f"- FID of the local T2 {what} vs the target's real T2: {r.value:.1f}")
        w()

    def codes(self) -> None:
        if "umap" not in self.files:
            return
        codes = self.ev.codes
        counts = codes.groupby(["region", "kind"]).size()
        text = ", ".join(f"{n} {kind} {region}" for (region, kind), n in counts.items())
        self.w("## Sequence codes (UMAP)")
        self.w()
        self.w("Style codes of real and generated slices, encoded with the target domain's "
               "branch (whole image, circles) and, for slices with tumour, of the lesion region "
               "alone with E's lesion head k + N (triangles), as in the paper's Fig. 2d; "
               f"coloured by target domain, real/generated, source and region ({text}). "
               f"Points in `{self.rel(self.files['umap_csv'])}`.")
        self.w()
        self.w(f"![UMAP]({self.rel(self.files['umap'])})")
        self.w()
