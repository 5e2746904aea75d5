"""An opt-out stops entries it could not cancel: in flight, or not yet committed by a fan-out."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine

from sync.consent import opt_out
from sync.store import write_transaction
from tests.consent.conftest import (
    EARLIER,
    LATER,
    NOW,
    delivery_rows,
    evaluate,
    merge_in_sms_opt_out,
    opted_in_jane,
)
from tests.webhooks.conftest import Clock, Consumer, endpoint, make_config, make_worker, secrets_for
from webhooks import WebhooksConfig
from webhooks.eligibility import NO_ENTRY, SUPPRESSED
from webhooks.fanout import fan_out, fan_out_batch
from webhooks.worker import RunStats

# The conftest's endpoints, each at its own path so one consumer serves each.
CONFIG = make_config(
    ("texter", endpoint("texter", messaging=True, requires_consent="sms", segments=["sms_offers"])),
    ("mailer", endpoint("mailer", messaging=True, requires_consent="email", segments=["newsletter"])),
)


def _opt_out_of_email(engine: Engine, contact_id: int) -> int:
    """The e-mail tool's unsubscribe, as sender feedback records it; returns how many it cancelled."""
    with write_transaction(engine) as conn:
        return opt_out(
            conn,
            contact_id=contact_id,
            channel="email",
            source="feedback:mailer",
            proof={"by": "test"},
            now=NOW,
            evaluate=evaluate,
            endpoints=["mailer"],
        ).cancelled


def _deliver(
    config: WebhooksConfig, engine: Engine, consumers: dict[str, Consumer], clock: Clock
) -> RunStats:
    return asyncio.run(make_worker(engine, config, consumers, secrets_for(config)).run(clock))


def _kinds(consumer: Consumer) -> list[tuple[str, str]]:
    return [(b["type"], b["data"]["transition"]["reason"]) for b in consumer.bodies()]


def test_an_opt_out_while_the_entry_is_in_flight_stops_its_retry_and_the_left_follows(
    engine: Engine, jane: int
) -> None:
    cancelled: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["type"] == "segment.left":
            return httpx.Response(204)
        # The consumer's handler unsubscribes the person, then fails: the entry is leased meanwhile.
        cancelled.append(_opt_out_of_email(engine, jane))
        return httpx.Response(503)

    mailer, clock = Consumer(answer), Clock(NOW)
    stats = _deliver(CONFIG, engine, {"texter": Consumer(), "mailer": mailer}, clock)
    assert cancelled == [0], "an attempt in flight finishes"
    # Counted as held back, as `crmhub deliver` reports it, not as retrying.
    assert "retrying" not in stats.outcomes and stats.held_back["unsubscribed"] == 1
    with engine.connect() as conn:
        entry = delivery_rows(conn, jane)[("mailer", "entered")]
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("cancelled", "unsubscribed", 1)
    clock.advance(timedelta(minutes=1))
    _deliver(CONFIG, engine, {"texter": Consumer(), "mailer": mailer}, clock)
    # It may have acted on the entry before failing: it is told to stop, and is not sent it again.
    assert _kinds(mailer) == [("segment.entered", "backfill"), ("segment.left", "unsubscribed")]


def test_the_left_of_an_unsubscribe_reaches_the_endpoint_that_was_sent_the_entry(
    engine: Engine, jane: int
) -> None:
    mailer = Consumer()
    _deliver(CONFIG, engine, {"texter": Consumer(), "mailer": mailer}, Clock(NOW))
    assert _opt_out_of_email(engine, jane) == 0  # the entry was delivered: nothing left to cancel
    _deliver(CONFIG, engine, {"texter": Consumer(), "mailer": mailer}, Clock(NOW))
    assert _kinds(mailer) == [("segment.entered", "backfill"), ("segment.left", "unsubscribed")]


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_opt_out_committed_during_a_fan_out_stops_the_entry_it_could_not_see(engine: Engine) -> None:
    # SQLite's single writer cannot interleave them: the opt-out commits before or after the fan-out.
    jane = opted_in_jane(engine)
    with engine.begin() as fanning:
        fan_out_batch(fanning, CONFIG, NOW, batch_size=100)  # pending entries, not committed yet
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")  # waiting on the fan-out would hang
            unsubscribed = opt_out(
                conn,
                contact_id=jane,
                channel="email",
                source="feedback:mailer",
                proof={"by": "test"},
                now=NOW,
                evaluate=evaluate,
                endpoints=["mailer"],
            )
    assert unsubscribed.cancelled == 0, "the fan-out's entries were not committed when it looked"
    texter, mailer = Consumer(), Consumer()
    _deliver(CONFIG, engine, {"texter": texter, "mailer": mailer}, Clock(NOW))
    assert mailer.received == []
    assert _kinds(texter) == [("segment.entered", "backfill")]
    with engine.connect() as conn:
        rows = delivery_rows(conn, jane)
    entry, left = rows[("mailer", "entered")], rows[("mailer", "left")]
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("cancelled", "unsubscribed", 0)
    assert (left["status"], left["reason"]) == ("suppressed", NO_ENTRY)


def test_an_opt_out_a_merge_puts_in_force_keeps_back_an_endpoint_with_no_channel(engine: Engine) -> None:
    # A CRM hook with no consent channel: any listed e-mail or phone of the person keeps it back.
    crm = endpoint("crm", segments=["everyone"])
    config = make_config(*CONFIG.endpoints.items(), ("crm", crm))
    jane = opted_in_jane(engine)
    fan_out(engine, config, EARLIER)
    merge_in_sms_opt_out(engine, jane)
    consumers = {name: Consumer() for name in config.endpoints}
    _deliver(config, engine, consumers, Clock(LATER))
    assert consumers["texter"].received == [] and consumers["crm"].received == []
    assert _kinds(consumers["mailer"]) == [("segment.entered", "backfill")]
    with engine.connect() as conn:
        rows = delivery_rows(conn, jane)
    held = {
        name: (rows[(name, "entered")]["status"], rows[(name, "entered")]["reason"])
        for name in ("texter", "crm")
    }
    # As for a contact opted out directly: the SMS tool's entry cancelled, the CRM's kept back.
    assert held == {"texter": ("cancelled", "unsubscribed"), "crm": ("suppressed", SUPPRESSED)}
