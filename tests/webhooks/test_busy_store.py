"""A busy store in the middle of delivering: what was sent is recorded once it is free, and sent once."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg.errors
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sync.store.tables import deliveries, delivery_attempts
from tests.webhooks.conftest import Clock, Consumer, endpoint, make_config, make_worker, secrets_for, seed
from webhooks.busy import store_busy
from webhooks.queue import Job, load_jobs

FAST_RETRY = (0.05, 0.2)


def _sqlite_error(code: int) -> OperationalError:
    cause = sqlite3.OperationalError("database is locked")
    cause.sqlite_errorcode = code
    return OperationalError("UPDATE deliveries SET reason = ?", ("ada@example.com",), cause)


def _pg_error(cause: Exception) -> OperationalError:
    return OperationalError("SELECT %(email)s", {"email": "ada@example.com"}, cause)


@pytest.mark.parametrize(
    ("error", "busy"),
    [
        (_sqlite_error(sqlite3.SQLITE_BUSY), True),
        (_sqlite_error(sqlite3.SQLITE_LOCKED), True),
        (_sqlite_error(517), True),  # SQLITE_BUSY_SNAPSHOT
        (_sqlite_error(sqlite3.SQLITE_FULL), False),
        (_pg_error(psycopg.errors.LockNotAvailable("lock timeout")), True),
        (_pg_error(psycopg.errors.DeadlockDetected("deadlock")), True),
        (_pg_error(psycopg.errors.UniqueViolation("duplicate key")), False),
        (PoolTimeoutError("QueuePool limit reached"), True),
        (RuntimeError("database is locked"), False),
    ],
)
def test_only_a_busy_or_locked_store_counts_as_busy(error: Exception, busy: bool) -> None:
    assert store_busy(error) is busy


def _received_once(consumer: Consumer, n: int) -> None:
    assert sorted(Counter(consumer.ids()).values()) == [1] * n, "every webhook-id arrives once"


def _attempts_per_delivery(engine: Engine) -> Counter[int]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(delivery_attempts.c.delivery_id)).scalars())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_write_lock_held_across_a_recording_loses_nothing_and_sends_nothing_twice(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    database = engine.url.database
    assert database is not None
    # A short busy_timeout (crmhub's is 10 s) so the worker's pass fails while the lock is held.
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=50"))
    engine.dispose()
    seed(engine, 6)
    config = make_config(("sms", endpoint("sms", concurrency=3)))
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    held = threading.Event()

    def hold_the_lock(stage: str, _job: Job) -> None:
        # Another process writes for longer than busy_timeout, just as the first sends come back.
        if stage == "sent" and not held.is_set():
            held.set()
            other.execute("BEGIN IMMEDIATE")
            threading.Timer(0.5, other.execute, ("COMMIT",)).start()

    consumer, clock = Consumer(), Clock()
    worker = make_worker(
        engine, config, {"sms": consumer}, secrets_for(config), hook=hold_the_lock, store_retry=FAST_RETRY
    )
    with caplog.at_level(logging.INFO, logger="webhooks.worker"):
        stats = asyncio.run(worker.run(clock))
    other.close()
    assert held.is_set()
    busy = [r for r in caplog.records if "store is busy" in r.getMessage()]
    assert len(busy) == 1, "one line per episode, however many passes failed"
    assert "database is locked" in busy[0].getMessage() and "[SQL:" not in busy[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert stats.attempts == 6 and stats.outcomes["succeeded"] == 6
    assert _attempts_per_delivery(engine) == Counter({i: 1 for i in range(1, 7)})
    with engine.connect() as conn:
        assert set(conn.execute(select(deliveries.c.status)).scalars()) == {"succeeded"}
    _received_once(consumer, 6)
    # Past the lease: nothing was left leased, so nothing goes out again.
    clock.advance(timedelta(seconds=config.lease_seconds + 1))
    asyncio.run(worker.run(clock))
    _received_once(consumer, 6)


def test_a_claim_that_fails_on_a_busy_store_is_retried_and_keeps_the_records(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(engine, 4)
    config = make_config(("sms", endpoint("sms", concurrency=2)))
    consumer = Consumer()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config), store_retry=FAST_RETRY)
    claims = 0
    busy = (
        _sqlite_error(sqlite3.SQLITE_BUSY)
        if engine.dialect.name == "sqlite"
        else _pg_error(psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"))
    )

    def busy_once(conn: Any, ids: Any) -> Any:
        nonlocal claims
        claims += 1
        if claims == 2:
            raise busy
        return load_jobs(conn, ids)

    monkeypatch.setattr("webhooks.worker.load_jobs", busy_once)
    with caplog.at_level(logging.WARNING, logger="webhooks.worker"):
        asyncio.run(worker.run(Clock()))
    assert claims > 2, "claimed again after the busy one"
    [line] = [r.getMessage() for r in caplog.records]
    assert "store is busy" in line and "ada@example.com" not in line, "no statement parameters"
    assert _attempts_per_delivery(engine) == Counter({i: 1 for i in range(1, 5)})
    _received_once(consumer, 4)
