"""One contact as an operator reads it: typed field values, identities, memberships, history, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, literal, select, tuple_

from sync.fields import load_fields, read_values
from sync.segments.queries import HistoryRow, history
from sync.store.tables import contact_identities, contacts, events, memberships, segments

__all__ = [
    "ContactEvent",
    "ContactView",
    "IdentityRow",
    "MembershipRow",
    "contact_events",
    "contact_view",
]


@dataclass(frozen=True, slots=True)
class IdentityRow:
    """One normalized identity of a contact."""

    kind: str
    value: str
    valid: bool
    source: str
    first_seen_at: datetime


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """A segment the contact is in now."""

    segment: str
    name: str
    entered_at: datetime
    variant: str | None


@dataclass(frozen=True, slots=True)
class ContactView:
    """A contact's state, times, typed field values, identities, segments now and transitions so far."""

    id: int
    state: str
    merged_into_id: int | None
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime | None
    fields: dict[str, Any]
    identities: list[IdentityRow]
    memberships: list[MembershipRow]
    history: list[HistoryRow]


@dataclass(frozen=True, slots=True)
class ContactEvent:
    """One event of a contact."""

    id: int
    name: str
    occurred_at: datetime
    source: str
    properties: dict[str, Any]


def contact_view(conn: Connection, contact_id: int) -> ContactView | None:
    """The contact with its fields (typed by their definitions) and the rest; None if there is none."""
    c = contacts.c
    row = conn.execute(select(contacts).where(c.id == contact_id)).mappings().first()
    if row is None:
        return None
    ci = contact_identities.c
    held = read_values(conn, [contact_id], load_fields(conn)).get(contact_id, {})
    fields = {name: held[name] for name in sorted(held)}
    identities = [
        IdentityRow(*r)
        for r in conn.execute(
            select(ci.kind, ci.value, ci.valid, ci.source, ci.first_seen_at)
            .where(ci.contact_id == contact_id)
            .order_by(ci.kind, ci.id)
        )
    ]
    return ContactView(
        row["id"],
        row["state"],
        row["merged_into_id"],
        row["created_at"],
        row["updated_at"],
        row["last_activity_at"],
        fields,
        identities,
        _memberships(conn, contact_id),
        history(conn, contact_id),
    )


def contact_events(
    conn: Connection, contact_id: int, *, limit: int, before: int | None = None
) -> list[ContactEvent]:
    """Up to `limit` events, latest first (by time, then id), older than event `before` when given."""
    e = events.c
    query = select(e.id, e.name, e.occurred_at, e.source, e.properties).where(e.contact_id == contact_id)
    if before is not None:
        # Keyset paging on (occurred_at, id): stable while events arrive out of order.
        at = select(e.occurred_at).where(e.id == before).scalar_subquery()
        query = query.where(tuple_(e.occurred_at, e.id) < tuple_(at, literal(before)))
    query = query.order_by(e.occurred_at.desc(), e.id.desc()).limit(limit)
    return [ContactEvent(i, n, at, s, dict(p or {})) for i, n, at, s, p in conn.execute(query)]


def _memberships(conn: Connection, contact_id: int) -> list[MembershipRow]:
    m, s = memberships.c, segments.c
    query = (
        select(s.key, s.name, m.entered_at, m.variant)
        .join(segments, s.id == m.segment_id)
        .where(m.contact_id == contact_id)
        .order_by(s.key)
    )
    return [MembershipRow(*r) for r in conn.execute(query)]
