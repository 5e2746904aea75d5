"""Records shaped like the providers' own objects, and a mapper to feed them to.

`stripe_objects.json` holds Stripe's documentation examples of the objects crmhub pulls, from
`openapi/fixtures3.json` of the stripe/openapi repository (MIT licence).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.records import Record
from field_mapping import FieldMappingConfig, FieldType, MappedRecord, Mapper

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_STRIPE = json.loads((Path(__file__).parent / "stripe_objects.json").read_text(encoding="utf-8"))


def stripe_object(kind: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of Stripe's example `kind` object with top-level `changes` applied."""
    obj: dict[str, Any] = copy.deepcopy(_STRIPE[kind])
    obj.update(changes)
    return obj


def record(source: str, stream: str, payload: dict[str, Any], external_id: str = "x1") -> Record:
    """A record of `source.stream` carrying `payload`."""
    return Record(source, stream, external_id, NOW, payload)


def hubspot_contact(contact_id: str = "501", **properties: Any) -> dict[str, Any]:
    """A HubSpot contact as the v3 API returns it; every property value is a string."""
    props = {
        "email": "Jane.Doe@Example.com",
        "firstname": "Jane",
        "lastname": "Doe",
        "phone": "(415) 555-2671",
        "lifecyclestage": "customer",
        "hs_email_optout": "false",
        "createdate": "2024-01-02T03:04:05.678Z",
        "lastmodifieddate": "2024-03-04T05:06:07.000Z",
        "hs_object_id": contact_id,
        "num_employees": "12",
    }
    props.update(properties)
    return {
        "id": contact_id,
        "properties": props,
        "createdAt": props["createdate"],
        "updatedAt": props["lastmodifieddate"],
    }


def _answer(ref: str, question: str, value_type: str, value: Any) -> dict[str, Any]:
    return {
        "field": {"id": f"fld_{ref}", "type": question, "ref": ref},
        "type": value_type,
        value_type: value,
    }


def typeform_response(form_id: str = "crmhubNPS", **hidden: Any) -> dict[str, Any]:
    """A Typeform response with one answer of each common value type and hidden fields."""
    return {
        "landing_id": "tok1",
        "token": "tok1",
        "response_id": "tok1",
        "landed_at": "2026-11-20T10:00:00Z",
        "submitted_at": "2026-11-20T10:03:00Z",
        "metadata": {
            "user_agent": "Mozilla/5.0",
            "platform": "other",
            "referer": "https://x",
            "browser": "default",
        },
        "hidden": hidden or {"user_id": "u_000042", "email": " Jane.Doe@EXAMPLE.com"},
        "calculated": {"score": 9},
        "variables": [{"key": "score", "type": "number", "number": 9}],
        "answers": [
            _answer("nps", "opinion_scale", "number", 9),
            _answer("consent", "yes_no", "boolean", True),
            _answer("name", "short_text", "text", "Jane Doe"),
            _answer("email", "email", "email", "jane.doe@example.com"),
            _answer("phone", "phone_number", "phone_number", "+14155552671"),
            _answer("website", "website", "url", "https://acme.example"),
            _answer("seats", "number", "number", 25),
            _answer("birthday", "date", "date", "1980-05-17"),
            _answer("plan", "multiple_choice", "choice", {"id": "ch_pro", "ref": "pro", "label": "Pro"}),
            _answer("interests", "multiple_choice", "choices", {"labels": ["SMS campaigns", "API"]}),
            _answer("logo", "file_upload", "file_url", "https://api.typeform.com/files/logo.png"),
            _answer(
                "tip", "payment", "payment", {"amount": "5.00", "last4": "4242", "name": "J", "success": True}
            ),
        ],
        "form_id": form_id,
    }


def segmentio_identify(**traits: Any) -> dict[str, Any]:
    """A Segment.com identify message as connectors.segmentio stores it."""
    return {
        "type": "identify",
        "messageId": "m1",
        "userId": "u_000042",
        "anonymousId": "anon-7",
        "timestamp": "2026-11-20T10:00:00Z",
        "traits": traits or {"email": "JANE.DOE@example.com", "phone": "+1 415 555 2671", "plan": "pro"},
        "context": {"ip": "203.0.113.9"},
    }


@pytest.fixture
def config_data() -> dict[str, Any]:
    """A `[field_mapping]` table with the rules the examples in config.example.toml show."""
    return {
        "rules": [
            {
                "source": "stripe",
                "stream": "subscriptions",
                "path": "items.data[0].price.nickname",
                "field": "payment_plan",
                "type": "enum",
                "transforms": ["trim", "lower"],
            },
            {
                "source": "stripe",
                "stream": "subscriptions",
                "path": "status",
                "field": "subscription_status",
                "type": "enum",
            },
            {
                "source": "stripe",
                "stream": "subscriptions",
                "path": "items.data[0].price.unit_amount",
                "field": "mrr",
                "type": "decimal",
                "transforms": ["cents_to_amount"],
            },
            {
                "source": "stripe",
                "stream": "subscriptions",
                "path": "trial_end",
                "field": "trial_end",
                "type": "datetime",
                "transforms": ["unix_to_datetime"],
            },
            {
                "source": "hubspot",
                "stream": "contacts",
                "path": "properties.lifecyclestage",
                "field": "lifecycle_stage",
                "type": "enum",
            },
            {
                "source": "typeform",
                "stream": "responses",
                "path": "answers[?field.ref=='plan'] | [0].choice.label",
                "field": "payment_plan",
                "type": "enum",
                "transforms": ["lower"],
            },
        ],
        "auto": {"typeform": {"form_names": {"crmhubNPS": "nps"}}},
    }


@pytest.fixture
def mapper(config_data: dict[str, Any]) -> Mapper:
    """A mapper over the shared test configuration."""
    return Mapper(FieldMappingConfig.model_validate(config_data))


def typed_values(mapped: MappedRecord) -> dict[str, tuple[FieldType, Any]]:
    """Each field that got a value, as (type, value)."""
    return {name: (v.type, v.value) for name, v in mapped.values.items() if v.value is not None}
