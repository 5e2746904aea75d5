"""`crmhub serve` as a real process against the sandbox: provider webhooks, Segment.com ingest, refusals."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as analytics
from sqlalchemy import func, select

from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.config import sandbox_config
from crmhub.sandbox.harness import ServeProcess
from crmhub.sandbox.webhooks_out import (
    hubspot_signature_v3,
    stripe_headers,
    stripe_signature,
    typeform_signature,
)
from sync.store import create_store_engine
from sync.store.tables import contact_identities, contacts, events, inbound_events, records
from tests.inbound.payloads import stripe_event, typeform_payload
from webhooks.signing import decode_secret, signed_headers

ADMIN_TOKEN = "admin-token-for-tests"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Sandbox, str]]:
    """A sandbox of its own: these tests read its receiver and its HubSpot contacts."""
    box = Sandbox(people=120, seed=11)
    with SandboxServer(box) as server:
        yield box, server.url


@pytest.fixture(scope="module")
def served(sandbox: tuple[Sandbox, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One `crmhub serve` (no schedule) over a fresh SQLite store, pointed at the sandbox."""
    _box, url = sandbox
    folder = tmp_path_factory.mktemp("serve")
    config = folder / "crmhub.toml"
    config.write_text(sandbox_config(url, f"sqlite:///{folder / 'crmhub.db'}"), encoding="utf-8")
    env = credentials.ENVIRONMENT | {"CRMHUB_ADMIN_TOKEN": ADMIN_TOKEN}
    with ServeProcess(config, env) as process:
        yield process


def _store(process: ServeProcess) -> Any:
    text = process.config.read_text(encoding="utf-8")
    url = next(
        line.split('"')[1] for line in text.splitlines() if line.startswith("url = ") and "sqlite" in line
    )
    return create_store_engine(url)


def _counts(process: ServeProcess) -> dict[str, int]:
    engine = _store(process)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (records, events, contacts, inbound_events)
            }
    finally:
        engine.dispose()


def _entered(box: Sandbox, segment: str, since: float) -> list[dict[str, Any]]:
    return [
        row
        for row in box.receiver.state()["accepted"]
        if row["payload"]["type"] == "segment.entered"
        and row["payload"]["data"]["segment"]["key"] == segment
        and row["received_at"] >= since
    ]


