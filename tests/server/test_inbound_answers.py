"""What `crmhub serve` answers providers when it cannot take their events yet: 503 and when to retry."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event
from starlette.exceptions import StarletteDeprecationWarning

from crmhub.sandbox import credentials
from crmhub.server.app import create_app
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.store import create_store_engine, upgrade
from tests.inbound.conftest import BASE, NOW, dumps, stripe_request, typeform_request
from tests.inbound.payloads import stripe_event, typeform_payload
from tests.webhooks.conftest import Clock

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite store whose writers give up on a lock after 100 ms (the store's own wait is 10 s)."""
    eng = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(eng)

    @event.listens_for(eng, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=100")

    eng.dispose()
    yield eng
    eng.dispose()


def _client(engine: Engine, settings: dict[str, Any], environ: dict[str, str]) -> TestClient:
    services = Services(Settings.model_validate(settings), engine, environ=environ, clock=Clock(NOW))
    return TestClient(create_app(services, scheduler=False, worker=False), base_url=BASE)


def _inbound_count(client: TestClient, source: str, status: int) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "crmhub_inbound_requests_total" and sample.labels == {
                "source": source,
                "status": str(status),
            }:
                return sample.value
    return 0.0


def test_a_provider_not_enabled_yet_is_503_with_retry_after_and_an_unknown_one_404(engine: Engine) -> None:
    with _client(engine, {}, {}) as client:
        request = typeform_request(dumps(typeform_payload()))
        answer = client.post("/hooks/typeform", content=request.body, headers=dict(request.headers))
        # Typeform turns a webhook off on 404; on 503 it retries for 10 hours.
        assert answer.status_code == 503 and answer.headers["retry-after"] == "300"
        assert answer.json()["error"] == "not_enabled"
        assert "webhooks.inbound.typeform.enabled = true" in answer.json()["message"]
        tracked = client.post("/v1/track", json={"userId": "u_1", "event": "Signed Up"})
        assert tracked.status_code == 503 and tracked.headers["retry-after"] == "300"
        assert tracked.json()["code"] == "not_enabled"
        assert client.post("/hooks/mailchimp", content=b"{}").status_code == 404
        assert _inbound_count(client, "typeform", 503) == 1


def test_a_locked_store_is_503_with_retry_after_and_counted(engine: Engine) -> None:
    settings = {"webhooks": {"inbound": {"stripe": {"enabled": True}}}}
    environ = {"STRIPE_WEBHOOK_SECRET": credentials.STRIPE_WEBHOOK_SECRET}
    request = stripe_request(dumps(stripe_event()))
    with _client(engine, settings, environ) as client:
        database = engine.url.database
        assert database is not None
        other = sqlite3.connect(database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing, past the busy wait
        try:
            answer = client.post("/hooks/stripe", content=request.body, headers=dict(request.headers))
        finally:
            other.rollback()
            other.close()
        assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
        assert answer.json()["error"] == "store_unavailable"
        assert "Traceback" not in answer.text
        assert _inbound_count(client, "stripe", 503) == 1
        again = client.post("/hooks/stripe", content=request.body, headers=dict(request.headers))
        assert again.status_code == 200 and again.json()["duplicate"] is False
