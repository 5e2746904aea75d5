"""The suppression list: sha256 hashes of normalized e-mails and phones that must never be messaged again."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from sync.identity import identities_of
from sync.store.tables import suppressions
from sync.store.upsert import write_rows

__all__ = ["identity_hash", "suppress_contacts", "suppress_values", "suppressed_identities"]

_ROW = ("kind", "value_hash", "reason", "created_at")


def identity_hash(value: str) -> str:
    """The hash stored for a normalized identity value (as kept in `contact_identities.value`)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def suppress_values(conn: Connection, pairs: Iterable[tuple[str, str]], *, reason: str, now: datetime) -> int:
    """Add (kind, normalized value) pairs to the list; ones already listed keep their first reason."""
    rows = sorted({(kind, identity_hash(value), reason[:64], now) for kind, value in pairs})
    if not rows:
        return 0
    write_rows(conn, suppressions, _ROW, rows, keys=("kind", "value_hash"))
    return len(rows)


def suppress_contacts(
    conn: Connection, contact_ids: Collection[int], kinds: Collection[str], *, reason: str, now: datetime
) -> int:
    """Add the contacts' identities of `kinds` (e-mail, phone) to the list."""
    if not contact_ids or not kinds:
        return 0
    pairs = [(kind, value) for _, kind, value, _ in identities_of(conn, contact_ids, kinds)]
    return suppress_values(conn, pairs, reason=reason, now=now)


def suppressed_identities(conn: Connection, contact_ids: Collection[int]) -> dict[int, set[str]]:
    """Per contact, the kinds of its e-mail and phone identities that are on the list."""
    if not contact_ids:
        return {}
    by_hash: dict[tuple[str, str], list[int]] = {}
    for contact_id, kind, value, _ in identities_of(conn, contact_ids, ("email", "phone")):
        by_hash.setdefault((kind, identity_hash(value)), []).append(int(contact_id))
    if not by_hash:
        return {}
    listed = conn.execute(
        select(suppressions.c.kind, suppressions.c.value_hash).where(
            suppressions.c.value_hash.in_(sorted({h for _, h in by_hash}))
        )
    ).tuples()
    found: dict[int, set[str]] = {}
    for kind, digest in listed:
        for contact_id in by_hash.get((kind, digest), ()):
            found.setdefault(contact_id, set()).add(kind)
    return found
