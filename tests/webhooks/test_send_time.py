"""At send time the worker decides again what fan-out decided; a `left` goes only where its entry went."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, insert, select

from sync.consent import opt_out
from sync.store import write_transaction
from sync.store.tables import consent_records, deliveries, transitions
from tests.webhooks.conftest import (
    T0,
    Clock,
    Consumer,
    add_contact,
    add_segment,
    add_transition,
    endpoint,
    make_config,
    make_worker,
    secrets_for,
)
from webhooks import WebhooksConfig, fan_out
from webhooks.eligibility import NO_ENTRY, SUPPRESSED
from webhooks.queue import Job
from webhooks.worker import RunStats


def _deliver(
    engine: Engine, config: WebhooksConfig, consumer: Consumer, clock: Clock | None = None, **kwargs: Any
) -> RunStats:
    worker = make_worker(
        engine, config, dict.fromkeys(config.endpoints, consumer), secrets_for(config), **kwargs
    )
    stats: RunStats = asyncio.run(worker.run(clock or Clock()))
    return stats


def _deliveries(engine: Engine) -> list[dict[str, Any]]:
    """Every delivery with its transition's kind, oldest first."""
    with engine.connect() as conn:
        query = (
            select(deliveries, transitions.c.kind)
            .join(transitions, transitions.c.id == deliveries.c.transition_id)
            .order_by(deliveries.c.id)
        )
        return [dict(r) for r in conn.execute(query).mappings()]


def _opted_in(engine: Engine, contact_id: int, channel: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(consent_records).values(
                contact_id=contact_id,
                channel=channel,
                status="opted_in",
                source="test",
                proof={},
                recorded_at=T0 - timedelta(days=1),
            )
        )


def test_a_queued_entry_that_fan_out_would_now_hold_back_is_not_sent(engine: Engine) -> None:
    with engine.begin() as conn:
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, add_segment(conn), contact)
    config = make_config(("crm", endpoint("crm")))  # no channel: any listed identity keeps it back
    fan_out(engine, config, T0)
    with write_transaction(engine) as conn:
        result = opt_out(
            conn, contact_id=contact, channel="email", source="cli", proof={}, now=T0, evaluate=None
        )
    assert result.cancelled == 0, "neither the segment nor the endpoint requires e-mail"
    consumer = Consumer()
    stats = _deliver(engine, config, consumer)
    assert consumer.received == []
    [entry] = _deliveries(engine)
    assert (entry["status"], entry["reason"], entry["next_attempt_at"]) == ("suppressed", SUPPRESSED, None)
    assert dict(stats.held_back) == {"suppression list": 1}


