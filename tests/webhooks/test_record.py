"""Recording a pass: whatever one delivery's answer or fate, every other result is stored."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import Engine, select

from sync.privacy import erase_contact
from sync.store import write_transaction
from sync.store.tables import deliveries, delivery_attempts
from tests.webhooks.conftest import T0, Clock, Consumer, endpoint, make_config, make_worker, secrets_for, seed


def _rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


def test_a_contact_erased_while_its_webhook_is_in_flight_leaves_the_rest_recorded(engine: Engine) -> None:
    seed(engine, 4)
    config = make_config(("sms", endpoint("sms")))
    erased: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if not erased:
            # The operator erases this person while crmhub waits for the consumer's answer.
            contact_id = int(consumer.bodies()[-1]["data"]["contact"]["id"])
            with write_transaction(engine) as conn:
                erase_contact(conn, contact_id, now=T0)
            erased.append(contact_id)
        return httpx.Response(204)

    consumer = Consumer(answer)
    stats = asyncio.run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)).run(Clock()))

    assert len(consumer.received) == 4 and len(erased) == 1
    left = _rows(engine, deliveries)
    assert len(left) == 3 and {r["status"] for r in left} == {"succeeded"}, "the others are not re-sent"
    assert sorted(a["delivery_id"] for a in _rows(engine, delivery_attempts)) == [r["id"] for r in left]
    assert stats.outcomes["succeeded"] == 3


def test_an_answer_the_store_cannot_hold_as_text_is_recorded_cleaned(engine: Engine) -> None:
    seed(engine, 2)
    config = make_config(("sms", endpoint("sms", concurrency=1)))
    # PostgreSQL refuses a NUL in text: the whole pass, the other delivery's success with it, failed.
    answers = iter([httpx.Response(400, content=b"bad\x00payload"), httpx.Response(204)])
    consumer = Consumer(lambda _r: next(answers))
    asyncio.run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)).run(Clock()))
    assert sorted(r["status"] for r in _rows(engine, deliveries)) == ["dead", "succeeded"]
    excerpts = [a["response_excerpt"] for a in _rows(engine, delivery_attempts)]
    assert excerpts[0] == "bad\ufffdpayload"
