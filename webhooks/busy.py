"""A busy store, as the delivery worker meets it: which errors say so, how long to wait before a new try."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sync.locks import lock_wait_failed

__all__ = ["StoreBackoff", "store_busy"]

log = logging.getLogger("webhooks.worker")

# PostgreSQL's deadlock_detected: the other transaction went on, this one may simply try again.
_PG_DEADLOCK = "40P01"


def store_busy(exc: BaseException) -> bool:
    """Whether `exc` is a busy store: a lock wait given up (sync.locks), a deadlock, no free connection."""
    if isinstance(exc, PoolTimeoutError) or lock_wait_failed(exc):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == _PG_DEADLOCK


class StoreBackoff:
    """When the next pass may try a busy store again: the wait doubles from `first` up to `most` seconds.

    An episode (from the first failure to the next pass that gets through) is logged once when it
    starts (a warning) and once when it ends, on one line each, with the driver's message only:
    SQLAlchemy's own text carries the statement's parameters (contacts' e-mail addresses, say).
    """

    def __init__(self, first: float, most: float) -> None:
        self._first, self._most = first, most
        self._delay = 0.0
        self._until: float | None = None
        self._since: float | None = None
        self._failures = 0

    def failed(self, exc: BaseException, at: float, *, kept: int) -> None:
        """A pass met a busy store at `at` (a monotonic time); `kept` attempts wait to be recorded."""
        self._delay = self._first if self._until is None else min(self._delay * 2, self._most)
        self._until = at + self._delay
        self._failures += 1
        if self._since is None:
            self._since = at
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            log.warning(
                "webhooks: the store is busy (%s: %s): %d finished attempts kept to be recorded; "
                "retrying from %.1f s up to every %.0f s",
                type(cause).__name__,
                " ".join(str(cause).split()),
                kept,
                self._first,
                self._most,
            )

    def succeeded(self, at: float, *, recorded: int) -> None:
        """A pass got through at `at`: the episode, if any, is over."""
        if self._since is not None:
            log.info(
                "webhooks: the store answers again after %.1f s and %d failed passes: %d attempts recorded",
                at - self._since,
                self._failures,
                recorded,
            )
        self._delay, self._until, self._since, self._failures = 0.0, None, None, 0

    def wait(self, at: float) -> float:
        """Seconds from `at` until the next pass may try the store; 0 when it may now."""
        return 0.0 if self._until is None else max(0.0, self._until - at)
