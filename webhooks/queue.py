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
    FromClause,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.selectable import Exists, Select

from sync.store.tables import deliveries, merge_log, outbox, segments, transitions
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


# Up to this many undispatched outbox rows, the claim looks through them for the contact's; above,
# through the contact's earlier transitions (a big sync's backlog, which fan-out is working through).
FEW_UNDISPATCHED = 32


def _nested(where: Sequence[ColumnElement[bool]], outer: Sequence[FromClause], fence: bool) -> Exists:
    """EXISTS of `where`, correlated to `outer` by name, at any depth; with `fence`, kept a subquery.

    The probes below are nested so that what is open drives and the rest is looked up by key.
    PostgreSQL flattens an EXISTS into a join and picks the order itself: on a store not analyzed
    yet it walked the contact's history again, or scanned every transition. OFFSET 0 keeps it a
    subquery run per outer row (SQLite keeps the nesting as written).
    """
    query: Select[tuple[int]] = select(literal_column("1", Integer())).where(*where).correlate(*outer)
    return (query.offset(literal_column("0")) if fence else query).exists()


def _earlier_open(*, fence: bool) -> ColumnElement[bool]:
    """True when the same contact has an earlier transition still open at the claimed endpoint.

    Open: its delivery there will still be attempted, or it has no deliveries yet (its outbox row
    waits for a fan-out, perhaps another worker's, still uncommitted), so it may be bound for here.
    Both are looked up from what is open, not from the contact's history: a contact in time-window
    segments has hundreds of transitions a year, and walking them cost 2 ms a claimed delivery.
    """
    mine = transitions.alias("mine")
    probes = or_(_open_delivery_before(mine, fence), _not_fanned_out_before(mine, fence))
    return _nested([mine.c.id == deliveries.c.transition_id, probes], [deliveries], fence)


def _open_delivery_before(mine: FromClause, fence: bool) -> ColumnElement[bool]:
    """An open delivery, at the claimed row's endpoint, of an earlier transition of `mine`'s contact."""
    other_d, other_t = deliveries.alias("other_d"), transitions.alias("other_t")
    # Its transition's number, by key. The contact need not be compared: a delivery's is its
    # transition's when it was made, or one merged into that contact since (numbers are never reused).
    seq = select(other_t.c.contact_seq).where(other_t.c.id == other_d.c.transition_id).scalar_subquery()

    def open_for(contact: ColumnElement[int], *outer: FromClause) -> Exists:
        # ix_deliveries_contact_id_endpoint: the contact's open deliveries, each transition by key.
        return _nested(
            [
                other_d.c.contact_id == contact,
                other_d.c.endpoint == deliveries.c.endpoint,
                other_d.c.next_attempt_at.is_not(None),
                other_d.c.status.in_(OPEN_STATUSES),
                seq < mine.c.contact_seq,
            ],
            [deliveries, mine, *outer],
            fence,
        )

    # A delivery names the contact it was made for: a merge since moved its transition to the kept
    # contact, so the contacts merged into this one are looked under too (merge_log, rarely any).
    merged = _nested(
        [
            merge_log.c.kept_contact_id == mine.c.contact_id,
            open_for(merge_log.c.merged_contact_id, merge_log),
        ],
        [mine],
        fence,
    )
    return or_(open_for(mine.c.contact_id), merged)


def _not_fanned_out_before(mine: FromClause, fence: bool) -> ColumnElement[bool]:
    """An undispatched outbox row of an earlier transition of `mine`'s contact."""
    # Two workers: one's fan-out holds seq 1's outbox row (SKIP LOCKED hides it from the other), whose
    # fan-out and claim of seq 2 would otherwise find nothing to wait for and send `left` first. A
    # merge renumbers transitions too: the kept contact's undispatched ones may now come first.
    waiting = transitions.alias("waiting_t")
    earlier = [waiting.c.contact_id == mine.c.contact_id, waiting.c.contact_seq < mine.c.contact_seq]
    undispatched = outbox.c.dispatched_at.is_(None)
    # The few undispatched rows drive (ix_outbox_dispatched_at), each transition looked up by key...
    row_t = transitions.alias("row_t")
    contact, number = (
        select(column).where(row_t.c.id == outbox.c.transition_id).scalar_subquery()
        for column in (row_t.c.contact_id, row_t.c.contact_seq)
    )
    # Their contacts first, uncorrelated so gathered once per claim (hashed on PostgreSQL, whose index
    # still holds the rows this pass's fan-out just dispatched), then the rows of a contact among them.
    among_few = and_(
        mine.c.contact_id.in_(select(contact).select_from(outbox).where(undispatched)),
        _nested([undispatched, contact == mine.c.contact_id, number < mine.c.contact_seq], [mine], fence),
    )
    # ... or, behind a big backlog, the contact's earlier transitions, each outbox row by key.
    among_history = _nested(
        [*earlier, _nested([outbox.c.transition_id == waiting.c.id, undispatched], [waiting], fence)],
        [mine],
        fence,
    )
    few = (
        select(func.count())
        .select_from(select(outbox.c.id).where(undispatched).limit(FEW_UNDISPATCHED + 1).subquery())
        .scalar_subquery()
        <= FEW_UNDISPATCHED
    )
    # Uncorrelated, so counted once per claim; CASE runs only the branch it chose.
    return case((few, among_few), else_=among_history)


def _claim_statement(ordered: bool, *, postgresql: bool) -> ReturningUpdate[tuple[int]]:
    """Lease the oldest due deliveries of :b_endpoint, up to :limit; with `ordered`, per-contact order."""
    d = deliveries.c
    pick = select(d.id).where(d.endpoint == _endpoint(), _due())
    if ordered and postgresql:
        # Asked per due row, in a LATERAL subquery: as a filter, PostgreSQL costs the probe for every
        # row of the endpoint's queue and chose to read and sort all due deliveries (21 ms for 2,000,
        # growing with the queue) instead of walking them in order until the batch is full (1.2 ms).
        check = (
            select(_earlier_open(fence=True).label("waits"))
            .offset(literal_column("0"))
            .lateral("order_check")
        )
        pick = pick.select_from(deliveries.join(check, true())).where(~check.c.waits)
    elif ordered:
        pick = pick.where(~_earlier_open(fence=False))
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
