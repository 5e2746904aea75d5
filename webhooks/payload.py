"""The body of a delivery: the transition, its segment and the contact fields the endpoint asked for."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, select

from field_mapping.normalize import dialable
from sync.fields import load_fields, read_values
from sync.identity import identities_of
from sync.store.tables import merge_log

__all__ = [
    "IDENTITY_FIELDS",
    "MAX_BODY_BYTES",
    "TransitionInfo",
    "contact_fields",
    "encode_body",
    "event_type",
    "merged_ids",
    "ordered_fields",
    "payload",
]

# Merges are rare, and every log row names its final contact (sync.identity repoints them).
_MERGED = (
    select(merge_log.c.kept_contact_id, merge_log.c.merged_contact_id)
    .where(merge_log.c.kept_contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(merge_log.c.kept_contact_id, merge_log.c.merged_contact_id)
)

MAX_BODY_BYTES = 20_000
# Longest text value put in a payload, so 30 fields stay under the 20 kB the spec recommends.
MAX_TEXT = 500
# Field names answered from the contact's identities rather than its custom fields.
IDENTITY_FIELDS = ("email", "phone", "segmentio_user", "segmentio_anonymous")


@dataclass(frozen=True, slots=True)
class TransitionInfo:
    """What a payload says about one transition."""

    transition_id: int
    contact_id: int
    kind: str
    occurred_at: datetime
    reason: str
    rule_version: str
    variant: str | None
    sequence: int
    segment_key: str
    segment_name: str


def event_type(kind: str) -> str:
    """`entered` -> `segment.entered`, `left` -> `segment.left`."""
    return f"segment.{kind}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT]
    return value


def payload(info: TransitionInfo, contact: Mapping[str, Any], merged: Sequence[int] = ()) -> dict[str, Any]:
    """The body as a dict, in the shape docs/webhook.schema.json describes."""
    # A consumer that knew the person under a merged id applies the message to that id too.
    earlier = {"merged_ids": list(merged)} if merged else {}
    return {
        "type": event_type(info.kind),
        "timestamp": _iso(info.occurred_at),
        "data": {
            "segment": {"key": info.segment_key, "name": info.segment_name},
            "contact": {"id": info.contact_id, **earlier, **contact},
            "transition": {
                "id": info.transition_id,
                "sequence": info.sequence,
                "reason": info.reason,
                "evaluated_at": _iso(info.occurred_at),
                "variant": info.variant,
                "rule_version": info.rule_version,
            },
        },
    }


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: these exact bytes are signed and sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def contact_fields(
    conn: Connection, contact_ids: Collection[int], names: Collection[str]
) -> dict[int, dict[str, Any]]:
    """Per contact, the requested fields that have a value (identities first, then custom fields)."""
    found: dict[int, dict[str, Any]] = defaultdict(dict)
    if not contact_ids or not names:
        return found
    ids = sorted(contact_ids)
    identity_kinds = [n for n in IDENTITY_FIELDS if n in names]
    if identity_kinds:
        for contact_id, kind, value, valid in identities_of(conn, ids, identity_kinds):
            if valid:
                # A phone as an SMS sender can send to: the identity keeps its extension apart.
                found[contact_id].setdefault(kind, dialable(value) if kind == "phone" else value)
    custom = [n for n in names if n not in identity_kinds]
    if not custom:
        return found  # most endpoints ask for identities only: no field definitions to read
    fields = {name: field for name, field in load_fields(conn).items() if name in custom}
    if fields:
        for contact_id, values in read_values(conn, ids, fields).items():
            found[contact_id].update((name, _json_value(value)) for name, value in values.items())
    return found


def merged_ids(conn: Connection, contact_ids: Collection[int]) -> dict[int, list[int]]:
    """Per contact, the ids of the contacts merged into it, in order: what consumers may know it as."""
    if not contact_ids:
        return {}
    found: dict[int, list[int]] = defaultdict(list)
    for kept, merged in conn.execute(_MERGED, {"ids": sorted(contact_ids)}):
        found[int(kept)].append(int(merged))
    return found


def ordered_fields(values: Mapping[str, Any], names: Sequence[str] | Iterable[str]) -> dict[str, Any]:
    """The endpoint's fields in its configured order; fields without a value are null."""
    return {name: values.get(name) for name in names}
