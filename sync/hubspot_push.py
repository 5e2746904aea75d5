"""Pushing crmhub's fields to HubSpot: a property group, one contact property per field, values in batches.

Idempotent: the group and each property are created once, properties 100 per call (HubSpot's 409
means it exists already), each field remembers its HubSpot property (made again when HubSpot no
longer lists it), and values are written only for contacts that changed since the last push (a
cursor in `cursors`) and whose properties differ from what the last push wrote (a digest per
HubSpot contact), to the HubSpot contacts they came from, 100 per call.
Properties are named `<group>_<field>` so a pull of "all properties" can leave them out.

HubSpot refuses a batch/update whole (400) for one bad input: an id deleted or merged there, a
value its property does not take. The push sends the batch again without the ids HubSpot names,
or else in halves down to single inputs, writes every good input, and stores each refused one's
digest with a refused mark, so it is not sent again until its values change; inputs a 207 answer
lists in `errors` are recorded the same way. A push is a sync run: succeeded, partial (contacts
refused) or failed.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from connectors.exceptions import PermanentError
from field_mapping.config import HubSpotPushConfig
from field_mapping.hubspot_properties import (
    group_create,
    property_create,
    property_name,
    pushable,
)
from field_mapping.model import FieldDefinition
from sync.fields import load_definitions
from sync.hubspot_push_state import already_pushed, changed_values, digest, remember
from sync.runs import (
    STILL_STORING_MAX_AGE,
    earliest_storing_start,
    error_text,
    finish_run,
    load_cursor,
    save_cursor,
    start_run,
)
from sync.store import write_transaction
from sync.store.tables import (
    field_definitions,
)

BATCH_SIZE = 100  # HubSpot's limit per batch call
_CURSOR = ("hubspot", "_push")
_EXAMPLES = 5  # refused contacts named in the report and in the run's error
_NOT_FOUND = re.compile(r"could not get some", re.IGNORECASE)
# HubSpot's message quotes the name, escaped when the message embeds its JSON list of errors.
_NO_PROPERTY = re.compile(r'Property \\?"([^"\\]+)\\?" does not exist')

log = logging.getLogger(__name__)


class HubSpotWriter(Protocol):
    """The HubSpot calls a push makes (connectors.hubspot.HubSpotApi has them)."""

    def create_property_group(self, object_type: str, body: Mapping[str, Any]) -> bool:
        """Create a group; False if it existed."""

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create up to BATCH_SIZE properties; the names created (not those that existed)."""

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        """Write properties of objects known by id: HubSpot's answer, its error body on a 400."""

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
    contacts_refused: int = 0
    refused_examples: dict[str, str] = field(default_factory=dict)  # HubSpot id -> HubSpot's reason
    warnings: list[str] = field(default_factory=list)
    calls: int = 0


def push_to_hubspot(
    engine: Engine, api: HubSpotWriter, config: HubSpotPushConfig, *, now: datetime
) -> PushReport:
    """Create the group and missing properties, then write changed contacts' values to HubSpot."""
    with write_transaction(engine) as conn:
        run_id = start_run(conn, source="hubspot", trigger="push", now=now)
    report = PushReport()
    try:
        _push(engine, api, config, report, run_id=run_id, now=now)
    except Exception as exc:
        _record_failure(engine, run_id, report, exc, now=now)
        raise
    return report


def _push(
    engine: Engine,
    api: HubSpotWriter,
    config: HubSpotPushConfig,
    report: PushReport,
    *,
    run_id: int,
    now: datetime,
) -> None:
    """The push itself, inside its run."""
    report.group_created = api.create_property_group("contacts", group_create(config))
    report.calls += 1
    lost = _ensure_properties(engine, api, config.group_name, report)
    with engine.connect() as conn:
        cursor = _next_cursor(conn, now=now)  # before the contacts are read: see _next_cursor
        # A property made again holds none of the values pushed before: every contact is read.
        since = None if lost else load_cursor(conn, *_CURSOR)
        changed = changed_values(conn, since=datetime.fromisoformat(since) if since else None)
        digests = {hubspot_id: digest(props) for hubspot_id, props in changed.items() if props}
        unchanged = already_pushed(conn, digests)
    due = [i for i in digests if i not in unchanged or lost & changed[i].keys()]
    for start in range(0, len(due), BATCH_SIZE):
        written, refused = _write(api, due[start : start + BATCH_SIZE], changed, report)
        # Remembered per batch: a push that fails half-way re-sends only what HubSpot did not get.
        with write_transaction(engine) as conn:
            remember(conn, written, refused, digests, now=now)
        _count(report, written, refused)
    for warning in report.warnings:
        log.warning("%s", warning)
    with write_transaction(engine) as conn:
        save_cursor(conn, *_CURSOR, cursor.isoformat(), run_id=run_id, now=now)
        status = "partial" if report.contacts_refused else "succeeded"
        error = "; ".join(report.warnings) or None
        finish_run(conn, run_id, status=status, stats=_stats(report), error=error, now=now)


