"""User-facing errors.

Every check that can fail on bad input raises :class:`GeedlError` with a message written for an
analyst: what is wrong and what to change. The CLI prints it without a traceback, the GUI shows
it in the message bar, Processing reports it as the algorithm's error.
"""


class GeedlError(Exception):
    """A problem with the user's input or environment, explained in plain words."""


class CancelledError(GeedlError):
    """The user cancelled a long job; partial outputs have been removed."""

    def __init__(self, message: str = "Cancelled by the user; no output was written.") -> None:
        super().__init__(message)
