"""Errors of the connectors: retryable (try again later) or permanent (a person must act)."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every connector error; the message names the thing, the cause and the fix."""

    retryable: bool = False


class RetryableError(ConnectorError):
    """A failure that may pass on its own: 429, 5xx, a timeout, a dropped connection."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """A failure that will not pass by retrying: bad credentials, a missing object, bad input."""


class MalformedPageError(PermanentError):
    """A page that is not JSON or lacks the keys the stream needs; nothing of it is yielded."""


class PaginationLoopError(PermanentError):
    """A provider returned the same page token twice in a row; stopping beats looping forever."""


class InvalidMessageError(PermanentError):
    """A pushed message (Segment Spec) that cannot be used; the message says which field and why."""
