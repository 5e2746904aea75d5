"""Fetch the next page while the current one is stored: a stream's pages on a thread, one ahead.

A provider answers a list request in tens to hundreds of milliseconds; storing a page takes about as
long. Pulling the next page on a thread while this one is stored overlaps the two. Nothing about
cursors changes: a page's cursor is still saved with that page, so a page fetched ahead and never
stored (a crash, a stop) is simply fetched again by the next run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

# How long a blocked hand-over waits before it looks again whether the consumer has gone.
_POLL_SECONDS = 0.1


class _End:
    """The producer is done: the source is exhausted, or it raised `error`."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetched(source: Iterator[T], *, name: str = "prefetch") -> Iterator[T]:
    """Yield `source`'s items in order, producing the next one on a thread while this one is used.

    The producer is never more than one item ahead. Errors of the source are raised here, after
    the items produced before them. When the consumer stops early, the producer finishes the item
    in hand, the source is closed on its thread and the thread is joined before this returns.
    """
    handover: queue.Queue[T | _End] = queue.Queue(maxsize=1)
    taken = threading.Semaphore(0)
    gone = threading.Event()

    def produce() -> None:
        end = _End()
        try:
            for item in source:
                # Hand it over, then wait until it is taken before fetching the one after.
                offered = _wait(partial(_offer, handover, item), gone)
                if not offered or not _wait(partial(taken.acquire, timeout=_POLL_SECONDS), gone):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            end = _End(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        _wait(partial(_offer, handover, end), gone)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handover.get()
            taken.release()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        gone.set()
        thread.join()


def _offer(handover: queue.Queue[T | _End], item: T | _End) -> bool:
    """Put `item` if there is room within the poll interval."""
    try:
        handover.put(item, timeout=_POLL_SECONDS)
    except queue.Full:
        return False
    return True


def _wait(step: Callable[[], bool], gone: threading.Event) -> bool:
    """Repeat `step` (it waits at most the poll interval) until it succeeds; False once the consumer went."""
    while not gone.is_set():
        if step():
            return True
    return False
