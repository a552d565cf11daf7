"""Evaluation: scenarios x strategies, segmenter and metric plugins, statistics, report.

* :mod:`~harmonix.evaluation.request`: the typed request; :mod:`~harmonix.evaluation.run`:
  :func:`~harmonix.evaluation.run.run_evaluation`, the whole evaluation;
* :mod:`~harmonix.evaluation.provenance`: held-out test cases (overlap with the training data
  recorded in model cards), the split, and the copy strategy's mapping;
* the segmenter is loaded, and the test site's cases prepared, by the segmenter workflow
  (:mod:`harmonix.segmentation`, which also trains and runs one: ``harmonix segment``);
* :mod:`~harmonix.evaluation.scenarios`: the 14 fixed missing sets, random missing, cross-center;
* :mod:`~harmonix.evaluation.strategies`: complete, copy (most correlated sequence), generated;
* :mod:`~harmonix.evaluation.cases`: a test case preprocessed from its present sequences only,
  and the slices kept for FID and codes; :mod:`~harmonix.evaluation.casework`: the scenarios
  case by case; :mod:`~harmonix.evaluation.cross`: cross-center and the sequence codes;
* :mod:`~harmonix.evaluation.codes`: whole-image and lesion sequence codes and their UMAP;
* :mod:`~harmonix.evaluation.fid`: FID per sequence pair and the paper's tests on it;
* :mod:`~harmonix.evaluation.metrics`: which metric plugins run, and the scorers that run them;
* :mod:`~harmonix.evaluation.stats`: Table 1 medians, Wilcoxon, Friedman and Dunn (within-case),
  Cohen's d;
* :mod:`~harmonix.evaluation.results`: the records shared by run and report;
* :mod:`~harmonix.evaluation.report`, :mod:`~harmonix.evaluation.figures`,
  :mod:`~harmonix.evaluation.text`: ``results.csv``, statistics, figures and ``report.md``.
"""
