"""Fetch the next page while the current one is stored: pages on threads, one ahead per source.

A provider answers a list request in tens to hundreds of milliseconds; storing a page takes about as
long. Pulling the next page on a thread while this one is stored overlaps the two, and with one
thread per source (`merged`) Stripe, HubSpot and Typeform wait on their networks at the same time
while one writer stores whichever page is ready. Nothing about cursors changes: a page's cursor is
still saved with that page, so a page fetched ahead and never stored (a crash, a stop) is simply
fetched again by the next run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["merged"]

T = TypeVar("T")

# How long a producer waiting for its item to be taken looks again whether the consumer has gone.
_POLL_SECONDS = 0.1


class _End:
    """A producer is done: its source is exhausted, or it raised `error`."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class _Producer(Generic[T]):
    """One source on its own thread, handing items over one at a time."""

    def __init__(
        self, source: Iterator[T], handover: queue.SimpleQueue[tuple[int, T | _End]], index: int
    ) -> None:
        self.source, self.handover, self.index = source, handover, index
        self.taken = threading.Semaphore(0)

    def run(self, gone: threading.Event) -> None:
        end = _End()
        try:
            for item in self.source:
                self.handover.put((self.index, item))
                # Wait until it is taken before fetching the one after.
                while not self.taken.acquire(timeout=_POLL_SECONDS):
                    if gone.is_set():
                        return
                if gone.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            end = _End(exc)
        finally:
            close = getattr(self.source, "close", None)
            if close is not None:
                close()
        self.handover.put((self.index, end))


def merged(sources: Mapping[str, Iterator[T]]) -> Iterator[T]:
    """Yield the items of every source as they are ready, each on its own thread named by its key.

    Each source's items keep their order and each producer is never more than one item ahead, so
    memory holds at most one item per source beside the one in use. An error of a source is raised
    here, after the items it produced before it. When the consumer stops early (or a source
    failed), every producer finishes the item in hand, its source is closed on its thread and the
    threads are joined before this returns.
    """
    handover: queue.SimpleQueue[tuple[int, T | _End]] = queue.SimpleQueue()
    producers = [_Producer(source, handover, index) for index, source in enumerate(sources.values())]
    gone = threading.Event()
    threads = [
        threading.Thread(target=p.run, args=(gone,), name=name, daemon=True)
        for name, p in zip(sources, producers, strict=True)
    ]
    for thread in threads:
        thread.start()
    running = len(producers)
    try:
        while running:
            index, item = handover.get()
            producers[index].taken.release()
            if isinstance(item, _End):
                running -= 1
                if item.error is not None:
                    raise item.error
                continue
            yield item
    finally:
        gone.set()
        for thread in threads:
            thread.join()
