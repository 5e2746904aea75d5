"""Idempotency of pushed events: each provider event id is claimed once, in the transaction storing it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from sync.exceptions import SyncError
from sync.store.tables import inbound_events

__all__ = ["RETENTION", "AlreadyReceivedError", "claim_events", "prune_claims", "seen_events"]

# How long a claimed id is kept: past every provider's retries (Stripe's 3 days, HubSpot's and
# Typeform's hours) and a month of dashboard resends. A resend after that is stored again, which
# the data's own keys make harmless: records keep the newest state, events their (source, id, name).
RETENTION = timedelta(days=30)
# At most this many claims go per call (one sync), so a first prune of years of claims does not hold
# the write lock for long; a sync a day clears far more than a busy store gathers.
PRUNE_LIMIT = 50_000


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


def prune_claims(conn: Connection, *, now: datetime) -> int:
    """Forget up to PRUNE_LIMIT claims older than RETENTION; how many went."""
    c = inbound_events.c
    old = (
        select(c.source, c.event_id)
        .where(c.received_at < now - RETENTION)
        .order_by(c.received_at)
        .limit(PRUNE_LIMIT)
    )
    gone = conn.execute(delete(inbound_events).where(tuple_(c.source, c.event_id).in_(old))).rowcount
    return max(gone or 0, 0)
