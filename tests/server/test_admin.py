"""The admin API over a store filled by a real sync of the sandbox: auth, every route, paging, 404s."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from crmhub.cli import app as cli_app
from crmhub.demo import Demo
from crmhub.sandbox import credentials
from crmhub.server.app import create_app
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.locks import acquire, release
from sync.segments import evaluate_segments
from sync.store import create_store_engine, upgrade
from sync.store.tables import deliveries, events, memberships, segments
from tests.segments.conftest import NOW, Seeder, segments_from

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Wakes:
    """Counts `services.wake_worker` calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A sandbox, a real sync of it, and its deliveries sent to the sandbox's receiver."""
    box = Demo(tmp_path_factory.mktemp("admin"), people=40, seed=3)
    box.start()
    try:
        box.sync()
        box.deliver()
        yield box
    finally:
        box.stop()


@pytest.fixture(autouse=True)
def _api_runs_finish() -> Iterator[None]:
    """Wait for the syncs a test started through the API, so none outlives it (they use `random`)."""
    yield
    _api_runs_join()


def _api_runs_join() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("crmhub-api-"):
            thread.join(60)


@pytest.fixture(scope="module")
def services(demo: Demo) -> Services:
    environ = {**os.environ, **credentials.ENVIRONMENT, "CRMHUB_ADMIN_TOKEN": TOKEN}
    return Services(
        settings=demo.settings,
        engine=demo.engine,
        environ=environ,
        clock=demo.sandbox_now,
        wake_worker=Wakes(),
    )


@pytest.fixture(scope="module")
def client(services: Services) -> TestClient:
    return TestClient(create_app(services, scheduler=False, worker=False))


def _get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def _scalar(demo: Demo, query: Any) -> Any:
    with demo.engine.connect() as conn:
        return conn.execute(query).scalar_one()


