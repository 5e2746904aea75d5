"""Opening the store: one URL, SQLite (WAL, foreign keys on) or PostgreSQL through psycopg 3."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary, finalize

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from sync.store import checkpoint


def normalize_url(url: str) -> str:
    """Send plain postgresql:// URLs through psycopg 3, the driver crmhub is tested with."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


_STDLIB_REFUSES = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def to_json(value: Any) -> str:
    """JSON text of a column value: orjson where it writes what the stdlib would, the stdlib otherwise."""
    # The stdlib encoder was a tenth of the ingest path's CPU (a raw payload and a provenance map per
    # record); orjson takes an eighth of its time. What it refuses (integers past 64 bits, keys that
    # are not strings, lone surrogates) goes to the stdlib as before, and so do datetimes and
    # dataclasses (which the stdlib refuses, so they still fail) and non-ASCII text: the stdlib
    # writes it as \u escapes, and erasure searches the stored text (`sync.privacy`).
    try:
        text = orjson.dumps(value, option=_STDLIB_REFUSES)
    except TypeError:
        return json.dumps(value)
    return text.decode("ascii") if text.isascii() else json.dumps(value)


def create_store_engine(url: str, *, checkpoint_thread: bool = True, **kwargs: Any) -> Engine:
    """Create the engine for `url`, with SQLite set up for concurrent readers and real transactions.

    On a SQLite file, `checkpoint_thread` moves most WAL checkpointing off the commits
    (`sync.store.checkpoint`).
    """
    kwargs.setdefault("json_serializer", to_json)
    engine = create_engine(normalize_url(url), **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
        if checkpoint_thread:
            _checkpoint_on_a_thread(engine)
    return engine


_checkpointers: WeakKeyDictionary[Engine, checkpoint.Checkpointer] = WeakKeyDictionary()


def checkpointer_of(engine: Engine) -> checkpoint.Checkpointer | None:
    """The thread that checkpoints `engine`'s SQLite file, if it has one."""
    return _checkpointers.get(engine)


def _checkpoint_on_a_thread(engine: Engine) -> None:
    database = engine.url.database
    if not database or database == ":memory:" or engine.url.query.get("uri"):
        return  # in memory, or a URI whose options the thread's own connection would not share
    checkpointer = _checkpointers[engine] = checkpoint.Checkpointer(Path(database).resolve())

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={checkpoint.AUTOCHECKPOINT_PAGES}")

    @event.listens_for(engine, "commit")
    def _on_commit(_connection: Any) -> None:
        checkpointer.notify()

    finalize(engine, checkpointer.close, wait=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy own BEGIN/COMMIT: pysqlite's implicit transactions skip SELECTs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        # 64 MiB of page cache per connection instead of 2 MiB: segment queries walk big indexes.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


# A statement that writes nothing but makes SQLite take the write lock (what BEGIN IMMEDIATE would do).
# Without it, a transaction that reads and then writes fails at once with "database is locked" when
# another connection committed in between, instead of waiting on busy_timeout.
_TAKE_WRITE_LOCK = "UPDATE locks SET name = name WHERE 0"


# One queue per SQLite engine for the threads of this process. SQLite's busy handler polls with growing
# sleeps, so many threads waiting on it starve one another past busy_timeout; a lock hands the database
# to the next writer at once. Other processes still meet at SQLite's own lock.
_writers: WeakKeyDictionary[Engine, threading.RLock] = WeakKeyDictionary()
_writers_guard = threading.Lock()


def _writer_lock(engine: Engine) -> threading.RLock:
    with _writers_guard:
        lock = _writers.get(engine)
        if lock is None:
            lock = _writers[engine] = threading.RLock()
        return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, holding SQLite's write lock from the start; plain on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with _writer_lock(engine), engine.begin() as conn:
        conn.exec_driver_sql(_TAKE_WRITE_LOCK)
        yield conn
