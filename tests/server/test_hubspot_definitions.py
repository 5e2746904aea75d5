"""HubSpot webhooks read contacts with property definitions the server re-reads, not those of its start."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from starlette.exceptions import StarletteDeprecationWarning

from connectors import ConnectorsConfig, HubSpotSource, build_source
from connectors.hubspot import DEFINITIONS_MAX_AGE
from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.server.app import create_app
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.store import create_store_engine, upgrade
from sync.store.tables import records
from tests.inbound.conftest import BASE, NOW, dumps, hubspot_request
from tests.inbound.payloads import hubspot_events
from tests.webhooks.conftest import Clock

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def sandbox() -> Iterator[tuple[Sandbox, str]]:
    box = Sandbox(people=5, seed=3)
    with SandboxServer(box) as server:
        yield box, server.url


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def _push_a_new_property(url: str, contact_id: str) -> None:
    """What crmhub's HubSpot push does after the server started: a new group, property and value."""
    config = ConnectorsConfig.model_validate({"hubspot": {"enabled": True, "base_url": url}})
    with httpx.Client(timeout=10) as http:
        source = build_source("hubspot", config, credentials.HUBSPOT_ACCESS_TOKEN, http)
        assert isinstance(source, HubSpotSource)
        source.api.create_property_group("contacts", {"name": "crmhub", "label": "crmhub"})
        prop = {"name": "crmhub_tier", "label": "Tier", "type": "string", "fieldType": "text"}
        source.api.create_property("contacts", {**prop, "groupName": "crmhub"})
        source.api.batch_update("contacts", [{"id": contact_id, "properties": {"crmhub_tier": "gold"}}])


def _webhook(
    client: TestClient, engine: Engine, clock: Clock, contact_id: str, event_id: int
) -> dict[str, Any]:
    """A signed contact.propertyChange for `contact_id`; the contact's stored payload properties."""
    body = dumps(hubspot_events(int(contact_id), first_event=event_id))
    request = hubspot_request(body, at=clock())
    answer = client.post("/hooks/hubspot", content=body, headers=dict(request.headers))
    assert answer.status_code == 200 and answer.json()["records"] == 1, answer.text
    with engine.connect() as conn:
        payload = conn.execute(
            select(records.c.payload).where(
                records.c.source == "hubspot", records.c.external_id == contact_id
            )
        ).scalar_one()
    properties: dict[str, Any] = payload["properties"]
    return properties


def test_a_property_created_after_start_is_read_once_the_definitions_are_old(
    sandbox: tuple[Sandbox, str], engine: Engine
) -> None:
    box, url = sandbox
    contact_id = str(next(iter(box.world.hubspot.objects["contacts"])))
    settings = Settings.model_validate(
        {
            "connectors": {"hubspot": {"enabled": True, "base_url": url}},
            "webhooks": {"inbound": {"hubspot": {"enabled": True}}},
        }
    )
    clock = Clock(NOW)
    services = Services(settings, engine, environ=dict(credentials.ENVIRONMENT), clock=clock)
    with TestClient(create_app(services, scheduler=False, worker=False), base_url=BASE) as client:
        assert "crmhub_tier" not in _webhook(client, engine, clock, contact_id, 100)
        _push_a_new_property(url, contact_id)
        clock.advance(DEFINITIONS_MAX_AGE - timedelta(seconds=1))
        # Still the definitions read a moment ago: one properties read per webhook would be wasteful.
        assert "crmhub_tier" not in _webhook(client, engine, clock, contact_id, 200)
        clock.advance(timedelta(seconds=1))
        assert _webhook(client, engine, clock, contact_id, 300)["crmhub_tier"] == "gold"
