"""Evaluation: scenarios x strategies, segmenter and metric plugins, statistics, report.

* :mod:`~harmonix.evaluate.run`: :func:`~harmonix.evaluate.run.evaluate`, the whole evaluation;
* :mod:`~harmonix.evaluate.provenance`: held-out test cases (overlap with the training data
  recorded in model cards), the split, and the copy strategy's mapping;
* :mod:`~harmonix.evaluate.segmentation`: train, load and run a segmenter plugin on a site;
* :mod:`~harmonix.evaluate.scenarios`: the 14 fixed missing sets, random missing, cross-center;
* :mod:`~harmonix.evaluate.strategies`: complete, copy (most correlated sequence), generated;
* :mod:`~harmonix.evaluate.cases`: a test case preprocessed from its present sequences only,
  and the slices kept for FID and codes; :mod:`~harmonix.evaluate.casework`: the scenarios
  case by case; :mod:`~harmonix.evaluate.cross`: cross-center and the sequence codes;
* :mod:`~harmonix.evaluate.codes`: whole-image and lesion sequence codes and their UMAP;
* :mod:`~harmonix.evaluate.fid`: FID per sequence pair and the paper's tests on it;
* :mod:`~harmonix.evaluate.metrics`: which metric plugins run, and the scorers that run them;
* :mod:`~harmonix.evaluate.stats`: Table 1 medians, Wilcoxon, Friedman and Dunn (within-case),
  Cohen's d;
* :mod:`~harmonix.evaluate.results`: the records shared by run and report;
* :mod:`~harmonix.evaluate.report`, :mod:`~harmonix.evaluate.figures`,
  :mod:`~harmonix.evaluate.text`: ``results.csv``, statistics, figures and ``report.md``.
"""
