"""Pages fetched one ahead on a thread: same order, errors in place, a clean stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sync.prefetch import prefetched


class _Pages:
    """A source that notes how far it got and whether it was closed."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.produced = 0
        self.closed = False
        self.ahead = threading.Event()

    def __iter__(self) -> Iterator[int]:
        try:
            for page in range(self.count):
                if page == self.fail_at:
                    raise RuntimeError(f"page {page} is malformed")
                self.produced = page + 1
                if page == 1:
                    self.ahead.set()
                yield page
        finally:
            self.closed = True


def test_items_arrive_in_order_and_the_next_is_fetched_while_one_is_used() -> None:
    pages = _Pages(5)
    seen = []
    for page in prefetched(iter(pages)):
        if page == 0:
            # While page 0 is being stored, page 1 is fetched already.
            assert pages.ahead.wait(5)
        seen.append(page)
    assert seen == [0, 1, 2, 3, 4] and pages.closed


def test_an_error_of_the_source_comes_after_the_pages_before_it() -> None:
    seen = []
    with pytest.raises(RuntimeError, match="page 3 is malformed"):
        for page in prefetched(iter(_Pages(6, fail_at=3))):
            seen.append(page)
    assert seen == [0, 1, 2]


def test_stopping_early_closes_the_source_and_leaves_no_thread() -> None:
    pages = _Pages(1000)
    before = threading.active_count()
    for page in prefetched(iter(pages), name="test-prefetch"):
        if page == 2:
            break
    assert pages.closed
    assert pages.produced <= 4, "the producer ran on after the consumer stopped"
    assert threading.active_count() == before
    assert not any(t.name == "test-prefetch" for t in threading.enumerate())


def test_an_error_while_storing_stops_the_producer_too() -> None:
    pages = _Pages(1000)
    with pytest.raises(ValueError, match="store failed"):
        for page in prefetched(iter(pages)):
            if page == 1:
                raise ValueError("store failed")
    assert pages.closed and pages.produced <= 3
