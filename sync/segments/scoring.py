"""`[scoring]`: lead-score point rules, computed set-based into the system field `lead_score`.

Score = sum over `[[scoring.events]]` of min(max_points, points x occurrences in the window, each
occurrence weighted by its decay; for negative points max(-max_points, ...), a floor) + sum over
`[[scoring.conditions]]` of points when the condition holds. Decay halves an occurrence's weight per
elapsed half-life, in whole steps (weight 1 within one half-life, 1/2 within two, ... 1/1024 within
eleven, then 0), which keeps the SQL portable (SQLite has no pow/exp by default). Every non-merged
contact gets a row, 0 included.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Column as SqlColumn
from sqlalchemy import (
    Connection,
    Executable,
    Float,
    MetaData,
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from field_mapping.types import FieldType
from sync.fields import StoredField, create_field
from sync.segments.compiler import Catalog, Clock, RuleCompiler, clock_params, property_equals
from sync.segments.config import DEFAULT_REGION, Duration, PropertyName, PropertyValue, Rule, relative, walk
from sync.segments.field_checks import unknown_fields
from sync.segments.values import parse_duration
from sync.store.field_columns import fields_table
from sync.store.tables import contacts, events, field_definitions
from sync.store.types import Id

__all__ = ["SCORE_FIELD", "ConditionPoints", "EventPoints", "ScoringConfig", "compute_scores", "decay_weight"]

SCORE_FIELD = "lead_score"
_DECAY_STEPS = 10


class EventPoints(BaseModel):
    """`[[scoring.events]]`: points per occurrence of an event, optionally capped and windowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = Field(min_length=1, max_length=200)
    where: dict[PropertyName, PropertyValue] | None = None  # matched by JSON type, as in segments
    points: float
    max_points: float | None = Field(default=None, gt=0)
    within: Duration | None = None


class ConditionPoints(BaseModel):
    """`[[scoring.conditions]]`: points while a condition (the segment rule syntax) holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Rule
    points: float

    @field_validator("when")
    @classmethod
    def _no_score_or_segment(cls, rule: Rule) -> Rule:
        for _, node in walk(rule, "when"):
            if node.lead_score is not None or node.in_segment is not None or node.field == SCORE_FIELD:
                # Scores are computed before segments and from nothing that depends on the score.
                raise ValueError("expected no lead_score or in_segment inside a scoring condition, found one")
        return rule


class ScoringConfig(BaseModel):
    """`[scoring]`: the point rules and an optional decay half-life."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_life: Duration | None = None
    events: list[EventPoints] = Field(default_factory=list)
    conditions: list[ConditionPoints] = Field(default_factory=list)

    def version(self) -> str:
        """A stable hash of the rules; a new version rescores every contact."""
        body = json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def nodes(self) -> list[tuple[str, Rule]]:
        """Every rule node of the conditions, with its TOML path (`scoring.conditions[i].when...`)."""
        return [
            n for i, c in enumerate(self.conditions) for n in walk(c.when, f"scoring.conditions[{i}].when")
        ]

    def check_fields(self, known_fields: set[str]) -> list[tuple[str, str]]:
        """(TOML path, message) for every scoring condition naming a field no mapping rule declares."""
        return unknown_fields(self.nodes(), known_fields)

    def depends_on_time(self) -> bool:
        """Whether scores change with `now` alone (windows, decay, relative conditions)."""
        relative_condition = any(relative(n) for c in self.conditions for _, n in walk(c.when, "when"))
        return bool(self.half_life) or any(e.within for e in self.events) or relative_condition


def decay_weight(half_life: str | None, occurred_at: datetime, now: datetime) -> float:
    """The weight of one occurrence: 1, then halved per whole elapsed half-life, 0 after eleven."""
    if half_life is None:
        return 1.0
    step = parse_duration(half_life)
    for k in range(_DECAY_STEPS + 1):
        if occurred_at >= now - step * (k + 1):
            return 0.5**k
    return 0.0


def _weight(half_life: str | None, at: ColumnElement[Any], clock: RuleCompiler) -> ColumnElement[Any]:
    if half_life is None:
        return literal(1.0, Float)
    step = parse_duration(half_life)
    whens = [
        (at >= clock.ago(step * (k + 1), at.type), literal(0.5**k, Float)) for k in range(_DECAY_STEPS + 1)
    ]
    return case(*whens, else_=literal(0.0, Float))


@dataclass(frozen=True)
class ScoreTables:
    """Scratch tables of one evaluation: the new scores, and the contacts whose score changed."""

    new: Table
    changed: Table


def score_tables(meta: MetaData) -> ScoreTables:
    """Declare the temporary tables scoring writes into."""
    new = Table(
        "_score_new",
        meta,
        SqlColumn("contact_id", Id, primary_key=True, autoincrement=False),
        SqlColumn("score", Float, nullable=False),
        prefixes=["TEMPORARY"],
    )
    changed = Table(
        "_score_changed",
        meta,
        SqlColumn("contact_id", Id, primary_key=True, autoincrement=False),
        prefixes=["TEMPORARY"],
    )
    return ScoreTables(new, changed)


