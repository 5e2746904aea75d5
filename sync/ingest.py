"""Storing one page: raw records, contacts, field values, events, quarantine, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update
from sqlalchemy.sql.dml import UpdateBase

from connectors import Batch, ContactEvent
from field_mapping.config import Wins
from field_mapping.identity import identity_hints
from field_mapping.mapper import Mapper
from field_mapping.model import IdentityHint, MappedRecord
from field_mapping.types import FieldType
from sync.consent.config import ConsentConfig
from sync.consent.sources import apply_page_consent, consent_items
from sync.engine import BatchResult, Evaluate
from sync.fields import (
    FieldValue,
    StoredField,
    can_hold,
    column_value,
    save_definitions,
    save_values,
    stored_value,
)
from sync.identity import Resolution, resolve_batch
from sync.store.tables import contacts, events, quarantine, records
from sync.store.upsert import Row, execute_rows, write_rows

# Streams about organisations, not people: their records are kept but name no contact.
NON_PERSON_STREAMS = frozenset({("hubspot", "companies"), ("hubspot", "deals")})

_NO_IDENTITY = "no usable identity: no valid e-mail, phone or external id in the record"
# Values named in a warning about values left out of a field; the rest are counted.
_SHOWN = 3
_SHOW_MAX = 80


_RECORD_ROW = (
    "source",
    "stream",
    "external_id",
    "updated_at",
    "deleted",
    "payload",
    "stored_at",
    "run_id",
    "contact_id",
)
_EVENT_ROW = ("contact_id", "name", "occurred_at", "source", "external_id", "properties")
_ACTIVITY_ROW = ("cid", "at")


class PageStore:
    """Stores pages for the sync engine with one mapper, so field types widen across pages.

    `consent` maps source fields to consent records and lists the channels; an opt-out found in a
    page acts at once, in the page's transaction: `evaluate` re-evaluates those contacts and
    `endpoints` (channel -> endpoint names requiring it) says whose pending entries to cancel.
    """

    def __init__(
        self,
        mapper: Mapper,
        *,
        consent: ConsentConfig | None = None,
        evaluate: Evaluate | None = None,
        endpoints: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.mapper = mapper
        self.consent = consent or ConsentConfig()
        self.evaluate = evaluate
        self.endpoints = endpoints
        self._fields: dict[str, StoredField] | None = None
        self._saved_revision = -1  # the mapper registry's revision the stored definitions are at
        # Mapping rules may say which source wins a field; the rest keep the latest record's value.
        # By field name: merges during identity resolution use them before the page's fields exist.
        self._wins: dict[str, Wins] = {r.field: r.wins for r in mapper.config.rules if r.wins != "latest"}

    def __call__(self, conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        """Store `batch`: records, contacts, values, events; what cannot be used goes to quarantine."""
        result = BatchResult(records=len(batch.records))
        map_record = self.mapper.map_record
        mapped = [map_record(r) for r in batch.records if not r.deleted]
        kept: list[dict[str, Any]] = []
        # Contacts first, so each raw record is written once, already linked to its contact.
        resolution = self._resolve(conn, mapped, batch, now)
        contact_ids = resolution.contact_ids
        links = {
            (m.record.source, m.record.stream, m.record.external_id): contact_id
            for m, contact_id in zip(mapped, contact_ids, strict=True)
            if contact_id is not None
        }
        _store_records(conn, batch, links, run_id=run_id, now=now)
        created = list(resolution.created_identities)
        merged = dict(resolution.merged)
        if mapped:
            self._store_mapped(conn, mapped, resolution, batch, result, kept, run_id=run_id, now=now)
        if batch.events:
            events = self._store_events(conn, batch.events, result, kept, run_id=run_id, now=now)
            created += events.created_identities
            # A contact merged into again keeps its consent from before the page's first merge.
            merged = dict(events.merged) | merged
        # After the values, so an opt-out's re-evaluation sees the page's data.
        items = consent_items(self.consent, ((m.record, c) for m, c in zip(mapped, contact_ids, strict=True)))
        apply_page_consent(
            conn,
            self.consent,
            items,
            created_identities=created,
            now=now,
            evaluate=self.evaluate,
            endpoints=self.endpoints,
            run_id=run_id,
            merged=merged,
        )
        if kept:
            conn.execute(insert(quarantine), kept)
        result.quarantined = len(kept)
        return result

    def _resolve(
        self, conn: Connection, mapped: list[MappedRecord], batch: Batch, now: datetime
    ) -> Resolution:
        hint_sets = [_valid(m.identities) for m in mapped]
        return resolve_batch(conn, hint_sets, source=batch.source, now=now, wins=self._wins)

    def _store_mapped(
        self,
        conn: Connection,
        mapped: list[MappedRecord],
        resolution: Resolution,
        batch: Batch,
        result: BatchResult,
        kept: list[dict[str, Any]],
        *,
        run_id: int,
        now: datetime,
    ) -> None:
        contact_ids = resolution.contact_ids
        person_stream = (batch.source, batch.stream) not in NON_PERSON_STREAMS
        if person_stream:
            for m, contact_id in zip(mapped, contact_ids, strict=True):
                if contact_id is None:
                    r = m.record
                    payload = dict(r.payload)
                    kept.append(
                        _quarantined(r.source, r.stream, r.external_id, _NO_IDENTITY, payload, run_id, now)
                    )
        warnings: list[str] = []
        revision = self.mapper.registry.revision
        if self._fields is None or revision != self._saved_revision:
            # New fields, widened ones, and new enum options: an enum seen a few values per run
            # must still reach its `enum_max_distinct` and widen, as one big run would.
            self._fields = save_definitions(conn, self.mapper.definitions(), now, warnings=warnings)
            self._saved_revision = revision
        fields = self._fields
        rows, left_out = _field_rows(mapped, contact_ids, fields)
        wins = {fields[name].id: policy for name, policy in self._wins.items() if name in fields}
        save_values(conn, rows, fresh=resolution.created, wins=wins)
        result.contacts.update(c for c in contact_ids if c is not None)
        result.problems += sum(len(m.problems) for m in mapped)
        result.widenings.extend(str(w) for m in mapped for w in m.widenings)
        # The run report's warnings; StreamReport keeps them with the widenings.
        result.widenings.extend(warnings)
        result.widenings.extend(_left_out(name, shown, fields[name].type) for name, shown in left_out.items())

    def _store_events(
        self,
        conn: Connection,
        batch_events: Sequence[ContactEvent],
        result: BatchResult,
        kept: list[dict[str, Any]],
        *,
        run_id: int,
        now: datetime,
    ) -> Resolution:
        """Store the events; returns their contacts' resolution (the contacts created, merged into)."""
        config = self.mapper.config.identity
        hint_sets = [_valid(identity_hints(e.source, e.identities, config)) for e in batch_events]
        resolution = resolve_batch(conn, hint_sets, source=batch_events[0].source, now=now, wins=self._wins)
        contact_ids = resolution.contact_ids
        rows: list[Row] = []
        latest: dict[int, datetime] = {}
        for event, contact_id in zip(batch_events, contact_ids, strict=True):
            if contact_id is None:
                reason = f"event {event.name!r}: {_NO_IDENTITY}"
                payload = {"name": event.name, "properties": dict(event.properties)}
                kept.append(
                    _quarantined(event.source, "events", event.external_id, reason, payload, run_id, now)
                )
                continue
            properties = event.properties if isinstance(event.properties, dict) else dict(event.properties)
            rows.append(
                (contact_id, event.name, event.occurred_at, event.source, event.external_id, properties)
            )
            latest[contact_id] = max(event.occurred_at, latest.get(contact_id, event.occurred_at))
        write_rows(conn, events, _EVENT_ROW, rows, keys=("source", "external_id", "name"))
        execute_rows(
            conn, "last_activity", _last_activity, _ACTIVITY_ROW, [(cid, at) for cid, at in latest.items()]
        )
        result.events += len(rows)
        result.contacts.update(latest)
        return resolution


