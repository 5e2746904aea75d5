"""Storing one page: raw records, contacts, field values, events, quarantine, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update

from connectors import Batch, ContactEvent
from field_mapping.identity import identity_hints
from field_mapping.mapper import Mapper
from field_mapping.model import IdentityHint, MappedRecord
from field_mapping.types import to_columns
from sync.engine import BatchResult
from sync.fields import save_definitions, save_values
from sync.identity import resolve
from sync.store.tables import contacts, events, quarantine, records
from sync.store.upsert import excluded, insert_ignore, upsert

# Streams about organisations, not people: their records are kept but name no contact.
NON_PERSON_STREAMS = frozenset({("hubspot", "companies"), ("hubspot", "deals")})

_NO_IDENTITY = "no usable identity: no valid e-mail, phone or external id in the record"


class PageStore:
    """Stores pages for the sync engine with one mapper, so field types widen across pages."""

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper
        self._field_ids: dict[str, int] | None = None

    def __call__(self, conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        """Store `batch`: records, contacts, values, events; what cannot be used goes to quarantine."""
        result = BatchResult(records=len(batch.records))
        _store_records(conn, batch, run_id=run_id, now=now)
        mapped = [self.mapper.map_record(r) for r in batch.records if not r.deleted]
        kept: list[dict[str, Any]] = []
        if mapped:
            self._store_mapped(conn, mapped, batch, result, kept, run_id=run_id, now=now)
        if batch.events:
            self._store_events(conn, batch.events, result, kept, run_id=run_id, now=now)
        if kept:
            conn.execute(insert(quarantine), kept)
        result.quarantined = len(kept)
        return result

    def _store_mapped(
        self,
        conn: Connection,
        mapped: list[MappedRecord],
        batch: Batch,
        result: BatchResult,
        kept: list[dict[str, Any]],
        *,
        run_id: int,
        now: datetime,
    ) -> None:
        hint_sets = [_valid(m.identities) for m in mapped]
        contact_ids = resolve(conn, hint_sets, source=batch.source, now=now)
        person_stream = (batch.source, batch.stream) not in NON_PERSON_STREAMS
        links = []
        for m, contact_id in zip(mapped, contact_ids, strict=True):
            if contact_id is not None:
                links.append(
                    {"s": m.record.source, "st": m.record.stream, "x": m.record.external_id, "c": contact_id}
                )
            elif person_stream:
                record = m.record
                payload = dict(record.payload)
                kept.append(
                    _quarantined(
                        record.source, record.stream, record.external_id, _NO_IDENTITY, payload, run_id, now
                    )
                )
        if links:
            rc = records.c
            conn.execute(
                update(records)
                .where(
                    rc.source == bindparam("s"),
                    rc.stream == bindparam("st"),
                    rc.external_id == bindparam("x"),
                )
                .values(contact_id=bindparam("c")),
                links,
            )
        if self._field_ids is None or any(m.created or m.widenings for m in mapped):
            self._field_ids = save_definitions(conn, self.mapper.definitions(), now)
        field_ids = self._field_ids
        values = [
            {
                "contact_id": contact_id,
                "field_id": field_ids[value.field],
                **to_columns(value.type, value.value)._asdict(),
                "source": m.record.source,
                "updated_at": m.record.updated_at,
            }
            for m, contact_id in zip(mapped, contact_ids, strict=True)
            if contact_id is not None
            for value in m.values.values()
        ]
        save_values(conn, values)
        result.contacts.update(c for c in contact_ids if c is not None)
        result.problems += sum(len(m.problems) for m in mapped)
        result.widenings.extend(str(w) for m in mapped for w in m.widenings)

    def _store_events(
        self,
        conn: Connection,
        batch_events: Sequence[ContactEvent],
        result: BatchResult,
        kept: list[dict[str, Any]],
        *,
        run_id: int,
        now: datetime,
    ) -> None:
        config = self.mapper.config.identity
        hint_sets = [_valid(identity_hints(e.source, e.identities, config)) for e in batch_events]
        contact_ids = resolve(conn, hint_sets, source=batch_events[0].source, now=now)
        rows = []
        latest: dict[int, datetime] = {}
        for event, contact_id in zip(batch_events, contact_ids, strict=True):
            if contact_id is None:
                reason = f"event {event.name!r}: {_NO_IDENTITY}"
                payload = {"name": event.name, "properties": dict(event.properties)}
                kept.append(
                    _quarantined(event.source, "events", event.external_id, reason, payload, run_id, now)
                )
                continue
            rows.append(
                {
                    "contact_id": contact_id,
                    "name": event.name,
                    "occurred_at": event.occurred_at,
                    "source": event.source,
                    "external_id": event.external_id,
                    "properties": dict(event.properties),
                }
            )
            latest[contact_id] = max(event.occurred_at, latest.get(contact_id, event.occurred_at))
        insert_ignore(conn, events, rows, keys=["source", "external_id", "name"])
        if latest:
            cc = contacts.c
            conn.execute(
                update(contacts)
                .where(cc.id == bindparam("cid"))
                .where((cc.last_activity_at.is_(None)) | (cc.last_activity_at < bindparam("at")))
                .values(last_activity_at=bindparam("at")),
                [{"cid": cid, "at": at} for cid, at in latest.items()],
            )
        result.events += len(rows)
        result.contacts.update(latest)


def _store_records(conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> None:
    """Upsert the raw records; an older copy never overwrites a newer one."""
    rows = [
        {
            "source": r.source,
            "stream": r.stream,
            "external_id": r.external_id,
            "updated_at": r.updated_at,
            "deleted": r.deleted,
            "payload": dict(r.payload),
            "stored_at": now,
            "run_id": run_id,
        }
        for r in batch.records
    ]
    upsert(
        conn,
        records,
        rows,
        keys=["source", "stream", "external_id"],
        update=["updated_at", "deleted", "payload", "stored_at", "run_id"],
        where=excluded(conn, records).updated_at >= records.c.updated_at,
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