def _wait_for_entry(box: Sandbox, segment: str, since: float, timeout: float = 15.0) -> float:
    """Seconds from `since` until the receiver accepted a `segment.entered` for `segment`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _entered(box, segment, since)
        if rows:
            return min(r["received_at"] for r in rows) - since
        time.sleep(0.01)
    raise AssertionError(f"no segment.entered for {segment} within {timeout} s")


def _stripe_request(url: str, body: bytes, *, stamp: int | None = None) -> httpx.Response:
    headers = stripe_headers(body, int(time.time()) if stamp is None else stamp)
    return httpx.post(f"{url}/hooks/stripe", content=body, headers=headers, timeout=10)


def _customer_hubspot_contact(box: Sandbox) -> str:
    for contact in box.world.hubspot.objects["contacts"].values():
        props = contact.properties
        if props.get("lifecyclestage") == "customer" and props.get("hs_email_optout") != "true":
            return str(contact.id)
    raise AssertionError("the sandbox has no reachable HubSpot customer")


def test_a_signed_webhook_from_each_provider_reaches_the_consumer_as_segment_entered(
    served: ServeProcess, sandbox: tuple[Sandbox, str]
) -> None:
    box, _ = sandbox
    now = datetime.now(UTC)
    latencies: dict[str, float] = {}

    body = json.dumps(stripe_event("evt_serve_1", at=now)).encode()
    sent = time.time()
    assert _stripe_request(served.url, body).status_code == 200
    latencies["stripe"] = _wait_for_entry(box, "paid_last_7_days", sent)

    object_id = _customer_hubspot_contact(box)
    event = {
        "eventId": 9001,
        "subscriptionId": 1,
        "portalId": 62515,
        "appId": 4242,
        "occurredAt": int(now.timestamp() * 1000),
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": "lifecyclestage",
        "propertyValue": "customer",
        "changeSource": "CRM",
    }
    body = json.dumps([event]).encode()
    stamp = int(time.time() * 1000)
    uri = f"{served.url}/hooks/hubspot"
    headers = {
        "content-type": "application/json",
        "x-hubspot-signature-v3": hubspot_signature_v3(
            "POST", uri, body, stamp, credentials.HUBSPOT_CLIENT_SECRET
        ),
        "x-hubspot-request-timestamp": str(stamp),
    }
    sent = time.time()
    assert httpx.post(uri, content=body, headers=headers, timeout=10).status_code == 200
    latencies["hubspot"] = _wait_for_entry(box, "customers_not_opted_out", sent)

    form = typeform_payload("tok_serve", at=now)
    form["form_response"]["form_id"] = "crmhubNPS"
    body = json.dumps(form).encode()
    headers = {
        "content-type": "application/json",
        "typeform-signature": typeform_signature(body, credentials.TYPEFORM_WEBHOOK_SECRET),
    }
    sent = time.time()
    assert (
        httpx.post(f"{served.url}/hooks/typeform", content=body, headers=headers, timeout=10).status_code
        == 200
    )
    latencies["typeform"] = _wait_for_entry(box, "nps_detractors", sent)

    # Reported, not asserted: timings belong to bench/realtime.py and BENCHMARKS.md.
    print(
        "webhook received -> segment.entered delivered:",
        {k: f"{v * 1000:.0f} ms" for k, v in latencies.items()},
    )


def test_the_same_stripe_event_twice_is_stored_once(served: ServeProcess) -> None:
    body = json.dumps(stripe_event("evt_serve_twice", at=datetime.now(UTC))).encode()
    first = _stripe_request(served.url, body)
    before = _counts(served)
    second = _stripe_request(served.url, body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert _counts(served) == before


@pytest.mark.parametrize(
    "case",
    ["forged", "replayed", "truncated", "unsigned", "oversized"],
)
def test_bad_requests_are_refused_and_store_nothing(served: ServeProcess, case: str) -> None:
    body = json.dumps(stripe_event(f"evt_bad_{case}", at=datetime.now(UTC))).encode()
    before = _counts(served)
    url = f"{served.url}/hooks/stripe"
    if case == "forged":
        signature = stripe_signature(body, "whsec_not_the_secret", int(time.time()))
        response = httpx.post(url, content=body, headers={"stripe-signature": signature})
    elif case == "replayed":
        response = _stripe_request(served.url, body, stamp=int(time.time()) - 3600)
    elif case == "truncated":
        signature = stripe_signature(body, credentials.STRIPE_WEBHOOK_SECRET, int(time.time()))
        response = httpx.post(url, content=body[:-7], headers={"stripe-signature": signature})
    elif case == "unsigned":
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    else:
        padded = json.loads(body) | {"padding": "x" * (2 * 1024 * 1024)}
        response = _stripe_request(served.url, json.dumps(padded).encode())
    expected = 413 if case == "oversized" else 401
    assert response.status_code == expected, response.text
    assert response.json()["message"]
    assert _counts(served) == before


def test_segment_analytics_python_pointed_at_crmhub_lands_contact_events(served: ServeProcess) -> None:
    failures: list[Exception] = []
    client = analytics.Client(
        credentials.SEGMENT_WRITE_KEY,
        host=served.url,
        sync_mode=True,
        on_error=lambda error, _items: failures.append(error),
    )
    client.identify("serve-user-1", {"email": "serve.user@example.com", "plan": "pro"})
    client.track("serve-user-1", "Feature Used", {"feature": "segments"})
    client.flush()
    assert failures == []
    engine = _store(served)
    try:
        with engine.connect() as conn:
            contact_id = conn.execute(
                select(contact_identities.c.contact_id).where(
                    contact_identities.c.kind == "segmentio_user",
                    contact_identities.c.value == "serve-user-1",
                )
            ).scalar_one()
            names = (
                conn.execute(select(events.c.name).where(events.c.contact_id == contact_id)).scalars().all()
            )
    finally:
        engine.dispose()
    assert "Feature Used" in names


def test_a_wrong_write_key_gets_segments_answer(served: ServeProcess) -> None:
    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}]}).encode())
    response = httpx.post(
        f"{served.url}/v1/batch",
        content=body,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
        auth=("not-the-write-key", ""),
    )
    assert response.status_code == 401
    assert response.json()["message"]


def test_health_readiness_and_metrics_answer(served: ServeProcess) -> None:
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served.url}/readyz").json() == {"status": "ready"}
    text = httpx.get(f"{served.url}/metrics").text
    assert "crmhub_inbound_requests_total" in text
    assert "crmhub_deliveries" in text


def test_sigterm_shuts_down_cleanly(sandbox: tuple[Sandbox, str], tmp_path: Path) -> None:
    _box, url = sandbox
    config = tmp_path / "crmhub.toml"
    config.write_text(sandbox_config(url, f"sqlite:///{tmp_path / 'crmhub.db'}"), encoding="utf-8")
    with ServeProcess(config, credentials.ENVIRONMENT) as process:
        code = process.stop()
        log = process.log()
    # uvicorn finishes its shutdown, then re-raises the signal it caught, as a well-behaved server does.
    assert code in (0, -signal.SIGTERM), log
    assert "crmhub serve: stopped" in log
    assert "Traceback" not in log


def _left(box: Sandbox, segment: str, since: float) -> list[dict[str, Any]]:
    return [
        row["payload"]
        for row in box.receiver.state()["accepted"]
        if row["payload"]["type"] == "segment.left"
        and row["payload"]["data"]["segment"]["key"] == segment
        and row["received_at"] >= since
    ]


def _feedback(url: str, body: bytes, secret: str) -> httpx.Response:
    stamp = int(time.time())
    headers = signed_headers(f"msg_{stamp}_{len(body)}", stamp, body, [decode_secret(secret)])
    return httpx.post(f"{url}/hooks/feedback/receiver", content=body, headers=headers, timeout=10)


def test_a_stop_reply_from_the_sender_unsubscribes_through_the_feedback_hook(
    served: ServeProcess, sandbox: tuple[Sandbox, str]
) -> None:
    box, _ = sandbox
    form = typeform_payload("tok_promoter", at=datetime.now(UTC))
    answers = form["form_response"]["answers"]
    answers[0]["number"] = 10  # a promoter
    answers[1]["email"] = "promoter@example.com"
    consent = {"id": "f3", "type": "yes_no", "ref": "consent"}
    answers.append({"type": "boolean", "boolean": True, "field": consent})
    body = json.dumps(form).encode()
    headers = {"typeform-signature": typeform_signature(body, credentials.TYPEFORM_WEBHOOK_SECRET)}
    sent = time.time()
    assert httpx.post(f"{served.url}/hooks/typeform", content=body, headers=headers).status_code == 200
    _wait_for_entry(box, "sms_promoters", sent)
    contact_id = _entered(box, "sms_promoters", sent)[0]["payload"]["data"]["contact"]["id"]

    stop = {
        "type": "contact.unsubscribed",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"contact_id": contact_id, "channel": "sms", "reason": "STOP"},
    }
    raw = json.dumps(stop).encode()
    forged = _feedback(served.url, raw, "whsec_" + "A" * 40)
    assert forged.status_code == 401
    stranger = json.dumps(stop | {"data": {"contact_id": 10**9}}).encode()
    unknown = _feedback(served.url, stranger, credentials.RECEIVER_SECRET)
    assert unknown.status_code == 404
    before = time.time()
    answer = _feedback(served.url, raw, credentials.RECEIVER_SECRET)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 15
    while not _left(box, "sms_promoters", before) and time.monotonic() < deadline:
        time.sleep(0.02)
    [left] = _left(box, "sms_promoters", before)
    assert left["data"]["contact"]["id"] == contact_id
    assert left["data"]["transition"]["reason"] == "unsubscribed"


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`crmhub serve ARGS` over an empty store, as its own process; its output once it ends."""
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "crmhub.db"}"\n', encoding="utf-8")
    command = [sys.executable, "-m", "crmhub", "--config", str(config), "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_port_in_use_is_refused_before_the_scheduler_or_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(tmp_path, "--port", str(port))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert (
        f"cannot listen on 127.0.0.1:{port}: the port is in use (another crmhub serve, or another "
        "program): stop it, or pick another port with --port or server.port" in output
    )
    # Nothing ran: the app (its scheduler and delivery worker) starts only on a bound socket.
    assert "ready (scheduler" not in output and "Waiting for application startup" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (
            ["--host", "999.1.1.1"],
            2,
            "cannot listen on 999.1.1.1:8484: the host 999.1.1.1 cannot be resolved",
        ),
        (["--port", "99999"], 2, "Invalid value for '--port'"),
    ],
    ids=["unresolvable-host", "port-out-of-range"],
)
def test_an_address_that_cannot_be_listened_on_is_a_clear_refusal(
    tmp_path: Path, args: list[str], code: int, expected: str
) -> None:
    done = _serve(tmp_path, *args)
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert expected in output
    assert "ready (scheduler" not in output
    assert "Traceback" not in output and "OverflowError" not in output
