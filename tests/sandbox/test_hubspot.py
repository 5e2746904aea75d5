"""The HubSpot look-alike through the official `hubspot-api-client` (host only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.properties import (
    BatchInputPropertyCreate,
    OptionInput,
    PropertyCreate,
    PropertyGroupCreate,
    PropertyUpdate,
)
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from connectors import ConnectorsConfig, build_source
from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.hubspot_store import parse_time_ms


@pytest.fixture
def client(url: str) -> HubSpot:
    """A HubSpot SDK client pointed at the sandbox."""
    return HubSpot(access_token=credentials.HUBSPOT_ACCESS_TOKEN, host=url)


def test_get_page_to_the_end(client: HubSpot, sandbox: Sandbox) -> None:
    seen: list[str] = []
    after = None
    while True:
        page = client.crm.contacts.basic_api.get_page(limit=100, after=after, properties=["email", "phone"])
        seen.extend(r.id for r in page.results)
        assert all(set(r.properties) >= {"email", "phone", "hs_object_id"} for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert len(seen) == len(set(seen)) == len(sandbox.world.hubspot.objects["contacts"])


def test_companies_and_deals_list(client: HubSpot, sandbox: Sandbox) -> None:
    companies = client.crm.companies.basic_api.get_page(limit=100)
    assert len(companies.results) == len(sandbox.world.hubspot.objects["companies"])
    deals = client.crm.deals.get_all()
    assert len(deals) == len(sandbox.world.hubspot.objects["deals"])


def _search(client: HubSpot, since_ms: int, limit: int, after: str | None) -> Any:
    request = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(
                filters=[Filter(property_name="lastmodifieddate", operator="GTE", value=str(since_ms))]
            )
        ],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        properties=["email", "lastmodifieddate"],
        limit=limit,
        after=after,
    )
    return client.crm.contacts.search_api.do_search(public_object_search_request=request)


def test_search_lastmodifieddate_pages_in_order(client: HubSpot, sandbox: Sandbox) -> None:
    contacts = list(sandbox.world.hubspot.objects["contacts"].values())
    since = sorted(c.updated_ms for c in contacts)[len(contacts) // 3]
    stamps: list[int] = []
    after = None
    while True:
        result = _search(client, since, 50, after)
        stamps.extend(parse_time_ms(r.properties["lastmodifieddate"]) or 0 for r in result.results)
        if result.paging is None:
            break
        after = result.paging.next.after
    assert stamps == sorted(stamps)
    assert len(stamps) == result.total == sum(1 for c in contacts if c.updated_ms >= since)


def test_search_past_ten_thousand_results_is_a_400(client: HubSpot) -> None:
    assert _search(client, 0, 200, "9800").results == []
    with pytest.raises(ContactsApiException) as caught:
        _search(client, 0, 200, "9900")
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["category"] == "VALIDATION_ERROR"


def test_batch_upsert_and_read_by_email(client: HubSpot, sandbox: Sandbox) -> None:
    existing = next(iter(sandbox.world.hubspot.objects["contacts"].values()))
    existing_email = (existing.properties["email"] or "").strip().upper()
    inputs = [
        SimplePublicObjectBatchInputUpsert(
            id="new.person@example.com", id_property="email", properties={"firstname": "New"}
        ),
        SimplePublicObjectBatchInputUpsert(
            id=existing_email, id_property="email", properties={"lastname": "Changed"}
        ),
    ]
    result = client.crm.contacts.batch_api.upsert(
        batch_input_simple_public_object_batch_input_upsert=BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=inputs
        )
    )
    assert sorted(r.new for r in result.results) == [False, True]
    assert existing.properties["lastname"] == "Changed"
    read = client.crm.contacts.batch_api.read(
        batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id="new.person@example.com")],
            properties=["email", "firstname"],
            id_property="email",
            properties_with_history=[],
        )
    )
    assert read.results[0].properties["firstname"] == "New"


def test_objects_written_together_get_distinct_increasing_modified_times(
    client: HubSpot, sandbox: Sandbox
) -> None:
    # The sandbox clock stands still between ticks; a push of 10,000 contacts sharing one
    # lastmodifieddate was more than search could page past, which real HubSpot never serves.
    contacts = list(sandbox.world.hubspot.objects["contacts"].values())[:100]
    clock_ms = sandbox.world.now * 1000
    client.crm.contacts.batch_api.update(
        batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(
            inputs=[
                SimplePublicObjectBatchInput(id=str(c.id), properties={"lastname": f"Pushed {n}"})
                for n, c in enumerate(contacts)
            ]
        )
    )
    stamps = [parse_time_ms(c.properties["lastmodifieddate"] or "") or 0 for c in contacts]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(contacts)
    assert stamps[0] >= clock_ms


def test_upsert_of_an_unknown_property_is_a_400(client: HubSpot) -> None:
    inputs = [
        SimplePublicObjectBatchInputUpsert(id="x@example.com", id_property="email", properties={"nope": "1"})
    ]
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.batch_api.upsert(
            batch_input_simple_public_object_batch_input_upsert=BatchInputSimplePublicObjectBatchInputUpsert(
                inputs=inputs
            )
        )
    assert caught.value.status == 400


def test_property_group_and_property_create_then_409(client: HubSpot) -> None:
    client.crm.properties.groups_api.create(
        object_type="contacts",
        property_group_create=PropertyGroupCreate(name="crmhub_test", label="crmhub test", display_order=-1),
    )
    prop = PropertyCreate(
        name="crmhub_plan_tier",
        label="Plan tier",
        type="enumeration",
        field_type="select",
        group_name="crmhub_test",
        options=[OptionInput(label="Free", value="free", display_order=0, hidden=False)],
    )
    created = client.crm.properties.core_api.create(object_type="contacts", property_create=prop)
    assert created.name == "crmhub_plan_tier" and created.field_type == "select"
    assert client.crm.properties.core_api.get_by_name(
        object_type="contacts", property_name="crmhub_plan_tier"
    )
    with pytest.raises(PropertiesApiException) as caught:
        client.crm.properties.core_api.create(object_type="contacts", property_create=prop)
    assert caught.value.status == 409
    with pytest.raises(PropertiesApiException) as group_dup:
        client.crm.properties.groups_api.create(
            object_type="contacts",
            property_group_create=PropertyGroupCreate(name="crmhub_test", label="again"),
        )
    assert group_dup.value.status == 409


def test_batch_create_stores_the_valid_and_lists_each_refused_in_a_207(client: HubSpot) -> None:
    def prop(name: str, kind: str = "string", field_type: str = "text") -> PropertyCreate:
        return PropertyCreate(
            name=name, label=name, type=kind, field_type=field_type, group_name="contactinformation"
        )

    api = client.crm.properties.batch_api
    first = api.create(
        object_type="contacts",
        batch_input_property_create=BatchInputPropertyCreate(inputs=[prop("batch_a"), prop("batch_b")]),
        _preload_content=False,
    )
    assert first.status == 201
    assert [r["name"] for r in json.loads(first.data)["results"]] == ["batch_a", "batch_b"]
    again = api.create(
        object_type="contacts",
        batch_input_property_create=BatchInputPropertyCreate(
            inputs=[prop("batch_a"), prop("batch_c"), prop("batch_d", "number", "select")]
        ),
        _preload_content=False,
    )
    answer = json.loads(again.data)
    assert again.status == 207 and [r["name"] for r in answer["results"]] == ["batch_c"]
    assert [(e["category"], e["context"]["name"]) for e in answer["errors"]] == [
        ("OBJECT_ALREADY_EXISTS", ["batch_a"]),
        ("VALIDATION_ERROR", ["batch_d"]),
    ]
    names = {p.name for p in client.crm.properties.core_api.get_all(object_type="contacts").results}
    assert {"batch_a", "batch_b", "batch_c"} <= names and "batch_d" not in names


@pytest.mark.parametrize(("kind", "field_type"), [("bool", "text"), ("number", "select"), ("date", "number")])
def test_invalid_type_and_field_type_pairs_are_a_400(client: HubSpot, kind: str, field_type: str) -> None:
    prop = PropertyCreate(
        name=f"bad_{kind}", label="Bad", type=kind, field_type=field_type, group_name="contactinformation"
    )
    with pytest.raises(PropertiesApiException) as caught:
        client.crm.properties.core_api.create(object_type="contacts", property_create=prop)
    assert caught.value.status == 400


def test_html_and_phonenumber_are_valid_for_strings(client: HubSpot) -> None:
    for field_type in ("html", "phonenumber"):
        prop = PropertyCreate(
            name=f"ok_{field_type}",
            label="Ok",
            type="string",
            field_type=field_type,
            group_name="contactinformation",
        )
        assert client.crm.properties.core_api.create(object_type="contacts", property_create=prop).name


def test_rate_limit_on_search_is_a_429_with_hubspot_body(client: HubSpot, sandbox: Sandbox) -> None:
    sandbox.add_fault("hubspot:429:1")
    with pytest.raises(ContactsApiException) as caught:
        _search(client, 0, 10, None)
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "1"
    body = json.loads(caught.value.body)
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY"
    assert body["message"] == "You have reached your secondly limit."


def test_wrong_token_is_a_401(url: str) -> None:
    client = HubSpot(access_token="pat-na1-wrong", host=url)
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.basic_api.get_page(limit=1)
    assert caught.value.status == 401


def test_a_value_a_property_cannot_hold_is_a_400_until_the_property_is_retyped(
    client: HubSpot, sandbox: Sandbox
) -> None:
    client.crm.properties.groups_api.create(
        object_type="contacts", property_group_create=PropertyGroupCreate(name="crmhub_retype", label="r")
    )
    number = PropertyCreate(
        name="crmhub_seats", label="Seats", type="number", field_type="number", group_name="crmhub_retype"
    )
    client.crm.properties.core_api.create(object_type="contacts", property_create=number)
    contact_id = str(next(iter(sandbox.world.hubspot.objects["contacts"])))

    def write(value: str) -> None:
        inputs = [SimplePublicObjectBatchInput(id=contact_id, properties={"crmhub_seats": value})]
        client.crm.contacts.batch_api.update(
            batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(inputs=inputs)
        )

    write("12")
    with pytest.raises(ContactsApiException) as refused:
        write("many")
    assert refused.value.status == 400 and "not a valid number" in str(refused.value.body)
    client.crm.properties.core_api.update(
        object_type="contacts",
        property_name="crmhub_seats",
        property_update=PropertyUpdate(type="string", field_type="text"),
    )
    write("many")
    assert sandbox.world.hubspot.objects["contacts"][int(contact_id)].properties["crmhub_seats"] == "many"


@pytest.fixture
def own() -> Iterator[tuple[Sandbox, str]]:
    """A small sandbox of this test's own, for tests that change its contacts."""
    box = Sandbox(people=40, seed=3)
    with SandboxServer(box) as server:
        yield box, server.url


