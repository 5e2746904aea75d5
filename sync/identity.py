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
from types import MappingProxyType
from typing import NamedTuple

from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    Select,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.sql.expression import Executable

from field_mapping.config import Wins
from sync.fields import StoredField, clear_values, load_fields, merge_values
from sync.store.probe import probe_unique
from sync.store.tables import (
    cancellable,
    consent_records,
    contact_identities,
    contacts,
    deliveries,
    erasure_log,
    events,
    memberships,
    merge_log,
    outbox,
    records,
    transitions,
)
from sync.store.types import Id, UtcDateTime
from sync.store.upsert import write_rows

Key = tuple[str, str]

# Values per identity lookup; a shorter list is padded by repeating its last value, so one compiled
# statement serves every lookup (a literal IN list is expanded and named value by value each time).
_LOOKUP_SLOTS = 100
_IDENTITY_ROW = ("contact_id", "kind", "value", "valid", "source", "first_seen_at")
_CONTACT_ROW = ("id", "state", "created_at", "updated_at", "changed_at", "transition_seq")


def _find(parent: list[int], item: int) -> int:
    while parent[item] != item:
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


def _union(parent: list[int], a: int, b: int) -> None:
    # The smaller item becomes the root, so a group's root is its first item.
    root_a, root_b = _find(parent, a), _find(parent, b)
    if root_a != root_b:
        parent[max(root_a, root_b)] = min(root_a, root_b)


def _lookup_statement() -> Select[tuple[str, int]]:
    ci = contact_identities.c
    slots: list[BindParameter[str]] = [bindparam(f"v{slot}") for slot in range(_LOOKUP_SLOTS)]
    return select(ci.value, ci.contact_id).where(ci.kind == bindparam("kind"), ci.value.in_(slots))


_LOOKUP = _lookup_statement()
# PostgreSQL's: a probe per value, whatever its plan (sync.store.probe).
_ARRAY_LOOKUP = probe_unique(
    contact_identities.c.kind, contact_identities.c.value, contact_identities.c.contact_id
)

