"""``harmonix synth``: write built-in synthetic multi-center brain-tumour cases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from harmonix.cli.app import app, conclude, detail, fail
from harmonix.errors import HarmonixError
from harmonix.progress import progress_task


@app.command()
def synth(
    out_dir: Path = typer.Argument(
        ..., metavar="SITE_DIR", help="Site folder to write (created if missing)."
    ),
    cases: int = typer.Option(4, "--cases", "-n", min=1, help="Number of cases."),
    center: str = typer.Option(
        "brats", "--center", "-c", metavar="CENTER",
        help="Center profile: brats, brats-men, local, ucsf-pdgm (see docs/data.md).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Same seed, same cases."),
    spacing: float = typer.Option(
        1.0, "--spacing", min=1.0, metavar="MM",
        help="Voxel size in mm; 1 is the BraTS grid 240x240x155, 4 gives 60x60x39 for quick runs.",
    ),
    truth: bool = typer.Option(
        False, "--truth/--no-truth",
        help="Also write tissue maps (0 bg, 1 CSF, 2 GM, 3 WM, 4 tumour) to SITE_DIR/_truth.",
    ),
    workers: Optional[int] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--workers", "-j", min=1, help="Processes (default: the CPU count)."
    ),
    prefix: str = typer.Option(
        "", "--prefix", metavar="TEXT",
        help="Start every case id with TEXT (test -> test_BraTS19_SYN_0001), so that sites made "
             "separately (a test site) never share case ids.",
    ),
) -> None:
    """Write realistic synthetic brain-tumour cases of one center in its real layout.

    Anatomy from the MNI152 template deformed per patient, a glioma (or meningioma) with
    labels, every sequence from a tissue model with literature-ordered contrasts, and the
    center's scanner effects (bias field, noise, blur, gamma, scale).
    """
    from harmonix.data.synth import PROFILES, synthesize_site

    if center not in PROFILES:
        from harmonix.errors import did_you_mean

        fail(f"unknown center '{center}'{did_you_mean(center, PROFILES)}; "
             f"known: {', '.join(PROFILES)}")
    profile = PROFILES[center]
    start = time.perf_counter()
    with progress_task(f"synth {center}", total=cases) as advance:

        def on_case(case_id: str) -> None:
            advance(1, case=case_id)
            detail(f"wrote {out_dir / case_id}")

        try:
            synthesize_site(out_dir, cases, center=center, seed=seed, spacing=spacing,
                            write_truth=truth, workers=workers, progress=on_case,
                            prefix=prefix)
        except HarmonixError as exc:
            fail(str(exc))
        except (OSError, ValueError) as exc:
            fail(f"{out_dir}: {exc}")
    elapsed = time.perf_counter() - start
    conclude(
        f"wrote {cases} {center} case(s) ({', '.join(profile.sequences)}; labels "
        f"{profile.labels}) to [bold]{escape(str(out_dir))}[/] in {elapsed:.1f} s"
    )
