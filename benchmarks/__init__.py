"""Reproducible measurements behind every number in the README (`make bench`)."""
