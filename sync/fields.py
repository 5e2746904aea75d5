"""Field definitions and values in the store: definitions only grow, each field is a typed column.

Values live in `contact_fields`, one row per contact and one column per field
(`sync.store.field_columns`). `field_sources` says, per contact and field id, which source wrote the
value and the time of the record it came from: a value from an older record never replaces a newer one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    Connection,
    Select,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)

from field_mapping.config import Wins
from field_mapping.model import FieldDefinition, Origin
from field_mapping.types import STORAGE, Column, Columns, FieldType, from_columns
from sync.field_moves import move_values, stored_text
from sync.store.field_columns import add_column, column_name, fields_table, stamp
from sync.store.tables import contact_fields, field_definitions, field_sources
from sync.store.upsert import Row, write_rows

# Contacts whose stored values are read per statement.
_READ_CHUNK = 500


class StoredField(NamedTuple):
    """A field as the store keeps it: its id, its current type and the column holding its values."""

    id: int
    type: FieldType
    column: str

    @classmethod
    def of(cls, field_id: int, ftype: str | FieldType) -> StoredField:
        """The stored field of a definition row's id and type."""
        ftype = FieldType(ftype)
        return cls(int(field_id), ftype, column_name(field_id, ftype))


# (contact id, field, value as `stored_value` gives it or None, source, record time)
FieldValue = tuple[int, StoredField, Any, str, datetime]


def stored_value(ftype: FieldType, value: Any) -> Any:
    """A typed value as its column holds it: dates as midnight UTC, everything else as it is."""
    if value is not None and ftype is FieldType.DATE:
        return datetime.combine(value, time(), tzinfo=UTC)
    return value


def can_hold(field: StoredField, ftype: FieldType) -> bool:
    """Whether `field`'s column holds values typed `ftype`: the same storage kind, or text."""
    column = STORAGE[field.type]
    return column is Column.TEXT or STORAGE[ftype] is column


def column_value(field: StoredField, ftype: FieldType, value: Any) -> Any:
    """A value typed `ftype` as `field`'s column holds it, when `can_hold` says it can."""
    if value is None:
        return None
    if STORAGE[ftype] is not STORAGE[field.type]:
        return stored_text(ftype, value)  # typed before its field widened to text in the same page
    return stored_value(ftype, value)


def load_definitions(conn: Connection) -> list[FieldDefinition]:
    """Every stored field definition, for seeding the mapper so a second sync creates nothing."""
    fd = field_definitions.c
    rows = conn.execute(select(fd.name, fd.type, fd.label, fd.origin, fd.source, fd.path, fd.options))
    definitions = []
    for row in rows:
        stream, _, path = (row.path or "").partition(":")
        origin = Origin("rule" if row.origin == "rule" else "auto", row.source or "", stream, path)
        definitions.append(
            FieldDefinition(
                row.name, FieldType(row.type), row.label, origin, options=tuple(row.options or ())
            )
        )
    return definitions


def load_fields(conn: Connection) -> dict[str, StoredField]:
    """Every field the store knows, by name, with its column."""
    fd = field_definitions.c
    return {
        name: StoredField.of(fid, ftype)
        for fid, name, ftype in conn.execute(select(fd.id, fd.name, fd.type))
        if ftype in FieldType._value2member_map_
    }


def save_definitions(
    conn: Connection,
    definitions: Iterable[FieldDefinition],
    now: datetime,
    *,
    warnings: list[str] | None = None,
) -> dict[str, StoredField]:
    """Create new fields (definition and column) and retype changed ones; returns every field by name.

    A retype converts the stored values; one for each field whose values did not all fit is added to
    `warnings`.
    """
    fd = field_definitions.c
    stored = {row.name: row for row in conn.execute(select(fd.id, fd.name, fd.type, fd.options))}
    for definition in definitions:
        options = list(definition.options) or None
        row = stored.get(definition.name)
        if row is None:
            create_field(
                conn,
                definition.name,
                definition.type,
                now=now,
                label=definition.label,
                origin=definition.origin.kind,
                source=definition.origin.source or None,
                path=f"{definition.origin.stream}:{definition.origin.path}"
                if definition.origin.stream
                else None,
                options=options,
            )
            continue
        if row.type != definition.type.value:
            moved = move_values(conn, row.id, FieldType(row.type), definition.type)
            if moved.cleared and warnings is not None:
                warnings.append(moved.report(definition.name, FieldType(row.type), definition.type))
        if row.type != definition.type.value or (options and options != row.options):
            conn.execute(
                update(field_definitions)
                .where(fd.id == row.id)
                .values(type=definition.type.value, options=options, updated_at=now)
            )
    return load_fields(conn)


