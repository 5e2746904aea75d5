"""Opening the store: one URL, SQLite (WAL, foreign keys on) or PostgreSQL through psycopg 3."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary, finalize

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import ConnectionPoolEntry

from sync.store import checkpoint


def normalize_url(url: str) -> str:
    """Send plain postgresql:// URLs through psycopg 3, the driver crmhub is tested with."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


_SQLITE_FORMS = "sqlite:///relative/path.db (three slashes) or sqlite:////absolute/path.db (four)"


def url_problem(url: str) -> str | None:
    """Why `url` cannot open a store, as "expected ..., found ..."; None when it can be tried."""
    try:
        create_engine(normalize_url(url)).dispose()
    except NoSuchModuleError:
        return f"expected a sqlite:/// or postgresql:// URL (crmhub has those drivers), found {_shown(url)}"
    except ImportError as exc:
        return f"expected a URL whose driver is installed, found {_shown(url)} ({exc}): use postgresql://"
    except (ArgumentError, ValueError):
        if url.split(":", 1)[0].split("+", 1)[0] == "sqlite":
            return f"expected a SQLite URL like {_SQLITE_FORMS}, found {_shown(url)}"
        return f"expected a URL like postgresql://user@host:5432/dbname, found {_shown(url)}"
    return None


def _shown(url: str) -> str:
    """`url` quoted for a message, its password hidden when it parses."""
    try:
        return json.dumps(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        return json.dumps(url) if url.startswith("sqlite") else "a URL that does not parse"


def describe_error(exc: DBAPIError, url: str | None) -> str:
    """A store error as `database: ...` with its fix; on SQLite naming the file and what is wrong with it."""
    try:
        parsed = None if url is None else make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is None or parsed.get_backend_name() != "sqlite":
        return f"database: {exc.orig}: check database.url and that the database server is running"
    database = Path(parsed.database or ":memory:")
    # A relative path is relative to where the command runs, which is not always where one thinks.
    path = database if database.is_absolute() else f"{database} (in {Path.cwd()})"
    cause = str(exc.orig)
    if "unable to open database file" in cause:
        return f"database: cannot open the SQLite file {path}: {_why_unopenable(database)}"
    if "readonly database" in cause:
        return f"database: cannot write the SQLite file {path}: {_why_unopenable(database)}"
    if "database is locked" in cause:
        return (
            f"database: the SQLite file {path} stayed locked by another process: wait for the other "
            "crmhub command to finish (or stop it), then run this one again"
        )
    if "not a database" in cause or "malformed" in cause:
        return (
            f"database: {path} is not a usable SQLite database ({cause}): point database.url at "
            "the right file, or restore it from a backup"
        )
    return f"database: {cause} (SQLite file {path}): check database.url"


def _why_unopenable(path: Path) -> str:
    """What keeps SQLite from opening or writing `path`, with the fix."""
    folder = path.parent
    if not folder.is_dir():
        return f"its directory {folder} does not exist: create it, or fix database.url"
    if path.is_dir():
        return "it is a directory: name a file in database.url"
    # SQLite writes the -wal and -shm files beside the database, so the directory must be writable too.
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its directory {folder} is not writable by this user: fix its permissions, or move the store"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "the file is not readable and writable by this user: fix its permissions"
    return "check database.url, the file's permissions and the free disk space"


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

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # A Ctrl-C inside a statement leaves its cursor open: SQLAlchemy then closes the connection,
        # but SQLite defers that close while a statement is unfinalized, so the transaction kept the
        # write lock and this process's next write (marking the run, freeing its leases) waited out
        # busy_timeout and failed with "database is locked". Close the cursor and roll back first.
        connection, execution = context.connection, context.execution_context
        if isinstance(context.original_exception, Exception) or connection is None or connection.invalidated:
            return
        with suppress(Exception):
            if execution is not None:
                execution.cursor.close()
        with suppress(Exception):
            raw = connection.connection.dbapi_connection
            if raw is not None:
                raw.rollback()


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
