"""Mapping HubSpot contacts, Typeform responses and Segment.com identify messages."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from field_mapping import FieldMappingConfig, FieldType, Mapper, hubspot_declared_types
from tests.field_mapping.conftest import (
    hubspot_contact,
    record,
    segmentio_identify,
    typed_values,
    typeform_response,
)

T = FieldType


def test_hubspot_contact(mapper: Mapper) -> None:
    mapped = mapper.map_record(record("hubspot", "contacts", hubspot_contact()))
    typed = typed_values(mapped)
    assert typed["lifecycle_stage"] == (T.ENUM, "customer")
    assert typed["hubspot_email"] == (T.EMAIL, "jane.doe@example.com")
    assert typed["hubspot_phone"] == (T.PHONE, "+14155552671")
    assert typed["hubspot_firstname"] == (T.STRING, "Jane")
    assert typed["hubspot_hs_email_optout"] == (T.BOOLEAN, False)
    assert typed["hubspot_createdate"] == (T.DATETIME, datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    assert typed["hubspot_num_employees"] == (T.INTEGER, 12)
    assert "hubspot_lifecyclestage" not in mapped.values  # read by a rule
    assert "hubspot_hs_object_id" not in mapped.values
    assert mapped.values["hubspot_email"].origin.path == "properties.email"


def test_hubspot_declared_types_win_over_inference(config_data: dict[str, Any]) -> None:
    declared = hubspot_declared_types([{"name": "zip", "type": "string", "fieldType": "text"}])
    mapper = Mapper(FieldMappingConfig.model_validate(config_data), declared={"hubspot.contacts": declared})
    mapped = mapper.map_record(record("hubspot", "contacts", hubspot_contact(zip="02134")))
    assert typed_values(mapped)["hubspot_zip"] == (T.STRING, "02134")


def test_crmhubs_own_pushed_properties_never_come_back_as_hubspot_fields() -> None:
    # With no exclude configured: pushed once, they are on every contact a later sync pulls.
    config = FieldMappingConfig.model_validate({"hubspot": {"group_name": "acme"}})
    contact = hubspot_contact(acme_stripe_plan="pro", acmeish="kept", crmhub_plan="kept too")
    mapped = Mapper(config).map_record(record("hubspot", "contacts", contact))
    assert "hubspot_acme_stripe_plan" not in mapped.values
    assert mapped.values["hubspot_acmeish"].value == "kept"
    assert mapped.values["hubspot_crmhub_plan"].value == "kept too"  # another group's name: HubSpot's


def test_typeform_response(mapper: Mapper) -> None:
    mapped = mapper.map_record(record("typeform", "responses", typeform_response()))
    typed = typed_values(mapped)
    assert typed["payment_plan"] == (T.ENUM, "pro")
    assert typed["typeform_nps_nps"] == (T.INTEGER, 9)
    assert typed["typeform_nps_consent"] == (T.BOOLEAN, True)
    assert typed["typeform_nps_name"] == (T.STRING, "Jane Doe")
    assert typed["typeform_nps_email"] == (T.EMAIL, "jane.doe@example.com")
    assert typed["typeform_nps_phone"] == (T.PHONE, "+14155552671")
    assert typed["typeform_nps_seats"] == (T.INTEGER, 25)
    assert typed["typeform_nps_birthday"] == (T.DATE, date(1980, 5, 17))
    assert typed["typeform_nps_interests"] == (T.STRING, "SMS campaigns;API")
    assert typed["typeform_nps_tip"] == (T.DECIMAL, Decimal("5.00"))
    assert typed["typeform_nps_hidden_email"] == (T.EMAIL, "jane.doe@example.com")
    assert typed["typeform_nps_score"] == (T.INTEGER, 9)
    assert typed["typeform_nps_submitted_at"] == (T.DATETIME, datetime(2026, 11, 20, 10, 3, tzinfo=UTC))
    assert "typeform_nps_plan" not in mapped.values  # read by a rule
    assert "typeform_nps_website" not in mapped.values  # URLs are skipped
    assert "typeform_nps_logo" not in mapped.values
    assert "typeform_nps_hidden_user_id" not in mapped.values  # an id: identity, not a field
    assert mapped.values["typeform_nps_nps"].origin.path == "answers[?field.ref=='nps'] | [0].number"


def test_typeform_form_without_short_name_uses_its_id(mapper: Mapper) -> None:
    mapped = mapper.map_record(record("typeform", "responses", typeform_response(form_id="lT4Z3j")))
    assert "typeform_lt4z3j_nps" in mapped.values


def test_segmentio_identify(mapper: Mapper) -> None:
    message = segmentio_identify(
        email="JANE.DOE@example.com",
        firstName="Jane",
        plan="pro",
        createdAt="2024-01-02T03:04:05Z",
        address={"city": "Paris"},
    )
    mapped = mapper.map_record(record("segmentio", "users", message))
    typed = typed_values(mapped)
    assert typed["segmentio_email"] == (T.EMAIL, "jane.doe@example.com")
    assert typed["segmentio_first_name"] == (T.STRING, "Jane")
    assert typed["segmentio_plan"] == (T.ENUM, "pro")
    assert typed["segmentio_created_at"] == (T.DATETIME, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert typed["segmentio_address_city"] == (T.ENUM, "Paris")
    assert mapped.values["segmentio_first_name"].origin.path == "traits.firstName"


def test_two_paths_of_one_name_keep_their_fields_in_a_later_run(mapper: Mapper) -> None:
    first = segmentio_identify(first_name="Ann", firstName="ANN-camel")
    before = typed_values(mapper.map_record(record("segmentio", "users", first)))
    assert before["segmentio_first_name"] == (T.STRING, "Ann")
    [other] = [name for name in before if name.startswith("segmentio_first_name_")]
    # The next run's mapper knows the stored fields; this time the camel-case path comes first.
    later = Mapper(mapper.config, known=mapper.definitions())
    again = segmentio_identify(firstName="BOB-camel", first_name="Bob")
    mapped = later.map_record(record("segmentio", "users", again))
    assert typed_values(mapped)["segmentio_first_name"] == (T.STRING, "Bob")
    assert typed_values(mapped)[other] == (T.STRING, "BOB-camel")
    assert not later.plan().create


def test_include_and_exclude_patterns() -> None:
    config = FieldMappingConfig.model_validate(
        {
            "auto": {
                "hubspot": {"include": ["email", "hs_*"], "exclude": ["hs_email_*"]},
                "stripe": {"enabled": False},
            }
        }
    )
    mapper = Mapper(config)
    mapped = mapper.map_record(record("hubspot", "contacts", hubspot_contact(hs_lead_status="NEW")))
    assert set(mapped.values) == {"hubspot_email", "hubspot_hs_lead_status"}
    assert mapper.map_record(record("hubspot", "contacts", hubspot_contact())).identities
    assert not mapper.map_record(
        record("stripe", "customers", {"id": "cus_1", "email": "a@example.com"})
    ).values


def test_builtin_skips_can_be_turned_off() -> None:
    mapper = Mapper(FieldMappingConfig.model_validate({"auto": {"stripe": {"skip_builtin": False}}}))
    mapped = mapper.map_record(record("stripe", "customers", {"id": "cus_1", "livemode": False}))
    assert set(mapped.values) == {"stripe_customer_id", "stripe_customer_livemode"}


def test_lists_of_scalars_are_joined() -> None:
    mapper = Mapper(FieldMappingConfig())
    payload = {"id": "cus_1", "preferred_locales": ["en", "fr"], "tax_ids": [{"id": "txi_1"}], "tags": []}
    mapped = mapper.map_record(record("stripe", "customers", payload))
    assert mapped.values["stripe_customer_preferred_locales"].value == "en;fr"
    assert "stripe_customer_tax_ids" not in mapped.values
    assert "stripe_customer_tags" not in mapped.values  # no value yet: no field


def test_unknown_stream_maps_nothing_but_identities() -> None:
    mapped = Mapper(FieldMappingConfig()).map_record(
        record("stripe", "payouts", {"id": "po_1", "customer": "cus_1"})
    )
    assert not mapped.values
    assert mapped.identity("stripe_customer") is not None
