"""INSERT ... ON CONFLICT for the two backends, written once.

On SQLite, bulk statements are compiled once and their rows bound with each column's own bind
processor, then handed to the driver's executemany: SQLAlchemy's per-row parameter machinery cost
2.7x the driver's own time on page-sized batches (measured; see BENCHMARKS.md). The SQL is the one
SQLAlchemy compiles; only the parameter plumbing is shorter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

_Compiled = tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]
_COMPILED: dict[tuple[object, ...], _Compiled] = {}


def _insert(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _execute_many(
    conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]], cache_key: tuple[object, ...]
) -> None:
    if conn.dialect.name != "sqlite":
        conn.execute(stmt, list(rows))
        return
    columns = tuple(rows[0])
    key = (*cache_key, columns)
    compiled = _COMPILED.get(key)
    if compiled is None:
        done = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        names = list(done.positiontup or ())
        binds = [(name, done.binds[name].type._cached_bind_processor(conn.dialect)) for name in names]
        compiled = _COMPILED[key] = (str(done), binds)
    sql, binds = compiled
    params = [tuple(proc(row[name]) if proc else row[name] for name, proc in binds) for row in rows]
    conn.exec_driver_sql(sql, params)


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert `rows`, skipping those whose `keys` already exist."""
    if rows:
        stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
        _execute_many(conn, stmt, rows, ("ignore", table.name, tuple(keys)))


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str],
    where: ColumnElement[bool] | None = None,
) -> None:
    """Insert `rows`; where `keys` exist, overwrite `update` columns (only when `where` holds)."""
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: stmt.excluded[name] for name in update},
        where=where,
    )
    where_key = None if where is None else str(where.compile(dialect=conn.dialect))
    _execute_many(conn, stmt, rows, ("upsert", table.name, tuple(keys), tuple(update), where_key))


def excluded(conn: Connection, table: Table) -> Any:
    """The `excluded` pseudo-table, for `where` clauses that compare new and stored rows."""
    return _insert(conn, table).excluded
