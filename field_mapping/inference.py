"""Type inference by elimination, and the types sources declare for their own fields."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from field_mapping.convert import (
    DATE_TEXT,
    DECIMAL_TEXT,
    INT_TEXT,
    epoch_to_datetime,
    exact_decimal,
    exact_int,
    exact_int_text,
    parse_datetime,
)
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

# How names that hold epoch integers end, as whole words (`created`, `trial_end`, `canceled_at`):
# `lifetime_value_to_date` and `account_number_end` hold numbers.
_EPOCH_LAST_WORDS = frozenset({"at", "on", "created", "updated", "timestamp", "time", "until", "date"})
_EPOCH_SPANS = frozenset({"period", "trial"})  # `current_period_end`, `trial_start`
_EPOCH_NAMES = frozenset(
    {
        "start",
        "end",
        "billing_cycle_anchor",
        "next_payment_attempt",
        "next_pending_invoice_item_invoice",
        "redeem_by",
    }
)
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
# Words of a phone's name: inside a word (`mobilephone`, `phoneNumber`) or whole (`tel`, not `hotel`).
_PHONE_PARTS = ("phone", "mobile", "fax")
_PHONE_WORDS = frozenset({"tel", "cell"})
# Free text that is low-cardinality in a small sample but not a category: never inferred as enum.
_TEXT_WORDS = ("name", "description", "comment", "message", "feedback", "line1", "line2", "footer", "title")
_TEXT_NAMES = frozenset({"firstname", "lastname", "fullname", "username"})


def infer(value: Any, name: str = "", *, region: str = "US", enum_max_length: int = 64) -> FieldType | None:
    """The first type of the fixed precedence that `value` fits; None for null, lists and objects."""
    # `name`, the last part of the value's path, lets integers be times (`created`, `*_at`) and
    # digits be phones (`phone`, `mobile`). Numbers a double cannot hold exactly are text.
    if value is None or isinstance(value, dict | list | tuple):
        return None
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int):
        if _phone_name(name) and normalize_phone(str(value), region)[1]:
            return FieldType.PHONE
        return _integer_type(value, name)
    if isinstance(value, float):
        return FieldType.DECIMAL if math.isfinite(value) else FieldType.STRING
    if isinstance(value, Decimal):
        return FieldType.DECIMAL if exact_decimal(value) else FieldType.STRING
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
    # Before numbers: `phone: "4155552671"` is a number to call, not to add up.
    if _phone_name(name) and normalize_phone(text, region)[1]:
        return FieldType.PHONE
    if INT_TEXT.fullmatch(text):
        number = exact_int_text(text)
        return FieldType.STRING if number is None else _integer_type(number, name)
    if DECIMAL_TEXT.fullmatch(text):
        return FieldType.DECIMAL if exact_decimal(Decimal(text)) else FieldType.STRING
    if parse_datetime(text) is not None:
        return FieldType.DATETIME
    if DATE_TEXT.fullmatch(text) and _is_date(text):
        return FieldType.DATE
    if "@" in text and normalize_email(text)[1]:
        return FieldType.EMAIL
    if text.startswith("+") and normalize_phone(text, region)[1]:
        return FieldType.PHONE
    if len(text) <= enum_max_length and "\n" not in text and not _free_text(name):
        return FieldType.ENUM
    return FieldType.STRING


def _integer_type(number: int, name: str) -> FieldType:
    if not exact_int(number):
        return FieldType.STRING
    return FieldType.DATETIME if _epoch_name(name) and epoch_to_datetime(number) else FieldType.INTEGER


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(name)]


def _epoch_name(name: str) -> bool:
    if name.lower() in _EPOCH_NAMES:
        return True
    words = _words(name)
    if not words:
        return False
    last, before = words[-1], words[-2] if len(words) > 1 else ""
    if last == "date":
        return before != "to"  # `due_date`, not `lifetime_value_to_date`
    if last in ("start", "end"):
        return before in _EPOCH_SPANS
    if last in ("at", "on"):
        return bool(before)  # `canceled_at`, `available_on`
    return last in _EPOCH_LAST_WORDS


def _phone_name(name: str) -> bool:
    lowered = name.lower()
    if not any(part in lowered for part in _PHONE_PARTS) and _PHONE_WORDS.isdisjoint(_words(name)):
        return False
    return not _epoch_name(name)  # `phone_verified_at` holds a time


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
