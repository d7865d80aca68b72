"""The one error type CLI commands raise for an expected failure."""

from __future__ import annotations


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""
