"""`[field_mapping]` validation: every mistake is located by its TOML path and says expected/found."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from field_mapping.config import FieldMappingConfig, MapTransform
from field_mapping.types import FieldType

GOOD = """
[field_mapping]

[[field_mapping.rules]]
source = "stripe"
stream = "subscriptions"
path = "items.data[0].price.nickname"
field = "payment_plan"
type = "enum"
transforms = ["trim", "lower", {map = {basic = "Basic", pro = "Pro"}}]

[[field_mapping.rules]]
source = "typeform"
stream = "responses"
path = "answers[?field.ref=='plan'] | [0].choice.label"
field = "payment_plan"
type = "enum"

[[field_mapping.rules]]
source = "hubspot"
stream = "contacts"
path = "properties.lifecyclestage"
field = "lifecycle_stage"
type = "enum"
wins = ["hubspot", "stripe"]

[field_mapping.auto.stripe]
exclude = ["metadata.internal_*"]
enum_max_distinct = 30

[field_mapping.auto.typeform]
form_names = {crmhubNPS = "nps"}

[field_mapping.hubspot]
push = true

[field_mapping.identity]
default_region = "FR"
typeform_hidden_id = "uid"
"""


def _load(text: str) -> FieldMappingConfig:
    return FieldMappingConfig.model_validate(tomllib.loads(text)["field_mapping"])


def _rule(**overrides: Any) -> dict[str, Any]:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "email",
        "field": "billing_email",
        "type": "email",
    }
    return {**rule, **overrides}


def _errors(data: dict[str, Any]) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        FieldMappingConfig.model_validate(data)
    return [(err["loc"], str(err["ctx"]["error"])) for err in caught.value.errors()]


def test_good_config_loads() -> None:
    config = _load(GOOD)
    assert [r.field for r in config.rules] == ["payment_plan", "payment_plan", "lifecycle_stage"]
    assert config.rules[0].type is FieldType.ENUM
    assert config.rules[0].transforms == ["trim", "lower", MapTransform(map={"basic": "Basic", "pro": "Pro"})]
    assert config.rules[2].wins == ("hubspot", "stripe")
    assert config.auto.stripe.enum_max_distinct == 30
    assert config.auto.typeform.form_names == {"crmhubNPS": "nps"}
    assert config.hubspot.push and config.hubspot.group_name == "crmhub"
    assert config.identity.default_region == "FR"


def test_defaults() -> None:
    config = FieldMappingConfig()
    assert config.rules == []
    assert config.auto.segmentio.stream_enabled("users")
    assert config.auto.hubspot.include == ["*"]
    assert not config.hubspot.push
    assert config.identity.typeform_hidden_email == "email"


@pytest.mark.parametrize(
    ("override", "loc", "message"),
    [
        (
            {"source": "strpe"},
            "source",
            'expected one of stripe, hubspot, typeform, segmentio, found "strpe"',
        ),
        (
            {"stream": "customer"},
            "stream",
            'expected a stripe stream (customers, subscriptions, invoices, charges), found "customer"',
        ),
        ({"path": "a..b"}, "path", 'expected a JMESPath expression, found "a..b"'),
        ({"path": "items.data[0"}, "path", 'expected a JMESPath expression, found "items.data[0"'),
        (
            {"type": "text"},
            "type",
            "expected one of boolean, integer, decimal, datetime, date, email, phone, enum, string, "
            'found "text"',
        ),
        ({"field": "Billing Email"}, "field", 'found "Billing Email"'),
        ({"field": "1st_email"}, "field", 'found "1st_email"'),
        ({"field": "x" * 64}, "field", "at most 63 characters"),
        ({"wins": "newest"}, "wins", 'expected "latest", "first" or a list of sources in priority order'),
        ({"wins": ["stripe", "stripe"]}, "wins", 'found ["stripe", "stripe"]'),
    ],
)
def test_rule_mistakes(override: dict[str, Any], loc: str, message: str) -> None:
    [(where, text)] = _errors({"rules": [_rule(), _rule(**override)]})
    assert where == ("rules", 1, loc)
    assert text.startswith("expected") and message in text


@pytest.mark.parametrize(
    ("transform", "found"),
    [
        ("upper", '"upper"'),
        ({"mapping": {"a": "b"}}, '{"mapping": {"a": "b"}}'),
        ({"map": "a"}, '{"map": "a"}'),
    ],
)
def test_unknown_transform(transform: Any, found: str) -> None:
    [(where, text)] = _errors({"rules": [_rule(transforms=["trim", transform])]})
    assert where == ("rules", 0, "transforms", 1)
    assert text == (
        "expected one of trim, lower, cents_to_amount, unix_to_datetime, e164 or a table "
        f'{{map = {{from = "to"}}}}, found {found}'
    )


def test_two_rules_one_field_two_types() -> None:
    rules = [_rule(), _rule(source="hubspot", stream="contacts", path="properties.email", type="string")]
    [(where, text)] = _errors({"rules": rules})
    assert where == ("rules", 1, "type")
    assert text == 'expected type "email" as rules[0] writes field "billing_email" with it, found "string"'


def test_two_rules_one_field_two_wins() -> None:
    rules = [_rule(wins=["stripe", "hubspot"]), _rule(stream="invoices", path="customer_email")]
    [(where, text)] = _errors({"rules": rules})
    assert where == ("rules", 1, "wins")
    assert 'expected wins ["stripe", "hubspot"]' in text


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        FieldMappingConfig.model_validate({"rules": [_rule(feild="x")]})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        (
            {"auto": {"segmentio": {"streams": ["track"]}}},
            ("auto", "segmentio", "streams"),
            'expected segmentio streams among users, groups, found "track"',
        ),
        (
            {"auto": {"typeform": {"form_names": {"abc": "Bad Name"}}}},
            ("auto", "typeform", "form_names"),
            "Bad Name",
        ),
        ({"hubspot": {"group_name": "Crm Hub"}}, ("hubspot", "group_name"), "HubSpot internal name"),
        ({"hubspot": {"group_name": "c" * 31}}, ("hubspot", "group_name"), "at most 30 characters"),
        ({"hubspot": {"group_name": "hs"}}, ("hubspot", "group_name"), "does not reserve (not hs or hs_...)"),
        ({"identity": {"default_region": "USA"}}, ("identity", "default_region"), 'found "USA"'),
    ],
)
def test_other_mistakes(data: dict[str, Any], loc: tuple[str, ...], message: str) -> None:
    [(where, text)] = _errors(data)
    assert where == loc
    assert text.startswith("expected") and message in text
