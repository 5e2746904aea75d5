"""Operator actions on deliveries: list them, replay them, backfill a new endpoint with current members."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select, update

from sync.segments.config import hint
from sync.store.tables import deliveries, delivery_attempts, memberships, outbox, segments, transitions
from sync.store.upsert import insert_ignore
from webhooks.config import EndpointConfig, WebhooksConfig
from webhooks.eligibility import (
    DEFAULT_CHANNELS,
    SUPPRESSED,
    blocked_at,
    cap_counts,
    consenting,
    count_against_cap,
    suppressed_kinds,
)
from webhooks.endpoints import load_states
from webhooks.exceptions import WebhookConfigError
from webhooks.fanout import FanoutStats, TransitionRow, decide_deliveries

__all__ = [
    "REPLAYABLE",
    "WAITING",
    "Backfill",
    "Disabled",
    "Replayed",
    "attempts_of",
    "backfill",
    "disabled_endpoints",
    "list_deliveries",
    "replay",
    "troubles",
    "undispatched",
]

# Statuses a bulk replay resends unless told which; a single id may be replayed whatever its status.
# Cancelled deliveries were stopped on purpose (an unsubscribe, a merge): only asked for by name.
REPLAYABLE = ("dead", "failed")
# Contacts decided per statement, to stay far below the databases' bound-parameter limits.
_CHUNK = 500
# Statuses of deliveries still to be sent: what a disabled endpoint keeps waiting.
WAITING = ("pending", "leased", "failed")


def list_deliveries(
    conn: Connection, *, status: str | None = None, endpoint: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The most recent deliveries, newest first, with their transition's kind and segment."""
    d, t, s = deliveries.c, transitions.c, segments.c
    query = (
        select(
            d.id,
            d.endpoint,
            d.webhook_id,
            d.status,
            d.attempts,
            d.next_attempt_at,
            d.last_status_code,
            d.reason,
            d.created_at,
            t.kind,
            t.contact_id,
            s.key.label("segment"),
        )
        .select_from(
            deliveries.join(transitions, t.id == d.transition_id).join(segments, s.id == t.segment_id)
        )
        .order_by(d.id.desc())
        .limit(limit)
    )
    if status:
        query = query.where(d.status == status)
    if endpoint:
        query = query.where(d.endpoint == endpoint)
    return [dict(row) for row in conn.execute(query).mappings()]


def troubles(conn: Connection) -> list[tuple[str, str, int, str | None]]:
    """Per endpoint, its failed (to retry) and dead deliveries: (endpoint, status, count, latest reason)."""
    d = deliveries.c
    counts = conn.execute(
        select(d.endpoint, d.status, func.count(), func.max(d.id))
        .where(d.status.in_(("failed", "dead")))
        .group_by(d.endpoint, d.status)
        .order_by(d.endpoint, d.status)
    ).all()
    reasons = dict(
        conn.execute(select(d.id, d.reason).where(d.id.in_([latest for *_, latest in counts]))).tuples().all()
    )
    return [(endpoint, status, count, reasons.get(latest)) for endpoint, status, count, latest in counts]


class Disabled(NamedTuple):
    """An endpoint that is disabled (a 410 Gone, or by hand), and how many of its deliveries wait for it."""

    endpoint: str
    disabled_at: datetime
    reason: str | None
    waiting: int


def disabled_endpoints(conn: Connection, names: Iterable[str]) -> list[Disabled]:
    """Those of `names` that are disabled, by name, each with its count of deliveries still to be sent."""
    states = [s for s in load_states(conn, names).values() if s.disabled_at is not None]
    if not states:
        return []
    d = deliveries.c
    counts = dict(
        conn.execute(
            select(d.endpoint, func.count())
            .where(d.endpoint.in_([s.name for s in states]), d.status.in_(WAITING))
            .group_by(d.endpoint)
        )
        .tuples()
        .all()
    )
    return [
        Disabled(s.name, s.disabled_at, s.disabled_reason, counts.get(s.name, 0))
        for s in states
        if s.disabled_at is not None
    ]