def _score_field(
    conn: Connection, scoring: ScoringConfig, now: datetime
) -> tuple[StoredField, datetime | None, bool]:
    """The lead_score field, when it was last scored, and whether the rules changed since."""
    fd = field_definitions.c
    row = conn.execute(
        select(fd.id, fd.type, fd.options, fd.updated_at).where(fd.name == SCORE_FIELD)
    ).first()
    if row is None:
        field = create_field(
            conn,
            SCORE_FIELD,
            FieldType.DECIMAL,
            now=now,
            label="Lead score",
            origin="system",
            source="crmhub",
        )
        return field, None, True
    ftype = FieldType(row.type)
    stored = (row.options or {}).get("scoring_version") if isinstance(row.options, dict) else None
    return StoredField.of(row.id, ftype), row.updated_at, stored != scoring.version()


@dataclass(frozen=True)
class _Plan:
    """The statements of one scoring configuration and mode, and the `now`-derived parameters they take."""

    fill: Executable
    changed: Executable
    update: Executable
    fresh: Executable
    count: Executable
    clock: Clock


# Kept per process, as segments' statements are (see evaluate.py); cleared when it grows this large.
_PLANS: dict[tuple[Any, ...], _Plan] = {}
_MAX_PLANS = 100


def compute_scores(
    conn: Connection,
    scoring: ScoringConfig,
    tables: ScoreTables,
    catalog: Catalog,
    *,
    now: datetime,
    scope: Table | None,
    region: str = DEFAULT_REGION,
    storing: datetime | None = None,
) -> int:
    """Rescore (all contacts, or those in `scope`), write changed scores; return how many changed.

    An incremental rescore takes the contacts changed since the last scoring, or since `storing` (the
    start of a sync still storing, which stamps its contacts with it) if that is earlier.

    `tables.changed` is left holding the contacts whose score changed, for the segments that follow.
    """
    field, last_scored, rules_changed = _score_field(conn, scoring, now)
    full = scope is None and (rules_changed or last_scored is None or scoring.depends_on_time())
    dialect = conn.dialect.name
    key = (scoring.version(), field.column, dialect, full, tables, scope, catalog.fingerprint(), region)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[key] = _plan(
            scoring, tables, catalog, field.column, now, dialect, full=full, scope=scope, region=region
        )
    conn.execute(tables.new.delete())
    conn.execute(tables.changed.delete())
    since = last_scored if storing is None or last_scored is None else min(last_scored, storing)
    conn.execute(plan.fill, clock_params(plan.clock, now) | {"score_since": since})
    conn.execute(plan.changed)
    conn.execute(plan.update)
    conn.execute(plan.fresh)
    if scope is None:
        conn.execute(
            update(field_definitions)
            .where(field_definitions.c.id == field.id)
            .values(updated_at=now, options={"scoring_version": scoring.version()})
        )
    return int(conn.execute(plan.count).scalar_one())


