"""report.html: one self-contained page, checked in a real headless browser (Chromium)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmonix.evaluation import html as report_html
from harmonix.evaluation.figures import LABEL_COLOURS, LABEL_HEX
from harmonix.evaluation.report import write_report
from harmonix.evaluation.results import MAIN, NO_LAM, Evaluation
from harmonix.evaluation.scenarios import fixed_scenarios, missing_text

SEQUENCES = ("t1", "t1ce", "t2", "flair")
CASES = [f"case{i}" for i in range(6)]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _labels(rng, shape=(40, 40)) -> np.ndarray:
    labels = np.zeros(shape, np.int16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - 20 + rng.integers(-2, 3), xx - 18)
    labels[r < 10], labels[r < 6], labels[r < 3] = 2, 4, 1
    return labels


def tiny_evaluation() -> Evaluation:
    """An evaluation as :mod:`harmonix.evaluation.casework` fills one, made up (no model runs):
    three scenarios, three strategies, FID of two generators, UMAP codes and two examples."""
    rng = np.random.default_rng(0)
    scenarios = [s for s in fixed_scenarios() if len(s.missing) in (1, 3)][:3]
    settings = {"data": "data/brats-test", "center": "brats", "segmenter": "runs/seg",
                "segmenter_card": {"segmenter": "unet2d"}, "preprocess": "4 mm",
                "generator": "runs/ummgat", "target": "brats",
                "scenarios": [s.name for s in scenarios],
                "strategies": ["complete", "copy", "generated"], "seed": 0, "cases": CASES}
    ev = Evaluation(rows=[], settings=settings, sequences=SEQUENCES, scenarios=scenarios)
    for scenario in scenarios:
        missing = missing_text(scenario.missing, SEQUENCES)
        for case in CASES:
            for region in ("WT", "TC", "ET"):
                base = rng.uniform(0.6, 0.9)
                for strategy, drop in (("complete", 0.0), ("copy", 0.15), ("generated", 0.05)):
                    ev.add(case=case, scenario=scenario.name, kind=scenario.kind,
                           missing=missing, strategy=strategy,
                           generator=MAIN if strategy == "generated" else "", metric="dice",
                           region=region, value=base - drop + rng.normal(0, 0.01))
    for target in SEQUENCES:
        ev.add(scenario="fid", kind="fid", strategy="real", metric="fid", sequence=target,
               source=target, value=rng.uniform(5, 10))
        for source in (s for s in SEQUENCES if s != target):
            ev.add(scenario="fid", kind="fid", strategy="copy", metric="fid", sequence=target,
                   source=source, value=rng.uniform(80, 120))
            for label, level in ((MAIN, 30), (NO_LAM, 45)):
                ev.add(scenario="fid", kind="fid", strategy="generated", generator=label,
                       metric="fid", sequence=target, source=source,
                       value=level + rng.uniform(0, 10))
    ev.codes = pd.DataFrame({
        "target": rng.choice([f"brats/{s}" for s in SEQUENCES], 60),
        "kind": rng.choice(["real", "generated"], 60), "source": rng.choice(SEQUENCES, 60),
        "region": rng.choice(["whole", "lesion"], 60), "x": rng.normal(size=60),
        "y": rng.normal(size=60)})
    for case in CASES[:2]:
        truth = _labels(rng)
        slices = {s: rng.uniform(0, 255, (40, 40)).astype(np.float32) for s in SEQUENCES}
        ev.overlays.append({
            "case": case, "slice": 12, "background": slices["flair"],
            "background_sequence": "flair", "truth": truth,
            "predictions": {s.missing: {"copy": _labels(rng), "generated": _labels(rng)}
                            for s in scenarios} | {frozenset(): {"complete": truth}},
            "real": slices,
            "generated": {s: ("t2" if s != "t2" else "t1", 255 - slices[s]) for s in SEQUENCES}})
    return ev


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report folder written by ``write_report`` from :func:`tiny_evaluation`."""
    out = tmp_path_factory.mktemp("report") / "report"
    write_report(tiny_evaluation(), out)
    return out


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


