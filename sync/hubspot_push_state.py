"""What a HubSpot push reads and remembers: changed contacts' values, and a digest of what each was sent.

Each HubSpot contact's row in `hubspot_push_state` holds the digest of the properties the last push
wrote to it, or a refused mark (another digest of the same) when HubSpot refused them, so neither is
sent again until the values change.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from field_mapping.hubspot_properties import property_value
from field_mapping.types import STORAGE, Columns, FieldType, from_columns
from sync.store.field_columns import column_name, fields_table
from sync.store.tables import (
    contact_identities,
    contacts,
    field_definitions,
    field_sources,
    hubspot_push_state,
)
from sync.store.upsert import upsert

__all__ = ["already_pushed", "changed_values", "digest", "refused_mark", "remember"]


def remember(
    conn: Connection,
    written: Sequence[str],
    refused: Mapping[str, str],
    digests: Mapping[str, str],
    *,
    now: datetime,
) -> None:
    """Store what a batch wrote, and what HubSpot refused with the refused mark."""
    rows = [{"hubspot_id": i, "digest": digests[i], "pushed_at": now} for i in written]
    rows += [{"hubspot_id": i, "digest": refused_mark(digests[i]), "pushed_at": now} for i in refused]
    if rows:
        upsert(conn, hubspot_push_state, rows, keys=["hubspot_id"], update=["digest", "pushed_at"])


def refused_mark(sent: str) -> str:
    """The digest stored for properties HubSpot refused: another 64-character digest of the same."""
    return hashlib.sha256(f"refused:{sent}".encode()).hexdigest()


def digest(props: Mapping[str, str]) -> str:
    """A fingerprint of the properties a push would write to one contact."""
    return hashlib.sha256(json.dumps(props, sort_keys=True).encode()).hexdigest()


def already_pushed(conn: Connection, digests: Mapping[str, str]) -> set[str]:
    """The HubSpot ids whose last push wrote exactly these properties, or had HubSpot refuse them."""
    found: set[str] = set()
    ids = sorted(digests)
    for start in range(0, len(ids), 500):  # far below the databases' bound-parameter limits
        chunk = ids[start : start + 500]
        query = select(hubspot_push_state.c.hubspot_id, hubspot_push_state.c.digest).where(
            hubspot_push_state.c.hubspot_id.in_(chunk)
        )
        found.update(
            hubspot_id
            for hubspot_id, digest in conn.execute(query)
            if digest in (digests[hubspot_id], refused_mark(digests[hubspot_id]))
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


def changed_values(conn: Connection, *, since: datetime | None) -> dict[str, dict[str, str]]:
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
