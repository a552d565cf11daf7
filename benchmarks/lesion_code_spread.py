"""The lesion-code spread (LAM's health, :func:`harmonix_ummgat.lam.lesion_code_spread`) of every
checkpoint of finished UMMGAT runs, including runs trained before the trainer measured it.

For each run it rebuilds the run's training slices (its ``run.json`` sites, its card's
preprocessing, pairing and seed; the slice cache in ``--cache`` or ``RUN/cache``), takes up to 32
real lesion slices per domain, and prints one CSV row per (run, checkpoint, domain)::

    python benchmarks/lesion_code_spread.py runs/old-s0 runs/new-s0 --cache base/cache > spread.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from harmonix.data.dataset import make_training_data
from harmonix.data.preprocess import PreprocessConfig
from harmonix.models import checkpoints as ckpt
from harmonix_ummgat.data import BatchSource
from harmonix_ummgat.generator import UMMGATGenerator
from harmonix_ummgat.lam import lesion_code_spread


def run_rows(run: Path, cache: Path | None) -> list[dict]:
    checkpoints = ckpt.list_checkpoints(run)
    if not checkpoints:
        raise SystemExit(f"error: {run}: no checkpoints")
    card = ckpt.read_card(checkpoints[-1])
    sites = json.loads((run / "run.json").read_text())["sites"]
    dataset = make_training_data(sites, cache or run / "cache",
                                 PreprocessConfig.from_dict(card["preprocessing"]),
                                 pairing=card["data"]["pairing"], seed=int(card["seed"]),
                                 progress=False)
    source = BatchSource(dataset, latent_dim=int(card["latent_dim"]), seed=int(card["seed"]))
    images, masks, domains = source.lesion_slices()
    rows = []
    for folder in checkpoints:
        generator = UMMGATGenerator.from_checkpoint(folder)
        spread = lesion_code_spread(generator.nets.E, images, masks, domains,
                                    len(generator.domains))
        iteration = int(ckpt.read_card(folder).get("iteration", 0))
        for k, value in spread.items():
            rows.append({"run": run.name, "iteration": iteration,
                         "domain": generator.domains[k], "spread_ratio": round(value, 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, help="the slice cache the runs were trained from")
    args = parser.parse_args()
    writer = csv.DictWriter(sys.stdout, fieldnames=["run", "iteration", "domain", "spread_ratio"])
    writer.writeheader()
    for run in args.runs:
        writer.writerows(run_rows(run, args.cache))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
