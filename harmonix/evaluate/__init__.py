"""Evaluation: scenarios x strategies, segmenter and metric plugins, statistics, report."""