def _count(report: PushReport, written: Sequence[str], refused: Mapping[str, str]) -> None:
    """Add one batch's outcome to the report; refused contacts make its warning (the run's error)."""
    report.contacts_updated += len(written)
    if not refused:
        return
    report.contacts_refused += len(refused)
    for hubspot_id, reason in list(refused.items())[: _EXAMPLES - len(report.refused_examples)]:
        report.refused_examples[hubspot_id] = reason
    report.warnings[:] = [_refused_warning(report)]


def _record_failure(
    engine: Engine, run_id: int, report: PushReport, exc: Exception, *, now: datetime
) -> None:
    """Close the push's run as failed with its error; the error itself goes on to the caller."""
    try:
        with write_transaction(engine) as conn:
            error = error_text(exc)
            finish_run(conn, run_id, status="failed", stats=_stats(report), error=error, now=now)
    except SQLAlchemyError as store_error:
        # The push's own error says more than the store's; the run stays `running` in the store.
        log.warning("hubspot push: run %s not closed as failed: %s", run_id, error_text(store_error))


def _stats(report: PushReport) -> dict[str, Any]:
    """What a push's run records of it."""
    return {
        "properties_created": len(report.properties_created),
        "contacts_updated": report.contacts_updated,
        "contacts_refused": report.contacts_refused,
        "calls": report.calls,
    }


def _next_cursor(conn: Connection, *, now: datetime) -> datetime:
    """The cursor this push saves: `now`, or just before the start of a run still storing contacts.

    A run stamps the contacts it stores `changed_at = <its start>` and may commit them after this
    push read: a run that began before `now` and is still running would leave them at or below a
    cursor of `now`, never pushed until they change again. A cursor 1 us before its start keeps
    them above; the next push reads again some contacts it pushed, and their digest skips them.
    Read before the contacts, so a run seen finished here has committed all it stored. Pushes
    stamp no contacts (this one included, and one a killed process left `running` for good). A run
    that began more than `STILL_STORING_MAX_AGE` ago counts no more, as for the segment cuts: one a
    killed process left `running` would otherwise make every later push re-read all since its start.
    """
    earliest = earliest_storing_start(conn, now=now, since=now - STILL_STORING_MAX_AGE)
    return now if earliest is None else earliest - timedelta(microseconds=1)


def _ensure_properties(engine: Engine, api: HubSpotWriter, group: str, report: PushReport) -> set[str]:
    """Create the properties HubSpot lacks, remember each field's, retype those whose field widened.

    Returns the properties that replace remembered ones HubSpot no longer had (their values are gone).
    """
    held = _held(api, report)
    with engine.connect() as conn:
        definitions = {d.name: d for d in pushable(load_definitions(conn))}
        rows = conn.execute(select(field_definitions.c.name, field_definitions.c.hubspot_property))
        named: dict[str, str | None] = {name: prop for name, prop in rows if name in definitions}
    # A remembered property HubSpot no longer lists was deleted or archived there: it is made again.
    missing = {name: property_name(group, name) for name in definitions if named.get(name) not in held}
    new = [name for name, prop in missing.items() if prop not in held]
    created: list[str] = []
    for start in range(0, len(new), BATCH_SIZE):
        bodies = [
            property_create(dataclasses.replace(definitions[name], name=missing[name]), group)
            for name in new[start : start + BATCH_SIZE]
        ]
        created += api.create_properties("contacts", bodies)
        report.calls += 1
    report.properties_created += created
    if missing:
        with write_transaction(engine) as conn:
            conn.execute(
                update(field_definitions)
                .where(field_definitions.c.name == bindparam("field"))
                .values(hubspot_property=bindparam("property")),
                [{"field": name, "property": prop} for name, prop in missing.items()],
            )
    if len(created) < len(new):
        # HubSpot has properties it did not list (409): read their types now, so one that differs
        # is corrected before this push writes values, not by the next one.
        held = _held(api, report)
    _retype(api, definitions, {**named, **missing}, held, group, report)
    return {prop for name, prop in missing.items() if named.get(name)}


def _held(api: HubSpotWriter, report: PushReport) -> dict[str, tuple[str, str]]:
    """Property name -> (type, fieldType) of every contact property HubSpot lists."""
    report.calls += 1
    return {p.name: (p.type, p.field_type) for p in api.properties("contacts")}


