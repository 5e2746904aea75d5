"""The second, independent evaluator: one contact's data in Python, each rule node with verdict and evidence.

It shares only the reading of rule literals (`values.py`, `config.stored_form`) with the SQL
compiler; a property test checks that both always agree. A segment the sync holds back (a test its
field's type cannot meet) is not evaluated here either: its stored members answer, as they do for
the sync's own `in_segment` tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from field_mapping.types import STORAGE, Column, FieldType
from sync.fields import load_fields, read_values, stored_value
from sync.segments.config import BUILTIN_TYPES, DEFAULT_REGION, Comparison, Rule, SegmentConfig, TimeTest
from sync.segments.field_checks import held_segments, stored_form
from sync.segments.values import anniversary_days, coerce, parse_duration, parse_time
from sync.store.tables import consent_records, contact_identities, contacts, events, memberships, segments

__all__ = ["ContactData", "Explainer", "Explanation", "load_contact"]


@dataclass(frozen=True)
class EventRow:
    """One event of the contact."""

    id: int
    name: str
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass(frozen=True)
class ConsentRow:
    """One consent record of the contact."""

    id: int
    channel: str
    status: str
    recorded_at: datetime


@dataclass(frozen=True)
class ContactData:
    """Everything a rule can look at, for one contact."""

    id: int
    state: str
    times: dict[str, datetime | None]
    fields: dict[str, tuple[Column, Any]]
    identities: dict[str, list[str]]
    events: list[EventRow]
    consents: list[ConsentRow]
    # The store's field types by name, and the keys of the segments the contact is a stored member of.
    field_types: dict[str, FieldType] = field(default_factory=dict)
    memberships: frozenset[str] = frozenset()


def load_contact(conn: Connection, contact_id: int) -> ContactData | None:
    """Read one contact's data with a handful of queries; None if there is no such contact."""
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().first()
    if row is None:
        return None
    fields = load_fields(conn)
    held = read_values(conn, [contact_id], fields).get(contact_id, {})
    values = {name: _as_stored(fields[name].type, value) for name, value in held.items()}
    identities: dict[str, list[str]] = {}
    for kind, value in conn.execute(
        select(contact_identities.c.kind, contact_identities.c.value).where(
            contact_identities.c.contact_id == contact_id
        )
    ):
        identities.setdefault(kind, []).append(value)
    rows = conn.execute(select(events).where(events.c.contact_id == contact_id)).mappings()
    evs = [EventRow(r["id"], r["name"], r["occurred_at"], dict(r["properties"] or {})) for r in rows]
    consent = conn.execute(
        select(consent_records).where(consent_records.c.contact_id == contact_id)
    ).mappings()
    consents = [ConsentRow(r["id"], r["channel"], r["status"], r["recorded_at"]) for r in consent]
    times = {"created_at": row["created_at"], "last_activity_at": row["last_activity_at"]}
    member_of = frozenset(
        conn.execute(
            select(segments.c.key)
            .join(memberships, memberships.c.segment_id == segments.c.id)
            .where(memberships.c.contact_id == contact_id)
        ).scalars()
    )
    types = {name: stored.type for name, stored in fields.items()}
    return ContactData(contact_id, row["state"], times, values, identities, evs, consents, types, member_of)


def _as_stored(ftype: FieldType, value: Any) -> tuple[Column, Any]:
    """A typed value as the SQL compiler sees it: numbers as floats, dates as midnight UTC."""
    column = STORAGE[ftype]
    # Decimal("0.1") != 0.1 in Python, while SQL compares the stored float with a float literal.
    return column, float(value) if column is Column.NUM else stored_value(ftype, value)


