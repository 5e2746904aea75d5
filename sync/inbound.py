"""Idempotency of pushed events: each provider event id is claimed once, in the transaction storing it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from sync.exceptions import SyncError
from sync.store.tables import inbound_events

__all__ = ["AlreadyReceivedError", "claim_events", "seen_events"]


class AlreadyReceivedError(SyncError):
    """Every event id of a delivery was stored before: the delivery is a duplicate."""

    def __init__(self, source: str, event_ids: Collection[str]) -> None:
        self.source = source
        self.event_ids = sorted(event_ids)
        super().__init__(f"{source}: events {', '.join(self.event_ids)[:200]} were already received")


def seen_events(conn: Connection, source: str, event_ids: Collection[str]) -> set[str]:
    """The ids of `event_ids` already claimed for `source` (a read, to skip work before claiming)."""
    if not event_ids:
        return set()
    c = inbound_events.c
    query = select(c.event_id).where(c.source == source, c.event_id.in_(sorted(set(event_ids))))
    return set(conn.execute(query).scalars())


def claim_events(conn: Connection, source: str, event_ids: Collection[str], *, now: datetime) -> set[str]:
    """Claim `event_ids` in the caller's transaction; the newly claimed ones, or AlreadyReceivedError.

    The claim commits or rolls back with the data it guards, so a crash cannot leave an event marked
    as received without it being stored. Two concurrent claims of one id: the second waits for the
    first to commit (the primary key) and then finds it taken.
    """
    wanted = sorted(set(event_ids))
    if not wanted:
        return set()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(inbound_events)
        .values([{"source": source, "event_id": e, "received_at": now} for e in wanted])
        .on_conflict_do_nothing()
        .returning(inbound_events.c.event_id)
    )
    claimed = set(conn.execute(statement).scalars())
    if not claimed:
        raise AlreadyReceivedError(source, wanted)
    return claimed
