"""Errors the commands report as one line, with the exit code they map to."""

from __future__ import annotations

#: Exit code when a check failed or an operation could not be done.
EXIT_FAILED = 1
#: Exit code for bad usage or bad configuration.
EXIT_USAGE = 2


class OpsError(Exception):
    """An expected failure: the message is shown as is, on one line."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix

    def line(self) -> str:
        text = " ".join(str(self).split())
        return f"{text} (fix: {self.fix})" if self.fix else text


class UsageError(OpsError):
    """Bad input: a malformed reference, a missing manifests directory, conflicting flags."""

    exit_code = EXIT_USAGE
