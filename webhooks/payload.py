"""The body of a delivery: the transition, its segment and the contact fields the endpoint asked for."""

from __future__ import annotations

import json
from bisect import bisect_right
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
from webhooks.config import CONTACT_KEYS

__all__ = [
    "IDENTITY_FIELDS",
    "MAX_BODY_BYTES",
    "TransitionInfo",
    "contact_fields",
    "encode_body",
    "event_type",
    "largest_first",
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
# Longest text value put in a payload, in characters; _fit_fields cuts further to keep under MAX_BODY_BYTES.
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
    return value


def payload(info: TransitionInfo, contact: Mapping[str, Any], merged: Sequence[int] = ()) -> dict[str, Any]:
    """The body as a dict, in the shape docs/webhook.schema.json describes, encoded in MAX_BODY_BYTES."""
    # crmhub's own keys always win (the config refuses fields of those names; this is the last word).
    fields = {name: value for name, value in contact.items() if name not in CONTACT_KEYS}
    # A consumer that knew the person under a merged id applies the message to that id too.
    earlier = {"merged_ids": list(merged)} if merged else {}
    fitted, cut = _fit_fields(fields, None)
    body = _body(info, {"id": info.contact_id, **fitted, **earlier, **_named(cut)})
    if len(encode_body(body)) <= MAX_BODY_BYTES:
        return body
    # What the fields have left once the rest is there, the list naming every one of them included.
    rest = _body(info, {"id": info.contact_id, **earlier, **_named(list(fields))})
    fitted, cut = _fit_fields(fields, MAX_BODY_BYTES - len(encode_body(rest)))
    return _body(info, {"id": info.contact_id, **fitted, **earlier, **_named(cut)})


def _named(cut: list[str]) -> dict[str, list[str]]:
    return {"truncated_fields": cut} if cut else {}


def _body(info: TransitionInfo, contact: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": event_type(info.kind),
        "timestamp": _iso(info.occurred_at),
        "data": {
            "segment": {"key": info.segment_key, "name": info.segment_name},
            "contact": contact,
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


def _size(value: Any) -> int:
    """Bytes `value` takes in an encoded body (quotes and escapes included)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _fit_fields(fields: Mapping[str, Any], budget: int | None) -> tuple[dict[str, Any], list[str]]:
    """Text cut at MAX_TEXT characters, then fitted in `budget` bytes (if given); the names cut or nulled."""
    # `budget` counts each field as `,"name":value`. The longest texts are cut first, all to one length
    # in bytes, so short ones stay whole; values that still do not fit are left out as null.
    fitted = {name: value[:MAX_TEXT] if isinstance(value, str) else value for name, value in fields.items()}
    cut = {name for name, value in fields.items() if isinstance(value, str) and len(value) > MAX_TEXT}
    if budget is not None:
        # Each field's key, colon and comma; what is left of the budget is for the values.
        room = budget - sum(_size(name) + 2 for name in fitted)
        texts = {name: _size(value) for name, value in fitted.items() if isinstance(value, str)}
        others = sum(_size(value) for name, value in fitted.items() if name not in texts)
        limit = _level(list(texts.values()), room - others)
        for name in (name for name, size in texts.items() if size > limit):
            fitted[name] = _cut(fitted[name], limit)
            cut.add(name)
        # Only when names alone nearly fill the budget: left as null (4 bytes), a value saves its size less 4.
        savings = {name: _size(value) - 4 for name, value in fitted.items() if value is not None}
        for name in largest_first(savings, room - 4 * len(fitted)):
            fitted[name] = None
            cut.add(name)
    return fitted, [name for name in fields if name in cut]


def _level(sizes: list[int], room: int) -> int:
    """The largest size L for which cutting every size above L down to L makes them add up to `room`."""
    left, count = room, len(sizes)
    for size in sorted(sizes):
        if size * count > left:
            return left // count
        left -= size
        count -= 1
    return max(sizes, default=0)


def _cut(text: str, limit: int) -> str:
    """The longest start of `text` whose encoding takes at most `limit` bytes ("" if none does)."""
    # Encoded sizes grow with the prefix, so a binary search finds it in a few encodings.
    fits = bisect_right(range(len(text) + 1), limit, key=lambda n: _size(text[:n]))
    return text[: max(fits - 1, 0)]


def largest_first(sizes: Mapping[str, int], budget: int) -> list[str]:
    """The names to leave out, largest first (ties by name), until the sizes left add up to `budget`."""
    left_out: list[str] = []
    total = sum(sizes.values())
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        if total <= budget:
            break
        total -= sizes[name]
        left_out.append(name)
    return left_out


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
