"""WAL checkpoints on a thread: commits reach the database file, the WAL stays bounded."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sync.store import checkpoint
from sync.store.engine import checkpointer_of, create_store_engine


def _rows_in_database_file(path: Path) -> int:
    """Rows of `t` in the database file itself, ignoring the WAL (immutable: no -wal, no -shm)."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:  # no table yet, or a page read while the thread was writing it
        return 0
    finally:
        db.close()


def _write(engine: Engine, transactions: int, rows: int) -> None:
    for _ in range(transactions):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO t (body) VALUES (:body)"), [{"body": "x" * 1000} for _ in range(rows)]
            )


def _engine(path: Path, **kwargs: bool) -> Engine:
    engine = create_store_engine(f"sqlite:///{path}", **kwargs)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    return engine


def test_commits_reach_the_database_file_without_a_commit_checkpointing(tmp_path: Path) -> None:
    """A few commits, far below any automatic checkpoint, are copied back by the thread."""
    path = tmp_path / "store.db"
    engine = _engine(path)
    with engine.connect():  # an open connection: closing the last one would checkpoint too
        _write(engine, transactions=5, rows=20)
        found = checkpointer_of(engine)
        assert found is not None
        # A pass's pages reach the file before it counts itself (it still waits for its fsyncs).
        deadline = time.monotonic() + 10
        rows = _rows_in_database_file(path)
        while (rows < 100 or found.passes < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = _rows_in_database_file(path)
        assert rows == 100 and found.passes >= 1
    engine.dispose()


def test_without_the_thread_commits_stay_in_the_wal(tmp_path: Path) -> None:
    """The control for the test above: the same commits, no thread, nothing in the file."""
    path = tmp_path / "store.db"
    engine = _engine(path, checkpoint_thread=False)
    with engine.connect():
        _write(engine, transactions=5, rows=20)
        time.sleep(2 * checkpoint.PASS_INTERVAL_SECONDS)
        assert _rows_in_database_file(path) == 0
        assert checkpointer_of(engine) is None
    engine.dispose()


def test_the_wal_stays_bounded_beside_a_steady_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes never copy everything while a writer keeps going; the commits' own checkpoint ends the WAL."""
    monkeypatch.setattr(checkpoint, "AUTOCHECKPOINT_PAGES", 200)
    path = tmp_path / "store.db"
    engine = _engine(path)
    with engine.connect():
        _write(engine, transactions=200, rows=30)  # about 1,600 pages of 4 KiB, eight times the limit
        # A WAL file is a 32-byte header and frames of a 24-byte header plus one 4 KiB page.
        wal_pages = ((path.with_name("store.db-wal")).stat().st_size - 32) / (24 + 4096)
    engine.dispose()
    # The limit twice plus one transaction's pages: a commit's own checkpoint that meets the thread's
    # pass running gives way (SQLite's checkpoints take turns), and the next commit's restarts the WAL
    # (411 pages, past the limit once, in one loaded CI run). Unbounded, it would hold all 1,600.
    assert wal_pages < 2 * 200 + 50


def test_a_thread_ends_when_idle_and_comes_back_with_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchall()
    checkpointer = checkpoint.Checkpointer(path, interval=0.01, idle=0.05)
    checkpointer.notify()
    assert checkpointer.running
    deadline = time.monotonic() + 5
    while checkpointer.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not checkpointer.running and checkpointer.passes == 1
    checkpointer.notify()
    assert checkpointer.running
    while checkpointer.passes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpointer.close()
    assert not checkpointer.running and checkpointer.passes == 2


def test_a_removed_database_is_not_created_again(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    checkpointer = checkpoint.Checkpointer(path, interval=0.01)
    checkpointer.notify()
    checkpointer.close()
    assert not path.exists()
    checkpointer.notify()  # closed: ignored
    assert not checkpointer.running
