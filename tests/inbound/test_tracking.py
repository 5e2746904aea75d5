"""The Segment.com Tracking API: what segment-analytics-python sends is accepted, answered as Segment does."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from typing import Any

import pytest
import segment.analytics.request as segment_request
from segment.analytics import Client
from segment.analytics.request import APIError
from sqlalchemy import Engine, select

from sync.store.tables import events, records
from tests.inbound.conftest import BASE, NOW, WRITE_KEY, counts, entered
from webhooks.inbound import InboundReceiver, InboundRequest, InboundResponse, TrackingKind


class _Answer:
    """The part of `requests.Response` the library reads."""

    def __init__(self, answer: InboundResponse) -> None:
        self.status_code = answer.status
        self.reason = "answer"
        self.text = json.dumps(answer.body)
        self._body = answer.body

    def json(self) -> Any:
        return self._body


class CrmhubSession:
    """Stands in for the library's requests session: hands each POST to the receiver, as the server will."""

    def __init__(self, receiver: InboundReceiver) -> None:
        self.receiver = receiver
        self.sent: list[InboundRequest] = []

    def post(self, url: str, data: bytes | str, headers: dict[str, str], **kwargs: Any) -> _Answer:
        body = data.encode() if isinstance(data, str) else data
        request = InboundRequest("POST", url, {k.lower(): v for k, v in headers.items()}, body)
        self.sent.append(request)
        kind: TrackingKind = "batch"
        assert url == f"{BASE}/v1/batch"
        return _Answer(self.receiver.track_api(kind, request, now=NOW))


class _LibraryClock(datetime):
    """The library's clock (it stamps `sentAt` with it): crmhub's NOW, plus `behind` set by a test."""

    behind = timedelta(0)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _LibraryClock:
        at = NOW - cls.behind
        return cls.fromtimestamp(at.timestamp(), tz)


@pytest.fixture
def session(receiver: InboundReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[CrmhubSession]:
    fake = CrmhubSession(receiver)
    monkeypatch.setattr(segment_request, "_session", fake)
    monkeypatch.setattr(segment_request, "datetime", _LibraryClock)
    monkeypatch.setattr(_LibraryClock, "behind", timedelta(0))
    yield fake


def test_a_device_clock_a_day_behind_is_corrected_as_the_spec_says(
    session: CrmhubSession, engine: Engine
) -> None:
    # timestamp = receivedAt - (sentAt - originalTimestamp): the library's `timestamp` is the original.
    _LibraryClock.behind = timedelta(days=1)
    client = Client(WRITE_KEY, host=BASE, sync_mode=True)
    called = NOW - timedelta(days=1, minutes=5)  # five minutes before sending, by the device's clock
    client.track("u_7", "Order Completed", {"revenue": 9.5}, timestamp=called, message_id="order-1")
    with engine.connect() as conn:
        [occurred] = conn.execute(select(events.c.occurred_at)).scalars().all()
    assert occurred.replace(tzinfo=NOW.tzinfo) == NOW - timedelta(minutes=5)


@pytest.mark.parametrize("compress", [False, True])
def test_the_library_pointed_at_crmhub_delivers_identify_and_track(
    session: CrmhubSession, engine: Engine, compress: bool
) -> None:
    client = Client(WRITE_KEY, host=BASE, sync_mode=True, gzip=compress)
    client.identify("u_7", {"email": "linus@example.com", "first_name": "Linus"}, timestamp=NOW)
    client.track("u_7", "Order Completed", {"revenue": 9.5}, timestamp=NOW, message_id="order-1")
    sent = session.sent[0]
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert (sent.headers.get("content-encoding") == "gzip") is compress
    raw = gzip.decompress(sent.body) if compress else sent.body
    assert set(json.loads(raw)) == {"batch", "sentAt", "writeKey"}
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(records.c.stream, records.c.external_id))] == [
            ("users", "u_7")
        ]
        assert [tuple(r) for r in conn.execute(select(events.c.name, events.c.external_id))] == [
            ("Order Completed", "order-1")
        ]
    assert entered(engine) == [("buyers", "entered")]
    assert counts(engine)["contacts"] == 1


def test_the_library_delivers_screen_and_alias(session: CrmhubSession, engine: Engine) -> None:
    client = Client(WRITE_KEY, host=BASE, sync_mode=True)
    client.screen("u_7", "Onboarding", "Welcome", {"variation": "blue"}, timestamp=NOW, message_id="s-1")
    client.alias("anon-7", "u_7", timestamp=NOW, message_id="a-1")
    with engine.connect() as conn:
        stored = conn.execute(select(events.c.name, events.c.external_id, events.c.properties)).all()
    assert sorted((name, key) for name, key, _ in stored) == [
        ("Screen Viewed", "s-1"),
        ("User Aliased", "a-1"),
    ]
    properties = {key: props for _, key, props in stored}
    assert properties["s-1"] == {"variation": "blue", "name": "Welcome", "category": "Onboarding"}
    assert properties["a-1"] == {"previousId": "anon-7"}
    assert counts(engine)["contacts"] == 1


