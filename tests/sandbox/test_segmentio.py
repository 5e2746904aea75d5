"""The Segment.com collector through the official `segment-analytics-python` client (host only)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from segment.analytics import Client

from crmhub.sandbox import Sandbox, credentials


def _auth(key: str = credentials.SEGMENT_WRITE_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_identify_and_track_land_in_the_collector(url: str, sandbox: Sandbox) -> None:
    before = len(sandbox.world.segmentio_received)
    client = Client(credentials.SEGMENT_WRITE_KEY, host=url, sync_mode=True)
    ok, _ = client.identify(user_id="u_000001", traits={"email": "Ada@Example.com"})
    assert ok
    client.track(user_id="u_000001", event="Order Completed", properties={"revenue": 9.5})
    received = httpx.get(f"{url}/_sandbox/segmentio/received").json()["received"][before:]
    assert [r["message"]["type"] for r in received] == ["identify", "track"]
    assert received[1]["message"]["properties"] == {"revenue": 9.5}
    assert received[0]["message"]["context"]["library"]["name"] == "analytics-python"


def test_generated_product_events_can_be_replayed(url: str, sandbox: Sandbox) -> None:
    events = httpx.get(f"{url}/_sandbox/segmentio/product-events").json()["events"]
    assert {e["type"] for e in events} == {"identify", "track"}
    batch = {"batch": events[:50]}
    answer = httpx.post(f"{url}/v1/batch", json=batch, headers=_auth())
    assert answer.status_code == 200 and answer.json() == {"success": True}


def test_write_key_in_body_is_accepted(url: str) -> None:
    body = {"writeKey": credentials.SEGMENT_WRITE_KEY, "userId": "u_1", "event": "Logged In"}
    assert httpx.post(f"{url}/v1/track", json=body).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"batch": [{"userId": "u", "type": "track", "event": "x", "properties": {"p": "a" * 33_000}}]}, 400),
        (
            {
                "batch": [{"userId": "u", "type": "track", "event": "x", "properties": {"p": "a" * 30_000}}]
                * 18
            },
            400,
        ),
        ({"batch": [{"type": "track", "event": "no user"}]}, 400),
    ],
)
def test_limits_and_validation(url: str, body: dict[str, object], status: int) -> None:
    answer = httpx.post(f"{url}/v1/batch", content=json.dumps(body), headers=_auth())
    assert answer.status_code == status


def test_wrong_write_key_is_refused(url: str) -> None:
    answer = httpx.post(
        f"{url}/v1/batch", json={"batch": [{"userId": "u", "type": "identify"}]}, headers=_auth("x")
    )
    assert answer.status_code == 401
