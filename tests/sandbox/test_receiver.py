"""The Standard Webhooks receiver: verifies, de-duplicates, records, and fails on demand."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from standardwebhooks import Webhook

from crmhub.sandbox import Fault, Sandbox, credentials


def _signed(body: str, webhook_id: str, secret: str = credentials.RECEIVER_SECRET) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    signature = Webhook(secret).sign(webhook_id, now, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


@pytest.fixture(autouse=True)
def _fresh_receiver(url: str) -> None:
    httpx.delete(f"{url}/_sandbox/receiver")


def test_accepts_signed_and_dedupes_by_id(url: str) -> None:
    body = json.dumps({"type": "segment.entered", "data": {"segment": "vip"}})
    headers = _signed(body, "msg_1")
    first = httpx.post(f"{url}/_receiver/sms", content=body, headers=headers)
    again = httpx.post(f"{url}/_receiver/sms", content=body, headers=headers)
    assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    assert first.status_code == again.status_code == 200
    state = httpx.get(f"{url}/_sandbox/receiver", params={"name": "sms"}).json()
    assert [a["webhook_id"] for a in state["accepted"]] == ["msg_1"]
    assert state["accepted"][0]["payload"]["data"] == {"segment": "vip"}
    assert state["duplicates"] == 1


def test_rejects_forged_and_stale(url: str) -> None:
    body = '{"type": "segment.left"}'
    forged = _signed(body, "msg_2", "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=")
    assert httpx.post(f"{url}/_receiver/sms", content=body, headers=forged).status_code == 401
    stale = _signed(body, "msg_3") | {"webhook-timestamp": "1700000000"}
    assert httpx.post(f"{url}/_receiver/sms", content=body, headers=stale).status_code == 401
    tampered = _signed(body, "msg_4")
    assert httpx.post(f"{url}/_receiver/sms", content=body + " ", headers=tampered).status_code == 401
    assert httpx.get(f"{url}/_sandbox/receiver").json()["rejected"] == 3


def test_rotated_secrets(url: str) -> None:
    new_secret = "whsec_" + "bmV3LXNlY3JldC1mb3ItY3JtaHViLXJlY2VpdmVyLTAx"
    httpx.post(f"{url}/_sandbox/receiver", json={"secrets": [credentials.RECEIVER_SECRET, new_secret]})
    try:
        body = "{}"
        assert (
            httpx.post(
                f"{url}/_receiver/x", content=body, headers=_signed(body, "m5", new_secret)
            ).status_code
            == 200
        )
    finally:
        httpx.post(f"{url}/_sandbox/receiver", json={"secrets": [credentials.RECEIVER_SECRET]})


@pytest.mark.parametrize("status", [410, 500, 503])
def test_told_to_fail(url: str, sandbox: Sandbox, status: int) -> None:
    sandbox.add_fault(f"receiver:{status}:1")
    body = "{}"
    assert (
        httpx.post(f"{url}/_receiver/x", content=body, headers=_signed(body, f"f{status}")).status_code
        == status
    )
    assert (
        httpx.post(f"{url}/_receiver/x", content=body, headers=_signed(body, f"f{status}")).status_code == 200
    )


def test_timeout_fault_makes_the_client_time_out(url: str, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("receiver", "timeout", count=1, timeout_seconds=0.3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/_receiver/x", content="{}", headers=_signed("{}", "t1"), timeout=0.05)
