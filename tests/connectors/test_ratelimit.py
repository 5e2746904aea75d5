"""The token bucket, driven by a fake clock."""

from __future__ import annotations

import pytest

from connectors import TokenBucket
from tests.connectors.fakes import FakeSleep

# A nanosecond of slack for float sums of 1/rate; a provider's clock is no finer.
_EPSILON = 1e-9


def _admitted(rate: float, requests: int, **kwargs: float) -> tuple[list[float], FakeSleep]:
    """The fake-clock time of each of `requests` acquisitions in a row."""
    sleep = FakeSleep()
    bucket = TokenBucket(rate, clock=sleep.clock, sleep=sleep, **kwargs)
    times = []
    for _ in range(requests):
        bucket.acquire()
        times.append(sleep.now)
    return times, sleep


def _busiest_second(times: list[float]) -> int:
    """The most requests in any window [t, t+1) (the busiest one starts at a request)."""
    return max(sum(1 for u in times if t <= u < t + 1 - _EPSILON) for t in times)


@pytest.mark.parametrize("rate", [1.0, 2.0, 4.0, 9.0, 20.0, 25.0])
def test_no_second_admits_more_than_the_rate(rate: float) -> None:
    # Typeform allows 2 a second, HubSpot's search 4: the first second used to see 3 and 7.
    times, _ = _admitted(rate, requests=int(rate) * 5)
    assert _busiest_second(times) == int(rate)


@pytest.mark.parametrize("rate", [0.5, 2.0, 4.0, 9.0, 20.0])
def test_steady_throughput_is_the_rate(rate: float) -> None:
    requests = 41
    times, sleep = _admitted(rate, requests)
    assert times[0] == 1000.0  # the first request goes at once
    assert times[-1] - times[0] == pytest.approx((requests - 1) / rate)
    assert sleep.calls == pytest.approx([1 / rate] * (requests - 1))


def test_a_fractional_rate_keeps_its_average() -> None:
    times, _ = _admitted(2.5, requests=26)
    assert times[-1] - times[0] == pytest.approx(10.0)
    assert _busiest_second(times) == 3  # ceil(2.5): 0, 0.4, 0.8


def test_idle_time_refills_up_to_the_burst_only() -> None:
    sleep = FakeSleep()
    bucket = TokenBucket(2.0, clock=sleep.clock, sleep=sleep)
    bucket.acquire()
    sleep.now += 60.0  # a long pause does not bank a burst for later
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 0.5, 0.5])


def test_a_larger_burst_is_allowed_when_asked_for() -> None:
    times, _ = _admitted(2.0, requests=8, burst=2.0)
    # Two at once, then one every half second: three in the first second.
    assert times[:3] == [1000.0, 1000.0, 1000.5] and _busiest_second(times) == 3


def test_rate_and_burst_must_be_sensible() -> None:
    with pytest.raises(ValueError, match=r"positive"):
        TokenBucket(0, clock=lambda: 0.0, sleep=lambda s: None)
    with pytest.raises(ValueError, match=r"at least 1"):
        TokenBucket(2.0, burst=0.5, clock=lambda: 0.0, sleep=lambda s: None)
