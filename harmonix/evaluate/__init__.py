"""Evaluation: scenarios x strategies, segmenter and metric plugins, statistics, report.

* :mod:`~harmonix.evaluate.segmentation`: train, load and run a segmenter plugin on a site;
* :mod:`~harmonix.evaluate.scenarios`: the 14 fixed missing sets, random missing, cross-center;
* :mod:`~harmonix.evaluate.strategies`: complete, copy (most correlated sequence), generated;
* :mod:`~harmonix.evaluate.codes`: sequence codes and their UMAP;
* :mod:`~harmonix.evaluate.stats`: Table 1 medians, Wilcoxon, Friedman and Dunn;
* :mod:`~harmonix.evaluate.run`: :func:`~harmonix.evaluate.run.evaluate`, the whole evaluation;
* :mod:`~harmonix.evaluate.report`: ``results.csv``, statistics, figures and ``report.md``.
"""
