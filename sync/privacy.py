"""What the store holds about one person (show, export) and erasing it, keeping only suppression hashes.

Erasing deletes the contact and every row about it: identities, field values, events, raw records,
consent history, memberships, transitions with their outbox rows and deliveries, merge log entries;
unlinked raw records and quarantined payloads that contain one of its e-mails or phones; and the
person's values from the options seen of enum fields when no other contact holds them. It keeps the
hashes of its e-mails and phones on the suppression list (so a later import stays opted out) and one
erasure_log row with counts, plus one naming each contact that had been merged into it (so no number
the person ever had is given to someone new). No `segment.left` is sent: the consumers' own data
must be erased there.

On SQLite the erasure runs with `secure_delete` on, so the deleted rows' bytes are overwritten with
zeros in the file, not only unlinked (many SQLite builds have it off by default; Debian's has it
on); `truncate_wal` after the commit empties the WAL, which still holds earlier copies of the pages.
Rows older than the erasure that earlier updates replaced may linger in free space on builds with
it off; `VACUUM` rewrites the file without them. PostgreSQL keeps deleted rows until VACUUM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import phonenumbers
from sqlalchemy import Connection, Delete, Text, and_, cast, delete, func, insert, or_, select, update

from field_mapping.normalize import dialable, normalize_email, normalize_phone
from field_mapping.types import STORAGE, Column, FieldType
from sync.consent.actions import current_contact
from sync.consent.records import in_force_order
from sync.consent.suppression import identity_hash, suppress_values
from sync.fields import StoredField, load_fields, read_values
from sync.store.field_columns import fields_table
from sync.store.tables import (
    consent_records,
    contact_fields,
    contact_identities,
    contacts,
    deliveries,
    delivery_attempts,
    erasure_log,
    events,
    field_definitions,
    field_sources,
    hubspot_push_state,
    memberships,
    merge_log,
    outbox,
    quarantine,
    records,
    segments,
    sync_runs,
    transitions,
)

__all__ = ["contact_export", "erase_contact", "find_person"]

_RECENT_TRANSITIONS = 50
# External ids at least this long (and not all digits) are searched for in unlinked payloads.
_LONG_ID = 8
_PHONE_MARKS = (" ", "-", "(", ")", ".", "/")


def find_person(conn: Connection, id_or_address: str, *, region: str = "US") -> int | None:
    """A contact by id (following merges), e-mail (any case) or phone (any format, digits alone too)."""
    text = id_or_address.strip()
    if "\x00" in text:
        return None  # no identity holds NUL, and PostgreSQL text cannot bind it
    if text.isascii() and text.isdigit():
        number = int(text)
        # No id is beyond 64 bits, and the drivers refuse to bind such a number.
        found_id = current_contact(conn, number) if number < 2**63 else None
        if found_id is not None:
            return found_id
        # "4155552671", as SMS tools show numbers: an opt-out by it must not miss the person.
    if "@" in text:
        kind, value = "email", normalize_email(text)[0]
    else:
        kind, value = "phone", normalize_phone(text, region)[0]
    ci = contact_identities.c
    found = conn.execute(select(ci.contact_id).where(ci.kind == kind, ci.value == value)).scalar()
    return None if found is None else int(found)


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [{k: _json(v) for k, v in row.items()} for row in conn.execute(query).mappings()]


def contact_export(conn: Connection, contact_id: int, *, recent: int | None = None) -> dict[str, Any]:
    """Everything held about the contact as JSON-ready values; `recent` limits the transitions listed."""
    contact = conn.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().one()
    held = read_values(conn, [contact_id], load_fields(conn)).get(contact_id, {})
    fields = {name: _json(held[name]) for name in sorted(held)}
    ci, cr, t = contact_identities.c, consent_records.c, transitions.c
    transition_query = (
        select(
            t.id, segments.c.key.label("segment"), t.kind, t.reason, t.occurred_at, t.contact_seq, t.variant
        )
        .join(segments, segments.c.id == t.segment_id)
        .where(t.contact_id == contact_id)
        .order_by(t.contact_seq.desc(), t.id.desc())
        .limit(recent)
    )
    return {
        "contact": {k: _json(v) for k, v in contact.items()},
        "identities": _rows(
            conn,
            select(ci.kind, ci.value, ci.valid, ci.source, ci.first_seen_at)
            .where(ci.contact_id == contact_id)
            .order_by(ci.kind, ci.id),
        ),
        "fields": fields,
        "consent": _rows(
            conn,
            select(cr.channel, cr.status, cr.source, cr.proof, cr.recorded_at)
            .where(cr.contact_id == contact_id)
            .order_by(*in_force_order(cr)),  # the last of a channel is in force
        ),
        "memberships": _rows(
            conn,
            select(segments.c.key.label("segment"), memberships.c.entered_at, memberships.c.variant)
            .join(segments, segments.c.id == memberships.c.segment_id)
            .where(memberships.c.contact_id == contact_id)
            .order_by(segments.c.key),
        ),
        "transitions": _rows(conn, transition_query),
        "events": _rows(
            conn,
            select(
                events.c.name,
                events.c.occurred_at,
                events.c.source,
                events.c.external_id,
                events.c.properties,
            )
            .where(events.c.contact_id == contact_id)
            .order_by(events.c.occurred_at, events.c.id),
        ),
        "records": _rows(
            conn,
            select(
                records.c.source,
                records.c.stream,
                records.c.external_id,
                records.c.updated_at,
                records.c.payload,
            )
            .where(records.c.contact_id == contact_id)
            .order_by(records.c.source, records.c.stream, records.c.external_id),
        ),
        "merges": _rows(
            conn,
            select(
                merge_log.c.merged_contact_id,
                merge_log.c.reason,
                merge_log.c.identities,
                merge_log.c.merged_at,
            )
            .where(merge_log.c.kept_contact_id == contact_id)
            .order_by(merge_log.c.id),
        ),
        "deliveries": _rows(
            conn,
            select(
                deliveries.c.endpoint,
                transitions.c.kind,
                deliveries.c.status,
                deliveries.c.reason,
                deliveries.c.created_at,
            )
            .join(transitions, transitions.c.id == deliveries.c.transition_id)
            .where(transitions.c.contact_id == contact_id)
            .order_by(deliveries.c.id),
        ),
        # What erasure would also delete: payloads naming the person that no contact is linked to.
        **_unlinked_rows(conn, contact_id),
    }


def _unlinked_rows(conn: Connection, contact_id: int) -> dict[str, list[dict[str, Any]]]:
    """Unlinked records and quarantine rows whose payload names one of the contact's identities."""
    ci = contact_identities.c
    identities = list(conn.execute(select(ci.kind, ci.value).where(ci.contact_id == contact_id)).tuples())
    unlinked = _unlinked_mentions(_traces(identities))
    if unlinked is None:
        return {"unlinked_records": [], "quarantine": []}
    record_rows, quarantine_rows = unlinked
    r, q = records.c, quarantine.c
    return {
        "unlinked_records": _rows(
            conn,
            select(r.source, r.stream, r.external_id, r.updated_at, r.payload)
            .where(record_rows)
            .order_by(r.source, r.stream, r.external_id),
        ),
        "quarantine": _rows(
            conn,
            select(q.source, q.stream, q.external_id, q.reason, q.payload)
            .where(quarantine_rows)
            .order_by(q.id),
        ),
    }