def create_field(
    conn: Connection,
    name: str,
    ftype: FieldType,
    *,
    now: datetime,
    label: str,
    origin: str,
    source: str | None,
    path: str | None = None,
    options: list[Any] | None = None,
) -> StoredField:
    """Define a new field and add its column, in the caller's transaction."""
    stmt = (
        insert(field_definitions)
        .values(
            name=name,
            type=ftype.value,
            label=label,
            origin=origin,
            source=source,
            path=path,
            options=options,
            first_seen_at=now,
            updated_at=now,
        )
        .returning(field_definitions.c.id)
    )
    field_id = int(conn.execute(stmt).scalar_one())
    return StoredField(field_id, ftype, add_column(conn, field_id, ftype))


def save_values(
    conn: Connection,
    values: Sequence[FieldValue],
    *,
    fresh: Collection[int] = frozenset(),
    wins: Mapping[int, Wins] | None = None,
) -> None:
    """Write field values; a stored value from a newer record than the incoming one is kept.

    `wins` (field id -> a mapping rule's `wins`) changes that for its fields: "first" keeps the
    value of the oldest record, a list of sources the value of the source listed first (among one
    source's, the newest); sources not listed come after those listed. Contacts in `fresh` (created
    in this transaction) hold nothing yet: their rows are inserted whole. The others' stored rows
    are read first, and only the values that change are written.
    """
    policies = {f.column: wins[f.id] for _, f, _, _, _ in values if f.id in wins} if wins else {}
    latest = _latest(values, policies)
    fields = {f.column: f for _, f, _, _, _ in values}
    keys = {column: str(f.id) for column, f in fields.items()}
    held = _read_rows(conn, [c for c in latest if c not in fresh], fields.values())
    every = tuple(sorted(fields))
    # One statement per set of columns written; fresh contacts share the batch's whole set.
    shapes: dict[tuple[str, ...], list[Row]] = {}
    provenance: list[Row] = []
    for contact_id, wanted in latest.items():
        if contact_id in fresh:
            sources = {keys[c]: [src, when] for c, (_, src, when) in wanted.items()}
            shapes.setdefault(every, []).append(
                (contact_id, *(wanted[c][0] if c in wanted else None for c in every))
            )
            provenance.append((contact_id, sources))
            continue
        stored, sources = held.get(contact_id, ({}, {}))
        changed = _changed(wanted, stored, sources, keys, policies)
        if changed:
            names = tuple(sorted(changed))
            shapes.setdefault(names, []).append((contact_id, *(changed[c] for c in names)))
            provenance.append((contact_id, sources))
    for names, rows in shapes.items():
        _write_values(conn, names, rows)
    _write_sources(conn, provenance)


def _write_values(conn: Connection, names: tuple[str, ...], rows: Sequence[Row]) -> None:
    """Upsert (contact id, *values) rows into the named columns."""
    write_rows(
        conn,
        fields_table(names),  # type: ignore[arg-type]
        ("contact_id", *names),
        rows,
        keys=("contact_id",),
        update=names,
    )


def _write_sources(conn: Connection, rows: Sequence[Row]) -> None:
    """Upsert (contact id, provenance) rows."""
    write_rows(
        conn, field_sources, ("contact_id", "sources"), rows, keys=("contact_id",), update=("sources",)
    )


# Per contact and column: (value, source, record time as `stamp` text).
_Wanted = dict[int, dict[str, tuple[Any, str, str]]]


