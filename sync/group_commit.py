"""Group commit: pushed batches that arrive together are stored and evaluated in one transaction.

Each webhook or Segment.com call used to be a transaction of its own, and most of its cost is the
segment evaluation, which costs about the same for one contact as for fifty. So callers queue their
batch, and whoever holds the combiner takes everything queued and commits it together; the others find
their result ready when they get their turn. A batch that would fail the group (a bug, bad data) is
retried on its own, so it never takes the others down with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connectors import Batch

if TYPE_CHECKING:
    from sync.engine import BatchResult

__all__ = ["GroupCommit", "Pushed"]


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
            if len(group) == 1:
                group[0].error = exc
            else:
                # Nothing of the group was committed; each one alone shows whose batch is at fault.
                for item in group:
                    try:
                        self._commit([item])
                    except Exception as alone:
                        item.error = alone
        finally:
            for item in group:
                item.done = True
