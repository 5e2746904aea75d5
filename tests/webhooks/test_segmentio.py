"""Segment.com as a destination, through segment-analytics-python against a local HTTP server."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from field_mapping.types import FieldType
from sync.fields import create_field
from sync.store.field_columns import fields_table
from sync.store.tables import contact_identities, deliveries
from tests.webhooks.conftest import T0, Clock, LocalServer, add_contact, add_segment, add_transition
from webhooks import DeliveryWorker, EndpointConfig, WebhooksConfig, build_senders
from webhooks.payload import TransitionInfo, payload
from webhooks.queue import Job
from webhooks.segmentio_destination import SegmentioSender


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


def _identity(conn: Connection, contact_id: int, kind: str, value: str) -> None:
    row = {"contact_id": contact_id, "kind": kind, "value": value, "source": "segmentio", "first_seen_at": T0}
    conn.execute(insert(contact_identities).values(**row))


def test_entries_land_on_the_profile_segment_knows_the_person_by(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn, "vip")
        known, anonymous, ours = (add_contact(conn, f"{n}@example.com") for n in ("kim", "ann", "ola"))
        _identity(conn, known, "segmentio_user", "user-42")
        _identity(conn, known, "segmentio_anonymous", "anon-1")
        _identity(conn, anonymous, "segmentio_anonymous", "anon-2")
        for cid in (known, anonymous, ours):
            add_transition(conn, sid, cid, "entered")
    with LocalServer(status=200) as server:
        config = _config(server.url)
        worker = DeliveryWorker(engine, config, build_senders(config, {"SEGMENT_DEST_KEY": "wk_test"}))
        asyncio.run(worker.run(Clock()))
    sent = {(m["type"], m.get("userId"), m.get("anonymousId")) for m in _messages(server)}
    assert sent == {
        (kind, user, anon)
        for kind in ("identify", "track")
        for user, anon in (("user-42", None), (str(anonymous), "anon-2"), (str(ours), None))
    }
    for message in _messages(server):
        assert not {"segmentio_user", "segmentio_anonymous"} & set(message.get("traits", {}))
    tracked = [m for m in _messages(server) if m["type"] == "track"]
    assert sorted(m["properties"]["crmhub_contact_id"] for m in tracked) == sorted([known, anonymous, ours])


def test_traits_too_large_for_a_message_are_left_out_and_named(engine: Engine) -> None:
    # Payload texts stop at 500 characters; six of them in CJK are 18,000 bytes as the library's ASCII
    # escapes, twice in a track call (its context carries the traits too): over the 32 KiB it accepts.
    names = [f"bio{i}" for i in range(6)]
    with engine.begin() as conn:
        cid = add_contact(conn, "ada@example.com")
        for i, name in enumerate(names):
            field = create_field(conn, name, FieldType.STRING, now=T0, label=name, origin="rule", source=None)
            table = fields_table([field.column])
            text = ("東京" * 250)[: 500 - i]  # sizes apart, so the largest go first
            if i == 0:
                conn.execute(insert(table).values({"contact_id": cid, field.column: text}))
            else:
                conn.execute(update(table).where(table.c.contact_id == cid).values({field.column: text}))
        add_transition(conn, add_segment(conn, "vip"), cid, "entered")
    with LocalServer(status=200) as server:
        config = _config(server.url)
        wanted = config.endpoints["segmentio"].model_copy(update={"fields": ["email", *names]})
        config = WebhooksConfig(endpoints={"segmentio": wanted})
        worker = DeliveryWorker(engine, config, build_senders(config, {"SEGMENT_DEST_KEY": "wk_test"}))
        asyncio.run(worker.run(Clock()))
    with engine.connect() as conn:
        assert conn.execute(select(deliveries.c.status)).scalar_one() == "succeeded"
    identify, track = _messages(server)
    assert set(identify["traits"]) == {"email", "vip", "bio2", "bio3", "bio4", "bio5"}
    assert track["properties"]["traits_left_out"] == ["bio0", "bio1"]


def test_a_message_the_library_refuses_is_dead_at_once_without_the_persons_data_in_the_reason() -> None:
    class Refusing:
        def identify(self, **_message: Any) -> None:
            raise RuntimeError(
                "Message exceeds %skb limit. (%s)", "32", "{'traits': {'email': 'ada@example.com'}}"
            )

    endpoint = _config("http://127.0.0.1:9/").endpoints["segmentio"]
    sender = SegmentioSender(endpoint, "wk_test", client=Refusing())
    info = TransitionInfo(1, 7, "entered", T0, "rule", "v1", None, 1, "vip", "VIP")
    job = Job(delivery_id=1, webhook_id="msg_1", endpoint="segmentio", attempts=0, transition=info)
    body = payload(info, {"email": "ada@example.com"})
    attempt = asyncio.run(sender.send(job, body, T0))
    assert (
        attempt.refused
        and attempt.error == "the Segment.com library refused it: Message exceeds %skb limit. (%s)"
    )
