"""Identity resolution: one contact per person, found by e-mail, phone and external ids, set-based per batch.

Each item of a batch brings its normalized, valid identity hints (`{"email": ..., "stripe_customer":
...}`; field_mapping normalizes them). Items that share a hint, directly or through a stored
identity, are one person: a connected group with no stored contact gets a new one, a group touching
one contact joins it, and a group touching several merges them into the oldest, with a merge log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from sync.store.tables import (
    consent_records,
    contact_identities,
    contacts,
    events,
    field_values,
    memberships,
    merge_log,
    records,
    transitions,
)
from sync.store.upsert import insert_ignore

Key = tuple[str, str]


class _Groups:
    """Union-find over hint keys and contact ids."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, node: object) -> object:
        parent = self.parent.setdefault(node, node)
        if parent != node:
            parent = self.parent[node] = self.find(parent)
        return parent

    def union(self, a: object, b: object) -> None:
        self.parent[self.find(a)] = self.find(b)


def _stored(conn: Connection, keys: Iterable[Key]) -> dict[Key, int]:
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value in keys:
        by_kind[kind].append(value)
    found: dict[Key, int] = {}
    ci = contact_identities.c
    for kind, values in by_kind.items():
        for start in range(0, len(values), 500):
            rows = conn.execute(
                select(ci.value, ci.contact_id).where(
                    ci.kind == kind, ci.value.in_(values[start : start + 500])
                )
            )
            found.update({(kind, value): contact_id for value, contact_id in rows})
    return found


def resolve(
    conn: Connection, hint_sets: Sequence[Mapping[str, str]], *, source: str, now: datetime
) -> list[int | None]:
    """The contact id of each normalized hint set (None for an empty one), creating and merging as needed."""
    keys = {(kind, value) for hints in hint_sets for kind, value in hints.items()}
    if not keys:
        return [None] * len(hint_sets)
    stored = _stored(conn, keys)
    groups = _Groups()
    for hints in hint_sets:
        items = [("key", *item) for item in hints.items()]
        for item in items[1:]:
            groups.union(items[0], item)
    for key, contact_id in stored.items():
        groups.union(("key", *key), ("contact", contact_id))

    members: dict[object, set[int]] = defaultdict(set)
    for key, contact_id in stored.items():
        members[groups.find(("key", *key))].add(contact_id)
    chosen: dict[object, int] = {}
    fresh: list[object] = []
    for root in sorted({groups.find(("key", *key)) for key in keys}, key=str):
        found = sorted(members.get(root, ()))
        if not found:
            fresh.append(root)
            continue
        chosen[root] = found[0]
        if len(found) > 1:
            merge(conn, keep=found[0], others=found[1:], reason="shared identity", now=now)
    chosen.update(zip(fresh, _new_contacts(conn, len(fresh), now), strict=True))

    new_identities = [
        {
            "contact_id": chosen[groups.find(("key", kind, value))],
            "kind": kind,
            "value": value,
            "valid": True,
            "source": source,
            "first_seen_at": now,
        }
        for kind, value in sorted(keys - stored.keys())
    ]
    insert_ignore(conn, contact_identities, new_identities, keys=["kind", "value"])
    result: list[int | None] = []
    for hints in hint_sets:
        first = next(iter(hints.items()), None)
        result.append(None if first is None else chosen[groups.find(("key", *first))])
    touched = {cid for cid in result if cid is not None}
    if touched:
        conn.execute(
            update(contacts).where(contacts.c.id.in_(touched)).values(updated_at=now, changed_at=now)
        )
    return result


def _new_contacts(conn: Connection, count: int, now: datetime) -> list[int]:
    """Create `count` contacts in one statement; ids come back in insertion order."""
    if count == 0:
        return []
    row = {"state": "active", "created_at": now, "updated_at": now, "changed_at": now, "transition_seq": 0}
    stmt = insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True)
    return [int(cid) for cid in conn.execute(stmt, [row] * count).scalars()]


def merge(conn: Connection, *, keep: int, others: Sequence[int], reason: str, now: datetime) -> None:
    """Fold `others` into `keep`: identities, values, events, records, consent, history; log it."""
    ci = contact_identities.c
    for other in others:
        moved = [
            {"kind": kind, "value": value}
            for kind, value in conn.execute(select(ci.kind, ci.value).where(ci.contact_id == other))
        ]
        conn.execute(
            insert(merge_log).values(
                kept_contact_id=keep, merged_contact_id=other, reason=reason, identities=moved, merged_at=now
            )
        )
        conn.execute(update(contact_identities).where(ci.contact_id == other).values(contact_id=keep))
        # The kept contact's values win; fields only the merged contact had move over.
        kept_fields = select(field_values.c.field_id).where(field_values.c.contact_id == keep)
        conn.execute(
            update(field_values)
            .where(field_values.c.contact_id == other, field_values.c.field_id.not_in(kept_fields))
            .values(contact_id=keep)
        )
        for table in (events, records, consent_records, transitions):
            conn.execute(update(table).where(table.c.contact_id == other).values(contact_id=keep))
        # Memberships are recomputed for the kept contact on the next evaluation.
        conn.execute(delete(memberships).where(memberships.c.contact_id == other))
        conn.execute(delete(field_values).where(field_values.c.contact_id == other))
        conn.execute(update(contacts).where(contacts.c.merged_into_id == other).values(merged_into_id=keep))
        conn.execute(delete(contacts).where(contacts.c.id == other))
    conn.execute(update(contacts).where(contacts.c.id == keep).values(updated_at=now, changed_at=now))