def _last_activity() -> UpdateBase:
    cc = contacts.c
    return (
        update(contacts)
        .where(cc.id == bindparam("cid"))
        .where((cc.last_activity_at.is_(None)) | (cc.last_activity_at < bindparam("at")))
        .values(last_activity_at=bindparam("at"))
    )


def _store_records(
    conn: Connection,
    batch: Batch,
    links: dict[tuple[str, str, str], int],
    *,
    run_id: int,
    now: datetime,
) -> None:
    """Upsert the raw records, an older copy never overwriting a newer one; link each to its contact.

    A record stored before this page keeps its row (and, when newer, its payload) and is linked to
    the contact resolved now; a deleted or unidentified one keeps the link it had.
    """
    rows = [
        (
            r.source,
            r.stream,
            r.external_id,
            r.updated_at,
            r.deleted,
            r.payload if isinstance(r.payload, dict) else dict(r.payload),
            now,
            run_id,
            None if r.deleted else links.get((r.source, r.stream, r.external_id)),
        )
        for r in batch.records
    ]
    write_rows(
        conn,
        records,
        _RECORD_ROW,
        rows,
        keys=("source", "stream", "external_id"),
        update=("updated_at", "deleted", "payload", "stored_at", "run_id"),
        newer="updated_at",
        fill=("contact_id",),
    )