def test_a_left_goes_only_to_an_endpoint_that_was_sent_the_entry(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        asked, never_asked = add_contact(conn, "ada@example.com"), add_contact(conn, "bob@example.com")
        for contact in (asked, never_asked):
            add_transition(conn, sid, contact, "entered")
            add_transition(conn, sid, contact, "left")
    _opted_in(engine, asked, "sms")
    config = make_config(("sms", endpoint("sms", fields=["email"], messaging=True, requires_consent="sms")))
    consumer = Consumer()
    _deliver(engine, config, consumer)
    sent = [(b["type"], b["data"]["contact"]["email"]) for b in consumer.bodies()]
    assert sent == [("segment.entered", "ada@example.com"), ("segment.left", "ada@example.com")]
    bob = [(r["kind"], r["status"], r["reason"]) for r in _deliveries(engine)][2:]
    assert bob == [
        ("entered", "suppressed", "consent: no opted-in sms consent"),
        ("left", "suppressed", NO_ENTRY),
    ]


def test_a_left_queued_behind_an_entry_cancelled_unsent_is_not_sent(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, sid, contact, "entered")
    _opted_in(engine, contact, "email")
    config = make_config(("mail", endpoint("mail", messaging=True, requires_consent="email")))
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        add_transition(conn, sid, contact, "left")  # the entry is still queued: the left is fanned out
    fan_out(engine, config, T0)
    with write_transaction(engine) as conn:
        opt_out(
            conn,
            contact_id=contact,
            channel="email",
            source="cli",
            proof={},
            now=T0,
            evaluate=None,
            endpoints=["mail"],
        )
    consumer = Consumer()
    _deliver(engine, config, consumer)
    assert consumer.received == []
    rows = [(r["kind"], r["status"], r["reason"]) for r in _deliveries(engine)]
    assert rows == [("entered", "cancelled", "unsubscribed"), ("left", "suppressed", NO_ENTRY)]


def test_an_endpoint_that_takes_no_entries_gets_every_left(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, sid, contact, "entered")
        add_transition(conn, sid, contact, "left")
    config = make_config(("stops", endpoint("stops", events=["segment.left"])))
    consumer = Consumer()
    _deliver(engine, config, consumer)
    assert [b["type"] for b in consumer.bodies()] == ["segment.left"]


def test_an_entry_retried_until_after_the_contact_left_is_cancelled_and_only_its_left_sent(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, sid, contact)
    config = make_config(("crm", endpoint("crm")))
    _deliver(engine, config, Consumer(lambda _r: httpx.Response(503)))  # down: the entry is retried
    later = T0 + timedelta(days=2)
    with engine.begin() as conn:
        add_transition(conn, sid, contact, "left", now=later)
    consumer = Consumer()  # back up
    stats = _deliver(engine, config, consumer, Clock(later))
    # Its attempts may have reached the consumer (a 5xx after it acted): it is told the person left.
    assert [b["type"] for b in consumer.bodies()] == ["segment.left"]
    entry, left = _deliveries(engine)
    superseded = "superseded: left vip at 2026-11-25T12:00:00Z"
    assert (entry["status"], entry["reason"], entry["next_attempt_at"]) == ("cancelled", superseded, None)
    assert entry["attempts"] > 0 and left["status"] == "succeeded"
    assert dict(stats.held_back) == {"superseded": 1}


def test_an_entry_still_queued_when_the_contact_left_is_cancelled_and_so_is_its_left(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, sid, contact)
    config = make_config(("crm", endpoint("crm")))
    fan_out(engine, config, T0)  # no worker ran until the contact had left
    later = T0 + timedelta(hours=5)
    with engine.begin() as conn:
        add_transition(conn, sid, contact, "left", now=later)
    consumer = Consumer()
    stats = _deliver(engine, config, consumer, Clock(later))
    assert consumer.received == []
    rows = [(r["kind"], r["status"], r["reason"], r["attempts"]) for r in _deliveries(engine)]
    assert rows == [
        ("entered", "cancelled", "superseded: left vip at 2026-11-23T17:00:00Z", 0),
        ("left", "suppressed", NO_ENTRY, 0),  # released by the entry's cancel, not left waiting on it
    ]
    assert dict(stats.held_back) == {"superseded": 1, "no entry": 1}


def test_an_entry_whose_contact_left_while_it_was_in_flight_is_not_retried(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, sid, contact)
    config = make_config(("crm", endpoint("crm")))
    clock = Clock()

    def leaves(point: str, job: Job) -> None:
        if point == "claimed" and job.transition.kind == "entered":
            clock.advance(timedelta(minutes=1))
            with engine.begin() as conn:
                add_transition(conn, sid, contact, "left", now=clock.now)

    consumer = Consumer(lambda r: httpx.Response(503 if b"segment.entered" in r.content else 204))
    _deliver(engine, config, consumer, clock, hook=leaves)
    assert [b["type"] for b in consumer.bodies()] == ["segment.entered", "segment.left"]
    entry, left = _deliveries(engine)
    assert (entry["status"], entry["reason"], entry["attempts"]) == (
        "cancelled",
        "superseded: left vip at 2026-11-23T12:01:00Z",
        1,
    )
    assert left["status"] == "succeeded"


def test_an_entry_whose_consent_became_unknown_is_held_back_not_cancelled(engine: Engine) -> None:
    with engine.begin() as conn:
        contact = add_contact(conn, "ada@example.com")
        add_transition(conn, add_segment(conn), contact)
    _opted_in(engine, contact, "sms")
    config = make_config(("sms", endpoint("sms", messaging=True, requires_consent="sms")))
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        # Neither an opt-in nor an opt-out (a source that lost the answer): not an unsubscribe.
        conn.execute(
            insert(consent_records).values(
                contact_id=contact, channel="sms", status="unknown", source="test", proof={}, recorded_at=T0
            )
        )
    consumer = Consumer()
    stats = _deliver(engine, config, consumer)
    assert consumer.received == []
    [entry] = _deliveries(engine)
    assert (entry["status"], entry["reason"]) == ("suppressed", "consent: no opted-in sms consent")
    assert dict(stats.held_back) == {"consent": 1}
