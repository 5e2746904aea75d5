"""HubSpot contact properties for crmhub's fields: valid type pairs, names, and request bodies.

Only the pure part: the lead's HubSpot client sends these bodies (409 on create means it exists).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from field_mapping.config import HubSpotPushConfig
from field_mapping.model import FieldDefinition
from field_mapping.types import FieldType

__all__ = [
    "PROPERTY_TYPES",
    "VALID_FIELD_TYPES",
    "group_create",
    "is_hubspot_name",
    "property_create",
    "property_name",
    "property_value",
    "pushable",
]

# HubSpot's valid `type` -> `fieldType` pairs (reference/provider-apis.md section 2.4).
VALID_FIELD_TYPES: dict[str, frozenset[str]] = {
    "bool": frozenset({"booleancheckbox", "calculation_equation"}),
    "enumeration": frozenset({"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "string": frozenset({"text", "textarea", "file", "html", "phonenumber", "calculation_equation"}),
    "number": frozenset({"number", "calculation_equation"}),
}

PROPERTY_TYPES: dict[FieldType, tuple[str, str]] = {
    FieldType.BOOLEAN: ("bool", "booleancheckbox"),
    FieldType.INTEGER: ("number", "number"),
    FieldType.DECIMAL: ("number", "number"),
    FieldType.DATETIME: ("datetime", "date"),
    FieldType.DATE: ("date", "date"),
    FieldType.EMAIL: ("string", "text"),
    FieldType.PHONE: ("string", "phonenumber"),
    # Text, not `enumeration`: HubSpot refuses a value outside an enumeration's declared options, and
    # an enum field gains values after its property exists.
    FieldType.ENUM: ("string", "text"),
    FieldType.STRING: ("string", "text"),
}

_HUBSPOT_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
_NAME_MAX = 100  # HubSpot's longest internal name
_BOOL_OPTIONS = (("Yes", "true"), ("No", "false"))


def is_hubspot_name(name: str) -> bool:
    """True for a valid HubSpot internal name: lowercase letters, digits, `_`, at most 100 characters."""
    return _HUBSPOT_NAME.fullmatch(name) is not None


def property_name(group: str, field_name: str) -> str:
    """The HubSpot internal name of a crmhub field: `<group>_<field>`, at most 100 characters."""
    name = f"{group}_{field_name}"
    if len(name) <= _NAME_MAX:
        return name
    # Cut names would collide for fields sharing their first 100 characters: a digest keeps them apart.
    return f"{name[: _NAME_MAX - 9]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def group_create(config: HubSpotPushConfig) -> dict[str, Any]:
    """The PropertyGroupCreate body of crmhub's property group."""
    return {"name": config.group_name, "label": config.group_label, "displayOrder": -1}


def property_create(definition: FieldDefinition, group_name: str) -> dict[str, Any]:
    """The PropertyCreate body of one field (options for enums and booleans)."""
    if not is_hubspot_name(definition.name):
        raise ValueError(f"expected a HubSpot internal name, found {definition.name!r}")
    hs_type, field_type = PROPERTY_TYPES[definition.type]
    body: dict[str, Any] = {
        "name": definition.name,
        "label": definition.label,
        "type": hs_type,
        "fieldType": field_type,
        "groupName": group_name,
        "description": f"Set by crmhub from {definition.origin}",
        "formField": False,
    }
    if definition.type is FieldType.BOOLEAN:
        body["options"] = [_option(label, value, i) for i, (label, value) in enumerate(_BOOL_OPTIONS)]
    return body


def pushable(definitions: Iterable[FieldDefinition]) -> list[FieldDefinition]:
    """The fields to create in HubSpot: all but those read from HubSpot itself."""
    return [d for d in definitions if d.origin.source != "hubspot"]


def property_value(ftype: FieldType, value: Any) -> str:
    """A typed value as HubSpot takes it in a contact's properties (times as epoch milliseconds)."""
    if value is None:
        return ""
    if ftype is FieldType.BOOLEAN:
        return "true" if value else "false"
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(int(stamp.timestamp() * 1000))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _option(label: str, value: str, order: int) -> dict[str, Any]:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False}