def test_a_message_crmhub_cannot_use_does_not_lose_the_rest_of_its_batch(
    session: CrmhubSession, engine: Engine
) -> None:
    messages = [
        {"type": "track", "userId": "u_1", "event": "Order Completed", "messageId": "m1", "timestamp": NOW},
        {"type": "delete", "userId": "u_2", "messageId": "m2", "timestamp": NOW},
        {"type": "track", "event": "Order Completed", "messageId": "m3", "timestamp": NOW},
        {"type": "screen", "userId": "u_3", "name": "Home", "messageId": "m4", "timestamp": NOW},
    ]
    answer = segment_request.post(WRITE_KEY, BASE, batch=messages)
    body = answer.json()
    assert answer.status_code == 200 and body["success"] is True
    assert (body["events"], len(body["ignored"])) == (2, 2)
    assert "message 1: type 'delete' is not supported" in body["ignored"][0]
    assert "message 2: userId or anonymousId is required" in body["ignored"][1]
    with engine.connect() as conn:
        assert sorted(conn.execute(select(events.c.external_id)).scalars()) == ["m1", "m4"]
    assert entered(engine) == [("buyers", "entered")]
    # Nothing usable at all: still 200 (the library would drop a 400 anyway), nothing stored.
    nothing = segment_request.post(WRITE_KEY, BASE, batch=[messages[1]]).json()
    assert nothing["success"] is True and nothing["stored"] is False and len(nothing["ignored"]) == 1


def test_a_batch_sent_twice_is_stored_once(session: CrmhubSession, engine: Engine) -> None:
    messages = [
        {
            "type": "track",
            "userId": f"u_{n}",
            "event": "Order Completed",
            "messageId": f"m{n}",
            "timestamp": NOW,
        }
        for n in range(3)
    ]
    first = segment_request.post(WRITE_KEY, BASE, gzip=True, batch=messages)
    assert first.json()["success"] is True and first.json()["events"] == 3
    before = counts(engine)
    second = segment_request.post(WRITE_KEY, BASE, gzip=True, batch=messages)
    assert second.json() == {"success": True, "duplicate": True}
    assert counts(engine) == before


@pytest.mark.parametrize(
    ("write_key", "status", "code"),
    [("wrong-key", 401, "invalid_write_key"), ("", 401, "invalid_write_key")],
)
def test_a_wrong_write_key_is_refused_with_segments_error_shape(
    session: CrmhubSession, engine: Engine, write_key: str, status: int, code: str
) -> None:
    client = Client(write_key or "x", host=BASE, sync_mode=True)
    if not write_key:
        # No Basic auth at all and no writeKey in the body.
        request = InboundRequest("POST", f"{BASE}/v1/track", {}, b'{"userId":"u","event":"E"}')
        answer = session.receiver.track_api("track", request, now=NOW)
        assert (answer.status, answer.body["code"]) == (status, code)
        return
    with pytest.raises(APIError) as caught:
        client.track("u_7", "Order Completed", timestamp=NOW)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert "connectors.segmentio.write_key_env" in caught.value.message
    assert counts(engine)["events"] == 0


def test_a_message_over_32_kb_is_400(session: CrmhubSession, engine: Engine) -> None:
    big = {"type": "track", "userId": "u_1", "event": "Big", "properties": {"blob": "x" * 33 * 1024}}
    with pytest.raises(APIError) as caught:
        segment_request.post(WRITE_KEY, BASE, batch=[big])
    assert (caught.value.status, caught.value.code) == (400, "payload_too_large")
    assert "32 KB limit" in caught.value.message
    single = InboundRequest(
        "POST", f"{BASE}/v1/track", {"authorization": _basic(WRITE_KEY)}, json.dumps(big).encode()
    )
    answer = session.receiver.track_api("track", single, now=NOW)
    assert answer.status == 400 and answer.body["success"] is False
    assert counts(engine)["events"] == 0