def _plan(
    scoring: ScoringConfig,
    tables: ScoreTables,
    catalog: Catalog,
    held: str,
    now: datetime,
    dialect: str,
    *,
    full: bool,
    scope: Table | None,
    region: str,
) -> _Plan:
    """Build the scoring statements; `now` and the time of the last scoring are bound at execution."""
    where: list[ColumnElement[bool]] = [contacts.c.state != "merged"]
    if scope is not None:
        where.append(contacts.c.id.in_(select(scope.c.contact_id)))
    elif not full:
        where.append(contacts.c.changed_at >= bindparam("score_since", type_=contacts.c.changed_at.type))
    # Same choices as for segments (see evaluate.correlated_strategy, not imported to avoid a cycle).
    correlated = dialect == "sqlite" or not full
    compiler = RuleCompiler(
        catalog, now=now, dialect=dialect, correlated=correlated, scan=full, region=region
    )
    total: ColumnElement[Any] = literal(0.0, Float)
    source: Any = contacts
    # Correlated on SQLite in full runs too: summing each windowed rule in a grouped pass over the
    # (name, occurred_at, contact_id) index and joining the sums cost 1.35-1.85 s against 1.45-1.6 s
    # at 1M contacts (two rules of 30 and 90 days); as one pass with OR, SQLite read every event row.
    if scoring.events and correlated:
        for rule in scoring.events:
            total = total + _event_points(rule, scoring.half_life, compiler)
    elif scoring.events:
        agg = _event_sums(scoring, compiler, None if full else where)
        source = contacts.outerjoin(agg, agg.c.contact_id == contacts.c.id)
        for i, rule in enumerate(scoring.events):
            points: ColumnElement[Any] = func.coalesce(agg.c[f"r{i}"], literal(0.0, Float))
            total = total + _capped(points, rule, dialect)
    for cond in scoring.conditions:
        total = total + case((compiler.compile(cond.when), literal(cond.points, Float)), else_=0.0)
    scored = select(contacts.c.id, total).select_from(compiler.source(source)).where(*where)
    cf = fields_table([held]).alias("cf_score")
    changed: Select[Any]
    if correlated:
        # A lookup per scored contact: as a join, SQLite first scanned every stored row to build a
        # Bloom filter (60 ms at 200,000 contacts for 1,000 scored ones).
        same = exists().where(cf.c.contact_id == tables.new.c.contact_id, cf.c[held] == tables.new.c.score)
        changed = select(tables.new.c.contact_id).where(not_(same))
    else:
        # A join, not a correlated subquery: PostgreSQL planned the latter as a scan per row.
        joined = tables.new.outerjoin(cf, cf.c.contact_id == tables.new.c.contact_id)
        differs = or_(cf.c[held].is_(None), cf.c[held] != tables.new.c.score)
        changed = select(tables.new.c.contact_id).select_from(joined).where(differs)
    target = fields_table([held])
    new_score = select(tables.new.c.score).where(tables.new.c.contact_id == target.c.contact_id)
    rescore = (
        update(target)
        .where(target.c.contact_id.in_(select(tables.changed.c.contact_id)))
        .values({held: new_score.scalar_subquery()})
    )
    # NOT EXISTS on both: NOT IN (every contact with a row) made SQLite list every row whatever the
    # scope, and PostgreSQL, which cannot plan NOT IN as an anti-join, scanned the list for each
    # scored contact once it outgrew work_mem (more than 5 minutes at 1M contacts).
    rowless = not_(exists().where(cf.c.contact_id == tables.new.c.contact_id))
    # Scores are system-written: they carry no provenance (field_sources).
    fresh = select(tables.new.c.contact_id, tables.new.c.score).where(
        tables.new.c.contact_id.in_(select(tables.changed.c.contact_id)),
        rowless,
    )
    return _Plan(
        fill=insert(tables.new).from_select(["contact_id", "score"], scored),
        changed=insert(tables.changed).from_select(["contact_id"], changed),
        update=rescore,
        fresh=insert(target).from_select(["contact_id", held], fresh),
        count=select(func.count()).select_from(tables.changed),
        clock=compiler.clock,
    )


def _event_sums(scoring: ScoringConfig, clock: RuleCompiler, only: list[ColumnElement[bool]] | None) -> Any:
    """One pass over the events the rules count: per contact, column r<i> holds rule i's uncapped points."""
    ev = events.alias("ev_score")
    tests, sums = [], []
    for i, rule in enumerate(scoring.events):
        where = [ev.c.name == rule.event]
        for key, wanted in (rule.where or {}).items():
            where.append(property_equals(ev, key, wanted, clock.dialect))
        where += _window(ev, rule, clock)
        test = and_(*where)
        tests.append(test)
        weighted = _weight(scoring.half_life, ev.c.occurred_at, clock) * rule.points
        sums.append(func.sum(case((test, weighted), else_=literal(0.0, Float))).label(f"r{i}"))
    query = select(ev.c.contact_id, *sums).where(or_(*tests)).group_by(ev.c.contact_id)
    if only is not None:
        query = query.where(ev.c.contact_id.in_(select(contacts.c.id).where(*only)))
    return query.subquery("score_events")


def _window(ev: Any, rule: EventPoints, clock: RuleCompiler) -> list[ColumnElement[bool]]:
    """The rule's window over the events alias `ev`, with its bounds as `now`-derived parameters."""
    if rule.within is None:
        return []
    at = ev.c.occurred_at
    return [at >= clock.ago(parse_duration(rule.within), at.type), at <= clock.ago(timedelta(0), at.type)]


def _capped(points: ColumnElement[Any], rule: EventPoints, dialect: str) -> ColumnElement[Any]:
    """A rule's points held within `max_points` of zero: a cap for gains, a floor for penalties."""
    if rule.max_points is None:
        return points
    postgresql = dialect == "postgresql"
    # The two-argument min() and max() are SQLite's least() and greatest().
    if rule.points >= 0:
        return (func.least if postgresql else func.min)(points, literal(rule.max_points, Float))
    return (func.greatest if postgresql else func.max)(points, literal(-rule.max_points, Float))


def _event_points(rule: EventPoints, half_life: str | None, clock: RuleCompiler) -> ColumnElement[Any]:
    """One rule's capped points for the contact of the outer query, as a correlated subquery."""
    ev = events.alias("ev_score")
    where = [ev.c.contact_id == contacts.c.id, ev.c.name == rule.event]
    for key, wanted in (rule.where or {}).items():
        where.append(property_equals(ev, key, wanted, clock.dialect))
    where += _window(ev, rule, clock)
    points: ColumnElement[Any] = func.coalesce(
        func.sum(_weight(half_life, ev.c.occurred_at, clock) * rule.points), literal(0.0, Float)
    )
    # Capped inside the subquery so it runs once.
    summed = select(_capped(points, rule, clock.dialect)).where(and_(*where)).scalar_subquery()
    return func.coalesce(summed, literal(0.0, Float))