@dataclass
class Explanation:
    """One node of the rule tree: what it tested, whether it held, and the evidence."""

    label: str
    result: bool
    detail: dict[str, Any] = field(default_factory=dict)
    children: list[Explanation] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready tree."""
        return {
            "rule": self.label,
            "result": self.result,
            **({"detail": self.detail} if self.detail else {}),
            **({"children": [c.as_dict() for c in self.children]} if self.children else {}),
        }


def _holds(test: Comparison, number: float) -> bool:
    return test.holds(number)


class Explainer:
    """Evaluates segments for one contact at one `now`.

    `held` names the segments the sync holds back, with why (`EvaluationReport.held`); without it,
    those with a test their field's type cannot meet, from the store's field types. (A field no
    mapping rule declares holds a segment too, but only the caller knows the mapping rules.)
    `region` reads national phone numbers in rules, as `[field_mapping.identity] default_region`.
    """

    def __init__(
        self,
        segments: Mapping[str, SegmentConfig],
        data: ContactData,
        *,
        now: datetime,
        held: Mapping[str, Sequence[str]] | None = None,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.segments = segments
        self.data = data
        self.now = now
        self.region = region
        self.held = held_segments(segments, None, data.field_types, region) if held is None else held
        self._memo: dict[str, Explanation] = {}

    def segment(self, key: str) -> Explanation:
        """Whether the contact belongs to segment `key`, with the whole tree."""
        if key in self._memo:
            return self._memo[key]
        if key in self.held:
            self._memo[key] = self._held(key)
            return self._memo[key]
        segment = self.segments[key]
        children = [
            Explanation("contact is not merged", self.data.state != "merged", {"state": self.data.state})
        ]
        children.append(self.rule(segment.rule))
        if segment.requires_consent:
            children.append(self._consent(segment.requires_consent, label="requires_consent"))
        result = Explanation(
            f"segment {key}", all(c.result for c in children), {"now": self.now.isoformat()}, children
        )
        self._memo[key] = result
        return result

    def _held(self, key: str) -> Explanation:
        """A segment the sync does not evaluate: its stored membership, and why it is held."""
        member = key in self.data.memberships
        why = f"held: {'; '.join(self.held[key])}; members kept as they were"
        node = Explanation(why, member, {"stored_member": member})
        return Explanation(f"segment {key}", member, {"now": self.now.isoformat(), "held": True}, [node])

    def rule(self, rule: Rule) -> Explanation:
        """One node and its sub-tree."""
        kind = rule.kind
        if kind in ("all", "any", "not"):
            children = [self.rule(r) for r in rule.children()]
            combine: Callable[[list[bool]], bool] = {
                "all": all,
                "any": any,
                "not": lambda rs: not rs[0],
            }[kind]
            return Explanation(kind, combine([c.result for c in children]), {}, children)
        if kind == "field":
            return self._field(rule)
        if kind == "event":
            return self._event(rule)
        if kind == "lead_score":
            assert rule.lead_score is not None
            stored = self.data.fields.get("lead_score")
            score = float(stored[1]) if stored and stored[1] is not None else 0.0
            bounds = dict(rule.lead_score.bounds())
            return Explanation(f"lead_score {bounds}", _holds(rule.lead_score, score), {"lead_score": score})
        if kind == "consent":
            assert rule.consent is not None
            return self._consent(rule.consent, label="consent")
        assert rule.in_segment is not None
        inner = self.segment(rule.in_segment)
        return Explanation(f"in_segment {rule.in_segment}", inner.result, {}, [inner])

    def _consent(self, channel: str, *, label: str) -> Explanation:
        records = sorted(
            (r for r in self.data.consents if r.channel == channel),
            key=lambda r: (r.recorded_at, r.status, r.id),  # as sync.consent.records.in_force_order
        )
        latest = records[-1] if records else None
        detail = {"channel": channel, "latest": latest.status if latest else None}
        if latest:
            detail["recorded_at"] = latest.recorded_at.isoformat()
        return Explanation(f"{label} {channel}", latest is not None and latest.status == "opted_in", detail)

    # --- fields -----------------------------------------------------------------------------------

    def _values(self, name: str) -> tuple[Column, list[Any]]:
        if name in self.data.times:
            moment = self.data.times[name]
            return Column.TIME, [] if moment is None else [moment]
        if name in ("email", "phone"):
            return Column.TEXT, list(self.data.identities.get(name, []))
        column, value = self.data.fields.get(name, (Column.TEXT, None))
        return column, [] if value is None else [value]

    def _field(self, rule: Rule) -> Explanation:
        assert rule.field is not None and rule.op is not None
        # A contact column or identity, whatever the field definitions say; else the store's type.
        name = rule.field
        field_type = BUILTIN_TYPES[name] if name in _BUILTIN_READS else self.data.field_types.get(name)
        rule = stored_form(rule, field_type, self.region)
        assert rule.field is not None and rule.op is not None
        column, found = self._values(rule.field)
        detail: dict[str, Any] = {"found": [_show(v) for v in found]}
        if rule.op in ("within_last", "more_than_ago"):
            detail["since"] = (self.now - parse_duration(str(rule.value))).isoformat()
        if rule.op == "anniversary":
            detail["month_days"] = anniversary_days(self.now, rule.within_days)
        missing = rule.op == "missing"
        result = not found if missing else any(self._test(rule, column, v) for v in found)
        shown = "" if rule.value is None else " " + json.dumps(_show(rule.value), ensure_ascii=False)
        label = f"{rule.field} {rule.op}{shown}"
        return Explanation(label, result, detail)

    def _test(self, rule: Rule, column: Column, v: Any) -> bool:
        op = rule.op
        if op == "exists":
            return True
        if op in ("eq", "ne", "in", "not_in"):
            raw = rule.value if isinstance(rule.value, list) else [rule.value]
            known = [k for k in (coerce(column, r) for r in raw) if k is not None]
            if op == "eq":
                return bool(known) and v == known[0]
            if op == "ne":
                return not known or v != known[0]
            return (v in known) if op == "in" else (v not in known)
        if column is Column.TEXT and op in ("contains", "starts_with", "ends_with"):
            needle = coerce(column, rule.value)
            if op == "contains":
                return bool(needle in v)
            return bool(v.startswith(needle) if op == "starts_with" else v.endswith(needle))
        if column in (Column.NUM, Column.TIME) and op in ("gt", "gte", "lt", "lte", "between"):
            return self._order(op, column, v, rule.value)
        if column is Column.TIME and op in ("before", "after", "within_last", "more_than_ago", "anniversary"):
            return self._time(rule, v)
        return False

    def _order(self, op: str | None, column: Column, v: Any, raw: Any) -> bool:
        if op == "between":
            low, high = (coerce(column, r) for r in raw)
            return low is not None and high is not None and bool(low <= v <= high)
        bound = coerce(column, raw)
        if bound is None:
            return False
        return bool({"gt": v > bound, "gte": v >= bound, "lt": v < bound, "lte": v <= bound}[str(op)])

    def _time(self, rule: Rule, v: datetime) -> bool:
        if rule.op == "anniversary":
            return v.month * 100 + v.day in anniversary_days(self.now, rule.within_days)
        if rule.op in ("before", "after"):
            moment = parse_time(rule.value)
            assert moment is not None
            return v < moment if rule.op == "before" else v > moment
        since = self.now - parse_duration(str(rule.value))
        return since <= v <= self.now if rule.op == "within_last" else v < since

    # --- events -------------------------------------------------------------------------------------

    def _event(self, rule: Rule) -> Explanation:
        since = self.now - parse_duration(rule.within) if rule.within else None

        def matches(e: EventRow) -> bool:
            if e.name != rule.event:
                return False
            if not all(_same_json(e.properties.get(k), w) for k, w in (rule.where or {}).items()):
                return False
            return since is None or since <= e.occurred_at <= self.now

        times = sorted(e.occurred_at for e in self.data.events if matches(e))
        detail: dict[str, Any] = {"count": len(times)}
        if since is not None:
            detail["window"] = [since.isoformat(), self.now.isoformat()]
        if times:
            detail["first"], detail["last"] = times[0].isoformat(), times[-1].isoformat()
        if rule.performed is False:
            result = not times
        else:
            result = rule.count.holds(len(times)) if rule.count else bool(times)
            for test, pick in ((rule.first, 0), (rule.last, -1)):
                if test is not None:
                    result = result and bool(times) and self._moment(test, times[pick])
        label = f"event {rule.event}" + (" not performed" if rule.performed is False else "")
        return Explanation(label, result, detail)

    def _moment(self, test: TimeTest, at: datetime) -> bool:
        raw = getattr(test, test.op)
        if test.op in ("before", "after"):
            moment = parse_time(raw)
            assert moment is not None
            return at < moment if test.op == "before" else at > moment
        since = self.now - parse_duration(raw)
        return since <= at <= self.now if test.op == "within_last" else at < since


_BUILTIN_READS = ("created_at", "last_activity_at", "email", "phone")


def _same_json(found: Any, wanted: str | bool | float) -> bool:
    """A property value equals a `where` value as JSON does: of the same JSON type (1 is not true)."""
    if isinstance(wanted, bool) or isinstance(found, bool):
        return found is wanted
    if isinstance(wanted, str):
        return isinstance(found, str) and found == wanted
    return isinstance(found, int | float) and found == wanted


def _show(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_show(v) for v in value]
    return value
