"""The delivery queue in the store: claim with a lease, load what to send, record each attempt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, and_, exists, or_, select, update

from sync.store.tables import deliveries, outbox, segments, transitions
from webhooks.eligibility import OPEN_STATUSES
from webhooks.payload import TransitionInfo

__all__ = ["Job", "any_due", "claim", "has_due", "load_jobs", "outbox_waiting"]


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed delivery and the transition it carries."""

    delivery_id: int
    webhook_id: str
    endpoint: str
    attempts: int
    transition: TransitionInfo


def _due(now: datetime) -> ColumnElement[bool]:
    d = deliveries.c
    return or_(
        and_(d.status.in_(("pending", "failed")), d.next_attempt_at <= now),
        # A lease that ran out means its worker died: the delivery is due again, same webhook-id.
        and_(d.status == "leased", d.lease_expires_at <= now),
    )


def _earlier_open() -> ColumnElement[bool]:
    """True when the same contact has an earlier transition still open at the same endpoint."""
    mine, other_t, other_d = (
        transitions.alias("mine"),
        transitions.alias("other_t"),
        deliveries.alias("other_d"),
    )
    # Nested so the planner walks the contact's few transitions by index, not every open delivery.
    open_at_endpoint = exists().where(
        other_d.c.transition_id == other_t.c.id,
        other_d.c.endpoint == deliveries.c.endpoint,
        other_d.c.status.in_(OPEN_STATUSES),
    )
    earlier = exists().where(
        other_t.c.contact_id == mine.c.contact_id,
        other_t.c.contact_seq < mine.c.contact_seq,
        open_at_endpoint,
    )
    return exists().where(mine.c.id == deliveries.c.transition_id, earlier)


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
    d = deliveries.c
    pick = select(d.id).where(d.endpoint == endpoint, _due(now))
    if ordered:
        pick = pick.where(~_earlier_open())
    pick = pick.order_by(d.next_attempt_at, d.id).limit(limit)
    if conn.dialect.name == "postgresql":
        # Workers on several hosts skip each other's rows instead of waiting on them.
        pick = pick.with_for_update(skip_locked=True, of=deliveries)
    claimed = conn.execute(
        update(deliveries)
        .where(d.id.in_(pick.scalar_subquery()))
        .values(status="leased", leased_by=worker_id, lease_expires_at=now + lease, updated_at=now)
        .returning(d.id)
    )
    return sorted(row[0] for row in claimed)


def load_jobs(conn: Connection, ids: Sequence[int]) -> list[Job]:
    """The claimed deliveries with their transitions and segments, in id order."""
    if not ids:
        return []
    d, t, s = deliveries.c, transitions.c, segments.c
    rows = conn.execute(
        select(
            d.id,
            d.webhook_id,
            d.endpoint,
            d.attempts,
            t.id,
            t.contact_id,
            t.kind,
            t.occurred_at,
            t.reason,
            t.rule_version,
            t.variant,
            t.contact_seq,
            s.key,
            s.name,
        )
        .select_from(
            deliveries.join(transitions, t.id == d.transition_id).join(segments, s.id == t.segment_id)
        )
        .where(d.id.in_(list(ids)))
        .order_by(d.id)
    )
    return [Job(r[0], r[1], r[2], r[3], TransitionInfo(*r[4:])) for r in rows]


def has_due(conn: Connection, endpoint: str, now: datetime) -> bool:
    """True when `endpoint` has a delivery due at `now`."""
    d = deliveries.c
    query = select(d.id).where(d.endpoint == endpoint, _due(now)).limit(1)
    return conn.execute(query).first() is not None


def any_due(conn: Connection, endpoints: Sequence[str], now: datetime) -> bool:
    """True when one of `endpoints` has a delivery due at `now`."""
    if not endpoints:
        return False
    d = deliveries.c
    query = select(d.id).where(d.endpoint.in_(list(endpoints)), _due(now)).limit(1)
    return conn.execute(query).first() is not None


def outbox_waiting(conn: Connection) -> bool:
    """True when an outbox row waits to be fanned out."""
    return (
        conn.execute(select(outbox.c.id).where(outbox.c.dispatched_at.is_(None)).limit(1)).first() is not None
    )
