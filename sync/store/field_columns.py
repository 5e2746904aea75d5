"""Custom field values as typed columns of `contact_fields`: one nullable column per field.

`contact_fields` has one row per contact that holds any value. Its fixed columns are in `tables.py`;
each field adds a column named by its id and storage kind (`f12_num`), so renaming a field never
touches DDL and a widening that changes the storage kind (integer -> string) is a new column.
The choice and its measurements are in docs/decisions.md, "Field value storage".

Statements reach the field columns through `fields_table`, a lightweight table clause holding just
the columns a statement needs, because the set of columns is only known at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Boolean, Connection, Float, Text, column, table, text
from sqlalchemy.sql.expression import ColumnClause, TableClause
from sqlalchemy.types import TypeEngine

from field_mapping.types import STORAGE, Column, FieldType
from sync.exceptions import TooManyFieldsError
from sync.store.tables import contact_fields
from sync.store.types import Id, UtcDateTime

__all__ = [
    "MAX_FIELD_COLUMNS",
    "add_column",
    "column_name",
    "drop_column",
    "field_columns",
    "fields_table",
    "stamp",
    "value_column",
]

TABLE = contact_fields.name

# Below SQLite's compiled-in 2,000 columns and PostgreSQL's 1,600 (which counts dropped ones too).
MAX_FIELD_COLUMNS = 1_400

_SQL_TYPES: dict[Column, TypeEngine[Any]] = {
    Column.TEXT: Text(),
    Column.NUM: Float(),
    Column.TIME: UtcDateTime(),
    Column.BOOL: Boolean(),
}
_KIND = {Column.TEXT: "text", Column.NUM: "num", Column.TIME: "time", Column.BOOL: "bool"}
_BY_KIND = {kind: storage for storage, kind in _KIND.items()}

# PostgreSQL: ADD COLUMN waits for an ACCESS EXCLUSIVE lock; give up rather than queue every reader.
_LOCK_TIMEOUT = "5s"


def stamp(at: datetime) -> str:
    """A record time as kept in `sources`: UTC ISO text with microseconds, so text order is time order."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def column_name(field_id: int, ftype: FieldType) -> str:
    """The column holding field `field_id`'s values while it has type `ftype`."""
    return f"f{int(field_id)}_{_KIND[STORAGE[ftype]]}"


def value_column(name: str) -> ColumnClause[Any]:
    """A new column clause for the field column `name`, typed by its name (`f12_num` is a float)."""
    return column(name, _SQL_TYPES[_BY_KIND[name.rpartition("_")[2]]])


@lru_cache(maxsize=4096)
def _table(names: tuple[str, ...]) -> TableClause:
    return table(TABLE, column("contact_id", Id), *(value_column(name) for name in names))


def fields_table(names: Iterable[str] = ()) -> TableClause:
    """`contact_fields` with its key and the named field columns, typed by their names.

    The same names give the same object, so statements built on it are cached like any table's.
    """
    return _table(tuple(names))


def field_columns(conn: Connection) -> set[str]:
    """The names of the field columns the table has now."""
    if conn.dialect.name == "sqlite":
        names = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({TABLE})")}
    else:
        names = set(
            conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = :t AND table_schema = current_schema()"
                ),
                {"t": TABLE},
            ).scalars()
        )
    return {n for n in names if n != "contact_id"}


def add_column(conn: Connection, field_id: int, ftype: FieldType) -> str:
    """Add field `field_id`'s column for `ftype` if it is missing; returns its name."""
    name = column_name(field_id, ftype)
    existing = field_columns(conn)
    if name in existing:
        return name
    if len(existing) >= MAX_FIELD_COLUMNS:
        raise TooManyFieldsError(
            f"contact_fields: {len(existing)} field columns, the most crmhub keeps; "
            "add exclude patterns under [field_mapping.auto.<source>] to stop creating automatic fields"
        )
    sql_type = _SQL_TYPES[STORAGE[ftype]].compile(dialect=conn.dialect)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
    # Nullable, no default: metadata only on both backends, whatever the table's size.
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN {name} {sql_type}")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
    return name


def drop_column(conn: Connection, name: str) -> None:
    """Drop a field column (after a widening moved its values)."""
    if name in field_columns(conn):
        conn.exec_driver_sql(f"ALTER TABLE {TABLE} DROP COLUMN {name}")