def erase_contact(conn: Connection, contact_id: int, *, now: datetime) -> dict[str, int]:
    """Delete everything about the contact in the caller's transaction; returns rows deleted per table."""
    if conn.dialect.name != "sqlite":
        return _erase(conn, contact_id, now=now)
    before = conn.exec_driver_sql("PRAGMA secure_delete").scalar_one()
    conn.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        return _erase(conn, contact_id, now=now)
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete={int(before)}")


def _erase(conn: Connection, contact_id: int, *, now: datetime) -> dict[str, int]:
    ci = contact_identities.c
    identities = list(conn.execute(select(ci.kind, ci.value).where(ci.contact_id == contact_id)).tuples())
    reachable = [(kind, value) for kind, value in identities if kind in ("email", "phone")]
    suppress_values(conn, reachable, reason="erased", now=now)
    emails = sorted(v for k, v in reachable if k == "email")
    subject = (
        identity_hash(emails[0]) if emails else hashlib.sha256(f"contact:{contact_id}".encode()).hexdigest()
    )
    held_text = _text_values(conn, contact_id)
    # Their log rows go with the person; their numbers stay taken through the erasure log below.
    merged_ids = list(
        conn.execute(select(merge_log.c.merged_contact_id).where(merge_log.c.kept_contact_id == contact_id))
        .scalars()
        .all()
    )

    mine = select(transitions.c.id).where(transitions.c.contact_id == contact_id)
    its_deliveries = select(deliveries.c.id).where(deliveries.c.transition_id.in_(mine))
    steps: list[tuple[str, Delete]] = [
        (
            "delivery_attempts",
            delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(its_deliveries)),
        ),
        ("deliveries", delete(deliveries).where(deliveries.c.transition_id.in_(mine))),
        ("outbox", delete(outbox).where(outbox.c.transition_id.in_(mine))),
        ("transitions", delete(transitions).where(transitions.c.contact_id == contact_id)),
        ("memberships", delete(memberships).where(memberships.c.contact_id == contact_id)),
        ("consent_records", delete(consent_records).where(consent_records.c.contact_id == contact_id)),
        ("contact_fields", delete(contact_fields).where(contact_fields.c.contact_id == contact_id)),
        ("field_sources", delete(field_sources).where(field_sources.c.contact_id == contact_id)),
        ("events", delete(events).where(events.c.contact_id == contact_id)),
        ("records", delete(records).where(records.c.contact_id == contact_id)),
        ("merge_log", delete(merge_log).where(merge_log.c.kept_contact_id == contact_id)),
        ("contact_identities", delete(contact_identities).where(ci.contact_id == contact_id)),
    ]
    counts = {table: _count(conn.execute(stmt).rowcount) for table, stmt in steps}
    # Payloads that name the person without being linked to it: unlinked records and quarantine.
    traces = _traces(identities)
    unlinked = _unlinked_mentions(traces)
    if unlinked is not None:
        record_rows, quarantine_rows = unlinked
        counts["records"] += _count(conn.execute(delete(records).where(record_rows)).rowcount)
        counts["quarantine"] = _count(conn.execute(delete(quarantine).where(quarantine_rows)).rowcount)
    counts["sync_runs_scrubbed"] = _scrub_runs(conn, traces)
    # What crmhub last pushed to the person's HubSpot contacts: a digest of their values.
    hubspot_ids = [value for kind, value in identities if kind == "hubspot_contact"]
    counts["hubspot_push_state"] = _count(
        conn.execute(
            delete(hubspot_push_state).where(hubspot_push_state.c.hubspot_id.in_(hubspot_ids))
        ).rowcount
    )
    conn.execute(update(contacts).where(contacts.c.merged_into_id == contact_id).values(merged_into_id=None))
    counts["contacts"] = _count(conn.execute(delete(contacts).where(contacts.c.id == contact_id)).rowcount)
    counts["field_options"] = _forget_options(conn, held_text)
    counts["suppressed"] = len(reachable)
    logged = [{"contact_id": contact_id, "counts": counts}]
    logged += [{"contact_id": merged, "counts": {"merged_into": contact_id}} for merged in sorted(merged_ids)]
    conn.execute(insert(erasure_log).values(subject_hash=subject, erased_at=now), logged)
    return counts


def _count(rowcount: int | None) -> int:
    return max(rowcount or 0, 0)


@dataclass(frozen=True)
class _Traces:
    """How a person's identities show in text: `words` (any case) and phones' national numbers."""

    words: frozenset[str]
    lines: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.words or self.lines)

    def mentioned(self, column: Any) -> Any:
        """The text of `column` holds one of `words` or, formatting aside, a phone of `lines`."""
        text = func.lower(cast(column, Text))
        squeezed = text
        for mark in _PHONE_MARKS:  # "(415) 555-2671" holds the national number 4155552671 once squeezed
            squeezed = func.replace(squeezed, mark, "")
        tests = [text.contains(word, autoescape=True) for word in sorted(self.words)]
        tests += [squeezed.contains(line, autoescape=True) for line in sorted(self.lines)]
        return or_(*tests)

    def scrub(self, text: str) -> str:
        """`text` with every trace replaced by `[erased]`."""
        marks = "[" + re.escape("".join(_PHONE_MARKS)) + "]*"
        patterns = [re.escape(word) for word in sorted(self.words, key=len, reverse=True)]
        patterns += [r"\+?\d*" + marks + marks.join(line) for line in sorted(self.lines)]
        return re.sub("|".join(patterns), "[erased]", text, flags=re.IGNORECASE)


