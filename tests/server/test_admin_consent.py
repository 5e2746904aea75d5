"""`POST /admin/contacts/{contact}/consent` over a store filled by a real sync of the sandbox."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from crmhub.demo import Demo
from crmhub.sandbox import credentials
from crmhub.server.app import create_app
from crmhub.server.services import Services
from sync.store.tables import consent_records, memberships, segments, suppressions, transitions

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    box = Demo(tmp_path_factory.mktemp("admin-consent"), people=40, seed=3)
    box.start()
    try:
        box.sync()
        yield box
    finally:
        box.stop()


class Clock:
    """The sandbox's moment, moved on by hand: an opt-in at the opt-out's moment would not outrank it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def clock(demo: Demo) -> Clock:
    return Clock(demo.sandbox_now())


@pytest.fixture(scope="module")
def client(demo: Demo, clock: Clock) -> TestClient:
    services = Services(
        settings=demo.settings,
        engine=demo.engine,
        environ={**os.environ, **credentials.ENVIRONMENT, "CRMHUB_ADMIN_TOKEN": TOKEN},
        clock=clock,
        wake_worker=lambda: None,
    )
    return TestClient(create_app(services, scheduler=False, worker=False))


def _sms_member(demo: Demo) -> int:
    with demo.engine.connect() as conn:
        query = (
            select(memberships.c.contact_id)
            .join(segments, segments.c.id == memberships.c.segment_id)
            .where(segments.c.key == "sms_promoters")
            .order_by(memberships.c.contact_id)
        )
        found = conn.execute(query).scalars().first()
    assert found is not None, "the sandbox world has an SMS promoter"
    return int(found)


def test_an_opt_out_through_the_api_acts_at_once_and_an_opt_in_lets_the_person_back(
    demo: Demo, client: TestClient, clock: Clock
) -> None:
    contact = _sms_member(demo)
    path = f"/admin/contacts/{contact}/consent"
    out = client.post(path, headers=AUTH, json={"channel": "SMS", "status": "opted_out", "reason": "page"})
    assert out.status_code == 200, out.text
    done = out.json()
    assert done["contact_id"] == contact and done["channel"] == "sms" and done["recorded"] is True
    assert done["left"] == 1 and done["suppressed"] >= 1
    with demo.engine.connect() as conn:
        left = conn.execute(
            select(transitions.c.reason).where(
                transitions.c.contact_id == contact, transitions.c.kind == "left"
            )
        ).scalars()
        assert list(left) == ["unsubscribed"]
        proof = conn.execute(
            select(consent_records.c.source, consent_records.c.proof).where(
                consent_records.c.contact_id == contact, consent_records.c.status == "opted_out"
            )
        ).one()
        assert proof.source == "admin" and proof.proof["reason"] == "page"
        assert conn.execute(select(suppressions.c.reason)).scalars().all()
    clock.now += timedelta(minutes=1)
    back = client.post(path, headers=AUTH, json={"channel": "sms", "status": "opted_in"})
    assert back.status_code == 200, back.text
    assert back.json()["entered"] == 1 and back.json()["in_force"] == "opted_in"


def test_consent_refusals_name_the_cause(client: TestClient) -> None:
    unknown = client.post(
        "/admin/contacts/1/consent", headers=AUTH, json={"channel": "fax", "status": "opted_out"}
    )
    assert unknown.status_code == 422 and "fax" in unknown.json()["detail"]
    nobody = client.post(
        "/admin/contacts/nobody@example.org/consent",
        headers=AUTH,
        json={"channel": "sms", "status": "opted_out"},
    )
    assert nobody.status_code == 404 and "nobody@example.org" in nobody.json()["detail"]
    wrong = client.post("/admin/contacts/1/consent", headers=AUTH, json={"channel": "sms", "status": "maybe"})
    assert wrong.status_code == 422
    assert (
        client.post("/admin/contacts/1/consent", json={"channel": "sms", "status": "opted_out"}).status_code
        == 401
    )
