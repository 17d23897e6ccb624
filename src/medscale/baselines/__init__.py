"""Established classifiers run on the same recordings as medscale's models, for comparison."""
