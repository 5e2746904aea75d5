"""`crmhub check` on mapping rules that could never fill their field, each with its TOML path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.example import example_config_text
from crmhub.mapping_checks import TRANSFORM_INPUTS, mapping_problems
from crmhub.settings import Settings
from field_mapping.transforms import TRANSFORM_NAMES

ALL_TYPES = ("boolean", "integer", "decimal", "datetime", "date", "email", "phone", "enum", "string")
# What each transform gives, and the types whose conversion takes it (the mapper's registry):
# a datetime as text is its ISO form; a whole amount fits an integer, 19.99 does not; an E.164
# number is text, but no e-mail address.
HOLDS = {
    "unix_to_datetime": {"datetime", "string"},
    "cents_to_amount": {"decimal", "string", "integer"},
    "e164": {"phone", "enum", "string"},
}


def _rule(**overrides: Any) -> dict[str, Any]:
    return {
        "source": "stripe",
        "stream": "subscriptions",
        "path": "trial_end",
        "field": "trial_end",
        "type": "string",
    } | overrides


def _problems(*rules: dict[str, Any], **parts: Any) -> dict[str, str]:
    settings = Settings.model_validate({"field_mapping": {"rules": list(rules)}, **parts})
    return {p.path: p.message for p in mapping_problems(settings)}


@pytest.mark.parametrize(
    ("transform", "ftype"), [(t, ftype) for t in HOLDS for ftype in ALL_TYPES if ftype not in HOLDS[t]]
)
def test_a_type_that_cannot_hold_what_the_transform_gives_is_a_problem(transform: str, ftype: str) -> None:
    found = _problems(_rule(type=ftype, transforms=[transform]))
    assert list(found) == ["field_mapping.rules[0].type"]
    assert f'found "{ftype}": every sync would report "' in found["field_mapping.rules[0].type"]


@pytest.mark.parametrize(("transform", "ftype"), [(t, ftype) for t in HOLDS for ftype in sorted(HOLDS[t])])
def test_a_type_that_holds_what_the_transform_gives_is_fine(transform: str, ftype: str) -> None:
    assert _problems(_rule(type=ftype, transforms=[transform])) == {}


def test_the_problem_says_what_the_chain_gives_which_types_hold_it_and_what_each_sync_reports() -> None:
    found = _problems(_rule(type="date", transforms=["unix_to_datetime"]))
    assert found["field_mapping.rules[0].type"].startswith(
        "expected a type that holds the datetime unix_to_datetime gives (datetime, string), "
        'found "date": every sync would report "expected a date value, found datetime.datetime('
    )
    assert "(set one of those types, or change the transforms)" in found["field_mapping.rules[0].type"]
    amount = _problems(_rule(type="boolean", transforms=["cents_to_amount"]))
    assert "the Decimal cents_to_amount gives (decimal, string)" in amount["field_mapping.rules[0].type"]


@pytest.mark.parametrize(
    "transforms",
    [
        [],
        ["trim"],  # a string of the payload's: "2026-01-02" is a date
        ["unix_to_datetime", {"map": {"2026-01-01 00:00:00+00:00": "2026-01-01"}}],  # a map decides
    ],
)
def test_transforms_whose_output_the_payload_decides_are_left_to_the_sync(transforms: list[Any]) -> None:
    assert _problems(_rule(type="date", transforms=transforms)) == {}


def test_a_chain_is_judged_by_what_its_last_typed_transform_gives() -> None:
    # An E.164 number is digits after "+", which cents_to_amount takes: the chain gives a Decimal.
    chain = ["e164", "cents_to_amount"]
    assert _problems(_rule(type="decimal", transforms=chain)) == {}
    found = _problems(_rule(type="phone", transforms=chain))
    assert "the Decimal cents_to_amount gives" in found["field_mapping.rules[0].type"]


def test_a_transform_refusing_what_an_earlier_one_gives_is_a_problem() -> None:
    found = _problems(_rule(transforms=["trim", "unix_to_datetime", "lower"]))
    assert list(found) == ["field_mapping.rules[0].transforms[2]"]
    assert found["field_mapping.rules[0].transforms[2]"].startswith(
        'expected a transform that takes the datetime unix_to_datetime gives, found "lower": '
        'every sync would report "lower: expected a string, found datetime.datetime('
    )


def test_every_transform_that_makes_a_kind_of_value_is_checked() -> None:
    # A new transform giving numbers, times or the like needs its inputs in TRANSFORM_INPUTS.
    assert set(TRANSFORM_NAMES) - set(TRANSFORM_INPUTS) == {"trim", "lower"}


@pytest.mark.parametrize("stream", ["deals", "companies"])
def test_a_rule_on_a_stream_naming_no_contact_is_a_problem(stream: str) -> None:
    rule = _rule(source="hubspot", stream=stream, path="properties.amount", field="amount", type="decimal")
    found = _problems(rule)
    assert list(found) == ["field_mapping.rules[0].stream"]
    assert found["field_mapping.rules[0].stream"] == (
        f'expected a stream whose records name a contact (contacts), found "{stream}": hubspot.{stream} '
        "records are stored but name no contact, so the field is never filled (map the value from "
        "hubspot.contacts, or remove the rule)"
    )
    assert _problems({**rule, "stream": "contacts"}) == {}


def test_a_hubspot_property_the_configured_properties_leave_out_is_a_problem() -> None:
    contact = {"source": "hubspot", "stream": "contacts", "type": "string"}
    rules = [
        contact | {"path": "properties.city", "field": "city"},
        contact | {"path": "to_number(properties.age) || properties.lifecyclestage", "field": "age"},
        contact | {"path": "properties.lifecycle_stage", "field": "stage"},
        contact | {"path": "properties.lastmodifieddate", "field": "modified"},  # always pulled
        contact | {"path": "properties.hs_object_id", "field": "hubspot_id"},  # always returned
        contact | {"path": "properties.lifecyclestage", "field": "lifecycle"},
        contact | {"path": "id", "field": "hubspot_contact"},
    ]
    only = {"hubspot": {"properties": ["email", "lifecyclestage"]}}
    found = _problems(*rules, connectors=only)
    assert list(found) == [f"field_mapping.rules[{i}].path" for i in range(3)]
    assert found["field_mapping.rules[0].path"] == (
        'expected a property connectors.hubspot.properties pulls, found "properties.city": "city" is '
        'not in that list, so it is never pulled (add "city" to connectors.hubspot.properties, or '
        "leave the list out to pull every property)"
    )
    assert 'found "properties.age"' in found["field_mapping.rules[1].path"]
    assert found["field_mapping.rules[2].path"].endswith(
        '(or, if you meant "properties.lifecyclestage", fix the path)'
    )
    assert _problems(*rules) == {}  # no list: every property is pulled


@pytest.mark.parametrize("field", ["dormant", "email_deliverable", "phone_valid", "consent_confirmed_at"])
def test_a_rule_writing_a_field_crmhub_sets_itself_is_a_problem(field: str) -> None:
    found = _problems(_rule(field=field, type="boolean", path="metadata.flag"))
    assert list(found) == ["field_mapping.rules[0].field"]
    assert found["field_mapping.rules[0].field"].startswith(
        f'expected a field crmhub does not write itself, found "{field}": crmhub sets it itself ('
    )
    assert found["field_mapping.rules[0].field"].endswith(
        f'overwrite each other (choose another field name, such as "stripe_{field}")'
    )


def test_lead_score_is_crmhubs_own_once_scoring_is_configured() -> None:
    rule = _rule(source="hubspot", stream="contacts", path="properties.hubspotscore", field="lead_score")
    scoring = {"events": [{"event": "invoice.paid", "points": 10}]}
    found = _problems(rule | {"type": "integer"}, scoring=scoring)
    assert found == {
        "field_mapping.rules[0].field": 'expected a field crmhub does not write itself, found "lead_score": '
        "[scoring] computes it for every contact at every sync, so the rule and crmhub would overwrite "
        'each other (choose another field name, such as "hubspot_lead_score")'
    }
    assert _problems(rule | {"type": "integer"}) == {}  # without [scoring], HubSpot's score may be it


def test_a_rule_writing_a_contacts_own_email_is_a_problem() -> None:
    found = _problems(_rule(field="email", type="email", path="customer_email"))
    assert "segments read each contact's own email" in found["field_mapping.rules[0].field"]


def test_the_starter_rules_pass() -> None:
    settings = Settings.model_validate(tomllib.loads(example_config_text()))
    assert mapping_problems(settings) == []
    assert settings.field_mapping.rules  # the example has rules to judge


def test_check_reports_each_rule_that_could_never_fill_its_field(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "crmhub.db"}"\n'
        '[connectors.hubspot]\nproperties = ["email"]\n'
        '[[field_mapping.rules]]\nsource = "stripe"\nstream = "subscriptions"\npath = "trial_end"\n'
        'field = "trial_end"\ntype = "date"\ntransforms = ["unix_to_datetime"]\n'
        '[[field_mapping.rules]]\nsource = "hubspot"\nstream = "deals"\npath = "properties.email"\n'
        'field = "deal_email"\ntype = "email"\n'
        '[[field_mapping.rules]]\nsource = "hubspot"\nstream = "contacts"\npath = "properties.city"\n'
        'field = "city"\ntype = "string"\n'
        '[[field_mapping.rules]]\nsource = "stripe"\nstream = "customers"\npath = "metadata.dormant"\n'
        'field = "dormant"\ntype = "boolean"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "check"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    for where in ("rules[0].type", "rules[1].stream", "rules[2].path", "rules[3].field"):
        assert f"field_mapping.{where}: expected" in said
    assert "Traceback" not in result.output