# --- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
)
def test_a_missing_or_wrong_token_gets_401_with_a_bearer_challenge(
    client: TestClient, headers: dict[str, str]
) -> None:
    for path in ("/admin/segments", "/admin/contacts/1", "/admin/deliveries"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "CRMHUB_ADMIN_TOKEN" in response.json()["detail"]
    refused = client.post("/admin/deliveries/replay", json={"status": "dead"}, headers=headers)
    assert refused.status_code == 401


@pytest.mark.parametrize("environ", [{}, {"CRMHUB_ADMIN_TOKEN": ""}])
def test_an_unset_token_variable_disables_the_api_with_503_naming_it(
    demo: Demo, environ: dict[str, str]
) -> None:
    bare = Services(settings=demo.settings, engine=demo.engine, environ=environ)
    response = TestClient(create_app(bare, scheduler=False, worker=False)).get(
        "/admin/segments", headers=AUTH
    )
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "CRMHUB_ADMIN_TOKEN" in detail and "export CRMHUB_ADMIN_TOKEN=" in detail


def test_the_openapi_document_describes_the_admin_routes_and_their_bearer_auth(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The token held by the environment variable that `[server] admin_token_env` names.",
    }
    admin = {path for path in document["paths"] if path.startswith("/admin/")}
    assert {"/admin/sources", "/admin/segments/{key}/members", "/admin/contacts/{contact}/events"} <= admin
    members = document["paths"]["/admin/segments/{key}/members"]["get"]
    assert members["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MembersPage"
    }
    assert {"401", "404", "422", "503"} <= set(members["responses"])


# --- sources, runs, fields ----------------------------------------------------------------------------


def test_sources_list_each_stream_with_its_records_cursor_and_the_last_run(client: TestClient) -> None:
    body = _get(client, "/admin/sources")
    streams = {f"{s['source']}.{s['stream']}": s for s in body["streams"]}
    assert streams["stripe.customers"]["records"] > 0
    assert streams["stripe.customers"]["cursor"] is not None
    assert body["last_run"]["status"] == "succeeded" and body["last_run"]["finished_at"] is not None


def test_the_cli_sources_command_still_shows_the_same_streams(demo: Demo, client: TestClient) -> None:
    result = CliRunner().invoke(cli_app, ["--config", str(demo.config_path), "sources", "--json"])
    assert result.exit_code == 0, result.output
    shown = {row["stream"]: row["records"] for row in json.loads(result.stdout)}
    api = {f"{s['source']}.{s['stream']}": s["records"] for s in _get(client, "/admin/sources")["streams"]}
    assert shown == api


def test_runs_are_listed_newest_first_and_the_limit_is_checked(client: TestClient) -> None:
    runs = _get(client, "/admin/runs", limit=1000)
    assert runs and [r["id"] for r in runs] == sorted((r["id"] for r in runs), reverse=True)
    assert _get(client, "/admin/runs", limit=1) == runs[:1]
    for bad in ("0", "5000", "many"):
        assert client.get("/admin/runs", params={"limit": bad}, headers=AUTH).status_code == 422


def test_fields_show_type_origin_and_fill_rate_and_filter_by_source(client: TestClient) -> None:
    fields = {f["name"]: f for f in _get(client, "/admin/fields")}
    email = fields["stripe_customer_email"]
    assert email["type"] == "email" and email["origin"] == "auto" and 0 < email["fill_rate"] <= 1
    only = _get(client, "/admin/fields", source="typeform")
    assert only and {f["source"] for f in only} == {"typeform"}


# --- segments ------------------------------------------------------------------------------------------


def _largest_segment(demo: Demo) -> tuple[str, int]:
    with demo.engine.connect() as conn:
        key, count = conn.execute(
            select(segments.c.key, func.count())
            .join(memberships, memberships.c.segment_id == segments.c.id)
            .group_by(segments.c.key)
            .order_by(func.count().desc(), segments.c.key)
            .limit(1)
        ).one()
    return key, count


def test_segments_are_listed_with_member_counts(demo: Demo, client: TestClient) -> None:
    listed = {s["key"]: s for s in _get(client, "/admin/segments")}
    assert set(listed) == set(demo.settings.segments)
    key, count = _largest_segment(demo)
    assert listed[key]["members"] == count and count > 2
    assert listed[key]["configured"] and listed[key]["evaluated"]


def test_members_page_by_contact_id_until_the_last_page(demo: Demo, client: TestClient) -> None:
    key, count = _largest_segment(demo)
    seen: list[int] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after is not None else {})
        page = _get(client, f"/admin/segments/{key}/members", **params)
        assert page["segment"] == key and len(page["members"]) <= 2
        seen += [m["contact_id"] for m in page["members"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(set(seen)) and len(seen) == count
    whole = _get(client, f"/admin/segments/{key}/members", limit=1000)
    assert [m["contact_id"] for m in whole["members"]] == seen and whole["next_after"] is None


def test_an_unknown_segment_is_a_404_naming_it(client: TestClient) -> None:
    response = client.get("/admin/segments/no_such/members", headers=AUTH)
    assert response.status_code == 404 and "is not in the configuration" in response.json()["detail"]
    explained = client.get("/admin/segments/no_such/explain/1", headers=AUTH)
    assert explained.status_code == 404 and '"no_such"' in explained.json()["detail"]
    assert client.get("/admin/segments/x/members?after=-1", headers=AUTH).status_code == 422


def test_explain_shows_the_tree_for_a_member_by_id_and_by_email(demo: Demo, client: TestClient) -> None:
    key, _ = _largest_segment(demo)
    member = _get(client, f"/admin/segments/{key}/members", limit=1)["members"][0]
    result = _get(client, f"/admin/segments/{key}/explain/{member['contact_id']}")
    assert result["member"] is True and result["contact_id"] == member["contact_id"]
    assert result["tree"]["result"] is True and result["tree"]["children"]
    assert result["now"].startswith(demo.sandbox_now().date().isoformat())
    if member["email"]:
        by_email = _get(client, f"/admin/segments/{key}/explain/{member['email'].upper()}")
        assert by_email["contact_id"] == member["contact_id"]
    later = _get(client, f"/admin/segments/{key}/explain/{member['contact_id']}", now="2030-01-01T00:00:00")
    assert later["now"].startswith("2030-01-01T00:00:00")


# --- contacts ------------------------------------------------------------------------------------------


def test_a_contact_shows_typed_fields_identities_memberships_and_history(
    demo: Demo, client: TestClient
) -> None:
    key, _ = _largest_segment(demo)
    member = _get(client, f"/admin/segments/{key}/members", limit=1)["members"][0]
    contact = _get(client, f"/admin/contacts/{member['contact_id']}")
    assert contact["id"] == member["contact_id"] and contact["state"] == "active"
    assert key in {m["segment"] for m in contact["memberships"]}
    assert contact["history"][0]["contact_seq"] == 1 and contact["history"][0]["kind"] == "entered"
    assert contact["fields"], "a synced contact has custom fields"
    typed = {name: value for name, value in contact["fields"].items() if value is not None}
    assert all(isinstance(v, str | int | float | bool) for v in typed.values())
    emails = [i["value"] for i in contact["identities"] if i["kind"] == "email"]
    if emails:
        assert _get(client, f"/admin/contacts/{emails[0]}")["id"] == contact["id"]


@pytest.mark.parametrize("ref", ["999999999", "nobody@example.com", "²", "9" * 40, "-1"])
def test_an_unknown_contact_is_a_404_naming_it(client: TestClient, ref: str) -> None:
    for path in (f"/admin/contacts/{ref}", f"/admin/contacts/{ref}/events"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404, response.text
        assert f'"{ref}"' in response.json()["detail"]


def test_events_page_latest_first_without_gaps_or_repeats(demo: Demo, client: TestClient) -> None:
    with demo.engine.connect() as conn:
        contact_id, count = conn.execute(
            select(events.c.contact_id, func.count())
            .group_by(events.c.contact_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    assert count >= 2, "the sandbox gives some contact several events"
    seen: list[tuple[str, int]] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"before": before} if before is not None else {})
        page = _get(client, f"/admin/contacts/{contact_id}/events", **params)
        seen += [(e["occurred_at"], e["id"]) for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == count == len(set(seen))
    assert seen == sorted(seen, reverse=True)


# --- deliveries -----------------------------------------------------------------------------------------


def test_deliveries_come_with_their_attempts_and_filter_by_status(demo: Demo, client: TestClient) -> None:
    listed = _get(client, "/admin/deliveries", limit=5)
    assert 0 < len(listed) <= 5
    first = listed[0]
    assert first["status"] == "succeeded" and first["kind"] in ("entered", "left")
    assert first["tries"] and 200 <= first["tries"][0]["status_code"] < 300
    assert _get(client, "/admin/deliveries", status="dead") == []
    assert client.get("/admin/deliveries?status=bogus", headers=AUTH).status_code == 422


def test_replay_makes_a_delivery_due_again_and_wakes_the_worker(
    demo: Demo, client: TestClient, services: Services
) -> None:
    wakes = services.wake_worker
    assert isinstance(wakes, Wakes)
    before = wakes.count
    delivery = _get(client, "/admin/deliveries", limit=1)[0]
    response = client.post("/admin/deliveries/replay", json={"id": delivery["id"]}, headers=AUTH)
    assert response.status_code == 200 and response.json() == {"replayed": 1, "withheld": {}}
    assert _scalar(demo, select(deliveries.c.status).where(deliveries.c.id == delivery["id"])) == "pending"
    assert wakes.count == before + 1
    with demo.engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == delivery["id"]).values(status="dead"))
    bulk = client.post(
        "/admin/deliveries/replay", json={"status": "dead", "endpoint": "receiver"}, headers=AUTH
    )
    assert bulk.json() == {"replayed": 1, "withheld": {}}


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"id": 987654321}, 404, "delivery 987654321"),
        ({}, 422, "say what to replay"),
        ({"status": "succeeded"}, 422, "status"),
        ({"status": "dead", "endpoint": "nowhere"}, 422, 'nowhere\\" is not configured: one of receiver'),
        ({"id": 2**70}, 422, "id"),
        ({"since": "0001-01-01T00:00:00+05:00"}, 422, "since: expected a year from 1900 to 9000"),
    ],
)
def test_replay_refuses_what_it_cannot_do(
    client: TestClient, body: dict[str, Any], code: int, says: str
) -> None:
    response = client.post("/admin/deliveries/replay", json=body, headers=AUTH)
    assert response.status_code == code
    assert says in response.text


