"""A verified webhook takes the sync path at once: records, contact events, segment.entered, outbox row."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors import MalformedPageError
from sync.store.tables import contact_identities, events, inbound_events, records
from tests.inbound.conftest import (
    NOW,
    FakeHubSpot,
    counts,
    dumps,
    entered,
    hubspot_request,
    segmentio_request,
    stripe_request,
    typeform_request,
)
from tests.inbound.payloads import hubspot_events, segment_track, stripe_event, typeform_payload
from webhooks.inbound import InboundReceiver


def _rows(engine: Engine, query: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_a_stripe_payment_enters_a_segment_once(receiver: InboundReceiver, engine: Engine) -> None:
    request = stripe_request(dumps(stripe_event("evt_paid")))
    answer = receiver.receive("stripe", request, now=NOW)
    assert answer.status == 200, answer.body
    assert answer.body == {
        "duplicate": False,
        "records": 1,
        "events": 1,
        "quarantined": 0,
        "contacts": 1,
        "transitions": 1,
    }
    assert _rows(engine, select(records.c.stream, records.c.external_id)) == [
        ("invoices", "in_1Pgc6tB7WZ01zgkWu9fdqL6I")
    ]
    # A payment is keyed by its invoice, so the sync's list or events add no second one.
    assert _rows(engine, select(events.c.name, events.c.external_id)) == [
        ("invoice.paid", "in_1Pgc6tB7WZ01zgkWu9fdqL6I")
    ]
    assert entered(engine) == [("paid", "entered")]

    before = counts(engine)
    again = receiver.receive("stripe", request, now=NOW)
    assert again.status == 200 and again.body == {"duplicate": True}
    assert counts(engine) == before
    assert _rows(engine, select(inbound_events.c.source, inbound_events.c.event_id)) == [
        ("stripe", "evt_paid")
    ]
    assert len(entered(engine)) == 1


def test_a_hubspot_batch_reads_the_changed_contacts_and_enters_a_segment(
    receiver: InboundReceiver, engine: Engine, hubspot: FakeHubSpot
) -> None:
    hubspot.add("51", email="ada@example.com", lifecyclestage="customer", firstname="Ada")
    hubspot.add("52", email="alan@example.com", lifecyclestage="lead")
    body = dumps(hubspot_events(51, 52, 51))
    answer = receiver.receive("hubspot", hubspot_request(body), now=NOW)
    assert answer.status == 200, answer.body
    assert hubspot.reads == [["51", "52"]]
    assert answer.body["records"] == 2 and answer.body["contacts"] == 2
    assert sorted(_rows(engine, select(records.c.stream, records.c.external_id))) == [
        ("contacts", "51"),
        ("contacts", "52"),
    ]
    assert entered(engine) == [("customers", "entered")]
    assert len(_rows(engine, select(inbound_events.c.event_id))) == 3

    # HubSpot retries the whole request: nothing is read again, nothing stored again.
    before = counts(engine)
    again = receiver.receive("hubspot", hubspot_request(body), now=NOW)
    assert again.body == {"duplicate": True}
    assert hubspot.reads == [["51", "52"]]
    assert counts(engine) == before


def test_a_hubspot_batch_of_other_objects_is_answered_and_ignored(
    receiver: InboundReceiver, engine: Engine
) -> None:
    event = hubspot_events(7)[0] | {"subscriptionType": "company.propertyChange"}
    answer = receiver.receive("hubspot", hubspot_request(dumps([event])), now=NOW)
    assert answer.status == 200
    assert answer.body == {"duplicate": False, "stored": False, "ignored": ["company.propertyChange"]}
    assert counts(engine)["records"] == 0


def test_hubspot_unreachable_is_503_and_stores_nothing(make_receiver: Any, engine: Engine) -> None:
    def failing(ids: Any) -> Any:
        raise MalformedPageError(
            "hubspot: contacts batch read: malformed page: check connectors.hubspot.base_url"
        )

    receiver = make_receiver(hubspot_fetch=failing)
    answer = receiver.receive("hubspot", hubspot_request(dumps(hubspot_events(51))), now=NOW)
    assert answer.status == 503 and answer.headers == {"retry-after": "30"}
    assert "HubSpot will retry" in answer.body["message"]
    assert counts(engine)["inbound_events"] == 0


def test_a_typeform_response_lands_like_a_pulled_one(receiver: InboundReceiver, engine: Engine) -> None:
    request = typeform_request(dumps(typeform_payload("tok_9")))
    answer = receiver.receive("typeform", request, now=NOW)
    assert answer.status == 200, answer.body
    [(payload,)] = _rows(engine, select(records.c.payload).where(records.c.source == "typeform"))
    # The webhook's extras are dropped, so the stored record is the Responses API item.
    assert "definition" not in payload and payload["form_id"] == "crmhubNPS"
    assert _rows(engine, select(events.c.name, events.c.external_id)) == [("form.submitted", "tok_9")]
    kinds = {r[0] for r in _rows(engine, select(contact_identities.c.kind))}
    assert {"email", "typeform_hidden_id"} <= kinds
    assert entered(engine) == [("answered", "entered")]
    assert receiver.receive("typeform", request, now=NOW).body == {"duplicate": True}
    assert len(entered(engine)) == 1


def test_a_form_s_hidden_user_id_finds_the_contact_of_segmentio_events_by_that_user_id(
    receiver: InboundReceiver, engine: Engine
) -> None:
    assert (
        receiver.receive("typeform", typeform_request(dumps(typeform_payload("tok_5"))), now=NOW).status
        == 200
    )
    # The product's events name the user by its id alone: the form's hidden user_id is that id.
    track = segment_track("msg-5") | {"userId": "u_42", "context": {}}
    assert receiver.receive("segmentio", segmentio_request(dumps(track)), now=NOW).status == 200
    owners = _rows(engine, select(contact_identities.c.kind, contact_identities.c.contact_id))
    assert len({contact for _, contact in owners}) == 1, owners


def test_a_segment_destination_message_lands_as_a_contact_event(
    receiver: InboundReceiver, engine: Engine
) -> None:
    request = segmentio_request(dumps(segment_track("msg-77")))
    answer = receiver.receive("segmentio", request, now=NOW)
    assert answer.status == 200, answer.body
    assert _rows(engine, select(events.c.name, events.c.external_id)) == [("Order Completed", "msg-77")]
    assert entered(engine) == [("buyers", "entered")]
    assert receiver.receive("segmentio", request, now=NOW).body == {"duplicate": True}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ([segment_track()], 400, "turn batching off"),
        ({"type": "track", "userId": "u_1"}, 400, "track needs 'event'"),
        ({"type": "screen", "userId": "u_1", "name": "Home"}, 200, "not stored"),
    ],
)
def test_segment_destination_answers(
    receiver: InboundReceiver, engine: Engine, body: Any, status: int, words: str
) -> None:
    answer = receiver.receive("segmentio", segmentio_request(dumps(body)), now=NOW)
    assert answer.status == status
    assert words in str(answer.body)
    assert counts(engine)["inbound_events"] == 0


def test_a_stripe_event_of_another_kind_stores_the_person_event(
    receiver: InboundReceiver, engine: Engine
) -> None:
    event = stripe_event("evt_pi") | {"type": "payment_intent.succeeded"}
    event["data"] = {"object": {"id": "pi_1", "object": "payment_intent", "customer": "cus_9", "amount": 500}}
    answer = receiver.receive("stripe", stripe_request(dumps(event)), now=NOW)
    assert answer.status == 200, answer.body
    assert counts(engine)["records"] == 0
    assert _rows(engine, select(events.c.name)) == [("payment_intent.succeeded",)]


@pytest.mark.parametrize("preview_id", [None, "upcoming_in_1Ab"], ids=["no-id", "prefixed-id"])
def test_an_upcoming_invoice_webhook_is_the_persons_event_and_no_invoice(
    receiver: InboundReceiver, engine: Engine, preview_id: str | None
) -> None:
    event = stripe_event("evt_up") | {"type": "invoice.upcoming"}
    preview = {k: v for k, v in event["data"]["object"].items() if k != "id"} | {"status": "draft"}
    if preview_id is not None:
        preview["id"] = preview_id
    event["data"] = {"object": preview}
    answer = receiver.receive("stripe", stripe_request(dumps(event)), now=NOW)
    # A 400 would have Stripe retry it for days, then disable the endpoint.
    assert answer.status == 200, answer.body
    assert counts(engine)["records"] == 0
    assert _rows(engine, select(events.c.name)) == [("invoice.upcoming",)]
