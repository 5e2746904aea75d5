"""An event id is claimed in the transaction that stores the event: a failure leaves it unclaimed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, inspect

from connectors import Batch, ContactEvent
from sync import inbound
from sync.engine import BatchResult, SyncEngine
from sync.inbound import RETENTION, AlreadyReceivedError, claim_events, seen_events
from sync.store import write_transaction
from tests.inbound.conftest import NOW, counts


def _batch() -> Batch:
    event = ContactEvent("stripe", "invoice.paid", "evt_1", NOW, {"email": "ada@example.com"})
    return Batch("stripe", "events", events=[event], requests=0)


def test_claims_are_once_per_source_and_id(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        assert claim_events(conn, "stripe", ["evt_1", "evt_2"], now=NOW) == {"evt_1", "evt_2"}
    with write_transaction(engine) as conn:
        # A partly new delivery claims only what is new; another source's ids are its own.
        assert claim_events(conn, "stripe", ["evt_2", "evt_3"], now=NOW) == {"evt_3"}
        assert claim_events(conn, "typeform", ["evt_1"], now=NOW) == {"evt_1"}
    with pytest.raises(AlreadyReceivedError, match="evt_1"), write_transaction(engine) as conn:
        claim_events(conn, "stripe", ["evt_1"], now=NOW)
    with engine.connect() as conn:
        assert seen_events(conn, "stripe", ["evt_1", "evt_9"]) == {"evt_1"}


def test_a_failed_ingest_leaves_the_event_unclaimed_and_a_retry_stores_it(engine: Engine) -> None:
    calls: list[str] = []

    def store(conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        calls.append(batch.source)
        if len(calls) == 1:
            raise RuntimeError("the process died mid-ingest (simulated)")
        return BatchResult(records=0)

    sync_engine = SyncEngine(engine, store)
    with pytest.raises(RuntimeError):
        sync_engine.ingest(_batch(), now=NOW, trigger="webhook", event_ids=["evt_1"])
    assert counts(engine)["inbound_events"] == 0
    sync_engine.ingest(_batch(), now=NOW, trigger="webhook", event_ids=["evt_1"])
    assert counts(engine)["inbound_events"] == 1
    with pytest.raises(AlreadyReceivedError):
        sync_engine.ingest(_batch(), now=NOW, trigger="webhook", event_ids=["evt_1"])
    assert len(calls) == 2


def test_claims_older_than_the_retention_are_pruned_by_a_sync_and_the_rest_kept(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        claim_events(conn, "stripe", ["evt_old"], now=NOW - RETENTION - timedelta(seconds=1))
        claim_events(conn, "stripe", ["evt_new"], now=NOW - RETENTION + timedelta(seconds=1))
    SyncEngine(engine, lambda *_args, **_kwargs: BatchResult()).run([], now=NOW)
    with engine.connect() as conn:
        assert seen_events(conn, "stripe", ["evt_old", "evt_new"]) == {"evt_new"}
        assert "ix_inbound_events_received_at" in {
            i["name"] for i in inspect(conn).get_indexes("inbound_events")
        }


def test_a_prune_takes_at_most_its_limit_oldest_first(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbound, "PRUNE_LIMIT", 2)
    long_ago = NOW - RETENTION - timedelta(days=1)
    with write_transaction(engine) as conn:
        for n in range(3):
            claim_events(conn, "hubspot", [f"e{n}"], now=long_ago + timedelta(minutes=n))
        assert inbound.prune_claims(conn, now=NOW) == 2
        assert seen_events(conn, "hubspot", ["e0", "e1", "e2"]) == {"e2"}
