"""The one error type CLI commands raise for an expected failure, and the exit codes."""

from __future__ import annotations

EXIT_ERROR = 1
"""Any other failure (an API error other than the ones below, a bad setting, a server error)."""
EXIT_USAGE = 2
"""The command line is wrong (unknown option, missing argument, bad value)."""
EXIT_AUTH = 3
"""Authentication failed: no API key, or a wrong, revoked or expired one (401/403)."""
EXIT_NOT_FOUND = 4
"""The object named does not exist (404)."""
EXIT_UNREACHABLE = 5
"""Rex did not answer: nothing listens at the URL, a timeout, a lost connection."""


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit (``exit_code``)."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
