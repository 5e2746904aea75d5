"""The admin API finds a contact as `crmhub contact show` does: merged ids, e-mails, phones in any format."""

from __future__ import annotations

import warnings
from pathlib import Path

from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning

from crmhub.server.app import create_app
from crmhub.server.services import Services
from crmhub.settings import load_settings
from tests.consent.conftest import NOW, cli_config, merged_jane

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_admin_routes_find_a_merged_contact_by_its_old_id_and_by_phone(
    tmp_path: Path, engine: Engine
) -> None:
    kept, merged = merged_jane(engine)
    settings = load_settings(cli_config(tmp_path, engine))
    services = Services(
        settings=settings, engine=engine, environ={"CRMHUB_ADMIN_TOKEN": TOKEN}, clock=lambda: NOW
    )
    client = TestClient(create_app(services, scheduler=False, worker=False))
    for ref in (str(merged), "+14155552671", "(415) 555-2671", "JANE.DOE@example.com"):
        contact = client.get(f"/admin/contacts/{ref}", headers=AUTH)
        assert contact.status_code == 200 and contact.json()["id"] == kept, (ref, contact.text)
        events = client.get(f"/admin/contacts/{ref}/events", headers=AUTH)
        assert events.status_code == 200 and events.json()["contact_id"] == kept, (ref, events.text)
        explained = client.get(f"/admin/segments/sms_offers/explain/{ref}", headers=AUTH)
        assert explained.status_code == 200 and explained.json()["contact_id"] == kept, (ref, explained.text)
    missing = client.get("/admin/contacts/+14155550000", headers=AUTH)
    assert missing.status_code == 404 and "an e-mail or phone it has" in missing.json()["detail"]
    assert client.get(f"/admin/contacts/{2**63}", headers=AUTH).status_code in (404, 422)
