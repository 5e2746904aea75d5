"""Recording attempts: the attempt, the delivery's next state and the endpoint breaker, in one transaction."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, null, select, update
from sqlalchemy.sql.dml import Update

from sync.store.tables import deliveries, delivery_attempts
from sync.store.upsert import execute_rows, write_rows
from webhooks.config import EndpointConfig
from webhooks.eligibility import DEFAULT_CHANNELS, verdicts
from webhooks.endpoints import Breaker, EndpointState, Outcome, load_states, save_states
from webhooks.queue import Job
from webhooks.retry import (
    Dead,
    Decision,
    Disable,
    Kind,
    RetryDecision,
    Succeeded,
    classify,
    decide,
    parse_retry_after,
)

__all__ = ["Attempt", "record"]

EXCERPT_CHARS = 1000

_ATTEMPT_COLUMNS = ("delivery_id", "attempted_at", "status_code", "latency_ms", "error", "response_excerpt")
# Every value of the move is bound by name, constants too, so a batch runs through execute_rows:
# SQLAlchemy's own per-row parameter handling took 12 us a delivery, execute_rows 4 (batches of 100).
_MOVE_NAMES = ("b_id", "b_worker", "b_leased", "b_status", "b_next", "b_reason", "b_code", "b_at", "b_one")


def _move_on() -> Update:
    """The delivery's next state after an attempt, for the lease holder only."""
    # A worker whose lease ran out just leaves its attempt: another one holds the delivery now.
    return (
        update(deliveries)
        .where(
            deliveries.c.id == bindparam("b_id"),
            deliveries.c.status == bindparam("b_leased"),
            deliveries.c.leased_by == bindparam("b_worker"),
        )
        .values(
            status=bindparam("b_status"),
            attempts=deliveries.c.attempts + bindparam("b_one"),
            next_attempt_at=bindparam("b_next"),
            lease_expires_at=null(),
            leased_by=null(),
            last_status_code=bindparam("b_code"),
            reason=bindparam("b_reason"),
            updated_at=bindparam("b_at"),
        )
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened when a job was sent once."""

    job: Job
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None = None
    excerpt: str | None = None
    retry_after: str | None = None
    # Refused before anything was sent (SSRF guard, oversized body): retrying cannot help.
    refused: bool = False


def _decision(attempt: Attempt, rng: random.Random | None) -> Decision:
    if attempt.refused:
        return Dead(f"refused: {attempt.error}")
    return decide(
        attempt.status_code,
        attempt.job.attempts + 1,
        attempt.attempted_at,
        retry_after=parse_retry_after(attempt.retry_after, attempt.attempted_at),
        rng=rng,
    )


def _outcome(attempt: Attempt, decision: Decision) -> tuple[str, datetime | None, str | None]:
    """The delivery's next status, next attempt and reason."""
    if isinstance(decision, Succeeded):
        return "succeeded", None, None
    if isinstance(decision, RetryDecision):
        return "failed", decision.retry_at, _text(attempt.error)
    if isinstance(decision, Disable):
        # Kept due: it goes out as soon as the endpoint is enabled again.
        return "failed", attempt.attempted_at, decision.reason
    return "dead", None, _text(decision.reason)


def record(
    conn: Connection,
    attempts: Sequence[Attempt],
    *,
    worker_id: str,
    breaker: Breaker,
    now: datetime,
    endpoints: Mapping[str, EndpointConfig],
    channels: Mapping[str, str] = DEFAULT_CHANNELS,
    rng: random.Random | None = None,
) -> list[tuple[Decision, str | None]]:
    """Store `attempts` and what they decide, inside the caller's transaction.

    Returns each stored attempt's decision, with the reason it was held back instead (or None). An
    attempt whose delivery is gone (its contact was erased while it was in flight) is not stored: the
    erasure wins. Its answer still counts for the endpoint's breaker. A failed entry that fan-out
    would now hold back (its contact opted out while it was in flight), or whose contact has left the
    segment since, is closed, not retried.
    """
    if not attempts:
        return []
    decisions = [_decision(a, rng) for a in attempts]
    kept = _existing(conn, [a.job.delivery_id for a in attempts])
    stored = [(a, d) for a, d in zip(attempts, decisions, strict=True) if a.job.delivery_id in kept]
    rows = [
        (
            a.job.delivery_id,
            a.attempted_at,
            a.status_code,
            a.latency_ms,
            _text(a.error),
            _text(a.excerpt[:EXCERPT_CHARS] if a.excerpt else None),
        )
        for a, _ in stored
    ]
    write_rows(conn, delivery_attempts, _ATTEMPT_COLUMNS, rows)
    held = _held_back(conn, stored, endpoints, channels)
    moves = [
        (
            a.job.delivery_id,
            worker_id,
            "leased",
            *(_held_outcome(held[a.job.delivery_id]) if a.job.delivery_id in held else _outcome(a, dec)),
            a.status_code,
            a.attempted_at,
            1,
        )
        for a, dec in stored
    ]
    execute_rows(conn, "webhooks.record.move_on", _move_on, _MOVE_NAMES, moves)
    _update_endpoints(conn, attempts, decisions, breaker, now)
    return [(d, held[a.job.delivery_id][1] if a.job.delivery_id in held else None) for a, d in stored]


def _held_back(
    conn: Connection,
    stored: Sequence[tuple[Attempt, Decision]],
    endpoints: Mapping[str, EndpointConfig],
    channels: Mapping[str, str],
) -> dict[int, tuple[str, str]]:
    """delivery id -> (status, reason) for the entries to be retried that fan-out would now hold back."""
    # The opt-out that came while the entry was in flight could not cancel it (an attempt in flight
    # finishes): rescheduled as `failed`, the next attempt would send it after all.
    retrying = [
        a.job
        for a, dec in stored
        if a.job.transition.kind == "entered" and isinstance(dec, RetryDecision | Disable)
    ]
    return verdicts(conn, endpoints, retrying, channels) if retrying else {}


def _held_outcome(verdict: tuple[str, str]) -> tuple[str, None, str]:
    """The delivery's next status, next attempt (none) and reason when it is held back."""
    status, reason = verdict
    return status, None, reason


def _existing(conn: Connection, ids: Sequence[int]) -> set[int]:
    """Which of `ids` still exist, locked on PostgreSQL so an erasure cannot delete them before commit."""
    # SQLite: the caller's write transaction already keeps every other writer out.
    query = select(deliveries.c.id).where(deliveries.c.id.in_(sorted(set(ids))))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return set(conn.execute(query).scalars())


def _text(value: str | None) -> str | None:
    """`value` as both stores take it: a NUL (PostgreSQL) or a lone surrogate would fail the whole pass."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _update_endpoints(
    conn: Connection,
    attempts: Sequence[Attempt],
    decisions: Sequence[Decision],
    breaker: Breaker,
    now: datetime,
) -> None:
    outcomes: dict[str, list[Outcome]] = defaultdict(list)
    gone: dict[str, str] = {}
    for attempt, decision in zip(attempts, decisions, strict=True):
        kind = classify(attempt.status_code) if not attempt.refused else Kind.PERMANENT
        ok = True if kind is Kind.SUCCESS else False if kind is Kind.RETRYABLE else None
        outcomes[attempt.job.endpoint].append((attempt.attempted_at, ok))
        if isinstance(decision, Disable):
            gone[attempt.job.endpoint] = decision.reason
    states = load_states(conn, outcomes, lock=True)
    changed: list[EndpointState] = []
    for name, results in outcomes.items():
        state = breaker.after(states[name], results, now)
        if name in gone and state.disabled_at is None:
            state = EndpointState(name, now, gone[name], state.consecutive_failures, None)
        if state != states[name]:
            changed.append(state)
    save_states(conn, changed, now)
