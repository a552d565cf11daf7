"""``report.html``: the evaluation report as one self-contained page people read.

Built from ``report.md`` and the tables beside it (:func:`write_html`): a per-scenario summary
first (median Dice of complete, copy and generated per region, with the paired Wilcoxon test of
generated vs copy and its verdict, from ``table1_median_dice.csv`` and ``wilcoxon.csv``), then
every section of ``report.md`` (statistics, FID heatmaps, UMAP, overlays, examples). Figures are
embedded as base64 ``data:`` URIs, so the one file can be mailed or archived; the page has no
script and loads nothing. Figures of labels get the label colours of docs/data.md as a legend
under the image. Markdown is converted with the ``markdown`` package (the ``evaluate`` extra)
when it is installed, else by :func:`simple_markdown`, which knows what ``report.md`` uses
(headings, paragraphs, lists, quotes, tables, images, bold, italics, code).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from harmonix.evaluation.figures import LABEL_HEX, LABEL_NAMES
from harmonix.io import atomic_write_text

try:  # the evaluate extra; without it the small converter below does the report's subset
    import markdown as markdown_package
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    markdown_package = None

HTML_NAME = "report.html"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
        ".gif": "image/gif", ".webp": "image/webp"}
LABEL_FIGURES = ("overlays/", "examples")  # figures that show label maps get the colour legend

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.8rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #e5e5e5; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
code { background: #f2f2f2; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
blockquote { border-left: 4px solid #d33; margin: 1rem 0; padding: .3rem 1rem;
             background: #fff4f4; }
.table { overflow-x: auto; margin: .8rem 0; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; margin-top: .3rem; }
.legend span { display: inline-block; margin-right: 1.2rem; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .35em;
          vertical-align: -.1em; border: 1px solid #888; }
.better { color: #0a7d28; font-weight: 600; } .worse { color: #b3261e; font-weight: 600; }
.missing { color: #b3261e; }
"""


# -- Markdown --------------------------------------------------------------------------------------
def _inline(text: str) -> str:
    """Inline Markdown of one line: code, images, links, bold, italics (HTML escaped)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)",
                      lambda m: f'<img alt="{m[1]}" src="{m[2]}">', part)
        part = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', part)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        part = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", part)
        out.append(part)
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def simple_markdown(text: str) -> str:
    """HTML of the Markdown that ``report.md`` uses (no ``markdown`` package needed)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif heading := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = len(heading[1])
            out.append(f"<h{level}>{_inline(heading[2].strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [r for r in block if not re.fullmatch(r"\s*\|?(\s*:?-+:?\s*\|)+\s*", r)]
            head, body = _cells(rows[0]), [_cells(r) for r in rows[1:]]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for row in body) + "</tbody></table>")
        elif re.match(r"^\s*[-*]\s+", line):
            items = []
            while i < len(lines) and lines[i].strip():
                if re.match(r"^\s*[-*]\s+", lines[i]):
                    items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                else:  # a continuation line of the item
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>")
        elif line.startswith(">"):
            quoted = []
            while i < len(lines) and lines[i].startswith(">"):
                quoted.append(lines[i][1:].lstrip())
                i += 1
            out.append(f"<blockquote>{simple_markdown(chr(10).join(quoted))}</blockquote>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not re.match(
                    r"^(#{1,6}\s|\s*\||\s*[-*]\s+|>)", lines[i]):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return "\n".join(out)


def markdown_to_html(text: str) -> str:
    """HTML of ``text``: the ``markdown`` package (tables extension) or :func:`simple_markdown`."""
    if markdown_package is None:
        return simple_markdown(text)
    return markdown_package.markdown(text, extensions=["tables", "sane_lists"],
                                     output_format="html")


# -- figures ---------------------------------------------------------------------------------------
def label_legend() -> str:
    """The label colours of docs/data.md as an HTML legend (outside the image)."""
    spans = []
    for value, colour in LABEL_HEX.items():
        spans.append(f'<span><i class="swatch" style="background:{colour}"></i>'
                     f"{html.escape(LABEL_NAMES[value])}</span>")
    return f'<div class="legend">{"".join(spans)}</div>'


