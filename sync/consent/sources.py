"""Consent read from synced records by `[[consent.sources]]` rules, and kept out by the suppression list.

Both run inside the page's transaction (pulls and pushed batches alike). A record's statement is
recorded at the record's time, so re-pulling an old record never outranks a later opt-out; a
statement already stored is not stored again. An opt-out that becomes the status in force acts as
`opt_out` does, and so does one a merge of the page puts in force (the merged contact's records
joining the kept one's); an opt-in a merge puts in force lifts no suppression, as no synced opt-in
does. A contact created by this page whose e-mail or phone is on the suppression list gets an
opted_out record (source "suppression") for each channel that identity reaches, recorded last, so
a re-import under a new id, a differently cased e-mail or a differently formatted phone stays out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from connectors import Record
from sync.consent.actions import unsubscribe
from sync.consent.config import ConsentConfig, ConsentSource
from sync.consent.records import ConsentItem, latest_statuses, record_many
from sync.consent.suppression import listed_kinds

if TYPE_CHECKING:
    from sync.engine import Evaluate

__all__ = ["apply_page_consent", "consent_items"]


def _path(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _answer(payload: Mapping[str, Any], ref: str) -> Any:
    for answer in payload.get("answers") or ():
        if isinstance(answer, Mapping) and (answer.get("field") or {}).get("ref") == ref:
            kind = answer.get("type")
            return answer.get(kind) if isinstance(kind, str) else None
    return None


def _statement(rule: ConsentSource, record: Record) -> tuple[str, dict[str, Any]] | None:
    if rule.source != record.source or (rule.stream is not None and rule.stream != record.stream):
        return None
    payload = record.payload
    where: dict[str, Any]
    if rule.path is not None:
        raw, where = _path(payload, rule.path), {"path": rule.path}
    else:
        assert rule.typeform_ref is not None
        raw, where = (
            _answer(payload, rule.typeform_ref),
            {"form_id": payload.get("form_id"), "field_ref": rule.typeform_ref},
        )
    status = rule.status(raw)
    if status is None:
        return None
    proof = {"stream": record.stream, "record_id": record.external_id, **where, "answer": raw}
    return status, proof


def consent_items(config: ConsentConfig, pairs: Iterable[tuple[Record, int | None]]) -> list[ConsentItem]:
    """The consent statements the rules find in records already resolved to contacts."""
    if not config.sources:
        return []
    items = []
    for record, contact_id in pairs:
        if contact_id is None or record.deleted:
            continue
        for rule in config.sources:
            found = _statement(rule, record)
            if found is not None:
                status, proof = found
                items.append(
                    ConsentItem(contact_id, rule.channel, status, record.source, record.updated_at, proof)
                )
    return items


def _suppression_items(
    conn: Connection, config: ConsentConfig, identities: Iterable[tuple[int, str, str]], now: datetime
) -> list[ConsentItem]:
    items = []
    for contact_id, kinds in sorted(listed_kinds(conn, identities).items()):
        for kind in sorted(kinds):
            for channel in config.channels_of(kind):
                proof = {
                    "suppressed": kind,
                    "reason": "an identity of this contact is on the suppression list",
                }
                items.append(ConsentItem(contact_id, channel, "opted_out", "suppression", now, proof))
    return items


def apply_page_consent(
    conn: Connection,
    config: ConsentConfig,
    items: Sequence[ConsentItem],
    *,
    created_identities: Iterable[tuple[int, str, str]],
    now: datetime,
    evaluate: Evaluate | None,
    endpoints: Mapping[str, Collection[str]] | None = None,
    run_id: int | None = None,
    merged: Mapping[int, Mapping[str, str]] | None = None,
) -> list[ConsentItem]:
    """Store the page's statements and suppression copies; act on new opt-outs. Returns what was stored.

    `created_identities` are the (contact, kind, value) identities of the contacts the page created.
    `merged` are the contacts the page merged others into, each with its consent in force before
    (`Resolution.merged`): one whose merged records put an opt-out in force is acted on too.
    """
    all_items = [*items, *_suppression_items(conn, config, created_identities, now)]
    merged = merged or {}
    if not all_items and not merged:
        return []
    contact_ids = {i.contact_id for i in all_items}.difference(merged)
    channels = {i.channel for i in all_items}
    before = latest_statuses(conn, contact_ids, channels)
    # A merged-into contact is compared, on every channel, with itself before the page's merges.
    before.update(((cid, channel), status) for cid, was in merged.items() for channel, status in was.items())
    stored = record_many(conn, all_items, now=now)
    if not stored and not merged:
        return []
    after = latest_statuses(conn, contact_ids, channels)
    after.update(latest_statuses(conn, merged))
    turned: dict[str, set[int]] = {}
    for (contact_id, channel), status in after.items():
        if status == "opted_out" and before.get((contact_id, channel)) != "opted_out":
            turned.setdefault(channel, set()).add(contact_id)
    for channel, ids in sorted(turned.items()):
        wanted = (endpoints or {}).get(channel, ())
        unsubscribe(conn, ids, channel, now=now, evaluate=None, endpoints=wanted, config=config)
    if evaluate is not None and turned:
        # One evaluation for every contact that opted out in this page, in the page's transaction.
        evaluate(conn, now=now, run_id=run_id, contact_ids=sorted(set().union(*turned.values())))
    return stored
