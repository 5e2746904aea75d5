"""Pushing fields to HubSpot: group, properties and values land in the sandbox; a re-run changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from connectors import default_http_client
from crmhub.cli import app
from crmhub.demo import Demo
from crmhub.sandbox.credentials import ENVIRONMENT as ENVIRON
from crmhub.wiring import hubspot_push
from sync.fields import load_fields
from sync.store.field_columns import fields_table
from sync.store.tables import contact_identities, contacts, sync_runs


def _pulled(path: Path, *, people: int, seed: int) -> Iterator[Demo]:
    """A demo of its own, pulled once and not pushed yet, stopped when the test is done."""
    demo = Demo(path, people=people, seed=seed)
    demo.start()
    try:
        demo.sync()
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    yield from _pulled(tmp_path_factory.mktemp("push"), people=80, seed=3)


def test_push_creates_the_group_the_properties_and_writes_the_values(pushed: Demo) -> None:
    report = pushed.push_hubspot()
    assert report is not None and report.group_created
    hubspot = pushed.sandbox.world.hubspot
    assert "crmhub" in {g["name"] for g in hubspot.groups["contacts"].values()}
    properties = hubspot.properties["contacts"]
    assert set(report.properties_created) <= set(properties)
    assert "crmhub_stripe_customer_balance" in report.properties_created
    assert properties["crmhub_stripe_customer_balance"]["type"] == "number"
    assert properties["crmhub_stripe_customer_created"]["type"] == "datetime"
    assert not any(name.startswith("crmhub_hubspot_") for name in properties)  # HubSpot's own stay home
    # A Stripe value of a person HubSpot knows is now on their HubSpot contact.
    balances = _balances(pushed)
    assert balances and report.contacts_updated >= len(balances)
    # One call for the group, one per 100 properties, one reading them back, one per 100 contacts.
    batches = -(-len(report.properties_created) // 100) + -(-report.contacts_updated // 100)
    assert len(report.properties_created) > 100 and report.calls == 1 + batches + 1
    assert report.properties_retyped == []
    for hubspot_id, balance in balances.items():
        contact = hubspot.objects["contacts"][int(hubspot_id)]
        assert contact.properties["crmhub_stripe_customer_balance"] == str(int(balance))


def test_the_push_finishes_its_run_and_each_stream_names_the_run_that_saved_its_cursor(
    pushed: Demo,
) -> None:
    pushed.push_hubspot()
    with pushed.engine.connect() as conn:
        pushes = list(conn.execute(select(sync_runs).where(sync_runs.c.trigger == "push")).mappings())
    assert pushes and all(p["status"] == "succeeded" and p["finished_at"] is not None for p in pushes)
    push = max(pushes, key=lambda p: int(p["id"]))
    assert push["stats"]["calls"] >= 1
    shown = CliRunner().invoke(app, ["--config", str(pushed.config_path), "sources", "--json"], env=ENVIRON)
    assert shown.exit_code == 0, shown.output
    rows = {row["stream"]: row["last_run"] for row in json.loads(shown.stdout)}
    assert rows["hubspot._push"].startswith(f"#{push['id']} succeeded ")
    # A pulled stream names its own sync run, not the push that ran after it.
    assert rows["stripe.customers"].startswith("#") and f"#{push['id']} " not in rows["stripe.customers"]
    assert " succeeded " in rows["stripe.customers"]


def test_a_second_push_changes_nothing(pushed: Demo) -> None:
    pushed.push_hubspot()  # the first, whichever test ran before on this worker (or none)
    again = pushed.push_hubspot()
    assert again is not None
    assert (again.group_created, again.properties_created, again.contacts_updated) == (False, [], 0)


def test_contacts_that_changed_without_new_values_are_not_pushed_again(pushed: Demo) -> None:
    pushed.push_hubspot()
    # What a re-pull after a push does: HubSpot moved lastmodifieddate, so every pushed contact comes
    # back marked as changed while its crmhub values are the same.
    later = pushed.sandbox_now() + timedelta(hours=1)
    with pushed.engine.begin() as conn:
        conn.execute(update(contacts).values(changed_at=later))
    with default_http_client(pushed.settings.connectors) as http:
        again = hubspot_push(pushed.settings, pushed.engine, http, now=later + timedelta(minutes=1))
    assert again is not None
    assert again.contacts_updated == 0  # their values are what the last push wrote: no echo


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[Demo]:
    """A demo of its own, pulled and not pushed yet: tests change its HubSpot."""
    yield from _pulled(tmp_path, people=20, seed=5)


def _balances(demo: Demo) -> dict[str, float]:
    """HubSpot id -> the Stripe balance crmhub holds for that contact (those that have one)."""
    ci = contact_identities.c
    with demo.engine.connect() as conn:
        balance = load_fields(conn)["stripe_customer_balance"].column
        held = fields_table([balance])
        rows = conn.execute(
            select(ci.value, held.c[balance])
            .join_from(contact_identities, held, held.c.contact_id == ci.contact_id)
            .where(ci.kind == "hubspot_contact", held.c[balance].is_not(None))
        )
        return {hubspot_id: float(value) for hubspot_id, value in rows}


def _pushes(demo: Demo) -> list[dict[str, object]]:
    with demo.engine.connect() as conn:
        query = select(sync_runs).where(sync_runs.c.trigger == "push").order_by(sync_runs.c.id)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_contacts_deleted_in_hubspot_are_refused_and_every_other_contact_is_written(synced: Demo) -> None:
    balances = _balances(synced)
    gone = sorted(balances, key=int)[:2]
    hubspot = synced.sandbox.world.hubspot
    for hubspot_id in gone:  # deleted (or merged away) in HubSpot since crmhub pulled them
        del hubspot.objects["contacts"][int(hubspot_id)]
    report = synced.push_hubspot()
    assert report is not None
    # One batch: refused whole for the ids HubSpot names, then sent again without them.
    assert (
        report.contacts_refused == 2
        and report.calls == 2 + 2 + 2
        and set(report.refused_examples) == set(gone)
    )
    assert all("Could not get some contacts objects" in why for why in report.refused_examples.values())
    for hubspot_id, balance in balances.items():
        if hubspot_id not in gone:
            assert hubspot.objects["contacts"][int(hubspot_id)].properties[
                "crmhub_stripe_customer_balance"
            ] == str(int(balance))
    run = _pushes(synced)[-1]
    assert run["status"] == "partial" and all(hubspot_id in str(run["error"]) for hubspot_id in gone)
    # The next push does not send them again: nothing changed.
    again = synced.push_hubspot()
    assert again is not None and (again.contacts_updated, again.contacts_refused, again.calls) == (0, 0, 2)
    assert _pushes(synced)[-1]["status"] == "succeeded"


def test_a_property_deleted_in_hubspot_is_created_again_with_its_values(synced: Demo) -> None:
    assert synced.push_hubspot() is not None
    hubspot = synced.sandbox.world.hubspot
    name = "crmhub_stripe_customer_balance"
    del hubspot.properties["contacts"][name]  # deleted in HubSpot, and its values with it
    for contact in hubspot.objects["contacts"].values():
        contact.properties.pop(name, None)
    report = synced.push_hubspot()
    assert report is not None and report.properties_created == [name]
    balances = _balances(synced)
    assert balances and report.contacts_updated == len(balances)  # only contacts holding a balance
    for hubspot_id, balance in balances.items():
        assert hubspot.objects["contacts"][int(hubspot_id)].properties[name] == str(int(balance))
    assert _pushes(synced)[-1]["status"] == "succeeded"


def test_a_property_hubspot_already_had_with_another_type_is_retyped_before_its_values(synced: Demo) -> None:
    hubspot = synced.sandbox.world.hubspot
    hubspot.groups["contacts"]["crmhub"] = {"name": "crmhub", "label": "crmhub", "displayOrder": -1}
    name = "crmhub_stripe_customer_name"  # made by hand in HubSpot, as a number
    hubspot.add_property(
        "contacts", {"name": name, "type": "number", "fieldType": "number", "groupName": "crmhub"}
    )
    report = synced.push_hubspot()
    assert report is not None and name in report.properties_retyped and name not in report.properties_created
    assert hubspot.properties["contacts"][name]["type"] == "string"
    assert report.contacts_refused == 0
    named = [c for c in hubspot.objects["contacts"].values() if c.properties.get(name)]
    assert named and not all(str(c.properties[name]).isdigit() for c in named)