# --- sync now --------------------------------------------------------------------------------------------


def _wait_for_api_run(client: TestClient, known: set[int]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run in _get(client, "/admin/runs", limit=5):
            if run["id"] not in known and run["trigger"] == "api" and run["finished_at"]:
                return dict(run)
        time.sleep(0.1)
    raise AssertionError("the sync started through the API did not finish in 60 s")


def test_sync_now_runs_in_the_background_and_answers_202(demo: Demo, client: TestClient) -> None:
    known = {run["id"] for run in _get(client, "/admin/runs", limit=1000)}
    response = client.post("/admin/sync", json={"sources": ["stripe"]}, headers=AUTH)
    assert response.status_code == 202
    assert response.json() == {"job": "sync", "sources": ["stripe"], "full": False, "busy": {}}
    run = _wait_for_api_run(client, known)
    assert run["status"] == "succeeded" and run["trigger"] == "api"


def test_a_run_that_fails_for_a_reason_it_names_is_one_log_line(
    demo: Demo, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    demo.sandbox.add_fault("hubspot:403")  # the sync of Stripe works; its push to HubSpot is refused
    try:
        with caplog.at_level(logging.ERROR, logger="crmhub.serve"):
            assert client.post("/admin/sync", json={"sources": ["stripe"]}, headers=AUTH).status_code == 202
            _api_runs_join()
    finally:
        demo.sandbox.clear_faults()
    [failed] = [r for r in caplog.records if r.name == "crmhub.serve"]
    assert failed.getMessage().startswith("admin: sync failed: hubspot: ")
    assert "(403)" in failed.getMessage() and failed.exc_info is None


def test_sync_now_names_a_source_another_run_holds(
    demo: Demo, client: TestClient, services: Services
) -> None:
    now = demo.sandbox_now()
    registry = services.metrics.registry
    overran = {"job": "sync", "outcome": "overran"}
    with demo.engine.begin() as conn:
        assert acquire(conn, "sync:typeform", "elsewhere:1:abc", now=now, ttl=timedelta(minutes=5))
    try:
        before = registry.get_sample_value("crmhub_runs_total", overran) or 0
        response = client.post("/admin/sync", json={"sources": ["typeform"]}, headers=AUTH)
        assert response.status_code == 202
        assert response.json()["busy"] == {"sync:typeform": "elsewhere:1:abc"}
        # The background run finds the lease held too, and counts itself as overrun.
        deadline = time.monotonic() + 30
        while (registry.get_sample_value("crmhub_runs_total", overran) or 0) == before:
            assert time.monotonic() < deadline, "the background run did not report the held lease"
            time.sleep(0.05)
    finally:
        with demo.engine.begin() as conn:
            release(conn, "sync:typeform", "elsewhere:1:abc")


def test_sync_now_refuses_an_unknown_source_with_422(client: TestClient) -> None:
    response = client.post("/admin/sync", json={"sources": ["salesforce"]}, headers=AUTH)
    assert response.status_code == 422 and "salesforce" in response.json()["detail"]
    assert client.post("/admin/sync", json={"full": "maybe"}, headers=AUTH).status_code == 422


def test_sync_now_takes_no_body_as_every_enabled_source(client: TestClient) -> None:
    known = {run["id"] for run in _get(client, "/admin/runs", limit=1000)}
    response = client.post("/admin/sync", headers=AUTH)
    assert response.status_code == 202
    assert set(response.json()["sources"]) == {"stripe", "hubspot", "typeform"}
    _wait_for_api_run(client, known)


# --- the same queries on each backend --------------------------------------------------------------------

RAW_SEGMENTS = {"hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]}}


def _page_through(client: TestClient, path: str, cursor: str, key: str, field: str) -> list[Any]:
    seen: list[Any] = []
    position: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({cursor: position} if position is not None else {})
        page = _get(client, path, **params)
        seen += [row[field] for row in page[key]]
        position = page[f"next_{cursor}"]
        if position is None:
            return seen


def test_paging_and_the_contact_view_on_each_backend(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    upgrade(engine)
    configured = segments_from(RAW_SEGMENTS)
    try:
        with engine.begin() as conn:
            s = Seeder(conn)
            people = [s.contact() for _ in range(5)]
            for contact in people:
                s.value(contact, "city", "string", "Hamburg")
            s.value(people[0], "tip", "decimal", Decimal("2.5"))
            s.email(people[0], "ann@example.com")
            # Two events at the same moment: the id breaks the tie, so paging neither skips nor repeats.
            for hours in (1, 1, 3, 2, 5):
                s.event(people[0], "app.used", NOW - timedelta(hours=hours))
            evaluate_segments(conn, configured, now=NOW)
        settings = Settings.model_validate({"segments": RAW_SEGMENTS})
        services = Services(settings=settings, engine=engine, environ={"CRMHUB_ADMIN_TOKEN": TOKEN})
        client = TestClient(create_app(services, scheduler=False, worker=False))
        members = _page_through(client, "/admin/segments/hamburg/members", "after", "members", "contact_id")
        assert members == sorted(people)
        seen = _page_through(
            client, "/admin/contacts/ann@example.com/events", "before", "events", "occurred_at"
        )
        assert len(seen) == 5 and seen == sorted(seen, reverse=True)
        ids = _page_through(client, f"/admin/contacts/{people[0]}/events", "before", "events", "id")
        assert len(set(ids)) == 5
        contact = _get(client, f"/admin/contacts/{people[0]}")
        assert contact["fields"] == {"city": "Hamburg", "tip": 2.5}
        assert [m["segment"] for m in contact["memberships"]] == ["hamburg"]
        assert [i["value"] for i in contact["identities"]] == ["ann@example.com"]
        assert _get(client, "/admin/sources") == {"streams": [], "last_run": None}
        assert _get(client, "/admin/runs") == [] and _get(client, "/admin/deliveries") == []
        # NUL cannot reach PostgreSQL text: refused as bad input on every backend.
        for path in (
            "/admin/contacts/a%00b",
            "/admin/segments/a%00/members",
            "/admin/deliveries?endpoint=%00",
        ):
            assert client.get(path, headers=AUTH).status_code == 422, path
        far = client.get(f"/admin/segments/hamburg/explain/{people[0]}?now=0001-01-01T00:00:00", headers=AUTH)
        assert far.status_code == 422
    finally:
        engine.dispose()