def _data_uri(folder: Path, src: str) -> str | None:
    """``src`` (relative to ``folder``, inside it) as a base64 ``data:`` URI; ``None`` when it
    is not a readable image there."""
    if re.match(r"^[a-z]+:", src, re.I) or src.startswith("/"):
        return None
    path = (folder / html.unescape(src)).resolve()
    mime = MIME.get(path.suffix.lower())
    if mime is None or folder.resolve() not in path.parents or not path.is_file():
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def embed_figures(body: str, folder: Path) -> str:
    """Every ``<img>`` of ``body`` as a ``<figure>`` with its image embedded, its alt text as
    caption and, for label figures, the colour legend; an image that cannot be read becomes a
    visible note (never a broken or external link)."""

    def figure(match: re.Match) -> str:
        tag = match[0]
        src = re.search(r'src="([^"]*)"', tag)
        alt = re.search(r'alt="([^"]*)"', tag)
        src_text, alt_text = (src[1] if src else ""), (alt[1] if alt else "")
        uri = _data_uri(folder, src_text) if src_text else None
        if uri is None:
            return f'<p class="missing">figure not found: {src_text}</p>'
        legend = label_legend() if src_text.startswith(LABEL_FIGURES) else ""
        return (f'<figure><img src="{uri}" alt="{alt_text}"><figcaption>{alt_text}'
                f"{legend}</figcaption></figure>")

    body = re.sub(r"<p>\s*(<img\b[^>]*>)\s*</p>", r"\1", body)
    return re.sub(r"<img\b[^>]*>", figure, body)


# -- the per-scenario summary ----------------------------------------------------------------------
def _number(value, count: bool = False) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if value != value:  # NaN
        return "–"
    if count:
        return f"{value:.0f}"
    return f"{value:.2g}" if 0 < abs(value) < 0.001 else f"{value:.3f}"


def scenario_summary(folder: Path) -> str:
    """Per scenario and region: median Dice of complete, copy and generated, and the paired
    Wilcoxon test of generated vs copy (n, p, Holm p, verdict); ``""`` without the tables."""
    medians_file, tests_file = folder / "table1_median_dice.csv", folder / "wilcoxon.csv"
    if not medians_file.is_file():
        return ""
    medians = pd.read_csv(medians_file, header=[0, 1], index_col=0)
    tests = pd.read_csv(tests_file) if tests_file.is_file() else pd.DataFrame()
    strategies = [s for s in ("complete", "copy", "generated")
                  if s in medians.columns.get_level_values(0)]
    regions = list(dict.fromkeys(r for s, r in medians.columns if s in strategies))
    head = ("<tr><th>scenario</th><th>region</th>"
            + "".join(f"<th>{s}</th>" for s in strategies)
            + "<th>n</th><th>Wilcoxon p</th><th>Holm p</th><th>generated vs copy</th></tr>")
    rows = []
    for scenario in medians.index:
        for region in regions:
            cells = [f"<td>{_number(medians.loc[scenario, (s, region)])}</td>"
                     if (s, region) in medians.columns else "<td>–</td>" for s in strategies]
            test = (tests[(tests["scenario"] == scenario) & (tests["region"] == region)]
                    if not tests.empty else tests)
            if len(test):
                t = test.iloc[0]
                verdict = str(t.get("verdict", ""))
                css = {"generated better": "better", "copy better": "worse"}.get(verdict, "")
                cells += [f"<td>{_number(t.get(key), key == 'n')}</td>"
                          for key in ("n", "p_value", "p_holm")]
                cells.append(f'<td class="{css}">{html.escape(verdict)}</td>')
            else:
                cells += ["<td>–</td>"] * 4
            rows.append(f"<tr><td>{html.escape(str(scenario))}</td><td>{html.escape(region)}</td>"
                        + "".join(cells) + "</tr>")
    return ("<h2>Per scenario: median Dice and generated vs copy</h2>"
            "<p>Median Dice over the test cases of the complete case, the copy strategy and the "
            "generated strategy; the paired two-sided Wilcoxon signed-rank test of generated "
            "vs copy, Holm-adjusted over every scenario and region (a verdict needs Holm p &lt; "
            "0.05). Every number is in <code>results.csv</code>; the sections below hold the "
            f"full tables.</p><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


# -- the page --------------------------------------------------------------------------------------
def build_html(markdown_text: str, folder: str | Path, title: str = "harmonix evaluation report"
               ) -> str:
    """The self-contained page of ``markdown_text`` whose figures and tables are in ``folder``."""
    folder = Path(folder)
    body = embed_figures(markdown_to_html(markdown_text), folder)
    body = re.sub(r"(<table>.*?</table>)", r'<div class="table">\1</div>', body, flags=re.S)
    summary = scenario_summary(folder)
    if summary:  # after the header (the first section), before the detailed sections
        summary = re.sub(r"(<table>.*?</table>)", r'<div class="table">\1</div>', summary,
                         flags=re.S)
        cut = body.find("<h2")
        body = body + summary if cut < 0 else body[:cut] + summary + "\n" + body[cut:]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<main>\n{body}\n</main>\n</body>\n</html>\n")


def write_html(report_md: str | Path) -> Path:
    """Write ``report.html`` beside ``report_md`` (atomically) and return its path."""
    report_md = Path(report_md)
    path = report_md.with_name(HTML_NAME)
    atomic_write_text(path, build_html(report_md.read_text(encoding="utf-8"), report_md.parent))
    return path


__all__ = ["HTML_NAME", "build_html", "embed_figures", "label_legend", "markdown_to_html",
           "scenario_summary", "simple_markdown", "write_html"]
