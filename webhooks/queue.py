"""The delivery queue in the store: claim with a lease, load what to send.

Every statement is built once, with what changes from call to call bound at run time: building one
(and computing its cache key) cost more than SQLite took to run it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.sql.dml import ReturningUpdate

from sync.store.tables import deliveries, outbox, segments, transitions
from sync.store.types import UtcDateTime
from webhooks.eligibility import OPEN_STATUSES
from webhooks.payload import TransitionInfo

__all__ = ["Job", "claim", "has_due", "load_jobs", "withhold", "work_waiting"]


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed delivery and the transition it carries."""

    delivery_id: int
    webhook_id: str
    endpoint: str
    attempts: int
    transition: TransitionInfo


def _now() -> BindParameter[datetime]:
    return bindparam("now", type_=UtcDateTime())


def _endpoint() -> BindParameter[str]:
    return bindparam("b_endpoint", type_=String())


def _due() -> ColumnElement[bool]:
    """Due at :now: pending or failed and its time has come, or leased by a worker whose lease ran out."""
    d, now = deliveries.c, _now()
    return and_(
        # Holds for an expired lease too (it was due when claimed, before its lease began), so one range
        # on ix_deliveries_endpoint_next_attempt_at_id covers both kinds, in due order.
        d.next_attempt_at <= now,
        or_(
            d.status.in_(("pending", "failed")),
            # A lease that ran out means its worker died: the delivery is due again, same webhook-id.
            and_(d.status == "leased", d.lease_expires_at <= now),
        ),
    )


def _earlier_open() -> ColumnElement[bool]:
    """True when the same contact has an earlier transition still open at the claimed endpoint.

    Open: its delivery there will still be attempted, or it has no deliveries yet (its outbox row
    waits for a fan-out, perhaps another worker's, still uncommitted), so it may be bound for here.
    """
    mine, other_t, other_d = (
        transitions.alias("mine"),
        transitions.alias("other_t"),
        deliveries.alias("other_d"),
    )
    # Nested so the planner walks the contact's few transitions by index, not every open delivery. The
    # endpoint is the bound one: the claimed rows all have it, and a reference to the outer row three
    # levels down would not be correlated (it became a join with every delivery, at any endpoint).
    open_at_endpoint = exists().where(
        other_d.c.transition_id == other_t.c.id,
        other_d.c.endpoint == _endpoint(),
        other_d.c.status.in_(OPEN_STATUSES),
    )
    # Two workers: one's fan-out holds seq 1's outbox row (SKIP LOCKED hides it from the other), whose
    # fan-out and claim of seq 2 would otherwise find nothing to wait for and send `left` first.
    not_fanned_out = exists().where(outbox.c.transition_id == other_t.c.id, outbox.c.dispatched_at.is_(None))
    earlier = exists().where(
        other_t.c.contact_id == mine.c.contact_id,
        other_t.c.contact_seq < mine.c.contact_seq,
        or_(open_at_endpoint, not_fanned_out),
    )
    return exists().where(mine.c.id == deliveries.c.transition_id, earlier)


def _claim_statement(ordered: bool, *, postgresql: bool) -> ReturningUpdate[tuple[int]]:
    """Lease the oldest due deliveries of :b_endpoint, up to :limit; with `ordered`, per-contact order."""
    d = deliveries.c
    pick = select(d.id).where(d.endpoint == _endpoint(), _due())
    if ordered:
        pick = pick.where(~_earlier_open())
    # Workers on several hosts skip each other's rows instead of waiting on them (SQLite renders none).
    pick = (
        pick.order_by(d.next_attempt_at, d.id)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True, of=deliveries)
    )
    # PostgreSQL planned `id IN (pick)` as a hash join against a scan of every delivery (1.7 ms per
    # claim at 20,000 rows, growing with the table); the picked ids as one array are probed by key.
    picked = (
        d.id == any_(func.array(pick.scalar_subquery())) if postgresql else d.id.in_(pick.scalar_subquery())
    )
    return (
        update(deliveries)
        .where(picked)
        .values(
            status="leased",
            leased_by=bindparam("worker", type_=String()),
            lease_expires_at=bindparam("expires", type_=UtcDateTime()),
            updated_at=_now(),
        )
        .returning(d.id)
    )