# -- the page itself -------------------------------------------------------------------------------
def test_report_html_is_written_beside_report_md_and_self_contained(report):
    page = (report / "report.html").read_text()
    markdown = (report / "report.md").read_text()
    images = re.findall(r'<img\b[^>]*src="([^"]*)"', page)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(images) == len(figures) >= 5  # box plots, FID, UMAP, examples, overlays
    assert all(src.startswith("data:image/png;base64,") for src in images)
    for src, name in zip(images, figures, strict=True):  # each one is that file's bytes
        assert base64.b64decode(src.split(",", 1)[1]) == (report / name).read_bytes()
    assert "examples.png" in figures and (report / "examples.png").is_file()
    assert "<script" not in page and not re.search(r'(?:src|href)="(?!data:)[^"#]', page)
    # per scenario: the complete / copy / generated medians and their test
    summary = page.split("Per scenario: median Dice", 1)[1].split("</table>", 1)[0]
    table1 = pd.read_csv(report / "table1_median_dice.csv", header=[0, 1], index_col=0)
    tests = pd.read_csv(report / "wilcoxon.csv")
    for scenario in table1.index:
        row = re.search(rf"<tr><td>{re.escape(scenario)}</td><td>WT</td>(.*?)</tr>", summary)
        assert row, scenario
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1])
        expected = [f"{table1.loc[scenario, (s, 'WT')]:.3f}"
                    for s in ("complete", "copy", "generated")]
        test = tests[(tests["scenario"] == scenario) & (tests["region"] == "WT")].iloc[0]
        assert cells[:3] == expected and cells[-1] == test["verdict"]
    for heading in ("FID per (source, target) pair", "Sequence codes (UMAP)", "Examples",
                    "Wilcoxon signed-rank, generated vs copy"):
        assert heading in page
    # label colours as docs/data.md (NCR red, ED green, ET yellow), in a legend under the figures
    assert "labels (NCR red, ED green, ET yellow)" in (
        Path(__file__).parents[1] / "docs" / "data.md").read_text()
    assert LABEL_HEX == {1: "#ff3030", 2: "#30c030", 4: "#ffd700"}
    assert LABEL_COLOURS[4] == pytest.approx((1.0, 215 / 255, 0.0))
    assert page.count('class="legend"') == len([f for f in figures
                                                if f.startswith(("overlays/", "examples"))])
    assert all(f"background:{colour}" in page for colour in LABEL_HEX.values())


def test_a_missing_figure_is_a_visible_note_not_a_broken_image(report, tmp_path):
    copy = tmp_path / "report"
    shutil.copytree(report, copy)
    (copy / "umap.png").unlink()
    page = report_html.build_html((copy / "report.md").read_text(), copy)
    assert "figure not found: umap.png" in page
    assert 'src="umap.png"' not in page


def test_the_small_converter_makes_the_same_structure(report, monkeypatch):
    markdown = (report / "report.md").read_text()
    with_package = report_html.build_html(markdown, report)
    monkeypatch.setattr(report_html, "markdown_package", None)
    simple = report_html.build_html(markdown, report)

    def structure(page):
        return {tag: len(re.findall(rf"<{tag}\b", page))
                for tag in ("h1", "h2", "h3", "table", "tr", "li", "img", "figure", "strong")}

    assert structure(simple) == structure(with_package)
    assert "<code>results.csv</code>" in simple


# -- in a real browser -----------------------------------------------------------------------------
LISTEN = """<script>
window.addEventListener("error", e => { window.__errors = (window.__errors || 0) + 1; }, true);
</script>"""
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  const out = document.createElement("pre");
  out.id = "harmonix-check";
  out.textContent = `images=${images.length} broken=${broken} errors=${window.__errors || 0}`;
  document.body.appendChild(out);
});
</script>"""


def with_check(page: str, extra: str = "") -> str:
    """``page`` with the error listener first in <head> and the image check last in <body>."""
    return page.replace("<head>", "<head>" + LISTEN, 1).replace("</body>",
                                                                extra + CHECK + "</body>", 1)


def console_errors(stderr: str) -> list[str]:
    """Chromium's console errors (``--enable-logging=stderr``: ``INFO:CONSOLE ... Uncaught``)."""
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and re.search(r"error|uncaught", line, re.I)]


def run_browser(binary: str, page: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--allow-file-access-from-files", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120)


def test_report_html_in_a_headless_browser(report, tmp_path):
    binary = browser()
    if binary is None:
        pytest.skip(f"no Chromium binary found ({', '.join(BROWSERS)}); "
                    "install it with: apt-get install -y chromium")
    page = (report / "report.html").read_text()
    n_images = page.count("<img")
    # a copy with a check that writes its result into the DOM; the copy lies elsewhere, so
    # that an image resolved against the report folder would break
    checked = tmp_path / "elsewhere" / "report.html"
    checked.parent.mkdir()
    checked.write_text(with_check(page))
    result = run_browser(binary, checked, tmp_path)
    found = re.search(r"images=(\d+) broken=(\d+) errors=(\d+)", result.stdout)
    assert found, (result.returncode, result.stderr[-3000:])
    assert int(found[1]) == n_images >= 5
    assert (int(found[2]), int(found[3])) == (0, 0), found[0]
    assert not console_errors(result.stderr), console_errors(result.stderr)
    # the check can fail: a broken image and a script error are seen as such
    broken = tmp_path / "broken.html"
    broken.write_text(with_check(page, '<img src="data:image/png;base64,AAAA">'
                                       "<script>undefinedFunction()</script>"))
    bad = run_browser(binary, broken, tmp_path)
    found = re.search(r"images=(\d+) broken=(\d+) errors=(\d+)", bad.stdout)
    assert found and int(found[2]) == 1 and int(found[3]) >= 1, bad.stdout[-500:]
    assert any("undefinedFunction" in line for line in console_errors(bad.stderr))