def attempts_of(conn: Connection, delivery_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each delivery's attempts, oldest first; a delivery never attempted has none."""
    a = delivery_attempts.c
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in delivery_ids}
    for start in range(0, len(delivery_ids), _CHUNK):
        query = (
            select(a.delivery_id, a.attempted_at, a.status_code, a.latency_ms, a.error, a.response_excerpt)
            .where(a.delivery_id.in_(delivery_ids[start : start + _CHUNK]))
            .order_by(a.delivery_id, a.id)
        )
        for row in conn.execute(query).mappings():
            found[row["delivery_id"]].append(dict(row))
    return found


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay did: how many deliveries are due again, and the entries it held back, by why."""

    replayed: int
    withheld: dict[str, int]


def replay(
    conn: Connection,
    now: datetime,
    *,
    endpoints: Mapping[str, EndpointConfig],
    channels: Mapping[str, str] = DEFAULT_CHANNELS,
    delivery_id: int | None = None,
    since: datetime | None = None,
    status: str | None = None,
    endpoint: str | None = None,
) -> Replayed:
    """Make deliveries due again with a fresh schedule and the same webhook-id.

    A `segment.entered` is sent again only if it is still true and still allowed: the contact is in
    the segment with no later change there, not on the suppression list, consenting where the
    endpoint requires it, and within its cap. Otherwise a replay would announce someone who left or
    unsubscribed since, or message them more often than the endpoint allows.
    """
    d, t = deliveries.c, transitions.c
    query = (
        select(d.id, d.endpoint, t.id, t.kind, t.contact_id, t.segment_id, d.status)
        .join(transitions, t.id == d.transition_id)
        .where(d.status != "leased")
    )
    if delivery_id is not None:
        query = query.where(d.id == delivery_id)
    else:
        query = query.where(d.status.in_([status] if status else REPLAYABLE))
        if since is not None:
            query = query.where(d.created_at >= since)
    if endpoint:
        query = query.where(d.endpoint == endpoint)
    withheld: dict[str, int] = defaultdict(int)
    replayed = 0
    rows = sorted(_Candidate(*row) for row in conn.execute(query))  # oldest first: they have the cap
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        entries = [r for r in chunk if r.kind == "entered"]
        reasons = _withheld(conn, endpoints, channels, entries)
        reasons |= _over_cap(conn, endpoints, [e for e in entries if e.delivery_id not in reasons], now)
        due: dict[str, list[int]] = defaultdict(list)  # by the status they were read in
        for row in chunk:
            reason = reasons.get(row.delivery_id)
            if reason is None:
                due[row.status].append(row.delivery_id)
            else:
                withheld[reason] += 1
        # Due (so open) before the next chunk counts its caps: they count against it.
        replayed += _make_due(conn, due, now)
    return Replayed(replayed, dict(withheld))


def _make_due(conn: Connection, due: Mapping[str, list[int]], now: datetime) -> int:
    """Make the deliveries due again, each only if still in the status it was read in; how many were."""
    done = 0
    for status, ids in due.items():
        for start in range(0, len(ids), _CHUNK):
            # On PostgreSQL a worker may claim or finish a row between our read and this write: such a
            # row is left as it is, or a delivery just sent would be queued (and sent) once more.
            result = conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids[start : start + _CHUNK]), deliveries.c.status == status)
                .values(status="pending", attempts=0, next_attempt_at=now, reason=None, updated_at=now)
            )
            done += result.rowcount
    return done


class _Candidate(NamedTuple):
    delivery_id: int
    endpoint: str
    transition_id: int
    kind: str
    contact_id: int
    segment_id: int
    status: str


def _withheld(
    conn: Connection,
    endpoints: Mapping[str, EndpointConfig],
    channels: Mapping[str, str],
    entries: list[_Candidate],
) -> dict[int, str]:
    """delivery id -> why its `segment.entered` must not go out again now."""
    if not entries:
        return {}
    contact_ids = {e.contact_id for e in entries}
    m, t = memberships.c, transitions.c
    members = set(
        conn.execute(select(m.contact_id, m.segment_id).where(m.contact_id.in_(contact_ids))).tuples()
    )
    newest = {
        (cid, sid): tid
        for cid, sid, tid in conn.execute(
            select(t.contact_id, t.segment_id, func.max(t.id))
            .where(t.contact_id.in_(contact_ids))
            .group_by(t.contact_id, t.segment_id)
        ).tuples()
    }
    listed = suppressed_kinds(conn, contact_ids)
    blocked = {name: blocked_at(endpoint, listed, channels) for name, endpoint in endpoints.items()}
    required = {endpoints[e.endpoint].requires_consent for e in entries if e.endpoint in endpoints}
    allowed = {ch: consenting(conn, contact_ids, ch) for ch in required if ch}
    reasons: dict[int, str] = {}
    for entry in entries:
        channel = endpoints[entry.endpoint].requires_consent if entry.endpoint in endpoints else None
        key = (entry.contact_id, entry.segment_id)
        if key not in members or newest.get(key) != entry.transition_id:
            reasons[entry.delivery_id] = "no longer in the segment, or changed there since"
        elif entry.contact_id in blocked.get(entry.endpoint, set(listed)):  # unconfigured: any listing
            reasons[entry.delivery_id] = SUPPRESSED
        elif channel and entry.contact_id not in allowed[channel]:
            reasons[entry.delivery_id] = f"consent: no opted-in {channel} consent"
    return reasons


def _over_cap(
    conn: Connection, endpoints: Mapping[str, EndpointConfig], entries: list[_Candidate], now: datetime
) -> dict[int, str]:
    """delivery id -> why its `segment.entered` would take the contact over the endpoint's cap now."""
    by_endpoint: dict[str, list[_Candidate]] = defaultdict(list)
    for entry in entries:
        by_endpoint[entry.endpoint].append(entry)
    reasons: dict[int, str] = {}
    for name, mine in by_endpoint.items():
        cap = endpoints[name].parsed_cap if name in endpoints else None
        if cap is None:
            continue
        # As fan-out counts (those still to be sent, those sent within the window), leaving out the
        # ones decided here (a failed one is still to be sent: it would count itself), then one by one.
        ids = {e.delivery_id for e in mine}
        counts = cap_counts(conn, name, {e.contact_id for e in mine}, cap, now, excluding=ids)
        for entry in mine:
            if (over := count_against_cap(counts, entry.contact_id, endpoints[name])) is not None:
                reasons[entry.delivery_id] = over
    return reasons


