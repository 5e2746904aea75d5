"""Field definitions and values in the store: definitions only grow, values are typed columns."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, String, cast, insert, select, update

from field_mapping.model import FieldDefinition, Origin
from field_mapping.types import STORAGE, Column, FieldType, to_columns
from sync.store.tables import field_definitions, field_values
from sync.store.upsert import Row, write_rows

_VALUE_COLUMNS = tuple(c.value for c in Column)
# The columns of a row given to `save_values`, in order.
VALUE_ROW = ("contact_id", "field_id", *_VALUE_COLUMNS, "source", "updated_at")

# Contacts whose stored values are read per statement.
_READ_CHUNK = 500

# (contact id, field id, typed value, source, record time) -> a `VALUE_ROW` tuple.
ValueRow = Callable[[int, int, Any, str, datetime], Row]


def _row_builder(ftype: FieldType) -> ValueRow:
    """The row builder of one field type: a tuple with the value in the type's column."""
    column = STORAGE[ftype]
    if column is Column.TEXT:
        return lambda c, f, v, s, at: (c, f, v, None, None, None, s, at)
    if column is Column.NUM:
        return lambda c, f, v, s, at: (c, f, None, v, None, None, s, at)
    if column is Column.BOOL:
        return lambda c, f, v, s, at: (c, f, None, None, None, v, s, at)
    if ftype is FieldType.DATETIME:
        return lambda c, f, v, s, at: (c, f, None, None, v, None, s, at)
    # Dates need converting to the stored midnight; to_columns is the one place that knows how.
    return lambda c, f, v, s, at: (c, f, *to_columns(ftype, v), s, at)


# Builders for non-null values, by type; a null value is `null_row`.
VALUE_ROWS: dict[FieldType, ValueRow] = {ftype: _row_builder(ftype) for ftype in FieldType}


def null_row(contact_id: int, field_id: int, source: str, at: datetime) -> Row:
    """The row of a field the record holds no value for (the stored value is cleared)."""
    return (contact_id, field_id, None, None, None, None, source, at)


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


def save_definitions(
    conn: Connection, definitions: Iterable[FieldDefinition], now: datetime
) -> dict[str, int]:
    """Create new fields and widen changed ones; returns every field's id by name."""
    fd = field_definitions.c
    stored = {row.name: row for row in conn.execute(select(fd.id, fd.name, fd.type, fd.options))}
    for definition in definitions:
        options = list(definition.options) or None
        row = stored.get(definition.name)
        if row is None:
            conn.execute(
                insert(field_definitions).values(
                    name=definition.name,
                    type=definition.type.value,
                    label=definition.label,
                    origin=definition.origin.kind,
                    source=definition.origin.source or None,
                    path=f"{definition.origin.stream}:{definition.origin.path}"
                    if definition.origin.stream
                    else None,
                    options=options,
                    first_seen_at=now,
                    updated_at=now,
                )
            )
            continue
        if row.type != definition.type.value:
            _move_values(conn, row.id, FieldType(row.type), definition.type)
        if row.type != definition.type.value or (options and options != row.options):
            conn.execute(
                update(field_definitions)
                .where(fd.id == row.id)
                .values(type=definition.type.value, options=options, updated_at=now)
            )
    return {name: int(fid) for fid, name in conn.execute(select(fd.id, fd.name))}


def _move_values(conn: Connection, field_id: int, old: FieldType, new: FieldType) -> None:
    """After a widening, move stored values into the new type's column, as text where it changed."""
    source, target = STORAGE[old], STORAGE[new]
    if source is target:
        return
    fv = field_values.c
    value: ColumnElement[Any] = fv[source.value]
    if old is FieldType.INTEGER:
        value = cast(value, BigInteger)  # the number column is a float: 1 must become "1", not "1.0"
    conn.execute(
        update(field_values)
        .where(fv.field_id == field_id)
        .values({target.value: cast(value, String), source.value: None})
    )


def save_values(conn: Connection, rows: Sequence[Row], *, fresh: Collection[int] = frozenset()) -> None:
    """Upsert typed values (`VALUE_ROW` tuples); a stored value newer than the incoming one is kept.

    Rows that would change nothing are not written: the values of contacts in `fresh` (created in
    this transaction) are all new; the others' stored values are read and compared first.
    """
    known = {row[0] for row in rows}.difference(fresh)
    if known:
        rows = _changes(conn, rows, known)
    write_rows(
        conn,
        field_values,
        VALUE_ROW,
        rows,
        keys=("contact_id", "field_id"),
        update=(*_VALUE_COLUMNS, "source", "updated_at"),
        newer="updated_at",
    )


def _changes(conn: Connection, rows: Sequence[Row], contact_ids: set[int]) -> list[Row]:
    """The rows the upsert would change: rewriting a row with its own values still costs every index."""
    fv = field_values.c
    held: dict[tuple[int, int], Row] = {}
    ids = sorted(contact_ids)
    for start in range(0, len(ids), _READ_CHUNK):
        stored = conn.execute(
            select(fv.contact_id, fv.field_id, *(fv[name] for name in VALUE_ROW[2:])).where(
                fv.contact_id.in_(ids[start : start + _READ_CHUNK])
            )
        )
        held.update(((row[0], row[1]), tuple(row[2:])) for row in stored)
    changed = []
    # In row order, as the upsert runs: a later row of the same field is compared with what the
    # earlier one left, and a row older than what is held is refused by the upsert anyway.
    for row in rows:
        if row[0] not in contact_ids:
            changed.append(row)
            continue
        key = (row[0], row[1])
        value = _comparable(row)
        current = held.get(key)
        if current is not None and (current == value or current[-1] > value[-1]):
            continue
        held[key] = value
        changed.append(row)
    return changed


def _comparable(row: Row) -> Row:
    """A row's value columns as the store gives them back (numbers are stored as floats)."""
    _, _, text, number, time, flag, source, updated_at = row
    return (text, None if number is None else float(number), time, flag, source, updated_at)
