"""Pipelines: the ordered stages deals move through, each open, won or lost."""
