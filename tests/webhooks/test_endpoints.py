"""The circuit breaker as a policy: when it trips, for how long, and what a late answer changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine

from tests.webhooks.conftest import Clock, Consumer, endpoint, make_config, make_worker, secrets_for, seed
from webhooks.endpoints import Breaker, EndpointState, load_states

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BREAKER = Breaker()  # the documented defaults: five failures, 30 s doubling up to 10 min


def _failures(n: int, sent_at: datetime = T0) -> list[tuple[datetime, bool | None]]:
    return [(sent_at, False)] * n


def test_a_whole_batch_of_failures_trips_the_circuit_for_30_s() -> None:
    # Concurrency 10: ten requests were in flight when the first five failures would have tripped it.
    state = BREAKER.after(EndpointState("sms"), _failures(10), T0)
    assert state.circuit_open_until == T0 + timedelta(seconds=30)
    assert BREAKER.half_open(state)


def test_failures_sent_before_the_trip_and_recorded_later_do_not_lengthen_it() -> None:
    tripped = BREAKER.after(EndpointState("sms"), _failures(5), T0)
    later = BREAKER.after(tripped, _failures(5), T0 + timedelta(seconds=2))
    assert later.circuit_open_until == T0 + timedelta(seconds=30)


def test_each_failed_probe_doubles_the_open_period_up_to_10_minutes() -> None:
    state, now = BREAKER.after(EndpointState("sms"), _failures(10), T0), T0
    periods = []
    for _ in range(7):
        assert state.circuit_open_until is not None
        now = state.circuit_open_until  # half-open: one probe goes out, and fails
        state = BREAKER.after(state, _failures(1, sent_at=now), now)
        assert state.circuit_open_until is not None
        periods.append((state.circuit_open_until - now).total_seconds())
    assert periods == [60, 120, 240, 480, 600, 600, 600]


def test_two_probes_of_one_half_open_moment_double_it_once() -> None:
    # Two workers each sent a probe when the circuit half-opened; both failed, recorded apart.
    tripped = BREAKER.after(EndpointState("sms"), _failures(5), T0)
    half_open = T0 + timedelta(seconds=30)
    first = BREAKER.after(tripped, _failures(1, sent_at=half_open), half_open + timedelta(seconds=1))
    second = BREAKER.after(first, _failures(1, sent_at=half_open), half_open + timedelta(seconds=2))
    assert second.circuit_open_until == first.circuit_open_until == half_open + timedelta(seconds=61)


def test_a_success_closes_it_and_neither_outcome_changes_nothing() -> None:
    tripped = BREAKER.after(EndpointState("sms"), _failures(7), T0)
    assert BREAKER.after(tripped, [(T0, None)], T0) == tripped
    closed = BREAKER.after(tripped, [(T0, True)], T0)
    assert closed.consecutive_failures == 0 and closed.circuit_open_until is None
    assert BREAKER.after(EndpointState("sms"), _failures(4), T0).circuit_open_until is None


def test_a_failure_with_no_open_period_recorded_trips_it_again() -> None:
    # Tripped with no open-until, as a 410 leaves it: a failure recorded then must not raise.
    state = BREAKER.after(EndpointState("sms", consecutive_failures=5), _failures(1), T0)
    assert (state.consecutive_failures, state.circuit_open_until) == (6, T0 + timedelta(seconds=60))


def test_refused_requests_do_not_trip_it(engine: Engine) -> None:
    # A 4xx is the request's fault, not the endpoint's: the endpoint is up and answering.
    seed(engine, 6)
    config = make_config(("sms", endpoint("sms", concurrency=1)))
    consumer = Consumer(lambda _r: httpx.Response(400))
    asyncio.run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)).run(Clock()))
    assert len(consumer.received) == 6, "none held back by an open circuit"
    with engine.connect() as conn:
        state = load_states(conn, ["sms"])["sms"]
    assert (state.consecutive_failures, state.circuit_open_until) == (0, None)
