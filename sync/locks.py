"""Named leases in the `locks` table, so scheduled runs never overlap, on one host or many.

A lease has a holder and an expiry. Taking it succeeds when nobody holds it, when the last holder's lease
has expired (a crashed process lets go by itself), or when the caller already holds it (a renewal).
Everything goes through the database, so the rule holds across processes and, on PostgreSQL, hosts.
"""

from __future__ import annotations

import sqlite3
import zlib
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from sync.store.tables import locks

__all__ = [
    "acquire",
    "holder_of",
    "lapsed_holder",
    "lock_wait_failed",
    "release",
    "renew",
    "serialize_evaluation",
    "take_over",
    "take_turns",
]


def acquire(conn: Connection, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name` for `holder` until `now + ttl`; False when someone else holds it."""
    expires = now + ttl
    taken = conn.execute(
        update(locks)
        .where(locks.c.name == name, or_(locks.c.holder == holder, locks.c.expires_at <= now))
        .values(holder=holder, acquired_at=now, expires_at=expires)
    ).rowcount
    if taken:
        return True
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING, not rowcount: psycopg reports no row count for an INSERT that may do nothing.
    inserted = conn.execute(
        dialect.insert(locks)
        .values(name=name, holder=holder, acquired_at=now, expires_at=expires)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(locks.c.name)
    ).first()
    return inserted is not None


def renew(conn: Connection, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Extend `holder`'s lease `name` until `now + ttl`; False when `holder` no longer has it."""
    # Unlike `acquire`, never takes the lease afresh: a lease that lapsed and was taken (and maybe
    # released) by another run meanwhile means that run did this one's work, and this one must stop.
    return bool(
        conn.execute(
            update(locks).where(locks.c.name == name, locks.c.holder == holder).values(expires_at=now + ttl)
        ).rowcount
    )


def lapsed_holder(conn: Connection, name: str, *, now: datetime) -> str | None:
    """Who held `name` last, when that lease has run out; None when it is held or free.

    On PostgreSQL the row stays locked until the transaction ends, so of two runs about to take the
    lapsed lease the second sees it taken, not lapsed.
    """
    return conn.execute(
        select(locks.c.holder).where(locks.c.name == name, locks.c.expires_at <= now).with_for_update()
    ).scalar_one_or_none()


def take_over(conn: Connection, name: str, old: str, new: str, *, now: datetime, ttl: timedelta) -> bool:
    """Move the lease from `old` (known to be dead) to `new`; False when `old` no longer holds it."""
    return bool(
        conn.execute(
            update(locks)
            .where(locks.c.name == name, locks.c.holder == old)
            .values(holder=new, acquired_at=now, expires_at=now + ttl)
        ).rowcount
    )


def release(conn: Connection, name: str, holder: str) -> None:
    """Give the lease back, if `holder` still has it."""
    conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == holder))


def holder_of(conn: Connection, name: str, *, now: datetime) -> str | None:
    """Who holds `name` now, or None."""
    return conn.execute(
        select(locks.c.holder).where(locks.c.name == name, locks.c.expires_at > now)
    ).scalar_one_or_none()


def take_turns(conn: Connection, name: str) -> None:
    """Make transactions that take turns at `name` run one after another, until this one ends.

    On SQLite the write lock every writing transaction takes already does this. On PostgreSQL two
    transactions could read the same old state and both act on it, so they queue on a
    transaction-scoped advisory lock instead; `name` picks which one (any fixed number would do).
    """
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"crmhub:{name}".encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def serialize_evaluation(conn: Connection) -> None:
    """Make concurrent segment evaluations take turns: two must not write the same transition."""
    take_turns(conn, "segment-evaluation")


# PostgreSQL's lock_not_available: lock_timeout ran out (psycopg is not imported for one constant).
_PG_LOCK_NOT_AVAILABLE = "55P03"


def lock_wait_failed(exc: BaseException) -> bool:
    """Whether `exc` is the store giving up on a lock: SQLite busy or locked, PostgreSQL lock_timeout."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(cause, sqlite3.Error):
        # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
        code = getattr(cause, "sqlite_errorcode", 0)
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return getattr(cause, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE
