"""HubSpot CRM objects (contacts, companies, deals), their properties and property groups."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

OBJECT_TYPES = ("contacts", "companies", "deals")
SEARCH_RESULT_CAP = 10_000

# Valid type -> fieldType pairs, from the HubSpot properties reference.
VALID_FIELD_TYPES: dict[str, frozenset[str]] = {
    "bool": frozenset({"booleancheckbox", "calculation_equation"}),
    "enumeration": frozenset({"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"}),
    "date": frozenset({"date"}),
    "dateTime": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "string": frozenset({"text", "textarea", "file", "html", "phonenumber", "calculation_equation"}),
    "number": frozenset({"number", "calculation_equation"}),
}

# Properties every object returns when none are asked for.
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": (
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
}
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}

_BUILTIN: dict[str, list[tuple[str, str, str, str]]] = {
    # name, label, type, fieldType
    "contacts": [
        ("email", "Email", "string", "text"),
        ("firstname", "First Name", "string", "text"),
        ("lastname", "Last Name", "string", "text"),
        ("phone", "Phone Number", "string", "phonenumber"),
        ("company", "Company Name", "string", "text"),
        ("city", "City", "string", "text"),
        ("jobtitle", "Job Title", "string", "text"),
        ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio"),
        ("hs_email_optout", "Opted out of all email", "bool", "booleancheckbox"),
        ("user_id", "Product user id", "string", "text"),
        ("createdate", "Create Date", "datetime", "date"),
        ("lastmodifieddate", "Last Modified Date", "datetime", "date"),
        ("hs_object_id", "Record ID", "number", "number"),
    ],
    "companies": [
        ("name", "Name", "string", "text"),
        ("domain", "Company Domain Name", "string", "text"),
        ("createdate", "Create Date", "datetime", "date"),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date"),
        ("hs_object_id", "Record ID", "number", "number"),
    ],
    "deals": [
        ("dealname", "Deal Name", "string", "text"),
        ("amount", "Amount", "number", "number"),
        ("dealstage", "Deal Stage", "enumeration", "radio"),
        ("pipeline", "Pipeline", "enumeration", "select"),
        ("closedate", "Close Date", "datetime", "date"),
        ("createdate", "Create Date", "datetime", "date"),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date"),
        ("hs_object_id", "Record ID", "number", "number"),
    ],
}
_LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")


def iso_ms(epoch_ms: int) -> str:
    """HubSpot's timestamp format: ISO-8601 UTC with milliseconds and `Z`."""
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_time_ms(value: str) -> int | None:
    """Epoch milliseconds from a filter value given as milliseconds or as an ISO date/time."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@dataclass
class CrmObject:
    """One CRM record; `properties` holds strings as HubSpot does."""

    id: int
    properties: dict[str, str | None]
    created_ms: int
    updated_ms: int
    archived: bool = False

    def to_json(self, object_type: str, names: list[str] | None) -> dict[str, Any]:
        """The record as the API returns it, limited to `names` (plus the always-present ones)."""
        wanted = names if names else list(DEFAULT_PROPERTIES[object_type])
        always = ("hs_object_id", "createdate", MODIFIED_PROPERTY[object_type])
        props = {name: self.properties.get(name) for name in [*wanted, *always]}
        return {
            "id": str(self.id),
            "properties": props,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms),
            "archived": self.archived,
        }


@dataclass
class HubSpotStore:
    """All HubSpot state of one portal."""

    objects: dict[str, dict[int, CrmObject]] = field(default_factory=lambda: {t: {} for t in OBJECT_TYPES})
    properties: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    groups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 51
    last_write_ms: int = 0
    portal_id: int = 62515

    def __post_init__(self) -> None:
        for object_type, rows in _BUILTIN.items():
            group = f"{object_type[:-1]}information"
            self.groups[object_type] = {
                group: {"name": group, "label": "Information", "displayOrder": -1, "archived": False}
            }
            self.properties[object_type] = {}
            for name, label, kind, field_type in rows:
                options: list[dict[str, Any]] = []
                if name == "lifecyclestage":
                    options = [
                        {"label": v, "value": v, "displayOrder": i, "hidden": False}
                        for i, v in enumerate(_LIFECYCLE)
                    ]
                if kind == "bool":
                    options = [
                        {"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
                        {"label": "No", "value": "false", "displayOrder": 1, "hidden": False},
                    ]
                self.add_property(
                    object_type,
                    {
                        "name": name,
                        "label": label,
                        "type": kind,
                        "fieldType": field_type,
                        "groupName": group,
                        "options": options,
                    },
                    hubspot_defined=True,
                )

    def add_property(
        self, object_type: str, body: dict[str, Any], hubspot_defined: bool = False
    ) -> dict[str, Any]:
        """Store a property definition, filling in what HubSpot fills in."""
        stamp = "2026-01-01T00:00:00Z"
        prop = {
            "name": body["name"],
            "label": body.get("label", body["name"]),
            "type": body["type"],
            "fieldType": body["fieldType"],
            "groupName": body.get("groupName"),
            "description": body.get("description", ""),
            "options": body.get("options") or [],
            "displayOrder": body.get("displayOrder", -1),
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": body.get("hasUniqueValue", False),
            "hidden": body.get("hidden", False),
            "hubspotDefined": hubspot_defined,
            "formField": body.get("formField", False),
            "archived": False,
            "createdAt": stamp,
            "updatedAt": stamp,
            "modificationMetadata": {
                "archivable": not hubspot_defined,
                "readOnlyDefinition": hubspot_defined,
                "readOnlyValue": False,
            },
        }
        self.properties[object_type][prop["name"]] = prop
        return prop

    def new_object(self, object_type: str, properties: dict[str, str | None], created_ms: int) -> CrmObject:
        """Create a record with a fresh id."""
        object_id = self.next_id
        self.next_id += 1
        modified = MODIFIED_PROPERTY[object_type]
        props = dict(properties) | {
            "hs_object_id": str(object_id),
            "createdate": iso_ms(created_ms),
            modified: iso_ms(created_ms),
        }
        obj = CrmObject(object_id, props, created_ms, created_ms)
        self.objects[object_type][object_id] = obj
        return obj

    def write_time(self, now_ms: int) -> int:
        """When one object written through the API changed: the clock, or 1 ms after the last write.

        The sandbox's clock stands still between ticks, but real writes take time: thousands of
        contacts pushed at once never share one last-modified value in HubSpot, and search could
        not page past them if they did.
        """
        self.last_write_ms = max(now_ms, self.last_write_ms + 1)
        return self.last_write_ms

    def update(
        self, object_type: str, obj: CrmObject, changes: dict[str, str | None], now_ms: int
    ) -> dict[str, str | None]:
        """Apply `changes`, bump the last-modified date, and return what actually changed."""
        changed = {k: v for k, v in changes.items() if obj.properties.get(k) != v}
        if changed:
            obj.properties.update(changed)
            obj.updated_ms = now_ms
            obj.properties[MODIFIED_PROPERTY[object_type]] = iso_ms(now_ms)
        return changed

    def find_by(self, object_type: str, prop: str, value: str) -> CrmObject | None:
        """The first record whose `prop` equals `value` (e-mail compared without case or spaces)."""
        wanted = value.strip().lower() if prop == "email" else value
        for obj in self.objects[object_type].values():
            have = obj.properties.get(prop)
            if have is not None and (have.strip().lower() if prop == "email" else have) == wanted:
                return obj
        return None

    def counts(self) -> dict[str, int]:
        """Number of records, custom properties and groups."""
        out = {t: len(rows) for t, rows in self.objects.items()}
        out["properties"] = sum(len(p) for p in self.properties.values())
        out["property_groups"] = sum(len(g) for g in self.groups.values())
        return out


def lifecycle_stages() -> tuple[str, ...]:
    """The lifecycle stages the generator draws from."""
    return _LIFECYCLE
