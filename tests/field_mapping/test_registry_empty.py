"""An empty string is no value for a typed field: it neither widens the field nor creates one."""

from __future__ import annotations

from typing import Any

import pytest

from field_mapping import FieldMappingConfig, FieldType, Mapper
from tests.field_mapping.conftest import hubspot_contact, record

T = FieldType
DECLARED = {"amount": T.DECIMAL, "renewal": T.DATE, "vip": T.BOOLEAN}


def _hubspot(**properties: Any) -> Any:
    return record("hubspot", "contacts", hubspot_contact(**properties))


def test_hubspot_typed_properties_sent_empty_are_null_and_keep_their_type() -> None:
    mapper = Mapper(FieldMappingConfig(), declared={"hubspot.contacts": DECLARED})
    mapper.map_record(_hubspot(amount="12.5", renewal="2026-01-02", vip="true", hs_email_optout="false"))
    mapped = mapper.map_record(_hubspot(amount="", renewal="", vip="", hs_email_optout=""))
    assert mapped.widenings == () and mapped.problems == ()
    names = ("hubspot_amount", "hubspot_renewal", "hubspot_vip", "hubspot_hs_email_optout")
    assert [mapped.values[n].value for n in names] == [None, None, None, None]
    types = {d.name: d.type for d in mapper.definitions()}
    assert [types[n] for n in names] == [T.DECIMAL, T.DATE, T.BOOLEAN, T.BOOLEAN]


def test_a_typed_field_first_sent_empty_is_typed_by_its_first_value() -> None:
    mapper = Mapper(FieldMappingConfig(), declared={"hubspot.contacts": DECLARED})
    first = mapper.map_record(_hubspot(amount="", nickname=""))
    assert "hubspot_amount" not in first.created and "hubspot_nickname" not in first.created
    mapper.map_record(_hubspot(amount="3.5", nickname="JD"))
    types = {d.name: d.type for d in mapper.definitions()}
    assert (types["hubspot_amount"], types["hubspot_nickname"]) == (T.DECIMAL, T.ENUM)


def test_a_string_field_keeps_an_empty_string() -> None:
    mapper = Mapper(FieldMappingConfig())
    mapper.map_record(_hubspot())
    mapped = mapper.map_record(_hubspot(firstname=""))
    assert (mapped.values["hubspot_firstname"].type, mapped.values["hubspot_firstname"].value) == (
        T.STRING,
        "",
    )


@pytest.mark.parametrize(
    ("ftype", "transforms"),
    [("integer", []), ("boolean", []), ("date", []), ("datetime", ["unix_to_datetime"])],
)
def test_a_typed_rule_given_an_empty_string_gets_no_value_and_no_problem(
    ftype: str, transforms: list[str]
) -> None:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "metadata.v",
        "field": "v",
        "type": ftype,
        "transforms": transforms,
    }
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [rule]}))
    mapped = mapper.map_record(record("stripe", "customers", {"id": "cus_1", "metadata": {"v": ""}}))
    assert mapped.values["v"].value is None
    assert mapped.problems == () and mapped.widenings == ()


def test_a_string_rule_keeps_an_empty_string() -> None:
    rule = {"source": "stripe", "stream": "customers", "path": "metadata.v", "field": "v", "type": "string"}
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [rule]}))
    mapped = mapper.map_record(record("stripe", "customers", {"id": "cus_1", "metadata": {"v": ""}}))
    assert (mapped.values["v"].type, mapped.values["v"].value) == (T.STRING, "")
