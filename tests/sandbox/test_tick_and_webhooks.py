"""`tick` mutates data and emits Stripe events; provider webhooks leave signed as each provider signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from hubspot.utils.signature import Signature

from crmhub.sandbox import Sandbox, SandboxServer, credentials


class Capture:
    """An ASGI app that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((scope["path"], headers, body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def for_path(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        """Requests received on `path`."""
        return [(h, b) for p, h, b in self.requests if p == path]


@pytest.fixture(scope="module")
def world_sandbox() -> Sandbox:
    """A sandbox of its own, since these tests move its clock."""
    return Sandbox(people=120, seed=3)


@pytest.fixture(scope="module")
def world_url(world_sandbox: Sandbox) -> Iterator[str]:
    with SandboxServer(world_sandbox) as server:
        yield server.url


@pytest.fixture(scope="module")
def capture() -> Iterator[tuple[Capture, str]]:
    app = Capture()
    with SandboxServer(app) as server:
        yield app, server.url


def test_tick_mutates_and_lists_new_events(world_sandbox: Sandbox, world_url: str) -> None:
    world = world_sandbox.world
    start = world.now
    contacts_before = {c.id: c.updated_ms for c in world.hubspot.objects["contacts"].values()}
    answer = httpx.post(f"{world_url}/_sandbox/tick", json={"days": 3}, timeout=30).json()
    assert answer["now"] == start + 3 * 86400
    assert answer["changes"]["hubspot.contacts.property_changes"] > 0
    assert answer["changes"]["typeform.responses.created"] > 0
    assert answer["webhooks_sent"] == 0
    bumped = [
        c for c in world.hubspot.objects["contacts"].values() if c.updated_ms > contacts_before.get(c.id, 0)
    ]
    assert bumped and all(c.updated_ms >= start * 1000 for c in bumped)
    http = stripe.HTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(
            credentials.STRIPE_API_KEY, base_addresses={"api": world_url}, http_client=http
        )
        events = list(
            client.v1.events.list(params={"created": {"gt": start}, "limit": 100}).auto_paging_iter()
        )
    finally:
        http.close()
    assert events and {"customer.subscription.updated", "invoice.paid"} <= {e.type for e in events}
    updated = next(e for e in events if e.type == "customer.subscription.updated")
    assert updated.data.previous_attributes


def test_events_older_than_30_days_are_not_listed(world_sandbox: Sandbox, world_url: str) -> None:
    world = world_sandbox.world
    auth = {"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"}
    oldest = world.now - 30 * 86400
    stored_old = [e for e in world.stripe["events"].items if e.data["created"] < oldest]
    world_sandbox.tick(31)
    body = httpx.get(f"{world_url}/v1/events?limit=100&created[lt]={oldest + 86400}", headers=auth).json()
    assert body["data"] == [] and body["has_more"] is False
    assert len(world.stripe["events"]) > len(stored_old)


def test_deleted_customers_read_back_as_stubs(world_sandbox: Sandbox, world_url: str) -> None:
    world = world_sandbox.world
    for _ in range(30):
        if world.stripe.deleted_customers:
            break
        world_sandbox.tick(1)
    customer_id, stub = next(iter(world.stripe.deleted_customers.items()))
    assert stub == {"id": customer_id, "object": "customer", "deleted": True}
    auth = {"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"}
    assert httpx.get(f"{world_url}/v1/customers/{customer_id}", headers=auth).json() == stub
    listed = [e for e in world.stripe["events"].items if e.data["type"] == "customer.deleted"]
    assert listed[0].data["data"]["object"]["deleted"] is True


def test_provider_webhooks_are_signed_like_the_providers(
    world_sandbox: Sandbox, capture: tuple[Capture, str]
) -> None:
    app, target = capture
    world_sandbox.set_webhook_targets(
        stripe=f"{target}/stripe", hubspot=f"{target}/hubspot", typeform=f"{target}/tf"
    )
    try:
        report = world_sandbox.tick(2)
    finally:
        world_sandbox.set_webhook_targets(stripe=None, hubspot=None, typeform=None)
    assert report["webhooks_sent"] == len(app.requests) > 0

    stripe_hooks = app.for_path("/stripe")
    assert stripe_hooks
    for headers, body in stripe_hooks:
        event = stripe.Webhook.construct_event(
            body, headers["stripe-signature"], credentials.STRIPE_WEBHOOK_SECRET
        )
        assert event.object == "event"

    hubspot_hooks = app.for_path("/hubspot")
    assert hubspot_hooks
    for headers, body in hubspot_hooks:
        assert Signature.is_valid(
            signature=headers["x-hubspot-signature-v3"],
            client_secret=credentials.HUBSPOT_CLIENT_SECRET,
            request_body=body.decode(),
            http_uri=f"{target}/hubspot",
            http_method="POST",
            signature_version="v3",
            timestamp=int(headers["x-hubspot-request-timestamp"]),
        )
        events = json.loads(body)
        assert isinstance(events, list) and events[0]["subscriptionType"].startswith("contact.")

    typeform_hooks = app.for_path("/tf")
    assert typeform_hooks
    for headers, body in typeform_hooks:
        digest = hmac.new(credentials.TYPEFORM_WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()
        assert headers["typeform-signature"] == "sha256=" + base64.b64encode(digest).decode()
        assert json.loads(body)["event_type"] == "form_response"


def test_tick_over_http_delivers_webhooks_too(
    world_sandbox: Sandbox, world_url: str, capture: tuple[Capture, str]
) -> None:
    app, target = capture
    before = len(app.requests)
    set_answer = httpx.post(f"{world_url}/_sandbox/webhooks", json={"stripe": f"{target}/over-http"})
    assert set_answer.json()["targets"] == {"stripe": f"{target}/over-http"}
    try:
        report = httpx.post(f"{world_url}/_sandbox/tick", json={"days": 1}, timeout=30).json()
    finally:
        httpx.post(f"{world_url}/_sandbox/webhooks", json={"stripe": None})
    assert report["webhooks_sent"] == len(app.requests) - before > 0
    deliveries = httpx.get(f"{world_url}/_sandbox/webhooks").json()["deliveries"]
    assert {d["status"] for d in deliveries} == {200}


def test_state_counts_every_kind(world_url: str) -> None:
    state = httpx.get(f"{world_url}/_sandbox/state").json()
    assert set(state["stripe"]) >= {
        "customers",
        "subscriptions",
        "invoices",
        "charges",
        "events",
        "deleted_customers",
    }
    assert set(state["hubspot"]) >= {"contacts", "companies", "deals", "properties", "property_groups"}
    assert state["typeform"]["responses"] > 0 and state["segmentio"]["product_events"] > 0


def test_bad_tick_is_a_400(world_url: str) -> None:
    assert httpx.post(f"{world_url}/_sandbox/tick", json={"days": 0}).status_code == 400
