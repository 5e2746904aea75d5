"""The SQL floor: the statements crmhub ran, replayed with the bare sqlite3 driver in a child process.

A page's statements and parameters are captured as crmhub executes them (after SQLAlchemy has
bound them: the same SQL text and the same driver values) and handed to a child process that runs
them into its own copy of the store, one transaction per page, as crmhub did. Its time is what
SQLite itself needs for that work on this machine, with no Python around it: a baseline in the
same run. The child is fed between pages, outside the timed part, and has its own memory, so
neither crmhub's time nor its peak memory includes the replay.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from sync.store.checkpoint import AUTOCHECKPOINT_PAGES, Checkpointer

__all__ = ["SqlFloor"]

Statement = tuple[str, Any, bool]  # SQL, parameters, executemany

# The pragmas crmhub's SQLite connections run with (sync/store/engine.py).
_PRAGMAS = ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "cache_size=-65536")


def _replay(pipe: Pipe, path: str, checkpoint_thread: bool) -> None:
    """Child: run each page's statements in one transaction; answer each page with its seconds."""
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in _PRAGMAS:
        db.execute(f"PRAGMA {pragma}")
    # Checkpoints arranged as crmhub's engine arranges them (sync/store/engine.py).
    checkpointer = Checkpointer(Path(path)) if checkpoint_thread else None
    if checkpointer is not None:
        db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    while True:
        page: list[Statement] | None = pipe.recv()
        if page is None:
            break
        started = time.perf_counter()
        db.execute("BEGIN")
        for sql, params, many in page:
            if many:
                db.executemany(sql, params)
            else:
                db.execute(sql, params).fetchall()
        db.execute("COMMIT")
        pipe.send(time.perf_counter() - started)
        if checkpointer is not None:
            checkpointer.notify()
    if checkpointer is not None:
        checkpointer.close()
    db.close()


class SqlFloor:
    """Captures what `engine` executes per page and replays it in a child; sums the child's time."""

    def __init__(self, engine: Engine, store_file: Path, *, checkpoint_thread: bool = True) -> None:
        # The replay starts from a copy of the store as it is now: migrated, with the run row.
        engine.dispose()
        copy = store_file.with_name(f"{store_file.stem}-floor.db")
        shutil.copyfile(store_file, copy)
        self.seconds = 0.0
        self._page: list[Statement] = []
        self._capturing = False
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._child = context.Process(target=_replay, args=(child, str(copy), checkpoint_thread), daemon=True)
        self._child.start()
        event.listen(engine, "before_cursor_execute", self._capture)

    def _capture(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        # crmhub opens its transactions itself; the child opens one per page.
        if self._capturing and not statement.startswith("BEGIN"):
            self._page.append((statement, parameters, executemany))

    def start_page(self) -> None:
        """Capture from here: the page's transaction begins."""
        self._page, self._capturing = [], True

    def end_page(self) -> None:
        """The page is committed: replay it in the child and wait for its time (not crmhub's)."""
        self._capturing = False
        self._pipe.send(self._page)
        self.seconds += self._pipe.recv()

    def close(self) -> None:
        """Stop the child."""
        self._pipe.send(None)
        self._child.join(timeout=60)
