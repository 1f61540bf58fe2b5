"""Parallelism applied to a plain model from outside, and the mapping to Lightning strategies."""
