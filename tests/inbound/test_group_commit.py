"""Group commit: a failed group is retried batch by batch, unless it failed waiting for a lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg.errors
import pytest
from sqlalchemy.exc import OperationalError

from connectors import Batch
from sync.engine import BatchResult
from sync.group_commit import CommitInterrupted, GroupCommit, Pushed
from sync.inbound import AlreadyReceivedError
from tests.inbound.conftest import NOW


def _sqlite_locked(tmp_path: Path) -> OperationalError:
    """What SQLAlchemy raises when SQLite's busy wait ran out: made by a real second writer."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return OperationalError("UPDATE locks SET name = name WHERE 0", {}, exc)
    finally:
        other.close()
        holder.close()
    raise AssertionError("the second writer got the lock")


def _pg_lock_timeout(_tmp_path: Path) -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL's lock_timeout ran out (SQLSTATE 55P03)."""
    cause = psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    return OperationalError("INSERT INTO inbound_events ...", {}, cause)


class _Store:
    """A commit that lets the first group through only when told, then fails as `fail` says."""

    def __init__(self, fail: Callable[[list[Pushed]], None]) -> None:
        self.fail = fail
        self.groups: list[list[str]] = []
        self.release = threading.Event()

    def commit(self, group: list[Pushed]) -> None:
        self.groups.append([item.trigger for item in group])
        if len(self.groups) == 1:
            assert self.release.wait(10)
        else:
            self.fail(group)
        for item in group:
            item.result = BatchResult(records=1)


def _pushed(name: str) -> Pushed:
    return Pushed(Batch("stripe", "events", requests=0), NOW, name, ())


def _run_two_behind_one(store: _Store) -> dict[str, BaseException | BatchResult]:
    """`first` holds the combiner while `a` and `b` queue, so `a` and `b` are committed as one group."""
    commit = GroupCommit(store.commit)
    outcomes: dict[str, BaseException | BatchResult] = {}

    def submit(name: str) -> None:
        try:
            outcomes[name] = commit.submit(_pushed(name))
        except BaseException as exc:  # a KeyboardInterrupt too: it is what one test raises
            outcomes[name] = exc

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    while not store.groups:
        time.sleep(0.001)
    behind = [threading.Thread(target=submit, args=(name,)) for name in ("a", "b")]
    for thread in behind:
        thread.start()
    deadline = time.monotonic() + 10
    while len(commit._queue) < 2:  # both queued behind `first`: there is no public way to see it
        assert time.monotonic() < deadline
        time.sleep(0.001)
    store.release.set()
    for thread in [first, *behind]:
        thread.join(10)
    return outcomes


@pytest.mark.parametrize("lock_error", [_sqlite_locked, _pg_lock_timeout], ids=["sqlite", "postgresql"])
def test_a_group_that_failed_on_a_lock_fails_every_batch_at_once(
    tmp_path: Path, lock_error: Callable[[Path], OperationalError]
) -> None:
    error = lock_error(tmp_path)

    def locked(_group: list[Pushed]) -> None:
        raise error

    store = _Store(locked)
    outcomes = _run_two_behind_one(store)
    # One by one, each batch would have waited out the busy timeout again before its 503.
    assert sorted(map(sorted, store.groups)) == [["a", "b"], ["first"]]
    assert outcomes["a"] is error and outcomes["b"] is error
    assert isinstance(outcomes["first"], BatchResult)


def test_a_group_that_failed_otherwise_is_retried_batch_by_batch() -> None:
    def bad_a(group: list[Pushed]) -> None:
        if any(item.trigger == "a" for item in group):
            raise ValueError("a's batch is bad")

    store = _Store(bad_a)
    outcomes = _run_two_behind_one(store)
    assert sorted(map(sorted, store.groups)) == [["a"], ["a", "b"], ["b"], ["first"]]
    assert isinstance(outcomes["a"], ValueError)
    assert isinstance(outcomes["b"], BatchResult)


def test_a_batch_stored_alone_is_not_answered_as_a_duplicate_of_the_failed_group() -> None:
    def claim_then_fail(group: list[Pushed]) -> None:
        if len(group) > 1:
            # `b` carries `a`'s event id: the group's claim refused it, as `a` claimed it first.
            next(item for item in group if item.trigger == "b").error = AlreadyReceivedError(
                "stripe", ["evt_1"]
            )
        if any(item.trigger == "a" for item in group):
            raise ValueError("a's batch is bad")

    store = _Store(claim_then_fail)
    outcomes = _run_two_behind_one(store)
    # `a`'s claim was rolled back with the group, so `b` alone claimed the id and was stored.
    assert isinstance(outcomes["a"], ValueError)
    assert isinstance(outcomes["b"], BatchResult)


def test_an_interrupted_group_gives_each_waiting_batch_an_error_not_silence() -> None:
    def interrupted(_group: list[Pushed]) -> None:
        raise KeyboardInterrupt

    store = _Store(interrupted)
    outcomes = _run_two_behind_one(store)
    # The combiner's own thread sees the interrupt; the other caller learns its batch may not be stored.
    assert sorted(map(sorted, store.groups)) == [["a", "b"], ["first"]]
    kinds = sorted(type(outcomes[name]).__name__ for name in ("a", "b"))
    assert kinds == ["CommitInterrupted", "KeyboardInterrupt"]
    waiting = next(outcomes[n] for n in ("a", "b") if isinstance(outcomes[n], CommitInterrupted))
    assert "send it again" in str(waiting)
