"""Cross-center (a local center's T2 only) and the generator's sequence codes (UMAP).

See :mod:`harmonix.evaluation.run` for what cross-center measures.
"""

from __future__ import annotations

import math

import numpy as np

from harmonix.evaluation.cases import axial, fid_slice_indices
from harmonix.evaluation.context import RunContext
from harmonix.evaluation.metrics import SegmentationScorer
from harmonix.evaluation.results import CROSS, MAIN
from harmonix.evaluation.scenarios import Scenario, missing_text
from harmonix.interfaces import Generator
from harmonix.progress import progress_task
from harmonix.segmentation import prepare_site


# -- cross-center ----------------------------------------------------------------------------------
def cross_center(run: RunContext, site_dir) -> None:
    from harmonix.harmonization.translate import fill_missing, source_domain, translate_volume

    ev, filler, target = run.ev, run.fillers.get(MAIN), run.target
    if site_dir is None:
        ev.notes.append("cross-center skipped: no --cross-center-data site given")
        return
    local = prepare_site(site_dir, run.config, sequences=["t2"], need_label=False,
                         max_cases=run.max_cases)
    center, sequences = local.site.center, run.sequences
    domain, note = source_domain(center, "t2", target, filler.generator.domains)
    if domain is None:
        raise ValueError(f"the generator knows neither {center}/t2 nor {target.center}/t2")
    if note:
        ev.notes.append(f"cross-center: {note}")
    scorer = SegmentationScorer(run.metrics.segmentation, run.config.spacing, regions=["WT"])
    missing = missing_text([s for s in sequences if s != "t2"], sequences)
    local_slices, aligned_slices = [], []
    with progress_task("cross-center", total=len(local.cases), quiet=not run.progress) as advance:
        for index, case in enumerate(local.cases):
            t2 = case.volumes["t2"]
            made = fill_missing(case, filler.generator, filler.target, present=["t2"],
                                references=filler.references, center=center,
                                batch_size=filler.batch_size, seed=run.seed)
            aligned = translate_volume(t2, case.brain_mask, filler.generator, domain,
                                       f"{target.center}/t2", batch_size=filler.batch_size,
                                       reference=filler.references.get("t2"), seed=run.seed)
            inputs = {
                "copy": {s: t2 for s in sequences},
                "generated": {**made, "t2": aligned},
                "generated-noalign": {**made, "t2": t2},
            }
            for strategy, volumes in inputs.items() if case.label is not None else ():
                scores = scorer(run.seg.predict(volumes), case.label)
                for (metric, region), value in scores.items():
                    ev.add(case=case.case_id, scenario=CROSS, kind=CROSS, missing=missing,
                           strategy=strategy, generator="" if strategy == "copy" else MAIN,
                           metric=metric, region=region, source=f"{domain}", value=value)
            ks = fid_slice_indices(case.brain_mask,
                                   max(1, math.ceil(run.fid_slices / len(local.cases))),
                                   np.random.default_rng([run.seed, 10_000 + index]))
            local_slices.append(axial(t2, ks))
            aligned_slices.append(axial(aligned, ks))
            advance(1, case=case.case_id)
    if not any(c.label is not None for c in local.cases):
        ev.notes.append(f"cross-center: {site_dir} has no label maps, so no Dice; FID only")
    run.bank.cross = (center, run.bank.stack(local_slices), run.bank.stack(aligned_slices))
    ev.settings["cross_center_cases"] = [c.case_id for c in local.cases]
    ev.scenarios.append(Scenario(CROSS, CROSS))


# -- sequence codes --------------------------------------------------------------------------------
def sequence_codes(run: RunContext, generator: Generator, umap: bool) -> None:
    from harmonix.evaluation.codes import bank_groups, collect_codes, umap_embedding

    ev = run.ev
    groups = bank_groups(run.bank, run.target.center, run.sequences, MAIN)
    if not any(len(g[3]) for g in groups):
        ev.notes.append("UMAP skipped: no slices kept (fid_slices=0)")
        return
    table, codes = collect_codes(generator, groups)
    if not umap:
        ev.notes.append("UMAP skipped (umap=False)")
        return
    embedding, note = umap_embedding(codes, run.seed)
    ev.notes.append(note)
    if embedding is not None:
        table[["x", "y"]] = embedding
        ev.codes = table
