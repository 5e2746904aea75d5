"""Field definitions and values in the store: definitions only grow, values are typed columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, String, cast, insert, select, update

from field_mapping.model import FieldDefinition, Origin
from field_mapping.types import STORAGE, Column, FieldType
from sync.store.tables import field_definitions, field_values
from sync.store.upsert import excluded, upsert

_VALUE_COLUMNS = [c.value for c in Column]


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


def save_values(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert typed values; a stored value newer than the incoming one is kept ("latest wins")."""
    if not rows:
        return
    new = excluded(conn, field_values)
    upsert(
        conn,
        field_values,
        rows,
        keys=["contact_id", "field_id"],
        update=[*_VALUE_COLUMNS, "source", "updated_at"],
        where=new.updated_at >= field_values.c.updated_at,
    )