def _field_rows(
    mapped: Sequence[MappedRecord], contact_ids: Sequence[int | None], fields: Mapping[str, StoredField]
) -> tuple[list[FieldValue], dict[str, list[str]]]:
    """The values to store, and per field the values left out of it, each with its record."""
    rows: list[FieldValue] = []
    append = rows.append
    left_out: dict[str, list[str]] = {}
    for m, contact_id in zip(mapped, contact_ids, strict=True):
        if contact_id is None:
            continue
        source, at = m.record.source, m.record.updated_at
        for value in m.values.values():
            field, typed = fields[value.field], value.value
            if value.type is field.type:
                stored = stored_value(value.type, typed)
            elif typed is None or can_hold(field, value.type):
                stored = column_value(field, value.type, typed)
            else:
                # Never a write the column refuses (it would abort the page): the value is left out.
                left_out.setdefault(value.field, []).append(_named(m, repr(typed)))
                stored = None
            append((contact_id, field, stored, source, at))
        for problem in m.problems:
            # A rule's value that does not fit its type leaves its field empty, with a problem.
            held = m.values.get(problem.field)
            if held is None or held.value is None:
                left_out.setdefault(problem.field, []).append(_named(m, problem.raw))
    return rows, left_out


def _named(m: MappedRecord, shown: str) -> str:
    """A value (as `repr` shows it) and the record it came from, as the run report names them."""
    r = m.record
    if len(shown) > _SHOW_MAX:
        shown = shown[: _SHOW_MAX - 3] + "..."
    return f"{shown} in {r.source}.{r.stream} {r.external_id}"


def _left_out(name: str, shown: Sequence[str], ftype: FieldType) -> str:
    """The run report's line for a page's values of one field that do not fit its type."""
    more = f" and {len(shown) - _SHOWN:,} more" if len(shown) > _SHOWN else ""
    count = "1 value" if len(shown) == 1 else f"{len(shown):,} values"
    return (
        f"{name}: {count} not fitting its type {ftype} (or its rule's transforms) left out of the field "
        f"({', '.join(shown[:_SHOWN])}{more}); the raw records keep them: fix the values at the source, "
        "or change the rule"
    )


def _valid(identities: tuple[IdentityHint, ...]) -> dict[str, str]:
    """The first valid hint of each kind: invalid e-mails and phones identify nobody."""
    hints: dict[str, str] = {}
    for hint in identities:
        if hint.valid:
            hints.setdefault(hint.kind, hint.value)
    return hints


def _quarantined(
    source: str,
    stream: str,
    external_id: str,
    reason: str,
    payload: dict[str, Any],
    run_id: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "source": source,
        "stream": stream,
        "external_id": external_id,
        "reason": reason,
        "payload": payload,
        "run_id": run_id,
        "created_at": now,
    }
