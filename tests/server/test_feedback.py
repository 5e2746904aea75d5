"""`POST /hooks/feedback/{endpoint}` in process: a replayed webhook-id is answered as a duplicate."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, func, select
from starlette.exceptions import StarletteDeprecationWarning

from crmhub.server.app import create_app
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.store import create_store_engine, upgrade
from sync.store.tables import consent_records
from tests.webhooks.conftest import T0, Clock, seed
from webhooks.signing import decode_secret, generate_secret, signed_headers

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SECRET = generate_secret()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(eng)
    seed(eng, 1)
    yield eng
    eng.dispose()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    endpoint = {
        "url": "https://sms.example.com/hook",
        "secret_envs": ["SMS_SECRET"],
        "requires_consent": "sms",
    }
    settings = Settings.model_validate({"webhooks": {"endpoints": {"sms": endpoint}}})
    services = Services(settings=settings, engine=engine, environ={"SMS_SECRET": SECRET}, clock=Clock(T0))
    with TestClient(create_app(services, scheduler=False, worker=False)) as test_client:
        yield test_client


def _post(client: TestClient, endpoint: str, webhook_id: str, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    headers = signed_headers(webhook_id, int(T0.timestamp()), raw, [decode_secret(SECRET)])
    return client.post(f"/hooks/feedback/{endpoint}", content=raw, headers=headers)


def _unsubscribed(contact_id: int = 1) -> dict[str, Any]:
    data = {"contact_id": contact_id, "channel": "sms", "reason": "STOP"}
    return {"type": "contact.unsubscribed", "timestamp": T0.isoformat(), "data": data}


def test_the_same_webhook_id_is_applied_once(client: TestClient, engine: Engine) -> None:
    first = _post(client, "sms", "msg_fb_1", _unsubscribed())
    assert first.status_code == 200, first.text
    assert first.json()["applied"] is True and first.json()["duplicate"] is False
    for _ in range(2):
        again = _post(client, "sms", "msg_fb_1", _unsubscribed())
        assert (again.status_code, again.json()) == (200, {"applied": False, "duplicate": True})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consent_records)).scalar_one() == 1
    # Another id is another message; a long one is claimed by its digest.
    assert _post(client, "sms", "msg_fb_2", _unsubscribed()).json()["duplicate"] is False
    assert _post(client, "sms", "m" * 300, _unsubscribed()).json()["duplicate"] is False
    assert _post(client, "sms", "m" * 300, _unsubscribed()).json()["duplicate"] is True


def test_an_unknown_contact_does_not_use_up_the_webhook_id(client: TestClient) -> None:
    assert _post(client, "sms", "msg_fb_3", _unsubscribed(10**9)).status_code == 404
    assert _post(client, "sms", "msg_fb_3", _unsubscribed()).json()["duplicate"] is False


def test_unknown_endpoints_share_one_metrics_series(client: TestClient) -> None:
    for i in range(50):
        assert _post(client, f"random-{i}", "msg_x", _unsubscribed()).status_code == 404
    _post(client, "sms", "msg_fb_4", _unsubscribed())
    text = client.get("/metrics").text
    sources = {
        s.labels["source"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "crmhub_inbound_requests_total"
    }
    assert sources == {"feedback:sms", "feedback:(unknown)"}


def test_an_unsubscribe_meeting_a_locked_store_is_503_and_the_retry_applies_it(
    client: TestClient, engine: Engine
) -> None:
    @event.listens_for(engine, "connect")
    def _short_waits(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=100")  # the store's own 10 s would slow the test

    engine.dispose()
    other = sqlite3.connect(str(engine.url.database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        busy = _post(client, "sms", "msg_fb_9", _unsubscribed())
    finally:
        other.rollback()
        other.close()
    assert (busy.status_code, busy.json()["error"], busy.headers["retry-after"]) == (
        503,
        "store_unavailable",
        "10",
    )
    assert "nothing was stored" in busy.json()["message"]
    again = _post(client, "sms", "msg_fb_9", _unsubscribed())
    assert again.status_code == 200 and again.json()["applied"] is True
