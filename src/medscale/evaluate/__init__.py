"""Evaluation: sleep-staging metrics, bootstrap intervals, sleep statistics, figures and a
self-contained HTML report.

``medscale.evaluate.metrics`` needs only numpy; ``plots``, ``report`` and ``results`` use
matplotlib (Agg, no pyplot). Nothing is imported eagerly here.
"""
