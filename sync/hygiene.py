"""List hygiene policies run with syncs: undeliverable numbers flagged, duplicates, dormancy, re-confirmation.

Each policy is a few set-based statements in the caller's transaction. `plan` says what each would
do now; `run_hygiene` does it and records the outcome as a sync run (trigger "hygiene") that
`last_run` reads back. A month counts as 30 days. Duplicates are merged at ingest by the identity
rules (shared e-mail, phone or external id, with a merge log); the policy reports those merges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    func,
    insert,
    literal,
    not_,
    select,
    update,
)

from sync.consent.flags import system_field
from sync.fields import StoredField
from sync.runs import finish_run, start_run
from sync.store.field_columns import fields_table
from sync.store.tables import contact_identities, contacts, merge_log, sync_runs

__all__ = ["HygieneConfig", "PolicyResult", "last_run", "plan", "run_hygiene"]

_TRIGGER = "hygiene"


class HygieneConfig(BaseModel):
    """`[hygiene]`: which policies run with each sync, and their periods."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    flag_invalid_phones: bool = True
    dormant_after_months: int = Field(default=6, ge=1, le=120)
    reconfirm_after_months: int = Field(default=3, ge=1, le=120)


@dataclass(frozen=True)
class PolicyResult:
    """One policy: what it is about, how many contacts it would change now, how many it changed."""

    policy: str
    description: str
    would: int
    did: int = 0


def _count(conn: Connection, where: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(contacts).where(where)).scalar_one())


def _flagged(field: StoredField, value: bool) -> ColumnElement[bool]:
    row = fields_table([field.column])
    return exists().where(row.c.contact_id == contacts.c.id, row.c[field.column].is_(value))


def _holds(kind: str, *, valid: bool) -> ColumnElement[bool]:
    """The contact holds an identity of `kind` that is (or is not) valid."""
    ci = contact_identities.c
    return exists().where(ci.contact_id == contacts.c.id, ci.kind == kind, ci.valid.is_(valid))


def _invalid_phone_unflagged(field: StoredField) -> ColumnElement[bool]:
    has_invalid, has_valid = _holds("phone", valid=False), _holds("phone", valid=True)
    return and_(has_invalid, not_(has_valid), not_(_flagged(field, False)))


def _replaced(field: StoredField, kind: str) -> ColumnElement[bool]:
    """Flagged unreachable by `kind` (a bounce, an invalid number) and holding a good one of it now."""
    return and_(_flagged(field, False), _holds(kind, valid=True))


def _quiet_since(cutoff: datetime) -> ColumnElement[bool]:
    return func.coalesce(contacts.c.last_activity_at, contacts.c.created_at) < cutoff


def _policies(
    conn: Connection, config: HygieneConfig, now: datetime
) -> tuple[dict[str, ColumnElement[bool]], dict[str, StoredField]]:
    """The contacts each policy selects now, and the system fields they use."""
    names = ("phone_valid", "email_deliverable", "dormant", "consent_confirmed_at")
    fields = {name: system_field(conn, name, now) for name in names}
    dormant_cutoff = now - timedelta(days=30 * config.dormant_after_months)
    confirmed = fields["consent_confirmed_at"].column
    row = fields_table([confirmed])
    stale = exists().where(
        row.c.contact_id == contacts.c.id,
        row.c[confirmed] < now - timedelta(days=30 * config.reconfirm_after_months),
    )
    live = contacts.c.state != "merged"
    where = {
        "invalid_phones": and_(live, _invalid_phone_unflagged(fields["phone_valid"])),
        "dormant": and_(contacts.c.state == "active", _quiet_since(dormant_cutoff)),
        "revived": and_(contacts.c.state == "dormant", not_(_quiet_since(dormant_cutoff))),
        "reconfirm": and_(live, stale),
        # Sender feedback marks the reported identity invalid; a new address or number from a source
        # is valid, and a flag kept after it would hold the person out of segments for good.
        "reachable_phone": and_(live, _replaced(fields["phone_valid"], "phone")),
        "reachable_email": and_(live, _replaced(fields["email_deliverable"], "email")),
    }
    return where, fields


_DESCRIPTIONS = {
    "invalid_phones": "phone numbers senders reported invalid: phone_valid = false",
    "duplicates": "merged by the identity rules (shared e-mail, phone or external id) since the last run",
    "dormant": "no engagement for the period: state dormant, field dormant = true",
    "revived": "dormant contacts with new activity: back to active, field dormant removed",
    "reconfirm": (
        "no consent confirmation for the period (consent_confirmed_at): counted, not changed; a "
        "reminder segment on consent_confirmed_at reaches them"
    ),
    "reachable_phone": "a phone reported invalid, and a valid one held now: phone_valid removed",
    "reachable_email": "an e-mail that bounced, and a deliverable one held now: email_deliverable removed",
}


