"""A busy or locked store: the request is answered 503 with Retry-After at once, stores nothing, logs why."""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from tests.inbound.conftest import BASE, NOW, WRITE_KEY, counts, dumps, stripe_request
from tests.inbound.payloads import segment_track, stripe_event
from webhooks.inbound import InboundReceiver, InboundRequest

# How long a statement waits for a lock here: the store's own waits (10 s) would make slow tests.
_WAIT_MS = 100


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """The store, its connections giving up on a lock after _WAIT_MS."""

    @event.listens_for(engine, "connect")
    def _short_waits(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout={_WAIT_MS}")
        else:
            cursor.execute(f"SET lock_timeout = '{_WAIT_MS}ms'")
            dbapi_connection.commit()  # else the pool's rollback on check-in undoes the SET
        cursor.close()

    engine.dispose()  # the connections opened so far were set up without it
    return engine


@contextmanager
def _held(engine: Engine) -> Iterator[None]:
    """Another writer holding what an ingest must write to, as another crmhub process would."""
    if engine.dialect.name == "sqlite":
        other = sqlite3.connect(str(engine.url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # SQLite's write lock; readers still read (WAL)
        try:
            yield
        finally:
            other.rollback()
            other.close()
        return
    with engine.connect() as conn:
        # Reads go on; the claim's INSERT waits, then gives up with lock_timeout.
        conn.execute(text("LOCK TABLE inbound_events IN EXCLUSIVE MODE"))
        yield
        conn.rollback()


def test_a_locked_store_is_503_with_retry_after_and_the_retry_stores_it(
    receiver: InboundReceiver, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    body = dumps(stripe_event())
    before = counts(engine)
    with _held(engine), caplog.at_level(logging.WARNING, logger="webhooks.inbound.receiver"):
        answer = receiver.receive("stripe", stripe_request(body), now=NOW)
    assert (answer.status, answer.body["error"]) == (503, "store_unavailable")
    assert answer.headers == {"retry-after": "10"}
    message = answer.body["message"]
    assert message.startswith("stripe: ") and "nothing was stored" in message
    # The cause is for the operator's log, not for whoever sent the request.
    assert "INSERT" not in message and "locked" not in message and "lock timeout" not in message
    assert counts(engine) == before
    [line] = [r.getMessage() for r in caplog.records if r.name == "webhooks.inbound.receiver"]
    assert "\n" not in line and line.startswith("inbound stripe: answered 503")
    assert "database is locked" in line or "lock timeout" in line
    again = receiver.receive("stripe", stripe_request(body), now=NOW)
    assert (again.status, again.body["duplicate"]) == (200, False)
    assert counts(engine)["inbound_events"] == before["inbound_events"] + 1


def test_a_locked_store_is_503_in_segments_shape_on_the_tracking_api(
    receiver: InboundReceiver, engine: Engine
) -> None:
    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    body = dumps({"batch": [segment_track()]})
    request = InboundRequest("POST", f"{BASE}/v1/batch", {"authorization": basic}, body)
    with _held(engine):
        answer = receiver.track_api("batch", request, now=NOW)
    assert (answer.status, answer.body["success"], answer.body["code"]) == (503, False, "store_unavailable")
    assert answer.headers == {"retry-after": "10"}
    assert receiver.track_api("batch", request, now=NOW).body["success"] is True
