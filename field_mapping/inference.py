"""Type inference by elimination, and the types sources declare for their own fields."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from field_mapping.convert import DATE_TEXT, DECIMAL_TEXT, INT_TEXT, epoch_to_datetime, parse_datetime
from field_mapping.normalize import normalize_email, normalize_phone
from field_mapping.types import FieldType

__all__ = [
    "HUBSPOT_CONTACT_TYPES",
    "TYPEFORM_TYPES",
    "hubspot_declared_type",
    "hubspot_declared_types",
    "infer",
    "typeform_declared_type",
]

# Names under which Stripe and others keep times as epoch integers (`created`, `trial_end`, ...).
_EPOCH_NAMES = frozenset(
    {
        "created",
        "updated",
        "date",
        "timestamp",
        "start",
        "end",
        "billing_cycle_anchor",
        "next_payment_attempt",
    }
)
_EPOCH_SUFFIXES = ("_at", "_date", "_time", "_timestamp", "_start", "_end", "_until", "_on")
_PHONE_WORDS = ("phone", "mobile", "fax")
# Free text that is low-cardinality in a small sample but not a category: never inferred as enum.
_TEXT_WORDS = ("name", "description", "comment", "message", "feedback", "line1", "line2", "footer", "title")
_TEXT_NAMES = frozenset({"firstname", "lastname", "fullname", "username"})


def infer(value: Any, name: str = "", *, region: str = "US", enum_max_length: int = 64) -> FieldType | None:
    """The first type of the fixed precedence that `value` fits; None for null, lists and objects."""
    # `name`, the last part of the value's path, lets integers be times (`created`, `*_at`) and
    # national-format strings be phones (`phone`, `mobile`).
    if value is None or isinstance(value, dict | list | tuple):
        return None
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int):
        return FieldType.DATETIME if _epoch_name(name) and epoch_to_datetime(value) else FieldType.INTEGER
    if isinstance(value, float | Decimal):
        return FieldType.DECIMAL if math.isfinite(value) else FieldType.STRING
    if isinstance(value, datetime):
        return FieldType.DATETIME
    if isinstance(value, date):
        return FieldType.DATE
    if isinstance(value, str):
        return _infer_text(value, name, region, enum_max_length)
    return FieldType.STRING


def _infer_text(text: str, name: str, region: str, enum_max_length: int) -> FieldType:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return FieldType.BOOLEAN
    if INT_TEXT.fullmatch(text):
        return FieldType.DATETIME if _epoch_name(name) and epoch_to_datetime(int(text)) else FieldType.INTEGER
    if DECIMAL_TEXT.fullmatch(text):
        return FieldType.DECIMAL
    if parse_datetime(text) is not None:
        return FieldType.DATETIME
    if DATE_TEXT.fullmatch(text) and _is_date(text):
        return FieldType.DATE
    if "@" in text and normalize_email(text)[1]:
        return FieldType.EMAIL
    if (text.startswith("+") or _has_word(name, _PHONE_WORDS)) and normalize_phone(text, region)[1]:
        return FieldType.PHONE
    if len(text) <= enum_max_length and "\n" not in text and not _free_text(name):
        return FieldType.ENUM
    return FieldType.STRING


def _epoch_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in _EPOCH_NAMES or lowered.endswith(_EPOCH_SUFFIXES)


def _has_word(name: str, words: Iterable[str]) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in words)


def _free_text(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TEXT_NAMES or any(lowered == w or lowered.endswith("_" + w) for w in _TEXT_WORDS)


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


# Typeform question types (`answer.field.type`) to field types; absent types are inferred.
TYPEFORM_TYPES: dict[str, FieldType] = {
    "number": FieldType.INTEGER,
    "rating": FieldType.INTEGER,
    "opinion_scale": FieldType.INTEGER,
    "nps": FieldType.INTEGER,
    "yes_no": FieldType.BOOLEAN,
    "legal": FieldType.BOOLEAN,
    "date": FieldType.DATE,
    "email": FieldType.EMAIL,
    "phone_number": FieldType.PHONE,
    "multiple_choice": FieldType.ENUM,
    "dropdown": FieldType.ENUM,
    "picture_choice": FieldType.ENUM,
    "short_text": FieldType.STRING,
    "long_text": FieldType.STRING,
    "website": FieldType.STRING,
    "payment": FieldType.DECIMAL,
}


def typeform_declared_type(question_type: str, value_type: str) -> FieldType | None:
    """The type a Typeform answer declares; several choices (`choices`) are one joined string."""
    if value_type == "choices":
        return FieldType.STRING
    return TYPEFORM_TYPES.get(question_type)


def hubspot_declared_type(name: str, hs_type: str, field_type: str) -> FieldType | None:
    """The field type of a HubSpot property from its `type` and `fieldType`; None if unknown."""
    if hs_type == "bool":
        return FieldType.BOOLEAN
    if hs_type == "enumeration":
        # Multi-select values arrive `;`-joined: a string, not one category.
        return FieldType.STRING if field_type == "checkbox" else FieldType.ENUM
    if hs_type == "date":
        return FieldType.DATE
    if hs_type in ("datetime", "dateTime"):
        return FieldType.DATETIME
    if hs_type == "number":
        return FieldType.DECIMAL
    if hs_type == "string":
        if field_type == "phonenumber":
            return FieldType.PHONE
        return FieldType.EMAIL if name == "email" else FieldType.STRING
    return None


def hubspot_declared_types(properties: Iterable[Mapping[str, Any]]) -> dict[str, FieldType]:
    """Property name -> field type, from HubSpot property definitions (`name`, `type`, `fieldType`)."""
    declared: dict[str, FieldType] = {}
    for prop in properties:
        ftype = hubspot_declared_type(
            str(prop.get("name")), str(prop.get("type")), str(prop.get("fieldType"))
        )
        if ftype is not None:
            declared[str(prop["name"])] = ftype
    return declared


# HubSpot's own contact properties, so their types are right before any definitions are fetched.
HUBSPOT_CONTACT_TYPES: dict[str, FieldType] = {
    "email": FieldType.EMAIL,
    "phone": FieldType.PHONE,
    "mobilephone": FieldType.PHONE,
    "firstname": FieldType.STRING,
    "lastname": FieldType.STRING,
    "company": FieldType.STRING,
    "lifecyclestage": FieldType.ENUM,
    "hs_lead_status": FieldType.ENUM,
    "hs_email_optout": FieldType.BOOLEAN,
    "createdate": FieldType.DATETIME,
    "lastmodifieddate": FieldType.DATETIME,
}
