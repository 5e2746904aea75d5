"""What the sandbox sends is what the providers send: every signed webhook of a sandbox day is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from connectors import ConnectorsConfig, HubSpotSource, build_source
from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.config import HUBSPOT_PROPERTIES
from crmhub.sandbox.webhooks_out import build_requests
from sync.store.tables import inbound_events, records
from tests.inbound.conftest import BASE, counts
from webhooks.inbound import InboundReceiver, InboundRequest

TARGETS = {p: f"{BASE}/hooks/{p}" for p in ("stripe", "hubspot", "typeform")}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Sandbox, str]]:
    box = Sandbox(people=40, seed=3)
    with SandboxServer(box) as server:
        yield box, server.url


@pytest.fixture
def hubspot_source(sandbox: tuple[Sandbox, str]) -> Iterator[HubSpotSource]:
    config = ConnectorsConfig.model_validate(
        {"hubspot": {"enabled": True, "base_url": sandbox[1], "properties": list(HUBSPOT_PROPERTIES)}}
    )
    with httpx.Client(timeout=10) as http:
        source = build_source("hubspot", config, credentials.HUBSPOT_ACCESS_TOKEN, http)
        assert isinstance(source, HubSpotSource)
        yield source


def test_hubspot_contacts_are_read_by_id_as_the_stream_pulls_them(
    sandbox: tuple[Sandbox, str], hubspot_source: HubSpotSource
) -> None:
    ids = [str(i) for i in list(sandbox[0].world.hubspot.objects["contacts"])[:3]]
    found = hubspot_source.read_contacts([*ids, ids[0], "999999999"])
    assert sorted(r.external_id for r in found) == sorted(ids)
    payload: Any = found[0].payload
    assert set(payload["properties"]) >= {"email", "lifecyclestage", "lastmodifieddate"}
    assert (found[0].source, found[0].stream) == ("hubspot", "contacts")


def test_every_webhook_of_a_sandbox_day_is_verified_and_stored(
    sandbox: tuple[Sandbox, str],
    hubspot_source: HubSpotSource,
    make_receiver: Any,
    engine: Engine,
) -> None:
    report = sandbox[0].world.tick(2)
    outgoing = build_requests(report.notifications, TARGETS)
    assert {o.provider for o in outgoing} == {"stripe", "hubspot", "typeform"}
    receiver: InboundReceiver = make_receiver(hubspot_fetch=hubspot_source.read_contacts)
    # The sandbox signs with the machine's clock, as the providers do.
    now = datetime.now(UTC)
    for out in outgoing:
        request = InboundRequest("POST", out.url, out.headers, out.body)
        answer = receiver.receive(out.provider, request, now=now)  # type: ignore[arg-type]
        assert answer.status == 200, (out.provider, answer.body)
    with engine.connect() as conn:
        sources = set(conn.execute(select(records.c.source)).scalars())
        claimed = set(conn.execute(select(inbound_events.c.source)).scalars())
    assert {"hubspot", "typeform"} <= sources and claimed == {"stripe", "hubspot", "typeform"}
    before = counts(engine)
    for out in outgoing:
        request = InboundRequest("POST", out.url, out.headers, out.body)
        assert receiver.receive(out.provider, request, now=now).body == {"duplicate": True}  # type: ignore[arg-type]
    assert counts(engine) == before
