"""Shared pieces for the inbound tests: a store with segments, a receiver, signed requests, row counts."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from connectors import Record
from crmhub.sandbox import credentials
from crmhub.sandbox.webhooks_out import hubspot_signature_v3, stripe_signature, typeform_signature
from crmhub.settings import load_settings
from crmhub.wiring import build_sync_engine
from sync.store.tables import contacts, events, inbound_events, outbox, records, segments, transitions
from webhooks.inbound import (
    HubSpotInboundConfig,
    InboundConfig,
    InboundReceiver,
    InboundRequest,
    SegmentioInboundConfig,
    StripeInboundConfig,
    TypeformInboundConfig,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BASE = "https://crmhub.example.com"
SEGMENT_SECRET = "segment-destination-shared-secret"
WRITE_KEY = "wk_crmhub_test"
SECRETS = {
    "STRIPE_WEBHOOK_SECRET": credentials.STRIPE_WEBHOOK_SECRET,
    "HUBSPOT_CLIENT_SECRET": credentials.HUBSPOT_CLIENT_SECRET,
    "TYPEFORM_WEBHOOK_SECRET": credentials.TYPEFORM_WEBHOOK_SECRET,
    "SEGMENT_WEBHOOK_SHARED_SECRET": SEGMENT_SECRET,
}

# One segment per provider, each satisfied by the event its tests deliver.
SEGMENTS_TOML = """
[segments.paid]
name = "Paid this week"
all = [{ event = "invoice.paid", within = "7d" }]

[segments.customers]
name = "HubSpot customers"
all = [{ field = "hubspot_lifecyclestage", op = "eq", value = "customer" }]

[segments.answered]
name = "Answered the survey"
all = [{ event = "form.submitted", within = "7d" }]

[segments.buyers]
name = "Ordered this week"
all = [{ event = "Order Completed", within = "7d" }]
"""

COUNTED = {
    "records": records,
    "events": events,
    "inbound_events": inbound_events,
    "contacts": contacts,
    "transitions": transitions,
    "outbox": outbox,
}


def counts(engine: Engine) -> dict[str, int]:
    """Rows in every table an inbound request may write to."""
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for name, t in COUNTED.items()
        }


def entered(engine: Engine) -> list[tuple[str, str]]:
    """(segment key, kind) of every transition with an outbox row."""
    query = (
        select(segments.c.key, transitions.c.kind)
        .join(transitions, transitions.c.segment_id == segments.c.id)
        .join(outbox, outbox.c.transition_id == transitions.c.id)
    )
    with engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(query)]


class FakeHubSpot:
    """Contacts by id, as `HubSpotSource.read_contacts` returns them; records every read."""

    def __init__(self) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.reads: list[list[str]] = []

    def add(self, contact_id: str, **properties: str) -> None:
        stamp = NOW.isoformat().replace("+00:00", "Z")
        props = {"hs_object_id": contact_id, "lastmodifieddate": stamp, **properties}
        self.contacts[contact_id] = {
            "id": contact_id,
            "properties": props,
            "updatedAt": stamp,
            "archived": False,
        }

    def __call__(self, ids: Sequence[str]) -> list[Record]:
        self.reads.append(list(ids))
        return [Record("hubspot", "contacts", i, NOW, self.contacts[i]) for i in ids if i in self.contacts]


@pytest.fixture
def hubspot() -> FakeHubSpot:
    """The HubSpot API as the receiver reads it."""
    return FakeHubSpot()


@pytest.fixture
def make_receiver(engine: Engine, tmp_path: Path, hubspot: FakeHubSpot) -> Callable[..., InboundReceiver]:
    """A receiver over `engine` with every provider enabled (or the given config)."""

    def make(config: InboundConfig | None = None, **kwargs: Any) -> InboundReceiver:
        path = tmp_path / "crmhub.toml"
        path.write_text(SEGMENTS_TOML, encoding="utf-8")
        sync_engine = build_sync_engine(load_settings(path), engine)
        config = config or InboundConfig(
            stripe=StripeInboundConfig(enabled=True),
            hubspot=HubSpotInboundConfig(enabled=True),
            typeform=TypeformInboundConfig(enabled=True),
            segmentio=SegmentioInboundConfig(enabled=True),
        )
        options: dict[str, Any] = {"hubspot_fetch": hubspot, "segmentio_write_key": WRITE_KEY} | kwargs
        return InboundReceiver(config, SECRETS, sync_engine, **options)

    return make


@pytest.fixture
def receiver(make_receiver: Callable[..., InboundReceiver]) -> InboundReceiver:
    """A receiver with every provider enabled."""
    return make_receiver()


def dumps(value: Any) -> bytes:
    """Compact JSON, as the providers send it."""
    return json.dumps(value, separators=(",", ":")).encode()


def stripe_request(
    body: bytes, *, at: datetime = NOW, secret: str = credentials.STRIPE_WEBHOOK_SECRET
) -> InboundRequest:
    """A POST /hooks/stripe signed as Stripe (and the sandbox) signs it."""
    header = stripe_signature(body, secret, int(at.timestamp()))
    return InboundRequest("POST", f"{BASE}/hooks/stripe", {"stripe-signature": header}, body)


def hubspot_request(
    body: bytes, *, at: datetime = NOW, secret: str = credentials.HUBSPOT_CLIENT_SECRET
) -> InboundRequest:
    """A POST /hooks/hubspot signed (v3) as HubSpot (and the sandbox) signs it."""
    url = f"{BASE}/hooks/hubspot"
    stamp = int(at.timestamp() * 1000)
    headers = {
        "x-hubspot-signature-v3": hubspot_signature_v3("POST", url, body, stamp, secret),
        "x-hubspot-request-timestamp": str(stamp),
    }
    return InboundRequest("POST", url, headers, body)


def typeform_request(body: bytes, *, secret: str = credentials.TYPEFORM_WEBHOOK_SECRET) -> InboundRequest:
    """A POST /hooks/typeform signed as Typeform (and the sandbox) signs it."""
    headers = {"typeform-signature": typeform_signature(body, secret)}
    return InboundRequest("POST", f"{BASE}/hooks/typeform", headers, body)


def segmentio_request(body: bytes, *, secret: str = SEGMENT_SECRET) -> InboundRequest:
    """A POST /hooks/segmentio signed as the Segment.com Webhooks destination signs it."""
    headers = {"x-signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}
    return InboundRequest("POST", f"{BASE}/hooks/segmentio", headers, body)
