"""WAL checkpoints off the commit path: a thread copies committed pages back while writers work.

In WAL mode SQLite appends every committed page to the -wal file and, by default, the commit that
takes the WAL past 1,000 pages copies them all back into the database file and waits for two
fsyncs before it returns. Here a thread of the process does most of that copying instead: after
commits it runs a PASSIVE checkpoint on its own connection (sqlite3 releases the GIL while it
runs, so the writer keeps working on the other core). A PASSIVE checkpoint never blocks writers or
readers; it copies what no reader still needs.

It cannot end the WAL alone: SQLite rewinds the WAL only when a write transaction starts after a
checkpoint copied *everything*, and beside a steady writer there are always frames newer than the
last pass. So the writers keep SQLite's own automatic checkpoint, at `AUTOCHECKPOINT_PAGES`
instead of 1,000. By the time a commit reaches it, the thread has copied nearly every page, so the
checkpoint inside that commit copies the few left, and the next write rewinds the WAL: its size
stays bounded by that figure whether the thread keeps up or not (tests/sync/test_checkpoint.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import Connection

log = logging.getLogger(__name__)

# The WAL, in pages, at which a commit checkpoints itself (SQLite's wal_autocheckpoint): 16 MiB of
# 4 KiB pages. The thread's passes keep the copying left to that commit small.
AUTOCHECKPOINT_PAGES = 4000

# The least time between two passes: each pass that copies pages ends with two fsyncs.
PASS_INTERVAL_SECONDS = 0.2

# A thread with no commits to follow for this long closes its connection and ends.
IDLE_SECONDS = 5.0


class Checkpointer:
    """Runs PASSIVE checkpoints of one SQLite database file on a thread, after `notify()`."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float = PASS_INTERVAL_SECONDS,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self.path = path
        self.interval = interval
        self.idle = idle
        self.passes = 0
        self._wake = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False

    @property
    def running(self) -> bool:
        """True while the thread is alive in this process."""
        return self._thread is not None and self._pid == os.getpid()

    def notify(self) -> None:
        """A write transaction committed: make sure a pass follows soon."""
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._guard:
            # A forked child inherits the object but not the thread: it starts its own.
            if self._closed or (self._thread is not None and self._pid == os.getpid()):
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="crmhub-wal-checkpoint", daemon=True)
            self._thread.start()

    def close(self, *, wait: bool = True) -> None:
        """Stop the thread after its current pass (waiting for it if `wait`); later notifies are ignored."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        try:
            # mode=rw: never create a database that has been moved or deleted since.
            db = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            log.debug("WAL checkpoints of %s not started: %s", self.path, exc)
            self._closed = True
        else:
            try:
                self._loop(db)
            except sqlite3.Error as exc:
                # Commits still checkpoint themselves at AUTOCHECKPOINT_PAGES: nothing is lost.
                log.warning("WAL checkpoints of %s stopped: %s; commits do their own", self.path, exc)
                self._closed = True
            finally:
                db.close()
        with self._guard:
            self._thread = None
        # A commit that came as this thread was leaving saw it still set: start the next one for it.
        if self._wake.is_set() and not self._closed:
            self.notify()

    def _loop(self, db: sqlite3.Connection) -> None:
        """After each wake-up, wait an interval (the commit that woke it lands, others join it), then pass."""
        db.execute("PRAGMA busy_timeout=0")
        while self._wake.wait(self.idle) and not self._closed:
            self._wake.clear()
            time.sleep(self.interval)
            if self._closed:
                return
            # Returns (busy, pages in the WAL, pages copied); busy only means another checkpoint ran.
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.passes += 1


def truncate_wal(conn: Connection, *, attempts: int = 3, pause: float = 0.2) -> bool:
    """Copy the whole WAL into the database file and empty it; False when a reader still needs it."""
    if conn.dialect.name != "sqlite":
        return True
    for _ in range(attempts):
        # Waits busy_timeout for readers; answers busy at once while another checkpoint (this
        # process's thread, another process's commit) is running, which ends soon: try again.
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if not busy:
            return True
        time.sleep(pause)
    return False
