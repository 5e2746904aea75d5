"""Small read queries for the commands: segment overview, members, a contact's history, contact lookup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, ScalarSelect, Select, func, select

from sync.store.tables import contact_identities, memberships, segments, transitions

__all__ = [
    "HistoryRow",
    "MemberRow",
    "SegmentRow",
    "history",
    "member_page",
    "members",
    "overview",
]


@dataclass(frozen=True)
class SegmentRow:
    """One stored segment with its member count and latest transition."""

    key: str
    name: str
    members: int
    last_change: datetime | None
    last_evaluated_at: datetime | None
    rule_version: str


@dataclass(frozen=True)
class MemberRow:
    """One member of a segment."""

    contact_id: int
    email: str | None
    entered_at: datetime
    variant: str | None


@dataclass(frozen=True)
class HistoryRow:
    """One transition of a contact."""

    contact_seq: int
    occurred_at: datetime
    segment: str
    kind: str
    reason: str
    variant: str | None
    rule_version: str


def overview(conn: Connection) -> list[SegmentRow]:
    """Every stored segment, by key."""
    counts = (
        select(memberships.c.segment_id, func.count().label("n"))
        .group_by(memberships.c.segment_id)
        .subquery()
    )
    latest = (
        select(transitions.c.segment_id, func.max(transitions.c.occurred_at).label("at"))
        .group_by(transitions.c.segment_id)
        .subquery()
    )
    query = (
        select(segments, func.coalesce(counts.c.n, 0).label("n"), latest.c.at)
        .outerjoin(counts, counts.c.segment_id == segments.c.id)
        .outerjoin(latest, latest.c.segment_id == segments.c.id)
        .order_by(segments.c.key)
    )
    return [
        SegmentRow(r.key, r.name, r.n, r.at, r.last_evaluated_at, r.rule_version) for r in conn.execute(query)
    ]


def _email(contact_id: ColumnElement[Any]) -> ScalarSelect[Any]:
    return (
        select(func.min(contact_identities.c.value))
        .where(contact_identities.c.contact_id == contact_id, contact_identities.c.kind == "email")
        .scalar_subquery()
    )


def _members(conn: Connection, key: str, query: Select[Any]) -> list[MemberRow] | None:
    segment_id = conn.execute(select(segments.c.id).where(segments.c.key == key)).scalar()
    if segment_id is None:
        return None
    m = memberships.c
    query = query.add_columns(m.contact_id, _email(m.contact_id).label("email"), m.entered_at, m.variant)
    rows = conn.execute(query.where(m.segment_id == segment_id))
    return [MemberRow(r.contact_id, r.email, r.entered_at, r.variant) for r in rows]


def members(conn: Connection, key: str, *, limit: int | None = None) -> list[MemberRow] | None:
    """The members of segment `key` in the order they entered; None if no such segment is stored."""
    m = memberships.c
    return _members(conn, key, select().order_by(m.entered_at, m.contact_id).limit(limit))


def member_page(
    conn: Connection, key: str, *, limit: int, after: int | None = None
) -> list[MemberRow] | None:
    """Up to `limit` members of `key` by contact id, after contact `after`; None if no such segment."""
    m = memberships.c
    query = select().order_by(m.contact_id).limit(limit)
    if after is not None:
        query = query.where(m.contact_id > after)
    return _members(conn, key, query)


def history(conn: Connection, contact_id: int) -> list[HistoryRow]:
    """Every transition of the contact, oldest first."""
    t = transitions.c
    query = (
        select(t.contact_seq, t.occurred_at, segments.c.key, t.kind, t.reason, t.variant, t.rule_version)
        .join(segments, segments.c.id == t.segment_id)
        .where(t.contact_id == contact_id)
        .order_by(t.contact_seq, t.id)
    )
    return [HistoryRow(*row) for row in conn.execute(query)]


def moved(conn: Connection, *, after_id: int = 0, run_id: int | None = None) -> dict[str, tuple[int, int]]:
    """Per segment key, how many entered and left: transitions after `after_id`, of `run_id` if given.

    Read from the store, so a run's every evaluation counts: an opt-out in a page re-evaluates its
    contacts at once, and a segment's first evaluation may happen there, mid-sync.
    """
    t = transitions.c
    query = (
        select(segments.c.key, t.kind, func.count())
        .select_from(transitions.join(segments, segments.c.id == t.segment_id))
        .where(t.id > after_id)
        .group_by(segments.c.key, t.kind)
    )
    if run_id is not None:
        query = query.where(t.run_id == run_id)
    counts: dict[str, tuple[int, int]] = {}
    for key, kind, n in conn.execute(query):
        entered, left = counts.get(key, (0, 0))
        counts[key] = (entered + int(n), left) if kind == "entered" else (entered, left + int(n))
    return counts


def last_transition_id(conn: Connection) -> int:
    """The newest transition's id (0 for none): a mark for `moved`."""
    return int(conn.execute(select(func.max(transitions.c.id))).scalar() or 0)