def _merges_since(conn: Connection, since: datetime | None) -> int:
    query = select(func.count()).select_from(merge_log)
    if since is not None:
        query = query.where(merge_log.c.merged_at > since)
    return int(conn.execute(query).scalar_one())


def plan(conn: Connection, config: HygieneConfig, *, now: datetime) -> list[PolicyResult]:
    """What each policy would change now (the field definitions it needs are created if missing)."""
    where, _ = _policies(conn, config, now)
    previous = last_run(conn)
    since = datetime.fromisoformat(previous["finished_at"]) if previous else None
    results = [PolicyResult(name, _DESCRIPTIONS[name], _count(conn, test)) for name, test in where.items()]
    if not config.flag_invalid_phones:
        results = [r for r in results if r.policy != "invalid_phones"]
    results.insert(1, PolicyResult("duplicates", _DESCRIPTIONS["duplicates"], _merges_since(conn, since)))
    return results


def run_hygiene(conn: Connection, config: HygieneConfig, *, now: datetime) -> list[PolicyResult]:
    """Apply every policy in the caller's transaction, record the run, return what each did."""
    planned = {r.policy: r for r in plan(conn, config, now=now)}
    where, fields = _policies(conn, config, now)
    run_id = start_run(conn, source=None, trigger=_TRIGGER, now=now)
    did: dict[str, int] = {"duplicates": planned["duplicates"].would, "reconfirm": planned["reconfirm"].would}
    if config.flag_invalid_phones:
        did["invalid_phones"] = _flag(conn, where["invalid_phones"], fields["phone_valid"], False, now)
    did["dormant"] = _flag(conn, where["dormant"], fields["dormant"], True, now)
    conn.execute(update(contacts).where(where["dormant"]).values(state="dormant", changed_at=now))
    _set(conn, select(contacts.c.id).where(where["revived"]), fields["dormant"], None)
    did["revived"] = planned["revived"].would
    conn.execute(update(contacts).where(where["revived"]).values(state="active", changed_at=now))
    for policy, field in (("reachable_phone", "phone_valid"), ("reachable_email", "email_deliverable")):
        did[policy] = planned[policy].would
        chosen = select(contacts.c.id).where(where[policy])
        conn.execute(update(contacts).where(contacts.c.id.in_(chosen)).values(changed_at=now))
        _set(conn, chosen, fields[field], None)
    results = [PolicyResult(r.policy, r.description, r.would, did.get(r.policy, 0)) for r in planned.values()]
    stats = {"policies": [asdict(r) for r in results]}
    finish_run(conn, run_id, status="succeeded", stats=stats, error=None, now=now)
    return results


def _flag(
    conn: Connection, where: ColumnElement[bool], field: StoredField, value: bool, now: datetime
) -> int:
    """Set a boolean system field for the contacts `where` selects; bump them; count them."""
    count = _count(conn, where)
    if count == 0:
        return 0
    # In this order: the flag written last can change what `where` selects.
    conn.execute(update(contacts).where(where).values(changed_at=now))
    row = fields_table([field.column])
    has_row = exists().where(row.c.contact_id == contacts.c.id)
    rowless = select(contacts.c.id, literal(value)).where(where, not_(has_row))
    _set(conn, select(contacts.c.id).where(where), field, value)
    conn.execute(insert(row).from_select(["contact_id", field.column], rowless))
    return count


def _set(conn: Connection, chosen: Select[Any], field: StoredField, value: bool | None) -> None:
    """Set one field of the contacts `chosen` selects that have a row already."""
    row = fields_table([field.column])
    conn.execute(update(row).where(row.c.contact_id.in_(chosen)).values({field.column: value}))


def last_run(conn: Connection) -> dict[str, Any] | None:
    """The latest hygiene run: when it finished and what each policy did."""
    sr = sync_runs.c
    row = conn.execute(
        select(sr.finished_at, sr.stats).where(sr.trigger == _TRIGGER).order_by(sr.id.desc()).limit(1)
    ).first()
    if row is None or row.finished_at is None:
        return None
    return {"finished_at": row.finished_at.isoformat(), "policies": row.stats.get("policies", [])}
