"""Segment.com as a destination, through segment-analytics-python against a local HTTP server."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from sync.store.tables import deliveries
from tests.webhooks.conftest import Clock, LocalServer, add_contact, add_segment, add_transition
from webhooks import DeliveryWorker, EndpointConfig, WebhooksConfig, build_senders


def _config(url: str) -> WebhooksConfig:
    destination = EndpointConfig(
        kind="segmentio",
        url=url,
        write_key_env="SEGMENT_DEST_KEY",
        fields=["email"],
        allow_http=True,
        allow_networks=["127.0.0.1/32"],
    )
    return WebhooksConfig(endpoints={"segmentio": destination})


def _messages(server: LocalServer) -> list[dict[str, Any]]:
    return [m for got in server.received for m in json.loads(got.body)["batch"]]


def test_entries_and_exits_become_identify_and_audience_events(engine: Engine) -> None:
    with engine.begin() as conn:
        sid, cid = add_segment(conn, "vip"), add_contact(conn, "ada@example.com")
        add_transition(conn, sid, cid, "entered")
        add_transition(conn, sid, cid, "left")
    with LocalServer(status=200) as server:
        config = _config(server.url)
        worker = DeliveryWorker(engine, config, build_senders(config, {"SEGMENT_DEST_KEY": "wk_test"}))
        asyncio.run(worker.run(Clock()))
    assert {got.path for got in server.received} == {"/v1/batch"}
    assert server.received[0].headers["authorization"] == "Basic " + base64.b64encode(b"wk_test:").decode()
    shapes = [
        (m["type"], m.get("event"), m.get("traits", {}).get("vip"), m.get("properties", {}).get("vip"))
        for m in _messages(server)
    ]
    assert shapes == [
        ("identify", None, True, None),
        ("track", "Audience Entered", None, True),
        ("identify", None, False, None),
        ("track", "Audience Exited", None, False),
    ]
    identify = _messages(server)[0]
    assert identify["userId"] == str(cid) and identify["traits"]["email"] == "ada@example.com"
    assert identify["context"]["personas"]["computation_key"] == "vip"


def test_a_failing_collector_is_retried_on_the_schedule_with_the_same_message_ids(engine: Engine) -> None:
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "vip"), add_contact(conn), "entered")
    clock = Clock()
    with LocalServer(status=503) as server:
        config = _config(server.url)
        worker = DeliveryWorker(engine, config, build_senders(config, {"SEGMENT_DEST_KEY": "wk_test"}))
        asyncio.run(worker.run(clock))
        with engine.connect() as conn:
            (failed,) = conn.execute(select(deliveries)).mappings().all()
        assert failed["status"] == "failed" and failed["last_status_code"] == 503
        server.status = 200
        clock.advance(timedelta(seconds=10))
        asyncio.run(worker.run(clock))
    with engine.connect() as conn:
        assert conn.execute(select(deliveries.c.status)).scalar_one() == "succeeded"
    ids = [m["messageId"] for m in _messages(server)]
    assert ids[0] == ids[1] and ids[0].endswith("-identify")  # the identify was resent under its id
    assert ids[-1].endswith("-track") and ids[-1].startswith(failed["webhook_id"])