def _edit(client: HubSpot, contact_id: str) -> None:
    inputs = [SimplePublicObjectBatchInput(id=contact_id, properties={"lastname": "Edited mid-sync"})]
    client.crm.contacts.batch_api.update(
        batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(inputs=inputs)
    )


def test_an_edit_between_search_pages_shifts_the_offset_as_in_hubspot(own: tuple[Sandbox, str]) -> None:
    client = HubSpot(access_token=credentials.HUBSPOT_ACCESS_TOKEN, host=own[1])
    ranked = [r.id for r in _search(client, 0, 200, None).results]
    first = _search(client, 0, 10, None)
    _edit(client, first.results[1].id)
    second = _search(client, 0, 10, first.paging.next.after)
    # The edited contact moved to the end, so offset 10 now starts at what was the 12th.
    assert [r.id for r in second.results] == ranked[11:21]


def test_a_pull_misses_no_contact_edited_between_its_pages(own: tuple[Sandbox, str]) -> None:
    box, url = own
    client = HubSpot(access_token=credentials.HUBSPOT_ACCESS_TOKEN, host=url)
    config = ConnectorsConfig.model_validate(
        {"hubspot": {"enabled": True, "base_url": url, "page_size": 10, "properties": ["email"]}}
    )
    with httpx.Client(timeout=10) as http:
        source = build_source("hubspot", config, credentials.HUBSPOT_ACCESS_TOKEN, http, sleep=lambda _: None)
        pulled: list[str] = []
        now = datetime.fromtimestamp(box.world.now, tz=UTC)
        for n, batch in enumerate(source.stream("contacts").pull(None, now=now)):
            pulled.extend(r.external_id for r in batch.records)
            if n == 0:
                _edit(client, batch.records[1].external_id)
    assert set(pulled) == {str(i) for i in box.world.hubspot.objects["contacts"]}