@dataclass(frozen=True, slots=True)
class Backfill:
    """What a backfill did."""

    members: int
    created: int
    suppressed: int
    already: int
    without_transition: int


def backfill(
    conn: Connection,
    config: WebhooksConfig,
    endpoint: str,
    segment: str,
    now: datetime,
    *,
    channels: Mapping[str, str] = DEFAULT_CHANNELS,
) -> Backfill:
    """Send the segment's current members to `endpoint` as entries, through the usual caps and consent."""
    if endpoint not in config.endpoints:
        raise WebhookConfigError(f"endpoint {endpoint}: not configured: add [webhooks.endpoints.{endpoint}]")
    target = config.endpoints[endpoint]
    if not target.wants("segment.entered", segment):
        raise WebhookConfigError(f"endpoint {endpoint}: does not subscribe to segment.entered of {segment}")
    segment_id = conn.execute(select(segments.c.id).where(segments.c.key == segment)).scalar_one_or_none()
    if segment_id is None:
        known = sorted(conn.execute(select(segments.c.key)).scalars())
        raise WebhookConfigError(
            f"segment {segment}: not found among the evaluated segments{hint(segment, known)}; "
            "see `crmhub segments` (a segment new to the configuration has members after the next sync)"
        )
    t = transitions.c
    latest = (
        select(t.contact_id, func.max(t.id).label("tid"))
        .where(t.segment_id == segment_id, t.kind == "entered")
        .group_by(t.contact_id)
        .subquery()
    )
    # A member's entry is its latest `entered` transition; that transition's delivery may already exist.
    sent = select(deliveries.c.transition_id).where(deliveries.c.endpoint == endpoint)
    rows = conn.execute(
        select(memberships.c.contact_id, latest.c.tid, latest.c.tid.in_(sent).label("has"))
        .select_from(memberships.outerjoin(latest, latest.c.contact_id == memberships.c.contact_id))
        .where(memberships.c.segment_id == segment_id)
        .order_by(memberships.c.contact_id)
    ).all()
    todo = [TransitionRow(0, r.tid, r.contact_id, "entered", segment) for r in rows if r.tid and not r.has]
    stats = FanoutStats()
    created = 0
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        new_rows = decide_deliveries(conn, {endpoint: target}, chunk, now, stats, channels)
        insert_ignore(conn, deliveries, new_rows, ["transition_id", "endpoint"])
        created += len(new_rows)
    suppressed = sum(stats.suppressed.values())
    return Backfill(
        members=len(rows),
        created=created - suppressed,
        suppressed=suppressed,
        already=sum(1 for r in rows if r.has),
        without_transition=sum(1 for r in rows if not r.tid),
    )


def undispatched(conn: Connection) -> int:
    """How many transitions wait in the outbox for a worker to make their deliveries."""
    query = select(func.count()).select_from(outbox).where(outbox.c.dispatched_at.is_(None))
    return int(conn.execute(query).scalar_one())
