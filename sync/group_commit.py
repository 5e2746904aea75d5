"""Group commit: pushed batches that arrive together are stored and evaluated in one transaction.

Each webhook or Segment.com call used to be a transaction of its own, and most of its cost is the
segment evaluation, which costs about the same for one contact as for fifty. So callers queue their
batch, and whoever holds the combiner takes everything queued and commits it together; the others find
their result ready when they get their turn. A batch that would fail the group (a bug, bad data) is
retried on its own, so it never takes the others down with it. A group that failed waiting for a
lock (SQLite busy, PostgreSQL lock_timeout) is not: each batch alone would wait as long again, so
all of them get that error at once (the receiver answers 503 and the senders retry).
Either way each batch is stored once, in one commit, or its caller gets an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connectors import Batch
from sync.locks import lock_wait_failed

if TYPE_CHECKING:
    from sync.engine import BatchResult

__all__ = ["CommitInterrupted", "GroupCommit", "Pushed"]


class CommitInterrupted(Exception):
    """The group this batch was in stopped before saying whether it was stored (Ctrl-C, exit)."""


@dataclass(eq=False)
class Pushed:
    """One pushed batch waiting for its transaction, then its outcome."""

    batch: Batch
    now: datetime
    trigger: str
    event_ids: Collection[str]
    result: BatchResult | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    """Queues pushed batches and commits them in groups through `commit(items)`."""

    def __init__(self, commit: Callable[[list[Pushed]], None]) -> None:
        self._commit = commit
        self._queue: list[Pushed] = []
        self._queue_lock = threading.Lock()
        self._combiner = threading.Lock()

    def submit(self, item: Pushed) -> BatchResult:
        """Store `item` (with whatever else is queued); its result, or the error it alone caused."""
        with self._queue_lock:
            self._queue.append(item)
        with self._combiner:
            if not item.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._run(group)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _run(self, group: list[Pushed]) -> None:
        try:
            self._commit(group)
        except Exception as exc:
            if len(group) == 1 or lock_wait_failed(exc):
                # One by one, each would wait out the lock again: all get the error now, and retry.
                for item in group:
                    item.error = exc
            else:
                # Nothing of the group was committed; each one alone shows whose batch is at fault.
                for item in group:
                    item.error = None  # an AlreadyReceivedError set in the group, which rolled back
                    try:
                        self._commit([item])
                    except Exception as alone:
                        item.error = alone
        finally:
            for item in group:
                if item.result is None and item.error is None:
                    # A BaseException went through the combiner's thread; the others must not wait
                    # for a result that will never come, nor mistake silence for success.
                    item.error = CommitInterrupted(
                        f"{item.batch.source}: the store's commit was interrupted, so this batch may "
                        "not be stored: send it again (provider event ids make that safe)"
                    )
                item.done = True
