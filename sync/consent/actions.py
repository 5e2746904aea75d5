"""Opt-out and opt-in: record the statement, then act on it in the caller's transaction.

An opt-out of a channel, in one transaction: the opted_out record; the contact's identities that
reach the channel (`[consent] channels`) on the suppression list; the contact re-evaluated, so it
leaves every segment that requires the channel with `reason = "unsubscribed"` (and an outbox row
each); and its pending or failed `segment.entered` deliveries cancelled where the segment requires
the channel or the endpoint does (`endpoints`, named by the caller, which knows the webhook
configuration), and so are leased ones whose lease ran out (their worker died; the queue would send
them again). Deliveries in flight (leased, lease running) finish; the `segment.left` that follows
tells the consumer to stop.

The channel must be one of `[consent] channels` (any case); another is refused with ConsentError.
The record in force is the contact's latest for the channel by `recorded_at`, as segments read it:
a statement dated before a newer one is kept as history, and the result says which one is in force.
An opt-out acts all the same (stopping messages is the safe side); an opt-in outranked by a newer
opt-out lifts no suppression.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, delete, select, update

from sync.consent.config import ConsentConfig
from sync.consent.records import ConsentItem, InForce, in_force, record_many
from sync.consent.suppression import identity_hash, suppress_contacts
from sync.store.tables import (
    cancellable,
    contact_identities,
    contacts,
    deliveries,
    merge_log,
    segments,
    suppressions,
    transitions,
)

if TYPE_CHECKING:
    from sync.engine import Evaluate
    from sync.segments import EvaluationReport

__all__ = ["ConsentResult", "cancel_entries", "current_contact", "opt_in", "opt_out", "unsubscribe"]


@dataclass(frozen=True)
class ConsentResult:
    """What an opt-out or opt-in did."""

    contact_id: int
    channel: str
    status: str
    recorded: bool
    suppressed: int = 0
    cancelled: int = 0
    left: int = 0
    entered: int = 0
    # The channel's record in force after this one: a newer statement outranks it.
    in_force: str | None = None
    in_force_at: datetime | None = None
    # Why the channel's identities are still suppressed after an opt-in (bounced, erased, ...).
    still_listed: tuple[str, ...] = ()

    @property
    def outranked(self) -> bool:
        """A newer record with another status stays in force over the one just given."""
        return self.in_force is not None and self.in_force != self.status

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        at = self.in_force_at.isoformat() if self.in_force_at else None
        return dict(self.__dict__) | {"in_force_at": at}


def current_contact(conn: Connection, contact_id: int) -> int | None:
    """The contact now holding `contact_id`'s data: itself, or the one it was merged into."""
    seen: set[int] = set()
    while contact_id not in seen:
        seen.add(contact_id)
        if conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).scalar() is not None:
            return contact_id
        kept = conn.execute(
            select(merge_log.c.kept_contact_id)
            .where(merge_log.c.merged_contact_id == contact_id)
            .order_by(merge_log.c.id.desc())
            .limit(1)
        ).scalar()
        if kept is None:
            return None
        contact_id = int(kept)
    return None


def cancel_entries(
    conn: Connection,
    contact_ids: Collection[int],
    channel: str,
    *,
    endpoints: Collection[str] = (),
    reason: str = "unsubscribed",
    now: datetime,
) -> int:
    """Cancel the contacts' open `segment.entered` deliveries on segments or endpoints needing `channel`."""
    if not contact_ids:
        return 0
    needing = [
        sid
        for sid, rule in conn.execute(select(segments.c.id, segments.c.rule))
        if rule.get("requires_consent") == channel
    ]
    scope: ColumnElement[bool] | None = transitions.c.segment_id.in_(needing) if needing else None
    if endpoints:
        by_endpoint = deliveries.c.endpoint.in_(sorted(endpoints))
        scope = by_endpoint if scope is None else scope | by_endpoint
    if scope is None:
        return 0
    entries = select(transitions.c.id).where(
        transitions.c.kind == "entered", transitions.c.contact_id.in_(sorted(contact_ids))
    )
    open_rows = (
        select(deliveries.c.id)
        .join(transitions, transitions.c.id == deliveries.c.transition_id)
        .where(cancellable(now), deliveries.c.transition_id.in_(entries), scope)
    )
    ids = list(conn.execute(open_rows).scalars())
    if not ids:
        return 0
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids), cancellable(now))
        .values(status="cancelled", reason=reason, next_attempt_at=None, updated_at=now)
    )
    return len(ids)


