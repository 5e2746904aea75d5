"""Pushing fields to HubSpot: group, properties and values land in the sandbox; a re-run changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

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


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = Demo(tmp_path_factory.mktemp("push"), people=80, seed=3)
    demo.start()
    try:
        demo.sync()
        yield demo
    finally:
        demo.stop()


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
    ci = contact_identities.c
    with pushed.engine.connect() as conn:
        balance = load_fields(conn)["stripe_customer_balance"].column
        held = fields_table([balance])
        rows = conn.execute(
            select(ci.value, held.c[balance])
            .join_from(contact_identities, held, held.c.contact_id == ci.contact_id)
            .where(ci.kind == "hubspot_contact", held.c[balance].is_not(None))
        ).all()
    assert rows and report.contacts_updated >= len({hubspot_id for hubspot_id, _ in rows})
    # One call for the group, one per 100 properties, one reading them back, one per 100 contacts.
    batches = -(-len(report.properties_created) // 100) + -(-report.contacts_updated // 100)
    assert len(report.properties_created) > 100 and report.calls == 1 + batches + 1
    assert report.properties_retyped == []
    for hubspot_id, balance in rows:
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