def _traces(identities: list[tuple[str, str]]) -> _Traces:
    """The traces of `identities` that erasure looks for where no contact is linked."""
    words: set[str] = set()
    lines: set[str] = set()
    for kind, value in identities:
        if kind == "email":
            # SQLite's JSON keeps non-ASCII text as \u escapes (sync.store.engine): search both forms.
            words |= {value.lower(), json.dumps(value.lower())[1:-1]}
        elif kind == "phone":
            line = dialable(value)
            words.add(line)
            with contextlib.suppress(phonenumbers.NumberParseException):
                lines.add(str(phonenumbers.parse(line).national_number))
        elif len(value) >= _LONG_ID and not value.isdigit():
            words.add(value.lower())  # cus_..., a Segment.com userId: short or numeric ids match too much
    return _Traces(frozenset(words), frozenset(lines))


def _unlinked_mentions(traces: _Traces) -> tuple[Any, Any] | None:
    """Conditions on unlinked records and on quarantine rows whose payload holds one of `traces`."""
    if not traces:
        return None
    return (
        and_(records.c.contact_id.is_(None), traces.mentioned(records.c.payload)),
        traces.mentioned(quarantine.c.payload),
    )


def _scrub_runs(conn: Connection, traces: _Traces) -> int:
    """Replace the person's traces in run reports (warnings quote values); how many runs changed."""
    if not traces:
        return 0
    sr = sync_runs.c
    found = conn.execute(
        select(sr.id, sr.stats, sr.error).where(or_(traces.mentioned(sr.stats), traces.mentioned(sr.error)))
    ).all()
    for run_id, stats, error in found:
        cleaned = json.loads(traces.scrub(json.dumps(stats, ensure_ascii=False)))
        conn.execute(
            update(sync_runs)
            .where(sr.id == run_id)
            .values(stats=cleaned, error=None if error is None else traces.scrub(error))
        )
    return len(found)


def _option_fields(conn: Connection) -> list[StoredField]:
    """Fields that keep the options they have seen and hold text."""
    fd = field_definitions.c
    query = select(fd.id, fd.type).where(fd.options.is_not(None))
    return [
        StoredField.of(fid, ftype)
        for fid, ftype in conn.execute(query)
        if ftype in FieldType._value2member_map_ and STORAGE[FieldType(ftype)] is Column.TEXT
    ]


def _text_values(conn: Connection, contact_id: int) -> dict[StoredField, str]:
    """The contact's text values of fields that keep the options they have seen."""
    fields = _option_fields(conn)
    if not fields:
        return {}
    row = fields_table([f.column for f in fields])
    query = select(*(row.c[f.column] for f in fields)).where(row.c.contact_id == contact_id)
    stored = conn.execute(query).first()
    if stored is None:
        return {}
    return {f: value for f, value in zip(fields, stored, strict=True) if value is not None}


def _forget_options(conn: Connection, held: Mapping[StoredField, str]) -> int:
    """Drop the erased person's values from fields' seen options unless another contact still holds them."""
    removed = 0
    fd = field_definitions.c
    for field, value in held.items():
        column = fields_table([field.column]).c[field.column]
        if conn.execute(select(column).where(column == value).limit(1)).first() is not None:
            continue
        options = conn.execute(select(fd.options).where(fd.id == field.id)).scalar() or []
        kept = [o for o in options if o != value]
        removed += len(options) - len(kept)
        conn.execute(update(field_definitions).where(fd.id == field.id).values(options=kept or None))
    return removed