def unsubscribe(
    conn: Connection,
    contact_ids: Collection[int],
    channel: str,
    *,
    now: datetime,
    evaluate: Evaluate | None,
    endpoints: Collection[str] = (),
    config: ConsentConfig | None = None,
    reason: str = "unsubscribed",
) -> tuple[int, int, EvaluationReport | None]:
    """The effects of opting out (after the records are stored): suppress, cancel, re-evaluate."""
    kinds = (config or ConsentConfig()).kinds(channel)
    suppressed = suppress_contacts(conn, contact_ids, kinds, reason=f"opt-out:{channel}", now=now)
    cancelled = cancel_entries(conn, contact_ids, channel, endpoints=endpoints, reason=reason, now=now)
    report = None
    if evaluate is not None and contact_ids:
        report = evaluate(conn, now=now, run_id=None, contact_ids=sorted(contact_ids))
    return suppressed, cancelled, report


def _shown(current: InForce | None) -> tuple[str | None, datetime | None]:
    return (None, None) if current is None else (current.status, current.recorded_at)


def _counts(report: EvaluationReport | None) -> tuple[int, int]:
    if report is None:
        return 0, 0
    return sum(s.left for s in report.segments), sum(s.entered for s in report.segments)


def opt_out(
    conn: Connection,
    *,
    contact_id: int,
    channel: str,
    source: str,
    proof: dict[str, Any],
    now: datetime,
    evaluate: Evaluate | None,
    endpoints: Collection[str] = (),
    config: ConsentConfig | None = None,
) -> ConsentResult:
    """Record an opt-out of `channel` and act on it at once (see the module docstring)."""
    channel = (config or ConsentConfig()).channel(channel)
    item = ConsentItem(contact_id, channel, "opted_out", source, now, proof)
    recorded = bool(record_many(conn, [item], now=now))
    suppressed, cancelled, report = unsubscribe(
        conn, [contact_id], channel, now=now, evaluate=evaluate, endpoints=endpoints, config=config
    )
    left, entered = _counts(report)
    current = in_force(conn, contact_id, channel)
    return ConsentResult(
        contact_id, channel, "opted_out", recorded, suppressed, cancelled, left, entered, *_shown(current)
    )


def opt_in(
    conn: Connection,
    *,
    contact_id: int,
    channel: str,
    source: str,
    proof: dict[str, Any],
    now: datetime,
    evaluate: Evaluate | None,
    config: ConsentConfig | None = None,
) -> ConsentResult:
    """Record an opt-in of `channel`, lift the contact's opt-out suppressions for it, re-evaluate."""
    consent = config or ConsentConfig()
    channel = consent.channel(channel)
    item = ConsentItem(contact_id, channel, "opted_in", source, now, proof)
    recorded = bool(record_many(conn, [item], now=now))
    current = in_force(conn, contact_id, channel)
    ci = contact_identities.c
    hashes = [
        identity_hash(value)
        for value in conn.execute(
            select(ci.value).where(ci.contact_id == contact_id, ci.kind.in_(consent.kinds(channel)))
        ).scalars()
    ]
    # A newer opt-out stays in force, and so does the suppression that goes with it.
    if hashes and current is not None and current.status == "opted_in":
        # Only an opt-out's entry is lifted: bounces and erasures stay listed.
        conn.execute(
            delete(suppressions).where(
                suppressions.c.value_hash.in_(hashes), suppressions.c.reason == f"opt-out:{channel}"
            )
        )
    # What the opt-in could not lift: a bounce, an erasure, another channel's opt-out of a shared kind.
    listed = conn.execute(
        select(suppressions.c.reason).where(suppressions.c.value_hash.in_(hashes)).distinct()
    ).scalars()
    report = evaluate(conn, now=now, run_id=None, contact_ids=[contact_id]) if evaluate else None
    left, entered = _counts(report)
    shown = _shown(current)
    still = tuple(sorted(listed))
    return ConsentResult(contact_id, channel, "opted_in", recorded, 0, 0, left, entered, *shown, still)
