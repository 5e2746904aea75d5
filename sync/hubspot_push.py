"""Pushing crmhub's fields to HubSpot: a property group, one contact property per field, values in batches.

Idempotent: the group and each property are created once, properties 100 per call (HubSpot's 409
means it exists already), each field remembers its HubSpot property, and values are written only
for contacts that changed since the last push (a cursor in `cursors`) and whose properties differ
from what the last push wrote (a digest per HubSpot contact), to the HubSpot contacts they came
from, 100 per call.
Properties are named `<group>_<field>` so a pull of "all properties" can leave them out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, select, update

from field_mapping.config import HubSpotPushConfig
from field_mapping.hubspot_properties import (
    group_create,
    property_create,
    property_name,
    property_value,
    pushable,
)
from field_mapping.model import FieldDefinition
from field_mapping.types import STORAGE, Columns, FieldType, from_columns
from sync.fields import load_definitions
from sync.runs import finish_run, load_cursor, save_cursor, start_run
from sync.store.field_columns import column_name, fields_table
from sync.store.tables import (
    contact_identities,
    contacts,
    field_definitions,
    field_sources,
    hubspot_push_state,
)
from sync.store.upsert import upsert

BATCH_SIZE = 100  # HubSpot's limit per batch call
_CURSOR = ("hubspot", "_push")


class HubSpotWriter(Protocol):
    """The HubSpot calls a push makes (connectors.hubspot.HubSpotApi has them)."""

    def create_property_group(self, object_type: str, body: Mapping[str, Any]) -> bool:
        """Create a group; False if it existed."""

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create up to BATCH_SIZE properties; the names created (not those that existed)."""

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        """Write properties of objects known by id."""

    def properties(self, object_type: str) -> Sequence[PropertyType]:
        """Every property of the object type, with its declared type and fieldType."""

    def update_property(self, object_type: str, name: str, body: Mapping[str, Any]) -> None:
        """Change a property's type and fieldType."""


class PropertyType(Protocol):
    """What a push reads of a HubSpot property: its name and declared types."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def field_type(self) -> str: ...


@dataclass
class PushReport:
    """What a push did."""

    group_created: bool = False
    properties_created: list[str] = field(default_factory=list)
    properties_retyped: list[str] = field(default_factory=list)
    contacts_updated: int = 0
    calls: int = 0


def push_to_hubspot(
    engine: Engine, api: HubSpotWriter, config: HubSpotPushConfig, *, now: datetime
) -> PushReport:
    """Create the group and missing properties, then write changed contacts' values to HubSpot."""
    report = PushReport(group_created=api.create_property_group("contacts", group_create(config)))
    report.calls += 1
    with engine.connect() as conn:
        definitions = {d.name: d for d in pushable(load_definitions(conn))}
        rows = conn.execute(select(field_definitions.c.name, field_definitions.c.hubspot_property))
        named: dict[str, str | None] = {name: prop for name, prop in rows}
    missing = [name for name in definitions if not named.get(name)]
    for start in range(0, len(missing), BATCH_SIZE):
        bodies = {
            name: property_create(
                dataclasses.replace(definitions[name], name=property_name(config.group_name, name)),
                config.group_name,
            )
            for name in missing[start : start + BATCH_SIZE]
        }
        report.properties_created += api.create_properties("contacts", list(bodies.values()))
        report.calls += 1
        with engine.begin() as conn:
            conn.execute(
                update(field_definitions)
                .where(field_definitions.c.name == bindparam("field"))
                .values(hubspot_property=bindparam("property")),
                [{"field": name, "property": body["name"]} for name, body in bodies.items()],
            )

    _retype(api, definitions, named, config.group_name, report)

    with engine.connect() as conn:
        since = load_cursor(conn, *_CURSOR)
        changed = _changed_values(conn, since=datetime.fromisoformat(since) if since else None)
        digests = {hubspot_id: _digest(props) for hubspot_id, props in changed.items() if props}
        unchanged = _already_pushed(conn, digests)
    due = [hubspot_id for hubspot_id in digests if hubspot_id not in unchanged]
    for start in range(0, len(due), BATCH_SIZE):
        ids = due[start : start + BATCH_SIZE]
        api.batch_update("contacts", [{"id": i, "properties": changed[i]} for i in ids])
        report.calls += 1
        # Remembered per batch: a push that fails half-way re-sends only what HubSpot did not get.
        with engine.begin() as conn:
            state = [{"hubspot_id": i, "digest": digests[i], "pushed_at": now} for i in ids]
            upsert(conn, hubspot_push_state, state, keys=["hubspot_id"], update=["digest", "pushed_at"])
    report.contacts_updated = len(due)
    with engine.begin() as conn:
        run_id = start_run(conn, source="hubspot", trigger="push", now=now)
        save_cursor(conn, *_CURSOR, now.isoformat(), run_id=run_id, now=now)
        stats = {
            "properties_created": len(report.properties_created),
            "contacts_updated": report.contacts_updated,
            "calls": report.calls,
        }
        finish_run(conn, run_id, status="succeeded", stats=stats, error=None, now=now)
    return report


