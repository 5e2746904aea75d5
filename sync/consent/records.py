"""Consent records: one row per statement of consent, history kept, the latest per channel is in force."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_, update
from sqlalchemy.sql.elements import ColumnElement

from sync.consent.flags import set_flag
from sync.store.tables import consent_records, contacts

__all__ = [
    "STATUSES",
    "ConsentItem",
    "InForce",
    "in_force",
    "in_force_order",
    "latest_statuses",
    "record_consent",
    "record_many",
]

STATUSES = ("opted_in", "opted_out", "unknown")


@dataclass(frozen=True)
class ConsentItem:
    """One statement of consent to store: who, which channel, what, from where, with what proof, when."""

    contact_id: int
    channel: str
    status: str
    source: str
    recorded_at: datetime
    proof: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InForce:
    """The record in force for one contact and channel: its status and when it was given."""

    status: str
    recorded_at: datetime


def in_force_order(columns: Any) -> tuple[ColumnElement[Any], ...]:
    """ORDER BY terms (ascending) after which a contact's last record of a channel is the one in force.

    The latest record is in force; of records at the same time, the one whose status sorts last
    (`unknown`, `opted_out`, then `opted_in`), so an opt-out is never undone by an opt-in stamped
    the same moment, whichever arrived last; then the last stored. The index (contact_id, channel,
    recorded_at, status) serves this order without a sort.
    """
    return (columns.recorded_at, columns.status, columns.id)


def in_force(conn: Connection, contact_id: int, channel: str) -> InForce | None:
    """The contact's record in force for `channel` (see `in_force_order`), if any."""
    cr = consent_records.c
    row = conn.execute(
        select(cr.status, cr.recorded_at)
        .where(cr.contact_id == contact_id, cr.channel == channel)
        .order_by(*(term.desc() for term in in_force_order(cr)))
        .limit(1)
    ).first()
    return None if row is None else InForce(row.status, row.recorded_at)


def latest_statuses(
    conn: Connection, contact_ids: Collection[int], channels: Collection[str] | None = None
) -> dict[tuple[int, str], str]:
    """The status in force per (contact, channel) (see `in_force_order`)."""
    if not contact_ids:
        return {}
    cr = consent_records.c
    stmt = select(cr.contact_id, cr.channel, cr.status).where(cr.contact_id.in_(sorted(contact_ids)))
    if channels is not None:
        stmt = stmt.where(cr.channel.in_(sorted(channels)))
    latest: dict[tuple[int, str], str] = {}
    for contact_id, channel, status in conn.execute(stmt.order_by(*in_force_order(cr))):
        latest[(int(contact_id), channel)] = status
    return latest


def record_many(conn: Connection, items: Sequence[ConsentItem], *, now: datetime) -> list[ConsentItem]:
    """Store the items not stored before (same contact, channel, status, source and time); return those."""
    if not items:
        return []
    cr = consent_records.c
    keys = {(i.contact_id, i.channel, i.status, i.source, i.recorded_at) for i in items}
    stored = set(
        conn.execute(
            select(cr.contact_id, cr.channel, cr.status, cr.source, cr.recorded_at).where(
                tuple_(cr.contact_id, cr.channel).in_(sorted({(k[0], k[1]) for k in keys}))
            )
        ).tuples()
    )
    fresh: list[ConsentItem] = []
    for item in items:
        key = (item.contact_id, item.channel, item.status, item.source, item.recorded_at)
        if key in stored:
            continue
        stored.add(key)
        fresh.append(item)
    if not fresh:
        return []
    conn.execute(
        insert(consent_records),
        [
            {
                "contact_id": i.contact_id,
                "channel": i.channel,
                "status": i.status,
                "source": i.source[:32],
                "proof": i.proof,
                "recorded_at": i.recorded_at,
            }
            for i in fresh
        ],
    )
    touched = sorted({i.contact_id for i in fresh})
    # Consent changes must bump changed_at so incremental segment evaluation sees them.
    conn.execute(update(contacts).where(contacts.c.id.in_(touched)).values(changed_at=now))
    confirmed: dict[int, datetime] = {}
    for i in fresh:
        if i.status == "opted_in":
            confirmed[i.contact_id] = max(i.recorded_at, confirmed.get(i.contact_id, i.recorded_at))
    set_flag(conn, confirmed, "consent_confirmed_at", now=now, latest=True)
    return fresh


def record_consent(conn: Connection, item: ConsentItem, *, now: datetime) -> bool:
    """Store one consent statement; False when the same statement was already stored."""
    if item.status not in STATUSES:
        raise ValueError(f"consent status: expected one of {', '.join(STATUSES)}, found {item.status!r}")
    return bool(record_many(conn, [item], now=now))