def test_a_batch_over_500_kb_is_400(session: CrmhubSession, engine: Engine) -> None:
    messages = [
        {"type": "track", "userId": f"u_{n}", "event": "E", "properties": {"blob": "x" * 30 * 1024}}
        for n in range(17)
    ]
    with pytest.raises(APIError) as caught:
        segment_request.post(WRITE_KEY, BASE, gzip=True, batch=messages)
    assert (caught.value.status, caught.value.code) == (400, "payload_too_large")
    assert "500 KB limit" in caught.value.message
    assert counts(engine)["events"] == 0


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        ("track", {"userId": "u_1", "event": "Signed Up", "timestamp": NOW.isoformat()}, None),
        ("identify", {"userId": "u_1", "traits": {"email": "a@example.com"}}, None),
        ("page", {"anonymousId": "a_1", "name": "Pricing", "timestamp": NOW.isoformat()}, None),
        ("group", {"userId": "u_1", "groupId": "g_1", "traits": {"name": "ACME"}}, None),
        ("screen", {"userId": "u_1", "name": "Home", "properties": {"variation": "blue"}}, None),
        ("alias", {"previousId": "39239-239239-239239-23923", "userId": "019mr8mf4r"}, None),
        ("track", {"userId": "u_1"}, "invalid_message"),
        ("alias", {"userId": "019mr8mf4r"}, "invalid_message"),
        ("batch", {"batch": "nope"}, "invalid_message"),
    ],
)
def test_single_calls_and_their_errors(
    receiver: InboundReceiver, kind: TrackingKind, body: dict[str, Any], code: str | None
) -> None:
    request = InboundRequest(
        "POST", f"{BASE}/v1/{kind}", {"authorization": _basic(WRITE_KEY)}, json.dumps(body).encode()
    )
    answer = receiver.track_api(kind, request, now=NOW)
    if code is None:
        assert (answer.status, answer.body["success"]) == (200, True), answer.body
    else:
        assert (answer.status, answer.body["code"]) == (400, code)


def test_bad_gzip_and_bad_json_are_400(receiver: InboundReceiver) -> None:
    headers = {"authorization": _basic(WRITE_KEY), "content-encoding": "gzip"}
    truncated = gzip.compress(b'{"batch": []}')[:-6]
    for body, code in [(b"not gzip", "invalid_gzip"), (truncated, "invalid_gzip")]:
        answer = receiver.track_api(
            "batch", InboundRequest("POST", f"{BASE}/v1/batch", headers, body), now=NOW
        )
        assert (answer.status, answer.body["code"]) == (400, code)
    plain = {"authorization": _basic(WRITE_KEY)}
    answer = receiver.track_api(
        "batch", InboundRequest("POST", f"{BASE}/v1/batch", plain, b'{"batch": ['), now=NOW
    )
    assert (answer.status, answer.body["code"]) == (400, "invalid_json")


@pytest.mark.parametrize("authorization", [True, False])
def test_deeply_nested_json_is_400_with_or_without_the_basic_write_key(
    receiver: InboundReceiver, authorization: bool
) -> None:
    headers = {"authorization": _basic(WRITE_KEY)} if authorization else {}
    nested = b'{"writeKey": "%s", "batch": ' % WRITE_KEY.encode() + b"[" * 10_000 + b"]" * 10_000 + b"}"
    for kind in ("batch", "track"):
        request = InboundRequest("POST", f"{BASE}/v1/{kind}", headers, nested)
        answer = receiver.track_api(kind, request, now=NOW)
        assert (answer.status, answer.body["code"]) == (400, "invalid_json"), answer.body


def test_a_wrong_basic_write_key_is_401_before_the_body_is_parsed(receiver: InboundReceiver) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    request = InboundRequest("POST", f"{BASE}/v1/track", {"authorization": _basic("wrong")}, deep)
    answer = receiver.track_api("track", request, now=NOW)
    assert (answer.status, answer.body["code"]) == (401, "invalid_write_key")


def test_a_gzip_bomb_stops_at_the_batch_limit(receiver: InboundReceiver) -> None:
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))
    headers = {"authorization": _basic(WRITE_KEY), "content-encoding": "gzip"}
    answer = receiver.track_api("batch", InboundRequest("POST", f"{BASE}/v1/batch", headers, bomb), now=NOW)
    assert (answer.status, answer.body["code"]) == (400, "payload_too_large")


def test_the_tracking_api_is_503_without_a_write_key_so_libraries_retry(make_receiver: Any) -> None:
    receiver = make_receiver(segmentio_write_key=None)
    request = InboundRequest(
        "POST", f"{BASE}/v1/batch", {"authorization": _basic(WRITE_KEY)}, b'{"batch": []}'
    )
    answer = receiver.track_api("batch", request, now=NOW)
    assert (answer.status, answer.body["success"], answer.body["code"]) == (503, False, "not_enabled")
    assert answer.headers == {"retry-after": "300"}
    assert "connectors.segmentio.enabled = true" in answer.body["message"]


def test_a_call_the_tracking_api_does_not_have_is_404_even_when_off(make_receiver: Any) -> None:
    receiver = make_receiver(segmentio_write_key=None)
    request = InboundRequest("POST", f"{BASE}/v1/nope", {}, b"{}")
    answer = receiver.track_api("nope", request, now=NOW)
    assert (answer.status, answer.body["code"]) == (404, "not_found")


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()