def _retype(
    api: HubSpotWriter,
    definitions: Mapping[str, FieldDefinition],
    named: Mapping[str, str | None],
    held: Mapping[str, tuple[str, str]],
    group: str,
    report: PushReport,
) -> None:
    """Give each pushed property the type its field has now: HubSpot refuses a widened field's values."""
    for name, definition in definitions.items():
        prop = named.get(name)
        if not prop or prop not in held:
            continue  # created by this push with the field's type, or not listed (archived)
        body = property_create(dataclasses.replace(definition, name=prop), group)
        if held[prop] != (body["type"], body["fieldType"]):
            api.update_property("contacts", prop, body)
            report.calls += 1
            report.properties_retyped.append(prop)


def _write(
    api: HubSpotWriter, ids: Sequence[str], changed: Mapping[str, Mapping[str, str]], report: PushReport
) -> tuple[list[str], dict[str, str]]:
    """Write the values of `ids`: (the ids written, refused id -> HubSpot's reason)."""
    answer = api.batch_update("contacts", [{"id": i, "properties": changed[i]} for i in ids])
    report.calls += 1
    if answer.get("status") != "error":
        failed = _failed(answer, ids)
        return [i for i in ids if i not in failed], failed
    return _isolate(api, ids, answer, changed, report)


def _isolate(
    api: HubSpotWriter,
    ids: Sequence[str],
    answer: Mapping[str, Any],
    changed: Mapping[str, Mapping[str, str]],
    report: PushReport,
) -> tuple[list[str], dict[str, str]]:
    """Write what HubSpot refused whole (`answer`) without its bad inputs: those it names, else halves.

    Every call takes its token from the client's rate limits like any other; a half left holding
    the bad inputs by the other half passing is split without being sent.
    """
    reason = _reason(answer)
    gone = _NO_PROPERTY.search(reason)
    if gone:
        # Not one contact's fault: every input holding the property is refused, so none is marked.
        raise PermanentError(
            f"hubspot: contacts batch update: refused (400) ({reason}): property {gone.group(1)} was "
            "deleted or archived in HubSpot after this push listed the properties; the next push "
            "creates it again (if this repeats, restore or delete it for good among HubSpot's "
            "archived properties)"
        )
    named = _named_ids(answer, ids)
    if named or len(ids) == 1:
        refused = dict.fromkeys(named or ids, reason)
        rest = [i for i in ids if i not in refused]
        written, more = _write(api, rest, changed, report) if rest else ([], {})
        return written, {**refused, **more}
    half = len(ids) // 2
    first, first_refused = _write(api, ids[:half], changed, report)
    if first_refused:
        second, second_refused = _write(api, ids[half:], changed, report)
    else:
        second, second_refused = _isolate(api, ids[half:], answer, changed, report)
    return first + second, {**first_refused, **second_refused}


def _failed(answer: Mapping[str, Any], ids: Sequence[str]) -> dict[str, str]:
    """The inputs a batch answer says were not written (a 207's `errors`), each with its reason."""
    errors = answer.get("errors")
    if not isinstance(errors, list) or not errors:
        return {}
    listed = [e for e in errors if isinstance(e, Mapping)] or [{"message": str(errors[0])}]
    failed: dict[str, str] = {}
    for error in listed:
        for hubspot_id in _named_ids(error, ids):
            failed.setdefault(hubspot_id, _reason(error))
    results = answer.get("results")
    if isinstance(results, list):
        written = {str(r.get("id")) for r in results if isinstance(r, Mapping)}
        # An input HubSpot neither wrote nor named in an error was not written either.
        failed |= {i: _reason(listed[0]) for i in ids if i not in written and i not in failed}
    elif not failed:
        failed = dict.fromkeys(ids, _reason(listed[0]))  # nothing says which were written
    return failed


def _named_ids(error: Mapping[str, Any], ids: Sequence[str]) -> list[str]:
    """Those of `ids` a HubSpot error names: in `context.ids`, or in a message about ids not found."""
    context = error.get("context")
    listed = context.get("ids") if isinstance(context, Mapping) else None
    named = {str(i) for i in listed} if isinstance(listed, list) else set()
    message = str(error.get("message") or "")
    if _NOT_FOUND.search(message):
        named.update(re.findall(r"[\w-]+", message))
    return [i for i in ids if i in named]


def _reason(error: Mapping[str, Any]) -> str:
    """HubSpot's reason for an error, shortened."""
    reason = str(error.get("message") or error.get("category") or "refused without a reason")
    return reason if len(reason) <= 300 else f"{reason[:297]}..."


def _refused_warning(report: PushReport) -> str:
    """The warning naming a push's refused contacts, the cause and what to do."""
    examples = "; ".join(f"{i}: {reason}" for i, reason in report.refused_examples.items())
    more = ", ..." if report.contacts_refused > len(report.refused_examples) else ""
    return (
        f"hubspot: HubSpot refused the values of {report.contacts_refused} contacts ({examples}{more}): "
        "they are sent again once their values change; a contact deleted or merged in HubSpot needs "
        "nothing, a refused value needs its field's values or its HubSpot property fixed"
    )
