"""At send time the worker decides again what fan-out decided; a `left` goes only where its entry went."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

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
from webhooks.worker import RunStats


def _deliver(engine: Engine, config: WebhooksConfig, consumer: Consumer) -> RunStats:
    worker = make_worker(engine, config, dict.fromkeys(config.endpoints, consumer), secrets_for(config))
    stats: RunStats = asyncio.run(worker.run(Clock()))
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