_CLAIM = {
    (ordered, postgresql): _claim_statement(ordered, postgresql=postgresql)
    for ordered in (True, False)
    for postgresql in (True, False)
}

_JOBS = (
    select(
        deliveries.c.id,
        deliveries.c.webhook_id,
        deliveries.c.endpoint,
        deliveries.c.attempts,
        transitions.c.id,
        transitions.c.contact_id,
        transitions.c.kind,
        transitions.c.occurred_at,
        transitions.c.reason,
        transitions.c.rule_version,
        transitions.c.variant,
        transitions.c.contact_seq,
        segments.c.key,
        segments.c.name,
    )
    .select_from(
        deliveries.join(transitions, transitions.c.id == deliveries.c.transition_id).join(
            segments, segments.c.id == transitions.c.segment_id
        )
    )
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(deliveries.c.id)
)

_HAS_DUE = select(deliveries.c.id).where(deliveries.c.endpoint == _endpoint(), _due()).limit(1)

# One round trip for the idle worker's look: an undispatched outbox row, or a due delivery.
_WORK_WAITING = select(
    exists().where(outbox.c.dispatched_at.is_(None))
    | exists().where(deliveries.c.endpoint.in_(bindparam("endpoints", expanding=True)), _due())
)


def claim(
    conn: Connection,
    endpoint: str,
    limit: int,
    now: datetime,
    *,
    worker_id: str,
    lease: timedelta,
    ordered: bool,
) -> list[int]:
    """Lease up to `limit` due deliveries of `endpoint` to `worker_id`; returns their ids, oldest first."""
    if limit <= 0:
        return []
    params = {"b_endpoint": endpoint, "now": now, "limit": limit, "worker": worker_id, "expires": now + lease}
    return sorted(conn.execute(_CLAIM[ordered, conn.dialect.name == "postgresql"], params).scalars())


# A claimed delivery that must not go out after all is closed with why, by its lease holder only.
_WITHHOLD = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.status == "leased",
        deliveries.c.leased_by == bindparam("b_worker"),
    )
    .values(
        status=bindparam("b_status"),
        reason=bindparam("b_reason"),
        next_attempt_at=None,
        lease_expires_at=None,
        leased_by=None,
        updated_at=bindparam("b_now"),
    )
)


def withhold(conn: Connection, held: Mapping[int, tuple[str, str]], *, worker_id: str, now: datetime) -> None:
    """Close the claimed deliveries of `held` (delivery id -> (status, reason)) instead of sending them."""
    if held:
        rows = [
            {"b_id": i, "b_worker": worker_id, "b_status": status, "b_reason": reason, "b_now": now}
            for i, (status, reason) in sorted(held.items())
        ]
        conn.execute(_WITHHOLD, rows)


def load_jobs(conn: Connection, ids: Sequence[int]) -> list[Job]:
    """The claimed deliveries with their transitions and segments, in id order."""
    if not ids:
        return []
    rows = conn.execute(_JOBS, {"ids": list(ids)})
    return [Job(r[0], r[1], r[2], r[3], TransitionInfo(*r[4:])) for r in rows]


def has_due(conn: Connection, endpoint: str, now: datetime) -> bool:
    """True when `endpoint` has a delivery due at `now`."""
    return conn.execute(_HAS_DUE, {"b_endpoint": endpoint, "now": now}).first() is not None


def work_waiting(conn: Connection, endpoints: Sequence[str], now: datetime) -> bool:
    """True when an outbox row waits to be fanned out or one of `endpoints` has a delivery due at `now`."""
    return bool(conn.execute(_WORK_WAITING, {"endpoints": list(endpoints), "now": now}).scalar_one())
