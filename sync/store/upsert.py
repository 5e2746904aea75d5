"""INSERT ... ON CONFLICT for the two backends, written once, and bulk statements bound cheaply.

Bulk statements are built and compiled once per shape and kept. On SQLite their rows are bound
column by column, with each column's own bind processor and only where the column has one, then
handed to the driver's executemany: SQLAlchemy's per-row parameter machinery cost 2.7x the driver's
own time on page-sized batches (measured; see BENCHMARKS.md). The SQL is the one SQLAlchemy
compiles; only the parameter plumbing is shorter. PostgreSQL runs the same statement objects through
SQLAlchemy with one dict per row.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Boolean, ColumnElement, Connection, Table, case, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import UpdateBase

from sync.store.types import UtcDateTime

__all__ = ["Row", "excluded", "execute_rows", "insert_ignore", "upsert", "write_rows"]

Row = tuple[Any, ...]
# Types whose values repeat within a batch (a page's `now`, each record's time, flags): their
# processor runs once per distinct value.
_REPEATING = (UtcDateTime, Boolean)


class _Prepared(NamedTuple):
    statement: UpdateBase
    sql: str
    # (index in the caller's row, the column's bind processor, whether its values repeat)
    processors: tuple[tuple[int, Callable[[Any], Any], bool], ...]
    # Puts a caller's row in the statement's bind order; None when that is the caller's order.
    order: Callable[[Row], Row] | None


_PREPARED: dict[tuple[Hashable, ...], _Prepared] = {}


def execute_rows(
    conn: Connection,
    key: Hashable,
    build: Callable[[], UpdateBase],
    names: tuple[str, ...],
    rows: Sequence[Row],
) -> None:
    """Run the statement `build()` makes (kept under `key`) once per row; rows are tuples in `names` order."""
    if not rows:
        return
    prepared = _PREPARED.get((conn.dialect.name, key, names)) or _prepare(conn, key, build, names)
    if conn.dialect.name != "sqlite":
        conn.execute(prepared.statement, [dict(zip(names, row, strict=True)) for row in rows])
        return
    conn.exec_driver_sql(prepared.sql, _bind(rows, prepared))


def write_rows(
    conn: Connection,
    table: Table,
    names: tuple[str, ...],
    rows: Sequence[Row],
    *,
    keys: tuple[str, ...] = (),
    update: tuple[str, ...] = (),
    newer: str | None = None,
    fill: tuple[str, ...] = (),
) -> None:
    """Insert `rows` (tuples in `names` order); on a `keys` conflict skip, or set `update` unless older."""
    # `newer` names the column that decides "older": the stored values are kept when the incoming
    # row's is lower (latest wins); without it, `update` columns are always overwritten. `fill`
    # columns take any incoming value that is not null, older or not (a link, not the data).
    if not rows:
        return
    key = ("write", table, keys, update, newer, fill)
    execute_rows(conn, key, lambda: _write_statement(conn, table, keys, update, newer, fill), names, rows)


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert `rows`, skipping those whose `keys` already exist."""
    if rows:
        names = tuple(rows[0])
        write_rows(conn, table, names, _tuples(rows, names), keys=tuple(keys))


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
    if where is None:
        names = tuple(rows[0])
        write_rows(conn, table, names, _tuples(rows, names), keys=tuple(keys), update=tuple(update))
        return

    def build() -> UpdateBase:
        stmt = _insert(conn, table)
        return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in update}, where=where
        )

    names = tuple(rows[0])
    where_key = str(where.compile(dialect=conn.dialect))
    key = ("upsert", table, tuple(keys), tuple(update), where_key)
    execute_rows(conn, key, build, names, _tuples(rows, names))


def excluded(conn: Connection, table: Table) -> Any:
    """The `excluded` pseudo-table, for `where` clauses that compare new and stored rows."""
    return _insert(conn, table).excluded


def _insert(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _write_statement(
    conn: Connection,
    table: Table,
    keys: tuple[str, ...],
    update: tuple[str, ...],
    newer: str | None,
    fill: tuple[str, ...],
) -> UpdateBase:
    stmt = _insert(conn, table)
    incoming = stmt.excluded
    if keys and (update or fill):
        # SET expressions read the stored row as it was, so `newer` compares old with incoming.
        not_older = None if newer is None else incoming[newer] >= table.c[newer]
        values: dict[str, Any] = {
            name: incoming[name]
            if not_older is None
            else case((not_older, incoming[name]), else_=table.c[name])
            for name in update
        }
        values.update({name: func.coalesce(incoming[name], table.c[name]) for name in fill})
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=values)  # type: ignore[no-any-return]
    if keys:
        return stmt.on_conflict_do_nothing(index_elements=list(keys))  # type: ignore[no-any-return]
    return stmt  # type: ignore[no-any-return]


def _tuples(rows: Sequence[dict[str, Any]], names: tuple[str, ...]) -> list[Row]:
    return [tuple(row[name] for name in names) for row in rows]


def _prepare(
    conn: Connection, key: Hashable, build: Callable[[], UpdateBase], names: tuple[str, ...]
) -> _Prepared:
    statement = build()
    if conn.dialect.name != "sqlite":
        prepared = _PREPARED[(conn.dialect.name, key, names)] = _Prepared(statement, "", (), None)
        return prepared
    done = statement.compile(dialect=conn.dialect, column_keys=list(names))
    bound = list(done.positiontup or ())
    position = {name: index for index, name in enumerate(names)}
    processors = []
    for name in dict.fromkeys(bound):
        bind_type = done.binds[name].type
        process = bind_type._cached_bind_processor(conn.dialect)
        if process is not None:
            processors.append((position[name], process, isinstance(bind_type, _REPEATING)))
    order: Callable[[Row], Row] | None = None
    if tuple(bound) != names:
        indexes = [position[name] for name in bound]
        order = itemgetter(*indexes) if len(indexes) > 1 else lambda row: (row[indexes[0]],)
    prepared = _PREPARED[(conn.dialect.name, key, names)] = _Prepared(
        statement, str(done), tuple(processors), order
    )
    return prepared


def _bind(rows: Sequence[Row], prepared: _Prepared) -> Sequence[Row]:
    """Rows with every value as the driver takes it, processed a column at a time."""
    if prepared.processors:
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for index, process, repeating in prepared.processors:
            values = columns[index]
            if repeating:
                done = {value: process(value) for value in set(values)}
                columns[index] = list(map(done.__getitem__, values))
            else:
                columns[index] = list(map(process, values))
        rows = list(zip(*columns, strict=True))
    if prepared.order is not None:
        rows = list(map(prepared.order, rows))
    return rows
