"""Pages fetched ahead on threads, one per source: each source in order, errors in place, a clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sync.prefetch import merged


class _Pages:
    """A source that notes how far it got and whether it was closed."""

    def __init__(self, count: int, *, fail_at: int | None = None, tag: str = "") -> None:
        self.count, self.fail_at, self.tag = count, fail_at, tag
        self.produced = 0
        self.closed = False
        self.ahead = threading.Event()

    def __iter__(self) -> Iterator[str]:
        try:
            for page in range(self.count):
                if page == self.fail_at:
                    raise RuntimeError(f"page {page} is malformed")
                self.produced = page + 1
                if page == 1:
                    self.ahead.set()
                yield f"{self.tag}{page}"
        finally:
            self.closed = True


def _eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_items_arrive_in_order_and_the_next_is_fetched_while_one_is_used() -> None:
    pages = _Pages(5)
    seen: list[str] = []
    for page in merged({"one": iter(pages)}):
        if page == "0":
            # While page 0 is being stored, page 1 is fetched already.
            assert pages.ahead.wait(5)
        seen.append(page)
    assert seen == ["0", "1", "2", "3", "4"] and pages.closed


def test_every_source_is_fetched_at_once_each_in_its_own_order() -> None:
    stripe, hubspot = _Pages(4, tag="s"), _Pages(3, tag="h")
    seen: list[str] = []
    for page in merged({"stripe": iter(stripe), "hubspot": iter(hubspot)}):
        if not seen:
            # While the first page is in use, both sources have produced: neither waits for the other.
            assert _eventually(lambda: stripe.produced >= 1 and hubspot.produced >= 1)
        seen.append(page)
    assert [p for p in seen if p[0] == "s"] == ["s0", "s1", "s2", "s3"]
    assert [p for p in seen if p[0] == "h"] == ["h0", "h1", "h2"]
    assert stripe.closed and hubspot.closed


def test_no_source_runs_more_than_one_item_ahead() -> None:
    sources = {name: _Pages(1000, tag=name) for name in ("a", "b", "c")}
    for taken, _ in enumerate(merged({name: iter(p) for name, p in sources.items()}), start=1):
        if taken == 5:
            break
    # Five taken in all, plus at most one in hand per source.
    assert sum(p.produced for p in sources.values()) <= 5 + len(sources) + 1
    assert all(p.closed for p in sources.values())


def test_an_error_of_a_source_comes_after_the_pages_before_it_and_stops_the_others() -> None:
    seen: list[str] = []
    other = _Pages(1000, tag="o")
    with pytest.raises(RuntimeError, match="page 3 is malformed"):
        for page in merged({"bad": iter(_Pages(6, fail_at=3)), "other": iter(other)}):
            seen.append(page)
    assert [p for p in seen if p[0] != "o"] == ["0", "1", "2"]
    assert other.closed and other.produced < 1000


def test_stopping_early_closes_every_source_and_leaves_no_thread() -> None:
    first, second = _Pages(1000), _Pages(1000)
    for page in merged({"test-prefetch a": iter(first), "test-prefetch b": iter(second)}):
        if page == "2":
            break
    assert first.closed and second.closed
    assert first.produced <= 4, "the producer ran on after the consumer stopped"
    assert not any(t.name.startswith("test-prefetch") for t in threading.enumerate())


def test_an_error_while_storing_stops_the_producers_too() -> None:
    pages = _Pages(1000)
    with pytest.raises(ValueError, match="store failed"):
        for page in merged({"one": iter(pages)}):
            if page == "1":
                raise ValueError("store failed")
    assert pages.closed and pages.produced <= 3
