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
from harmonix.evaluation.artifacts import THROUGH_PLANE
from harmonix.evaluation.figures import LABEL_COLOURS, LABEL_HEX
from harmonix.evaluation.planes import plane_panels, planes
from harmonix.evaluation.report import write_report
from harmonix.evaluation.report_header import BUILTIN_KEY, builtin_synthetic
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
    for case in CASES:  # the through-plane rows and one case's panels (issue 22)
        for target in SEQUENCES:
            for strategy, level in (("generated", 0.3), ("real", 0.2)):
                ev.add(case=case, scenario=THROUGH_PLANE, kind=THROUGH_PLANE, strategy=strategy,
                       metric="through_plane", sequence=target, source="t2",
                       value=level + rng.uniform(0, 0.05))
    brain = np.zeros((24, 28, 20), bool)
    brain[4:20, 5:23, 3:17] = True
    volumes = {s: rng.uniform(0, 255, brain.shape).astype(np.float32) for s in SEQUENCES}
    ev.planes = plane_panels("case0", brain, volumes,
                             {s: ("t2" if s != "t2" else "t1", 255 - volumes[s])
                              for s in SEQUENCES})
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


# -- through-plane panels (issue 22) ---------------------------------------------------------------
def test_through_plane_figure_is_written_and_shown_in_its_section(report):
    assert (report / "through_plane.png").is_file()
    assert "](through_plane.png)" in (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    section = page.split("Through-plane consistency</h2>", 1)[1].split("<h2", 1)[0]
    assert "<table>" in section  # the table, then the figure
    image = re.search(r'<img src="data:image/png;base64,([^"]*)"', section)
    assert image and base64.b64decode(image[1]) == (report / "through_plane.png").read_bytes()


def test_plane_panels_keep_only_slices_through_the_brain_centre():
    volume = np.arange(6 * 8 * 10, dtype=np.float32).reshape(6, 8, 10)
    brain = np.zeros(volume.shape, bool)
    brain[1:4, 2:7, 3:8] = True  # centroid (2, 4, 5)
    panels = plane_panels("c", brain, {"t1": volume}, {"t1": ("t2", volume + 1)})
    assert panels["centre"] == (2, 4, 5)
    kept = panels["targets"]["t1"]
    assert kept["source"] == "t2"
    np.testing.assert_array_equal(kept["real"]["coronal"], volume[:, 4, :])
    np.testing.assert_array_equal(kept["real"]["sagittal"], volume[2, :, :])
    np.testing.assert_array_equal(kept["generated"]["coronal"], volume[:, 4, :] + 1)
    assert kept["real"]["coronal"].base is None  # a copy: the volume is not kept alive
    assert set(planes(volume, (0, 0, 0))) == {"coronal", "sagittal"}


# -- issue 23: the banner, values as tables, no empty legend entry ---------------------------------
def _write(ev, tmp_path) -> str:
    out = tmp_path / "report"
    write_report(ev, out)
    return (out / "report.html").read_text()


def test_a_banner_says_when_the_data_are_builtin_synthetic(tmp_path):
    ev = tiny_evaluation()
    assert "Built-in synthetic data" not in _write(ev, tmp_path / "real")
    ev.settings[BUILTIN_KEY] = True
    page = _write(ev, tmp_path / "synth")
    banner = re.search(r"<blockquote>(.*?)</blockquote>", page, re.S)
    assert banner and "Built-in synthetic data" in banner[1] and "harmonix synth" in banner[1]
    assert page.index("Built-in synthetic data") < page.index("<h2")  # at the top


def test_builtin_synthetic_is_read_from_the_site_file(tmp_path):
    from harmonix.data.split import split_site
    from harmonix.data.synth import synthesize_site

    site = synthesize_site(tmp_path / "synth", 2, spacing=4.0, workers=1)
    assert builtin_synthetic(site)
    split = split_site(site, tmp_path / "split", test=1, seed=0)  # the demo's test site
    assert builtin_synthetic(split.test)
    other = tmp_path / "other"
    other.mkdir()
    assert not builtin_synthetic(other)
    (other / "harmonix-site.json").write_text('{"center": "brats"}')
    assert not builtin_synthetic(other)
    (other / "harmonix-site.json").write_text("not json")
    assert not builtin_synthetic(other)


def test_values_are_rendered_as_tables_not_python_dicts(tmp_path):
    ev = tiny_evaluation()
    ev.settings["preprocess"] = {"spacing": 3.0, "size": [64, 64, 48], "scaling": "percentile",
                                 "crop": {"mode": "brain", "margin": 2}}
    page = _write(ev, tmp_path)
    assert "{'" not in page and "{&#x27;" not in page and "&#x27;:" not in page
    table = page.split("<th>preprocessing</th>", 1)[1].split("</table>", 1)[0]
    for cell in ("spacing", "3.0", "64, 64, 48", "percentile", "mode: brain; margin: 2"):
        assert f"<td>{cell}</td>" in table


def test_no_figure_has_an_empty_legend_entry(monkeypatch, tmp_path):
    from harmonix.evaluation import figures

    seen: dict[str, list[str]] = {}
    save = figures._savefig

    def spy(fig, path):
        for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
            if legend is not None:
                seen.setdefault(Path(path).name, []).extend(
                    t.get_text() for t in legend.get_texts())
        return save(fig, path)

    monkeypatch.setattr(figures, "_savefig", spy)
    ev = tiny_evaluation()
    ev.codes.loc[ev.codes["kind"] == "real", "source"] = ""  # real codes: no source
    _write(ev, tmp_path)
    assert {"boxplots_dice.png", "umap.png", "examples.png"} <= set(seen)
    assert all(text.strip() for texts in seen.values() for text in texts), seen
