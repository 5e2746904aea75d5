"""The redelivery schedule and what each answer means, as tables."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks import MAX_ATTEMPTS, Dead, Disable, RetryDecision, Succeeded, classify, decide
from webhooks.retry import Kind, parse_retry_after

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class _NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return 0.0


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (200, Kind.SUCCESS),
        (204, Kind.SUCCESS),
        (299, Kind.SUCCESS),
        (None, Kind.RETRYABLE),
        (408, Kind.RETRYABLE),
        (425, Kind.RETRYABLE),
        (429, Kind.RETRYABLE),
        (500, Kind.RETRYABLE),
        (502, Kind.RETRYABLE),
        (503, Kind.RETRYABLE),
        (504, Kind.RETRYABLE),
        (410, Kind.GONE),
        (300, Kind.PERMANENT),  # the first 3xx: redirects are not followed, so not a success
        (301, Kind.PERMANENT),
        (307, Kind.PERMANENT),
        (400, Kind.PERMANENT),
        (401, Kind.PERMANENT),
        (404, Kind.PERMANENT),
        (422, Kind.PERMANENT),
    ],
)
def test_classify(code: int | None, kind: Kind) -> None:
    assert classify(code) is kind


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [
        (1, timedelta(seconds=5)),
        (2, timedelta(minutes=5)),
        (3, timedelta(minutes=30)),
        (4, timedelta(hours=2)),
        (5, timedelta(hours=5)),
        (6, timedelta(hours=10)),
        (7, timedelta(hours=14)),
        (8, timedelta(hours=20)),
        (9, timedelta(hours=24)),
    ],
)
def test_schedule_without_jitter(attempt: int, delay: timedelta) -> None:
    assert decide(503, attempt, NOW, rng=_NoJitter()) == RetryDecision(NOW + delay)


def test_the_tenth_failure_is_dead_never_dropped() -> None:
    assert MAX_ATTEMPTS == 10
    decision = decide(503, 10, NOW)
    assert isinstance(decision, Dead) and "10 attempts" in decision.reason


def test_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(7)
    for _ in range(200):
        decision = decide(None, 4, NOW, rng=rng)
        assert isinstance(decision, RetryDecision)
        assert timedelta(hours=1.8) <= decision.retry_at - NOW <= timedelta(hours=2.2)


def test_jitter_spreads_retries_both_sides_of_the_schedule() -> None:
    # ±10 % of the delay: jitter one way only would still spread retries, but shift the schedule.
    rng = random.Random(7)
    delays = []
    for _ in range(200):
        decision = decide(None, 4, NOW, rng=rng)
        assert isinstance(decision, RetryDecision)
        delays.append(decision.retry_at - NOW)
    assert min(delays) < timedelta(hours=1.9) and max(delays) > timedelta(hours=2.1)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, timedelta(seconds=1), timedelta(seconds=5)),  # sooner than the schedule: the schedule wins
        (1, timedelta(seconds=120), timedelta(seconds=120)),  # later: honoured
        (1, timedelta(days=3), timedelta(seconds=5) + timedelta(hours=1)),  # clamped
        (9, timedelta(hours=2), timedelta(hours=24)),
    ],
)
def test_retry_after_is_honoured_but_clamped(
    attempt: int, retry_after: timedelta, expected: timedelta
) -> None:
    decision = decide(429, attempt, NOW, retry_after=retry_after, rng=_NoJitter())
    assert decision == RetryDecision(NOW + expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        ("Mon, 23 Nov 2026 12:01:00 GMT", timedelta(seconds=60)),
        ("Mon, 23 Nov 2026 11:00:00 GMT", timedelta(0)),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: timedelta | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_success_gone_and_permanent_decisions() -> None:
    assert decide(200, 3, NOW) == Succeeded()
    assert isinstance(decide(410, 1, NOW), Disable)
    dead = decide(400, 1, NOW)
    assert isinstance(dead, Dead) and "HTTP 400" in dead.reason


LONGEST = timedelta(hours=25)  # the last scheduled delay (24 h) plus the one hour a consumer may add


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" 120 ", timedelta(seconds=120)),
        ("100000000000000", LONGEST),  # timedelta(seconds=...) of this overflowed: the worker pass died
        ("9" * 5000, LONGEST),  # int() refuses more than 4,300 digits
        ("Fri, 31 Dec 9999 23:59:59 GMT", LONGEST),
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),
        ("Mon, 23 Nov 99999999999999999999 12:00:00 GMT", None),  # OverflowError inside the date parser
        ("Mon, 23 Nov 2026 12:00:00 +9999", None),  # an offset of four days
        ("Mon, 23 Nov 2026 12:00:00 -0000", None),  # a date in no known zone
        ("-5", None),
        ("1.5", None),
        ("²", None),  # str.isdigit() says yes, int() says no
        ("120, 120", None),  # the header sent twice
        ("x" * 100_000, None),
    ],
)
def test_parse_retry_after_bounds_whatever_a_consumer_sends(value: str, expected: timedelta | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.text())
def test_parse_retry_after_never_raises_and_stays_in_bounds(value: str) -> None:
    parsed = parse_retry_after(value, NOW)
    assert parsed is None or timedelta(0) <= parsed <= LONGEST


def test_a_huge_retry_after_waits_the_schedule_plus_one_hour() -> None:
    retry_after = parse_retry_after("100000000000000", NOW)
    decision = decide(503, 1, NOW, retry_after=retry_after, rng=_NoJitter())
    assert decision == RetryDecision(NOW + timedelta(seconds=5) + timedelta(hours=1))
