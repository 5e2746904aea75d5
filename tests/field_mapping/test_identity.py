"""Identity hints: one person's e-mails and phones, however typed, normalize to the same values."""

from __future__ import annotations

import pytest

from field_mapping.config import IdentityConfig
from field_mapping.identity import extract_identities, identity_hints
from field_mapping.model import IdentityHint
from tests.field_mapping.conftest import hubspot_contact, segmentio_identify, stripe_object, typeform_response

US = IdentityConfig()


def _pairs(hints: tuple[IdentityHint, ...]) -> set[tuple[str, str]]:
    return {(h.kind, h.value) for h in hints}


@pytest.mark.parametrize(
    ("email", "phone"),
    [
        ("Jane.Doe@Example.com", "+14155552671"),
        ("  jane.doe@example.com ", "(415) 555-2671"),
        ("JANE.DOE@EXAMPLE.COM\t", "415-555-2671"),
        ("jane.doe@example.COM", "+1 415 555 2671"),
        ("Jane.Doe@example.com", "415 555 2671"),
    ],
)
def test_one_person_across_four_sources(email: str, phone: str) -> None:
    stripe = extract_identities(
        "stripe", "customers", stripe_object("customer", email=email, phone=phone), US
    )
    hubspot = extract_identities("hubspot", "contacts", hubspot_contact(email=email, phone=phone), US)
    typeform = extract_identities("typeform", "responses", typeform_response(email=email, user_id="u_1"), US)
    segmentio = extract_identities("segmentio", "users", segmentio_identify(email=email, phone=phone), US)
    same = {("email", "jane.doe@example.com")}
    for hints in (stripe, hubspot, typeform, segmentio):
        assert same <= _pairs(hints)
    for hints in (stripe, hubspot, segmentio):
        assert ("phone", "+14155552671") in _pairs(hints)


def test_external_ids() -> None:
    assert _pairs(extract_identities("stripe", "customers", {"id": "cus_1"}, US)) == {
        ("stripe_customer", "cus_1")
    }
    assert _pairs(extract_identities("stripe", "invoices", {"customer": {"id": "cus_2"}}, US)) == {
        ("stripe_customer", "cus_2")
    }
    hubspot = extract_identities("hubspot", "contacts", {"id": "501", "properties": {}}, US)
    assert _pairs(hubspot) == {("hubspot_contact", "501")}
    typeform = extract_identities("typeform", "responses", {"hidden": {"user_id": "u_42"}, "answers": []}, US)
    # The hidden user id is the userId the app sends Segment.com: both sources find one contact by it.
    assert _pairs(typeform) == {("typeform_hidden_id", "u_42"), ("segmentio_user", "u_42")}
    segmentio = extract_identities("segmentio", "users", {"userId": "u_42", "anonymousId": "a-1"}, US)
    assert _pairs(segmentio) == {("segmentio_user", "u_42"), ("segmentio_anonymous", "a-1")}


def test_deal_names_its_associated_contacts() -> None:
    deal = {
        "id": "9",
        "properties": {},
        "associations": {"contacts": {"results": [{"id": "501"}, {"id": "502"}]}},
    }
    assert _pairs(extract_identities("hubspot", "deals", deal, US)) == {
        ("hubspot_contact", "501"),
        ("hubspot_contact", "502"),
    }


def test_typeform_hidden_field_names_are_configurable() -> None:
    config = IdentityConfig(
        typeform_hidden_id="uid", typeform_hidden_email=None, typeform_hidden_id_is_segmentio_user=False
    )
    response = {"hidden": {"uid": "u_7", "email": "x@example.com", "user_id": "ignored"}, "answers": []}
    assert _pairs(extract_identities("typeform", "responses", response, config)) == {
        ("typeform_hidden_id", "u_7")
    }
    event = identity_hints("typeform", {"uid": "u_7"}, config)
    assert _pairs(event) == {("typeform_hidden_id", "u_7")}


def test_invalid_values_are_kept_and_flagged() -> None:
    hints = extract_identities("hubspot", "contacts", hubspot_contact(email=" Jane@ ", phone="+1415555"), US)
    email = next(h for h in hints if h.kind == "email")
    phone = next(h for h in hints if h.kind == "phone")
    assert (email.value, email.raw, email.valid) == ("jane@", " Jane@ ", False)
    assert (phone.value, phone.valid) == ("+1415555", False)


def test_default_region_reads_national_numbers() -> None:
    hints = extract_identities(
        "stripe", "customers", {"id": "c", "phone": "06 12 34 56 78"}, IdentityConfig(default_region="FR")
    )
    assert ("phone", "+33612345678") in _pairs(hints)


def test_no_identity_and_no_duplicates() -> None:
    assert extract_identities("stripe", "charges", stripe_object("charge"), US) == ()
    response = typeform_response(
        email="jane.doe@example.com", user_id="u_1"
    )  # hidden and answered e-mail agree
    emails = [h for h in extract_identities("typeform", "responses", response, US) if h.kind == "email"]
    assert len(emails) == 1
    assert extract_identities("mailchimp", "members", {"email": "a@example.com"}, US) == ()


def test_contact_event_identities_are_normalized() -> None:
    raw = {"segmentio_user": "u_1", "email": " Jane.Doe@Example.com", "phone": "415-555-2671"}
    assert _pairs(identity_hints("segmentio", raw, US)) == {
        ("segmentio_user", "u_1"),
        ("email", "jane.doe@example.com"),
        ("phone", "+14155552671"),
    }


def test_typeform_event_hidden_fields_become_the_configured_kinds() -> None:
    raw = {"user_id": "u_1", "email": "Jane@Example.com", "utm_source": "ads"}
    assert _pairs(identity_hints("typeform", raw, US)) == {
        ("typeform_hidden_id", "u_1"),
        ("segmentio_user", "u_1"),
        ("email", "jane@example.com"),
    }