def _retype(
    api: HubSpotWriter,
    definitions: Mapping[str, FieldDefinition],
    named: Mapping[str, str | None],
    group: str,
    report: PushReport,
) -> None:
    """Give each pushed property the type its field has now: HubSpot refuses a widened field's values."""
    held = {p.name: (p.type, p.field_type) for p in api.properties("contacts")}
    report.calls += 1
    for name, definition in definitions.items():
        prop = named.get(name)
        if not prop or prop not in held:
            continue
        body = property_create(dataclasses.replace(definition, name=prop), group)
        if held[prop] != (body["type"], body["fieldType"]):
            api.update_property("contacts", prop, body)
            report.calls += 1
            report.properties_retyped.append(prop)


def _digest(props: Mapping[str, str]) -> str:
    """A fingerprint of the properties a push would write to one contact."""
    return hashlib.sha256(json.dumps(props, sort_keys=True).encode()).hexdigest()


def _already_pushed(conn: Connection, digests: Mapping[str, str]) -> set[str]:
    """The HubSpot ids whose last push wrote exactly these properties."""
    found: set[str] = set()
    ids = sorted(digests)
    for start in range(0, len(ids), 500):  # far below the databases' bound-parameter limits
        chunk = ids[start : start + 500]
        query = select(hubspot_push_state.c.hubspot_id, hubspot_push_state.c.digest).where(
            hubspot_push_state.c.hubspot_id.in_(chunk)
        )
        found.update(
            hubspot_id for hubspot_id, digest in conn.execute(query) if digests[hubspot_id] == digest
        )
    return found


def _pushed_fields(conn: Connection) -> dict[str, tuple[int, FieldType, str]]:
    """Column -> (field id, type, HubSpot property) of every field pushed to HubSpot."""
    fd = field_definitions.c
    query = select(fd.id, fd.type, fd.hubspot_property).where(fd.hubspot_property.is_not(None))
    return {
        column_name(fid, FieldType(ftype)): (int(fid), FieldType(ftype), prop)
        for fid, ftype, prop in conn.execute(query)
        if ftype in FieldType._value2member_map_
    }


def _changed_values(conn: Connection, *, since: datetime | None) -> dict[str, dict[str, str]]:
    """HubSpot id -> {property: value} for contacts changed since `since`, over pushed fields only.

    A null value that a record wrote (its provenance is kept) is pushed as empty, clearing HubSpot's.
    """
    pushed = _pushed_fields(conn)
    if not pushed:
        return {}
    c, ci = contacts.c, contact_identities.c
    names = sorted(pushed)
    row = fields_table(names)
    fs = field_sources.c
    query = (
        select(ci.value, fs.sources, *(row.c[name] for name in names))
        .select_from(
            contacts.join(contact_identities, ci.contact_id == c.id)
            .join(row, row.c.contact_id == c.id)
            .outerjoin(field_sources, fs.contact_id == c.id)
        )
        .where(ci.kind == "hubspot_contact", c.state != "merged")
    )
    if since is not None:
        query = query.where(c.changed_at > since)
    changed: dict[str, dict[str, str]] = defaultdict(dict)
    for hubspot_id, sources, *stored in conn.execute(query):
        for name, raw in zip(names, stored, strict=True):
            field_id, kind, prop = pushed[name]
            if raw is None and str(field_id) not in (sources or {}):
                continue
            value = from_columns(kind, Columns(**{STORAGE[kind].value: raw}))
            changed[hubspot_id][prop] = property_value(kind, value)
    return changed