def _latest(values: Sequence[FieldValue], policies: Mapping[str, Wins]) -> _Wanted:
    """Per contact and column, the value that wins: the latest record's (on equal times, the later row)."""
    latest: _Wanted = {}
    stamps: dict[datetime, str] = {}  # a record's values share its time: format it once
    for contact_id, field, value, source, at in values:
        when = stamps.get(at)
        if when is None:
            when = stamps[at] = stamp(at)
        wanted = latest.setdefault(contact_id, {})
        before = wanted.get(field.column)
        policy = policies.get(field.column) if policies else None
        if before is None or (
            when >= before[2] if policy is None else beats(policy, source, when, before[1], before[2])
        ):
            wanted[field.column] = (value, source, when)
    return latest


def beats(policy: Wins, source: str, when: str, held_source: str, held_when: str) -> bool:
    """Whether a value from `source` at `when` replaces one from `held_source` at `held_when`."""
    if policy == "latest":
        return when >= held_when
    if policy == "first":
        return when < held_when
    rank: dict[str, int] = {name: i for i, name in enumerate(policy)}
    mine, theirs = rank.get(source, len(policy)), rank.get(held_source, len(policy))
    return mine < theirs or (mine == theirs and when >= held_when)


def _changed(
    wanted: Mapping[str, tuple[Any, str, str]],
    stored: Mapping[str, Any],
    sources: dict[str, list[str]],
    keys: Mapping[str, str],
    policies: Mapping[str, Wins],
) -> dict[str, Any]:
    """The columns whose value or provenance changes; updates `sources` to match."""
    changed: dict[str, Any] = {}
    for column, (value, source, when) in wanted.items():
        key = keys[column]
        before = sources.get(key)
        if before is not None:
            policy = policies.get(column) if policies else None
            if before[1] > when if policy is None else not beats(policy, source, when, before[0], before[1]):
                continue  # the stored value came from a newer record, or one its rule prefers
        if before == [source, when] and _same(stored.get(column), value):
            continue
        sources[key] = [source, when]
        changed[column] = value
    return changed


def _same(stored: Any, value: Any) -> bool:
    """Whether a stored value equals an incoming one (numbers come back as floats)."""
    if stored is None or value is None:
        return stored is value
    if isinstance(stored, float) and not isinstance(value, bool):
        return stored == float(value)
    return bool(stored == value)


def _read_rows(
    conn: Connection, contact_ids: Sequence[int], fields: Iterable[StoredField]
) -> dict[int, tuple[dict[str, Any], dict[str, list[str]]]]:
    """Stored values of `fields` and the provenance of the contacts that have a row."""
    names = tuple(sorted({f.column for f in fields}))
    query = _held_query(names, lock=conn.dialect.name == "postgresql")
    held: dict[int, tuple[dict[str, Any], dict[str, list[str]]]] = {}
    ids = sorted(contact_ids)
    for start in range(0, len(ids), _READ_CHUNK):
        for contact_id, sources, *stored in conn.execute(query, {"ids": ids[start : start + _READ_CHUNK]}):
            held[contact_id] = (
                dict(zip(names, stored, strict=True)),
                orjson.loads(sources) if sources else {},
            )
    return held


# Built once per set of columns: building and keying a fresh select cost as much as running it.
@lru_cache(maxsize=1024)
def _held_query(names: tuple[str, ...], *, lock: bool) -> Select[Any]:
    """The read of `_read_rows` for the columns `names`, ids bound as `ids`."""
    table, fs = fields_table(names), field_sources
    # Provenance as text, decoded by orjson: the stdlib's decoding was a sixth of a first sync's
    # store thread (a map of every field per contact, read for each page that touches it). It holds
    # only strings crmhub wrote, none of the integers orjson would read differently.
    query = (
        select(table.c.contact_id, cast(fs.c.sources, Text), *(table.c[n] for n in names))
        .select_from(table.outerjoin(fs, fs.c.contact_id == table.c.contact_id))
        .where(table.c.contact_id.in_(bindparam("ids", expanding=True)))
    )
    if lock:
        # Nobody changes a row between this read and our write; every writer of provenance
        # writes values too, so locking the value rows is enough.
        query = query.with_for_update(of=table)
    return query


