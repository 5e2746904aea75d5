"""The token bucket, driven by a fake clock."""

from __future__ import annotations

import pytest

from connectors import TokenBucket
from tests.connectors.fakes import FakeSleep


def test_bursts_then_paces_at_the_rate() -> None:
    sleep = FakeSleep()
    bucket = TokenBucket(4.0, clock=sleep.clock, sleep=sleep)
    waits = [bucket.acquire() for _ in range(8)]
    assert waits[:4] == [0.0] * 4
    assert waits[4:] == pytest.approx([0.25] * 4)
    assert sleep.now - 1000.0 == pytest.approx(1.0)


def test_idle_time_refills_up_to_the_burst_only() -> None:
    sleep = FakeSleep()
    bucket = TokenBucket(2.0, burst=2.0, clock=sleep.clock, sleep=sleep)
    bucket.acquire()
    bucket.acquire()
    sleep.now += 60.0  # a long pause does not bank more than the burst
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"positive"):
        TokenBucket(0, clock=lambda: 0.0, sleep=lambda s: None)