# By contact id only: with `kind IN (...)` beside it SQLite picks the (kind, value) index and reads
# every e-mail or phone in the store (3.6 ms per page of 100 contacts at 20,000, growing with it).
_OF_CONTACTS = (
    select(
        contact_identities.c.contact_id,
        contact_identities.c.kind,
        contact_identities.c.value,
        contact_identities.c.valid,
    )
    .where(contact_identities.c.contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(contact_identities.c.first_seen_at, contact_identities.c.id)
)


# Per page, built once: building and keying these statements cost about as much as running them.
_TOUCH = (
    update(contacts)
    .where(contacts.c.id.in_(bindparam("ids", expanding=True)))
    .values(updated_at=bindparam("now"), changed_at=bindparam("now"))
)
_LAST_TAKEN = select(
    select(func.max(contacts.c.id)).scalar_subquery(),
    select(func.max(merge_log.c.merged_contact_id)).scalar_subquery(),
    select(func.max(erasure_log.c.contact_id)).scalar_subquery(),
)


def identities_of(
    conn: Connection, contact_ids: Iterable[int], kinds: Iterable[str]
) -> list[tuple[int, str, str, bool]]:
    """The contacts' identities of `kinds` as (contact, kind, value, valid), oldest first."""
    wanted = set(kinds)
    rows = conn.execute(_OF_CONTACTS, {"ids": sorted(contact_ids)})
    return [(int(c), kind, value, bool(valid)) for c, kind, value, valid in rows if kind in wanted]


def _stored(conn: Connection, keys: Iterable[Key]) -> dict[Key, int]:
    """The contact of each stored key: one indexed lookup per kind and chunk of values."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value in keys:
        by_kind[kind].append(value)
    found: dict[Key, int] = {}
    if conn.dialect.name == "postgresql":
        for kind, values in by_kind.items():
            rows = conn.execute(_ARRAY_LOOKUP, {"kind": kind, "values": values})
            found.update(((kind, value), contact_id) for value, contact_id in rows)
        return found
    for kind, values in by_kind.items():
        for start in range(0, len(values), _LOOKUP_SLOTS):
            chunk = values[start : start + _LOOKUP_SLOTS]
            chunk += chunk[-1:] * (_LOOKUP_SLOTS - len(chunk))
            params: dict[str, str] = {f"v{slot}": value for slot, value in enumerate(chunk)}
            params["kind"] = kind
            found.update(((kind, value), contact_id) for value, contact_id in conn.execute(_LOOKUP, params))
    return found


class Resolution(NamedTuple):
    """Each item's contact (None for an item with no hints), the new contacts and their identities."""

    contact_ids: list[int | None]
    created: frozenset[int]
    # (contact, kind, value) of every identity the new contacts were created with.
    created_identities: tuple[tuple[int, str, str], ...] = ()
    # Each contact others were merged into -> its consent in force before (channel -> status): the
    # merged contacts' records may have changed it (sync.consent.apply_page_consent acts on that).
    merged: Mapping[int, Mapping[str, str]] = MappingProxyType({})


def resolve(
    conn: Connection,
    hint_sets: Sequence[Mapping[str, str]],
    *,
    source: str,
    now: datetime,
    wins: Mapping[str, Wins] | None = None,
) -> list[int | None]:
    """The contact id of each normalized hint set (None for an empty one), creating and merging as needed."""
    return resolve_batch(conn, hint_sets, source=source, now=now, wins=wins).contact_ids


def resolve_batch(
    conn: Connection,
    hint_sets: Sequence[Mapping[str, str]],
    *,
    source: str,
    now: datetime,
    wins: Mapping[str, Wins] | None = None,
) -> Resolution:
    """As `resolve`, also saying which contacts it created (they have no stored values yet)."""
    # Union-find over the items: items sharing a key, or holding keys of one stored contact, are one person.
    parent = list(range(len(hint_sets)))
    owner: dict[Key, int] = {}  # each key -> the first item holding it
    for item, hints in enumerate(hint_sets):
        for key in hints.items():
            first = owner.setdefault(key, item)
            if first != item:
                _union(parent, item, first)
    if not owner:
        return Resolution([None] * len(hint_sets), frozenset())
    stored = _stored(conn, owner)
    holder: dict[int, int] = {}  # each stored contact -> an item holding one of its keys
    for key, contact_id in stored.items():
        item = owner[key]
        first = holder.setdefault(contact_id, item)
        if first != item:
            _union(parent, item, first)
    found: dict[int, set[int]] = defaultdict(set)
    for contact_id, item in holder.items():
        found[_find(parent, item)].add(contact_id)

    chosen: dict[int, int] = {}
    merged: dict[int, Mapping[str, str]] = {}
    fresh: list[int] = []
    for item, hints in enumerate(hint_sets):
        if not hints or _find(parent, item) != item:
            continue  # no person, or not the first item of its group
        contact_ids = sorted(found.get(item, ()))
        if not contact_ids:
            fresh.append(item)
            continue
        chosen[item] = contact_ids[0]
        if len(contact_ids) > 1:
            keep, others = contact_ids[0], contact_ids[1:]
            merged[keep] = merge(conn, keep=keep, others=others, reason="shared identity", now=now, wins=wins)
    created = _new_contacts(conn, len(fresh), now)
    chosen.update(zip(fresh, created, strict=True))

    result: list[int | None] = [
        chosen[_find(parent, item)] if hints else None for item, hints in enumerate(hint_sets)
    ]
    new_identities = [
        (result[item], kind, value, True, source, now)
        for (kind, value), item in owner.items()
        if (kind, value) not in stored
    ]
    write_rows(conn, contact_identities, _IDENTITY_ROW, new_identities, keys=("kind", "value"))
    # Contacts created above already carry `now`.
    new = frozenset(created)
    touched = set(chosen.values()).difference(new)
    if touched:
        conn.execute(_TOUCH, {"ids": sorted(touched), "now": now})
    # A new contact's identities are all new rows: its group held no stored key.
    theirs = tuple(
        (cid, kind, value) for cid, kind, value, *_ in new_identities if cid is not None and cid in new
    )
    return Resolution(result, new, theirs, merged)


def _merge_statements() -> dict[str, Executable]:
    """A merge's statements, for any pair: `keep` and `other` (and `now`, `reason`) bound at run time."""
    keep, other = bindparam("keep", type_=Id), bindparam("other", type_=Id)
    now = bindparam("now", type_=UtcDateTime())
    ci, m, t, d = contact_identities.c, memberships.c, transitions.c, deliveries.c
    held = select(m.segment_id).where(m.contact_id == keep)
    both = select(m.segment_id).where(m.contact_id == other, m.segment_id.in_(held))
    # The merged contact's entries of segments both contacts are in: announced once already.
    repeated = select(t.id).where(t.contact_id == other, t.kind == "entered", t.segment_id.in_(both))
    moved = {
        f"move_{table.name}": update(table).where(table.c.contact_id == other).values(contact_id=keep)
        for table in (contact_identities, events, records, consent_records)
    }
    theirs = contacts.alias("merged")
    their_activity = select(theirs.c.last_activity_at).where(theirs.c.id == other).scalar_subquery()
    their_state = select(theirs.c.state).where(theirs.c.id == other).scalar_subquery()
    mine = contacts.c.last_activity_at
    return moved | {
        # The person was last active when either contact was, and is active if either one is.
        "activity": update(contacts)
        .where(contacts.c.id == keep)
        .values(
            last_activity_at=case(
                (mine.is_(None), their_activity), (their_activity > mine, their_activity), else_=mine
            ),
            state=case((their_state == "active", "active"), else_=contacts.c.state),
        )
        .returning(contacts.c.state),
        # The merged contact's history is numbered after the kept one's: a consumer that drops a lower
        # sequence than it has applied must not drop what comes next (an unsubscribe's `left`).
        "sequences": select(contacts.c.id, contacts.c.transition_seq).where(contacts.c.id.in_((keep, other))),
        "move_transitions": update(transitions)
        .where(t.contact_id == other)
        .values(contact_id=keep, contact_seq=t.contact_seq + bindparam("offset", type_=Integer())),
        "count_on": update(contacts)
        .where(contacts.c.id == keep)
        .values(transition_seq=bindparam("seq", type_=Integer())),
        # Contacts merged into the merged one now answer to the kept one (the foreign key would
        # delete their rows with it, and with them the numbers that must never be given out again).
        "repoint_log": update(merge_log)
        .where(merge_log.c.kept_contact_id == other)
        .values(kept_contact_id=keep),
        "both": both,
        "identities": select(ci.kind, ci.value).where(ci.contact_id == other),
        "log": insert(merge_log).values(
            kept_contact_id=keep,
            merged_contact_id=other,
            reason=bindparam("reason"),
            identities=bindparam("identities"),
            merged_at=bindparam("now"),
        ),
        "unsent": select(outbox.c.transition_id).where(
            outbox.c.transition_id.in_(repeated), outbox.c.dispatched_at.is_(None)
        ),
        "drop_unsent": delete(transitions).where(t.id.in_(bindparam("dropped", expanding=True))),
        "cancel": update(deliveries)
        .where(d.transition_id.in_(repeated), cancellable(now))
        .values(status="cancelled", reason=bindparam("why"), next_attempt_at=None, updated_at=now),
        "carry_memberships": update(memberships)
        .where(m.contact_id == other, m.segment_id.not_in(held))
        .values(contact_id=keep),
        "drop_memberships": delete(memberships).where(m.contact_id == other),
        "repoint": update(contacts).where(contacts.c.merged_into_id == other).values(merged_into_id=keep),
        "delete": delete(contacts).where(contacts.c.id == other),
        "touch": update(contacts)
        .where(contacts.c.id == keep)
        .values(updated_at=bindparam("now"), changed_at=bindparam("now")),
    }


# Built once: building these per merge cost more than running them (17 statements a merge).
_MERGE = _merge_statements()


def _carry_memberships(conn: Connection, *, keep: int, other: int, now: datetime) -> None:
    """Hand the merged contact's memberships to the kept one, and stop its repeated `entered`.

    The person stays in a segment only the merged contact was in: the next evaluation of the kept
    contact keeps them there or sends a `left`, instead of a second `segment.entered`. Where both
    were members, the person was announced once already and would otherwise be messaged twice: the
    merged contact's entries not yet fanned out are dropped (never announced, they leave no trace),
    and open deliveries of those already fanned out are cancelled.
    """
    pair = {"keep": keep, "other": other}
    # Before the memberships move: `unsent` and `cancel` find the segments both contacts are in.
    # Rare, so asked first: SQLite walks every undispatched outbox row for `unsent`.
    if conn.execute(_MERGE["both"], pair).first() is not None:
        dropped = list(conn.execute(_MERGE["unsent"], pair).scalars())
        if dropped:
            conn.execute(_MERGE["drop_unsent"], {"dropped": dropped})  # its outbox row goes too
        why = f"contact {other} was merged into contact {keep}, already in the segment"
        conn.execute(_MERGE["cancel"], pair | {"why": why, "now": now})
    conn.execute(_MERGE["carry_memberships"], pair)
    conn.execute(_MERGE["drop_memberships"], pair)


def _merge_activity(conn: Connection, *, keep: int, other: int, dormant: StoredField | None) -> None:
    """Give `keep` the later activity of the two and, if either was active, the active state."""
    state = conn.execute(_MERGE["activity"], {"keep": keep, "other": other}).scalar_one()
    if state == "active" and dormant is not None:
        # The hygiene flag follows the state (sync.hygiene): one moved from a dormant half goes.
        clear_values(conn, dormant, [keep])


def _move_transitions(conn: Connection, *, keep: int, other: int) -> None:
    """Give the merged contact's transitions to the kept one, numbered after the kept one's own."""
    seq = {int(cid): int(n) for cid, n in conn.execute(_MERGE["sequences"], {"keep": keep, "other": other})}
    conn.execute(_MERGE["move_transitions"], {"keep": keep, "other": other, "offset": seq[keep]})
    conn.execute(_MERGE["count_on"], {"keep": keep, "seq": seq[keep] + seq[other]})


def _new_contacts(conn: Connection, count: int, now: datetime) -> list[int]:
    """Create `count` contacts; their ids, in creation order."""
    if count == 0:
        return []
    if conn.dialect.name != "sqlite":
        row = {
            "state": "active",
            "created_at": now,
            "updated_at": now,
            "changed_at": now,
            "transition_seq": 0,
        }
        stmt = insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True)
        return [int(cid) for cid in conn.execute(stmt, [row] * count).scalars()]
    # SQLite gives a new row the largest id plus one; naming those ids saves a statement per
    # contact. Safe: SQLite has one writer at a time, a transaction whose snapshot is older than
    # another's commit is refused its first write (SQLITE_BUSY_SNAPSHOT), and a taken id fails the
    # primary key: a race ends in an error that rolls the page back, never in a shared contact.
    # Numbers of merged and erased contacts count as taken: senders' feedback names them, and a
    # new person must never answer to one.
    last = max(number or 0 for number in conn.execute(_LAST_TAKEN).one())
    ids = list(range(last + 1, last + 1 + count))
    write_rows(conn, contacts, _CONTACT_ROW, [(cid, "active", now, now, now, 0) for cid in ids])
    return ids