def read_values(
    conn: Connection, contact_ids: Collection[int], fields: Mapping[str, StoredField]
) -> dict[int, dict[str, Any]]:
    """The typed values (`from_columns`) of `fields` held by each contact, by field name; nulls left out."""
    names = sorted({f.column for f in fields.values()})
    table = fields_table(names)
    by_column = {f.column: (name, f.type) for name, f in fields.items()}
    found: dict[int, dict[str, Any]] = {}
    ids = sorted(contact_ids)
    for start in range(0, len(ids), _READ_CHUNK):
        query = select(table.c.contact_id, *(table.c[n] for n in names)).where(
            table.c.contact_id.in_(ids[start : start + _READ_CHUNK])
        )
        for contact_id, *stored in conn.execute(query):
            values = found.setdefault(contact_id, {})
            for column, raw in zip(names, stored, strict=True):
                if raw is not None:
                    name, ftype = by_column[column]
                    values[name] = from_columns(ftype, Columns(**{STORAGE[ftype].value: raw}))
    return found


def merge_values(
    conn: Connection,
    *,
    keep: int,
    other: int,
    wins: Mapping[str, Wins] | None = None,
    fields: Mapping[str, StoredField] | None = None,
) -> None:
    """Give `keep` the value of each field a sync would have kept of the two; drop `other`'s row.

    `fields` is `load_fields(conn)` when the caller has it already.
    """
    # As `save_values` decides: by the field's `wins` (by field name here, as mapping rules name
    # fields; the rest keep the latest record's), the provenance moving with the value.
    fields = load_fields(conn) if fields is None else fields
    held = _read_rows(conn, [keep, other], fields.values())
    if other in held:
        theirs, their_sources = held[other]
        mine, my_sources = held.get(keep, ({}, {}))
        policies = {fields[name].column: policy for name, policy in (wins or {}).items() if name in fields}
        keys = {f.column: str(f.id) for f in fields.values()}
        taken = {
            column: value
            for column, value in theirs.items()
            if value is not None
            and _takes_theirs(
                policies.get(column, "latest"),
                mine.get(column),
                my_sources.get(keys[column]),
                their_sources.get(keys[column]),
            )
        }
        for column in taken:
            key = keys[column]
            if key in their_sources:
                my_sources[key] = their_sources[key]
            else:
                my_sources.pop(key, None)  # the kept contact's provenance was of its own (empty) value
        if taken:
            names = tuple(sorted(taken))
            _write_values(conn, names, [(keep, *(taken[c] for c in names))])
            _write_sources(conn, [(keep, my_sources)])
    for table in (contact_fields, field_sources):
        conn.execute(delete(table).where(table.c.contact_id == other))


def _takes_theirs(policy: Wins, held: Any, mine: list[str] | None, theirs: list[str] | None) -> bool:
    """Whether a merge replaces the kept value `held` (provenance `mine`) with the merged contact's."""
    if held is None:
        return True
    if mine is None or theirs is None:
        return False  # nothing says which record is newer: keep what the kept contact shows
    # Only a strictly preferred value: `beats` lets an equal one replace a stored value (the later
    # row of a sync), but a merge has no later side, so on a tie the kept value stays.
    return beats(policy, theirs[0], theirs[1], mine[0], mine[1]) and not beats(
        policy, mine[0], mine[1], theirs[0], theirs[1]
    )


def clear_values(conn: Connection, field: StoredField, contact_ids: Collection[int]) -> None:
    """Remove one field's value and its provenance from the contacts (a cleared flag)."""
    table, fs = fields_table([field.column]), field_sources
    key = str(field.id)
    if conn.dialect.name == "postgresql":
        sources: Any = fs.c.sources.op("-")(literal(key, Text))
    else:
        sources = func.json_remove(fs.c.sources, literal(f'$."{key}"', Text))
    ids = sorted(contact_ids)
    for start in range(0, len(ids), _READ_CHUNK):
        chunk = ids[start : start + _READ_CHUNK]
        conn.execute(update(table).where(table.c.contact_id.in_(chunk)).values({field.column: None}))
        conn.execute(update(fs).where(fs.c.contact_id.in_(chunk)).values(sources=sources))
