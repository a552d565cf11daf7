"""The docs stay true: the CLI reference is generated, links resolve, CI runs the README's tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def test_cli_reference_is_generated_from_the_app():
    from harmonix.cli import reference_markdown

    assert (ROOT / "docs" / "cli.md").read_text() == reference_markdown(), (
        "docs/cli.md is stale: run `python docs/make_cli_reference.py`"
    )


def test_cli_reference_documents_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    for command in ("demo", "train", "harmonize", "evaluate", "segment train", "segment predict",
                    "synth", "inspect", "plugins", "registry"):
        assert f"## `harmonix {command}`" in text


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(b for b in blocks if "pytest" in b).strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_first_command_runs_the_demo():
    readme = (ROOT / "README.md").read_text()
    first = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)[0]
    assert "pip install" in first and first.strip().endswith("harmonix demo")


def test_validation_doc_quotes_its_summary_csv():
    """docs/validation.md's per-scenario table is the committed summary.csv of the run."""
    import pandas as pd

    from harmonix.evaluation.targets import SUMMARY_COLUMNS

    docs = ROOT / "docs"
    summary = pd.read_csv(docs / "validation" / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    scenarios = set(summary["scenario"])
    fixed = {s for s in scenarios if s.startswith("missing ")}
    assert len(fixed) == 14 and {"random", "brasyn", "cross-center"} <= scenarios
    assert {f"only {s}" for s in ("t1", "t1ce", "t2", "flair")} <= scenarios  # issue 20
    assert len(summary) == 3 * (14 + 2 + 4) + 1  # WT/TC/ET each; cross-center WT only
    text = (docs / "validation.md").read_text()
    for scenario in ("missing t1", "missing flair", "missing t1ce+t2+flair", "random"):
        rows = summary[summary["scenario"] == scenario].set_index("region")
        generated = " / ".join(f"{rows.loc[r, 'generated']:.3f}" for r in ("WT", "TC", "ET"))
        assert f"| {scenario} |" in text and generated in text, scenario


def test_validation_lesion_csv_has_one_row_per_sequence_pair():
    """docs/validation/lesion.csv (issue 20): a report's lesion.csv, the columns the check reads."""
    import pandas as pd

    table = pd.read_csv(ROOT / "docs" / "validation" / "lesion.csv")
    for column in ("source", "target", "contrast_sign_agrees", "ssim_lesion_generated",
                   "ssim_lesion_copy", "ssim_lesion_remap"):
        assert column in table.columns, column
    sequences = ("t1", "t1ce", "t2", "flair")
    pairs = {(a, b) for a in sequences for b in sequences if a != b}
    assert set(zip(table["source"], table["target"], strict=True)) == pairs and len(table) == 12
    assert set(table["contrast_sign_agrees"]) <= {0, 1}
    text = (ROOT / "docs" / "validation.md").read_text()
    agree = int(table["contrast_sign_agrees"].sum())
    assert f"contrast sign right in **{agree} of 12**" in text
