"""Write transactions that take SQLite's write lock first, so a read never has to upgrade mid-transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

# A statement that writes nothing but makes SQLite take the write lock (what BEGIN IMMEDIATE would do).
# Without it, a transaction that reads and then writes fails at once with "database is locked" when
# another connection committed in between, instead of waiting on busy_timeout.
_TAKE_WRITE_LOCK = "UPDATE endpoint_states SET name = name WHERE 0"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, holding SQLite's write lock from the start; plain on PostgreSQL."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(_TAKE_WRITE_LOCK)
        yield conn