def merge(
    conn: Connection,
    *,
    keep: int,
    others: Sequence[int],
    reason: str,
    now: datetime,
    wins: Mapping[str, Wins] | None = None,
) -> dict[str, str]:
    """Fold `others` into `keep`: identities, values, events, records, consent, history; log it.

    Returns `keep`'s consent in force before (channel -> status). The merged contacts' records may
    change it; the caller acts on a channel that turned `opted_out` as on an opt-out (a sync page
    does, in sync.consent.apply_page_consent).
    """
    # Here, not at the top: sync.consent imports this module (identities_of).
    from sync.consent.records import latest_statuses

    before = {channel: status for (_, channel), status in latest_statuses(conn, [keep]).items()}
    fields = load_fields(conn)
    for other in others:
        pair = {"keep": keep, "other": other}
        moved = [{"kind": kind, "value": value} for kind, value in conn.execute(_MERGE["identities"], pair)]
        conn.execute(_MERGE["log"], pair | {"reason": reason, "identities": moved, "now": now})
        conn.execute(_MERGE["move_contact_identities"], pair)
        # Each field keeps the value a sync would have kept had both been one contact from the start.
        merge_values(conn, keep=keep, other=other, wins=wins, fields=fields)
        _merge_activity(conn, keep=keep, other=other, dormant=fields.get("dormant"))
        _carry_memberships(conn, keep=keep, other=other, now=now)
        for table in ("events", "records", "consent_records"):
            conn.execute(_MERGE[f"move_{table}"], pair)
        _move_transitions(conn, keep=keep, other=other)
        conn.execute(_MERGE["repoint_log"], pair)
        conn.execute(_MERGE["repoint"], pair)
        conn.execute(_MERGE["delete"], pair)
    conn.execute(_MERGE["touch"], {"keep": keep, "now": now})
    return before
