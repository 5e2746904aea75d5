"""Recompute segment membership set-based and write transitions and outbox rows in the caller's transaction.

Which contacts a segment re-evaluates:
- all of them when the segment is new, its rule version changed, or its rule depends on `now`;
- otherwise those whose `changed_at` is at or after the segment's `last_evaluated_at` (or an earlier
  `changed_since`, or the start of a sync still running: it stamps what it stores with its start),
  plus those whose membership of a segment it names with `in_segment` changed in this run, plus
  (for rules on `lead_score`) those whose score changed in this run;
- with `contact_ids`, only those contacts (new or changed rules still go in full), and
  `last_evaluated_at` is left alone so the next regular run still sees every change. Those
  segments are tested together in one pass over the contacts (`sync/segments/batch.py`) before
  any whole run.
Consent changes and merges must bump `contacts.changed_at`, as every data change does.

Time never runs backwards for a segment: a run is evaluated at `now` or, if later, at the segment's
last evaluation (its `last_evaluated_at`, or its latest transition, which a contacts-mode run
writes without moving `last_evaluated_at`); see `_not_before`.

A segment's statements are built once per (segment, rule version, catalog, dialect, strategy, scope)
and kept for the process (`_plan`); `now`, the run id and the reason are bound at execution, so a
server evaluating a few contacts per webhook neither builds nor compiles them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Executable,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.schema import CreateTable, DropTable
from sqlalchemy.sql.elements import ColumnElement

from sync.runs import STILL_STORING_MAX_AGE, earliest_storing_start
from sync.segments.batch import Target, evaluate_batch
from sync.segments.compiler import Catalog, Clock, RuleCompiler, clock_params, load_catalog
from sync.segments.config import (
    DEFAULT_REGION,
    SegmentConfig,
    dependencies,
    depends_on_time,
    evaluation_order,
    rule_version,
    walk,
)
from sync.segments.field_checks import held_segments, type_problems, unknown_fields
from sync.segments.scoring import SCORE_FIELD, ScoringConfig, compute_scores, score_tables
from sync.segments.split import variant_sql
from sync.store.tables import contacts, memberships, outbox, segments, transitions
from sync.store.types import Id

__all__ = [
    "SCORING_HELD",
    "EvaluationReport",
    "SegmentResult",
    "analyze_scratch",
    "correlated_strategy",
    "evaluate_segments",
]

_EXAMPLES = 5
# The `held` entry of lead scoring (no segment key has brackets).
SCORING_HELD = "[scoring]"
# Plans kept per process; more means configurations came and went, so start afresh.
_MAX_PLANS = 1000


@dataclass(frozen=True)
class SegmentResult:
    """What one segment's evaluation changed."""

    key: str
    segment_id: int
    mode: str  # full | incremental | contacts
    entered: int
    left: int
    entered_examples: list[int] = field(default_factory=list)
    left_examples: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class EvaluationReport:
    """The outcome of one evaluation run."""

    now: datetime
    run_id: int | None
    segments: list[SegmentResult]
    scores_changed: int | None = None
    # Segments not evaluated, their members kept as they were: a condition names a field that no
    # mapping rule declares and no source has sent (a typo would otherwise empty the segment).
    held: dict[str, list[str]] = field(default_factory=dict)
    # Of those, the ones never evaluated before: they wait for a field, no members were at stake.
    waiting: frozenset[str] = frozenset()

    @property
    def transitions(self) -> int:
        """How many transitions were written."""
        return sum(s.entered + s.left for s in self.segments)


@dataclass(frozen=True)
class _Row:
    id: int
    version_changed: bool
    is_new: bool
    last_evaluated_at: datetime | None
    version: str


class _Scratch:
    """The temporary tables of a run.

    They are created if missing and kept on the connection after a run over a few contacts (DDL on
    every webhook cost more than the evaluation's SQL); every user empties a table before filling
    it. A run that may have filled them with many rows drops them at the end; a rollback drops them
    too. One instance serves every run: SQLAlchemy's statement cache keys a Table by identity, so
    tables made afresh for each run would make every statement on them compile again.
    """

    def __init__(self) -> None:
        self.meta = MetaData()
        # `Id` is INTEGER on SQLite, so the key is the rowid: one b-tree per table, not two.
        self.scope = Table(
            "_seg_scope",
            self.meta,
            Column("contact_id", Id, primary_key=True, autoincrement=False),
            prefixes=["TEMPORARY"],
        )
        self.new = Table(
            "_seg_new",
            self.meta,
            Column("contact_id", Id, primary_key=True, autoincrement=False),
            prefixes=["TEMPORARY"],
        )
        self.scores = score_tables(self.meta)
        self.clear_scope = self.scope.delete()
        self.fill_scope = insert(self.scope)
        self.clear_new = self.new.delete()

    def create(self, conn: Connection, *, scored: bool) -> None:
        """Create the tables this run uses, unless the connection still has them from an earlier run."""
        tables = [self.scope, self.new, *((self.scores.new, self.scores.changed) if scored else ())]
        for table in tables:
            conn.exec_driver_sql(_ddl(conn.dialect, table, create=True))

    def drop(self, conn: Connection) -> None:
        """Drop every scratch table, freeing what a large run wrote into them."""
        for table in self.meta.sorted_tables:
            conn.exec_driver_sql(_ddl(conn.dialect, table, create=False))


_SCRATCH = _Scratch()


_DDL: dict[tuple[str, str, bool], str] = {}


def _ddl(dialect: Dialect, table: Table, *, create: bool) -> str:
    """CREATE ... IF NOT EXISTS or DROP ... IF EXISTS for a scratch table, compiled once per dialect."""
    key = (dialect.name, table.name, create)
    if key not in _DDL:
        ddl = CreateTable(table, if_not_exists=True) if create else DropTable(table, if_exists=True)
        _DDL[key] = str(ddl.compile(dialect=dialect))
    return _DDL[key]


def _stored_rows(conn: Connection) -> dict[str, Any]:
    """Every stored segment row by key, with `latest`: the time of its latest transition (or None)."""
    t = transitions.c
    # ORDER BY ... LIMIT 1 rather than MAX: a seek in the (segment_id, occurred_at) index on both backends.
    latest = (
        select(t.occurred_at)
        .where(t.segment_id == segments.c.id)
        .order_by(t.occurred_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("latest")
    )
    return {r.key: r for r in conn.execute(select(segments, latest)).mappings()}


def _not_before(now: datetime, stored: Iterable[Any]) -> datetime:
    """`now`, or the latest evaluation of one of the `stored` segment rows if that is later.

    Evaluating at an earlier `now` than a segment's last evaluation would undo what that one saw: a
    sync that read its clock before a webhook was evaluated would remove a contact the webhook had
    just put in a time-window segment (a `left` stamped before the `entered` it cancels), and the
    next run would put it back. A contacts-mode run leaves `last_evaluated_at` alone, so its latest
    transition counts too. One moment for the whole run keeps `in_segment` dependencies consistent.
    """
    moments: list[datetime] = [now]
    moments += (m for row in stored for m in (row["last_evaluated_at"], row["latest"]) if m is not None)
    return max(moments)


def _still_storing(conn: Connection, now: datetime) -> datetime | None:
    """The earliest start of a sync still running (this run's own included) in the last day, or None.

    Contacts it stores after an evaluation that began later have `changed_at` below that segment's
    `last_evaluated_at`: an incremental cutoff of `last_evaluated_at` alone would skip them until
    they change again (sync/hubspot_push.py `_next_cursor` keeps its cursor below them the same way).
    """
    return earliest_storing_start(conn, now=now, since=now - STILL_STORING_MAX_AGE)


def _upsert_rows(
    conn: Connection, configured: Mapping[str, SegmentConfig], existing: Mapping[str, Any], now: datetime
) -> dict[str, _Row]:
    rows: dict[str, _Row] = {}
    for key, segment in configured.items():
        version = rule_version(segment)
        values: dict[str, Any] = {
            "name": segment.name,
            "rule": segment.model_dump(mode="json", by_alias=True, exclude_none=True),
            "rule_version": version,
            "depends_on_time": depends_on_time(segment),
            "updated_at": now,
        }
        old = existing.get(key)
        if old is None:
            new_id = conn.execute(
                insert(segments).values(key=key, created_at=now, **values).returning(segments.c.id)
            ).scalar_one()
            rows[key] = _Row(new_id, True, True, None, version)
            continue
        changed = old["rule_version"] != version
        if changed or old["name"] != segment.name or old["depends_on_time"] != values["depends_on_time"]:
            conn.execute(update(segments).where(segments.c.id == old["id"]).values(**values))
        rows[key] = _Row(old["id"], changed, False, old["last_evaluated_at"], version)
    return rows


def _uses_score(segment: SegmentConfig) -> bool:
    roots = [segment.rule]
    return any(n.lead_score is not None or n.field == "lead_score" for r in roots for _, n in walk(r, ""))


def evaluate_segments(
    conn: Connection,
    configured: Mapping[str, SegmentConfig],
    *,
    now: datetime,
    scoring: ScoringConfig | None = None,
    run_id: int | None = None,
    changed_since: datetime | None = None,
    contact_ids: Iterable[int] | None = None,
    full: bool = False,
    declared: Iterable[str] | None = None,
    region: str = DEFAULT_REGION,
) -> EvaluationReport:
    """Score, then evaluate every configured segment in dependency order; the caller commits or rolls back.

    `full=True` re-evaluates every segment for every contact (a repair or a benchmark). With
    `declared` (the fields mapping rules write), a segment naming a field that is neither declared
    nor in the store is not evaluated and is reported in `held`, its row and members left as they
    were; without it, such a field is one nobody holds a value of.
    """
    if now.tzinfo is None:
        raise ValueError("evaluate_segments needs an aware UTC `now`")
    scratch = _SCRATCH
    scored = scoring is not None and bool(scoring.events or scoring.conditions)
    scratch.create(conn, scored=scored)
    ids = sorted(set(contact_ids)) if contact_ids is not None else None
    catalog = load_catalog(conn)
    held = {} if declared is None else _held(configured, catalog, set(declared), region)
    order = [key for key in evaluation_order(dict(configured)) if key not in held]
    stored = _stored_rows(conn)
    now = _not_before(now, (stored[key] for key in order if key in stored))
    rows = _upsert_rows(conn, {key: configured[key] for key in order}, stored, now)
    if any(row.is_new for row in rows.values()):
        catalog = load_catalog(conn)  # the new segments' ids, for `in_segment` conditions
    scores_changed = None
    if ids is not None:
        # In contacts mode the scope is these contacts for scoring and for every segment.
        _fill(conn, scratch, ids)
    if scored and declared is not None:
        assert scoring is not None
        held_scoring = _held_scoring(scoring, catalog, set(declared), region)
        if held_scoring:
            # Scores stay as they were, as a held segment's members do: a typo must not rescore everyone.
            held[SCORING_HELD] = held_scoring
            scored = False
    # A whole-store run's incremental cut (segments and scores) reaches back to a sync still storing.
    storing = _still_storing(conn, now) if ids is None else None
    if scoring is not None and scored:
        scope = scratch.scope if ids is not None else None
        scores_changed = compute_scores(
            conn, scoring, scratch.scores, catalog, now=now, scope=scope, region=region, storing=storing
        )
        if SCORE_FIELD not in catalog.fields:
            # Scoring has just declared the field that `lead_score` conditions read.
            catalog = load_catalog(conn)
    # Every transition of this run has a higher id; each segment is evaluated once per run.
    run_mark = _last_transition_id(conn)
    fingerprint = catalog.fingerprint()
    dialect = conn.dialect.name
    large = ids is None
    wholes = {
        key
        for key in order
        if full or _renewed(rows[key]) or (ids is None and depends_on_time(configured[key]))
    }
    if ids is not None:
        # For given contacts, a dependency run whole changes members beyond them: its dependents
        # go whole too (a regular run finds those through the run's transitions instead).
        for key in order:  # dependencies come first
            if dependencies(configured[key]) & wholes:
                wholes.add(key)
    batched: dict[str, tuple[list[int], list[int]]] = {}
    if ids is not None:
        # Contacts mode: every other segment in one pass over the contacts, before any whole run,
        # which may read the memberships it writes.
        targets = [Target(k, configured[k], rows[k].id, rows[k].version) for k in order if k not in wholes]
        versions = tuple((k, rows[k].version) for k in configured if k in rows)
        batched = evaluate_batch(
            conn,
            scratch.scope,
            targets,
            # A held segment is read from its memberships, not inlined: its rule cannot be evaluated.
            {key: segment for key, segment in configured.items() if key not in held},
            catalog,
            now=now,
            run_id=run_id,
            mark=run_mark,
            versions=versions,
            region=region,
        )
    results = []
    for key in order:
        segment, row = configured[key], rows[key]
        if key in batched:
            entered, left = batched[key]
            results.append(
                SegmentResult(
                    key, row.id, "contacts", len(entered), len(left), entered[:_EXAMPLES], left[:_EXAMPLES]
                )
            )
            continue
        whole = key in wholes
        # Contacts mode sent every segment but the whole ones through the pass above.
        mode = "full" if whole else "incremental"
        large = large or whole
        if mode == "incremental":
            assert row.last_evaluated_at is not None
            cutoff = min(m for m in (row.last_evaluated_at, changed_since, storing) if m is not None)
            _fill_incremental(
                conn, scratch, segment, catalog.segment_ids, cutoff, run_mark, scores_changed is not None
            )
        plan_key = (
            key,
            row.version,
            row.id,
            dialect,
            correlated_strategy(dialect, whole),
            not whole,
            fingerprint,
            region,
        )
        plan = _PLANS.get(plan_key)
        if plan is None:
            plan = _PLANS[plan_key] = _plan(scratch, key, segment, row, catalog, now, dialect, whole, region)
        result = _apply(conn, scratch, plan, row, now=now, run_id=run_id, mark=run_mark)
        results.append(SegmentResult(key, row.id, mode, *result))
        # Never backwards, even against an evaluation that committed after this one read the row.
        last = segments.c.last_evaluated_at
        conn.execute(
            update(segments)
            .where(segments.c.id == row.id, or_(last.is_(None), last <= now))
            .values(last_evaluated_at=now)
        )
    if large:
        scratch.drop(conn)
    return EvaluationReport(
        now=now,
        run_id=run_id,
        segments=results,
        scores_changed=scores_changed,
        held=held,
        waiting=_never_evaluated(conn, held, catalog),
    )


def _held(
    configured: Mapping[str, SegmentConfig], catalog: Catalog, declared: set[str], region: str
) -> dict[str, list[str]]:
    """Segments not to evaluate: a field nobody declared or sent, or a test its field's type cannot meet."""
    return held_segments(configured, set(catalog.fields) | declared, catalog.types(), region)


def _held_scoring(scoring: ScoringConfig, catalog: Catalog, declared: set[str], region: str) -> list[str]:
    """Why lead scores must not be recomputed this run: a condition on an unknown or unusable field."""
    nodes = scoring.nodes()
    problems = type_problems(nodes, catalog.types(), region)
    found = unknown_fields(nodes, set(catalog.fields) | declared) + problems
    return [f"{path}: {message}" for path, message in found]


def _never_evaluated(conn: Connection, held: Mapping[str, list[str]], catalog: Catalog) -> frozenset[str]:
    """The held segments (and scoring) that never had an evaluation, so hold no members or scores."""
    if not held:
        return frozenset()
    done = set(
        conn.execute(
            select(segments.c.key).where(
                segments.c.key.in_(sorted(held)), segments.c.last_evaluated_at.is_not(None)
            )
        ).scalars()
    )
    if SCORE_FIELD in catalog.fields:
        done.add(SCORING_HELD)
    return frozenset(key for key in held if key not in done)


def _renewed(row: _Row) -> bool:
    """The segment is new, its rule changed, or it was never evaluated: it needs a whole run."""
    return row.is_new or row.version_changed or row.last_evaluated_at is None


def analyze_scratch(conn: Connection, table: Table) -> None:
    """Give PostgreSQL statistics for a just-filled temporary table (autovacuum never analyzes them).

    Without them it planned the membership diff as nested loops: 0.3 s per segment at 30,000 contacts.
    The table name is one of our own constants, never user data.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'ANALYZE "{table.name}"')


def correlated_strategy(dialect: str, whole: bool) -> bool:
    """Which SQL strategy to use: correlated for a few contacts, and on SQLite always.

    SQLite walks contacts in id order and seeks the (contact_id, ...) indexes of events and
    consent, which stays cache-friendly; at 1M contacts that beat IN (subquery) by 1.3-6x per
    condition (BENCHMARKS.md). Windowed event conditions are the exception: a whole run scans
    them (`RuleCompiler(scan=...)`). PostgreSQL turns IN (subquery) into hash joins over whole tables.
    """
    return dialect == "sqlite" or not whole


def _last_transition_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(transitions.c.id), 0))).scalar_one())


def _fill(conn: Connection, scratch: _Scratch, ids: list[int]) -> None:
    conn.execute(scratch.clear_scope)
    if ids:
        conn.execute(scratch.fill_scope, [{"contact_id": i} for i in ids])


def _add(conn: Connection, scope: Table, source: Any) -> None:
    """Add the contact ids `source` selects to `scope`, skipping those already there."""
    # NOT EXISTS, not NOT IN: PostgreSQL plans only the former as an anti-join.
    held = exists().where(scope.c.contact_id == source.c.contact_id)
    fresh = select(source.c.contact_id).distinct().where(not_(held))
    conn.execute(insert(scope).from_select(["contact_id"], fresh))


def _fill_incremental(
    conn: Connection,
    scratch: _Scratch,
    segment: SegmentConfig,
    segment_ids: Mapping[str, int],
    cutoff: datetime,
    run_mark: int,
    scored: bool,
) -> None:
    conn.execute(scratch.scope.delete())
    changed = select(contacts.c.id).where(contacts.c.changed_at >= cutoff)
    conn.execute(insert(scratch.scope).from_select(["contact_id"], changed))
    # By the catalogue, not this run's rows: a segment held back this run keeps its id and members.
    deps = [segment_ids[d] for d in dependencies(segment) if d in segment_ids]
    if deps:
        moved = select(transitions.c.contact_id).where(
            transitions.c.segment_id.in_(deps), transitions.c.id > run_mark
        )
        _add(conn, scratch.scope, moved.subquery())
    if scored and _uses_score(segment):
        _add(conn, scratch.scope, scratch.scores.changed)


@dataclass(frozen=True)
class _Plan:
    """One segment's statements, and the `now`-derived parameters its rule takes."""

    fill: Executable
    moves: Executable
    clock: Clock


_PLANS: dict[tuple[Any, ...], _Plan] = {}


def _plan(
    scratch: _Scratch,
    key: str,
    segment: SegmentConfig,
    row: _Row,
    catalog: Catalog,
    now: datetime,
    dialect: str,
    whole: bool,
    region: str,
) -> _Plan:
    """Build the statements that compute a segment's new member set and its transitions."""
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    correlated = correlated_strategy(dialect, whole)
    compiler = RuleCompiler(
        catalog, now=now, dialect=dialect, correlated=correlated, scan=whole, region=region
    )
    admitted = [compiler.qualifies(segment)]
    if not whole:
        admitted.append(contacts.c.id.in_(select(scratch.scope.c.contact_id)))
    members = select(contacts.c.id).select_from(compiler.source()).where(*admitted)
    fill = insert(scratch.new).from_select(["contact_id"], members)

    at = bindparam("seg_now", type_=transitions.c.occurred_at.type)
    run = bindparam("seg_run", type_=BigInteger)
    seq = (
        select(contacts.c.transition_seq + 1)
        .where(contacts.c.id == scratch.new.c.contact_id)
        .scalar_subquery()
    )
    entering = select(
        literal(row.id, BigInteger),
        scratch.new.c.contact_id,
        literal("entered"),
        at,
        bindparam("seg_reason", type_=String),
        literal(row.version),
        variant_sql(segment, key, scratch.new.c.contact_id),
        seq,
        run,
    ).where(
        not_(
            exists().where(
                memberships.c.segment_id == row.id, memberships.c.contact_id == scratch.new.c.contact_id
            )
        )
    )

    m = memberships.alias("m_old")
    why = case(
        (contacts.c.state == "merged", literal("merged")),
        *(
            [(not_(compiler.consented(segment.requires_consent)), literal("unsubscribed"))]
            if segment.requires_consent
            else []
        ),
        else_=literal("rule"),
    )
    leave_where: list[ColumnElement[bool]] = [
        m.c.segment_id == row.id,
        not_(exists().where(scratch.new.c.contact_id == m.c.contact_id)),
    ]
    if not whole:
        leave_where.append(m.c.contact_id.in_(select(scratch.scope.c.contact_id)))
    leaving = (
        select(
            literal(row.id, BigInteger),
            m.c.contact_id,
            literal("left"),
            at,
            why,
            literal(row.version),
            m.c.variant,
            contacts.c.transition_seq + 1,
            run,
        )
        .select_from(m.join(contacts, contacts.c.id == m.c.contact_id))
        .where(*leave_where)
    )
    # Entering and leaving rows in one statement: a run over a few contacts pays per statement.
    moves = insert(transitions).from_select(_TRANSITION_COLUMNS, union_all(entering, leaving))
    return _Plan(fill, moves, compiler.clock)


_TRANSITION_COLUMNS = [
    "segment_id",
    "contact_id",
    "kind",
    "occurred_at",
    "reason",
    "rule_version",
    "variant",
    "contact_seq",
    "run_id",
]


def _apply(
    conn: Connection,
    scratch: _Scratch,
    plan: _Plan,
    row: _Row,
    *,
    now: datetime,
    run_id: int | None,
    mark: int,
) -> tuple[int, int, list[int], list[int]]:
    """Compute the new member set and write the difference; returns counts and examples."""
    conn.execute(scratch.clear_new)
    conn.execute(plan.fill, clock_params(plan.clock, now))
    analyze_scratch(conn, scratch.new)
    params = {"seg_now": now, "seg_run": run_id, "seg_reason": "backfill" if row.is_new else "rule"}
    if conn.execute(plan.moves, params).rowcount == 0:
        # Nothing moved (most segments of an incremental run): skip the bookkeeping statements.
        return 0, 0, [], []
    return _record(conn, row.id, mark, now)


@dataclass(frozen=True)
class _Recording:
    """The statements that apply one segment's new transitions, for any segment."""

    enter: Executable
    leave: Executable
    outbox: Executable
    sequence: Executable
    examples: dict[str, Executable]
    counts: Executable


@cache
def _recording() -> _Recording:
    t = transitions.c
    at = bindparam("seg_now", type_=t.occurred_at.type)
    segment_id = bindparam("seg_id", type_=BigInteger)
    mine = and_(
        t.segment_id == segment_id, t.occurred_at == at, t.id > bindparam("seg_mark", type_=BigInteger)
    )
    return _Recording(
        enter=insert(memberships).from_select(
            ["segment_id", "contact_id", "entered_at", "variant"],
            select(t.segment_id, t.contact_id, t.occurred_at, t.variant).where(mine, t.kind == "entered"),
        ),
        leave=delete(memberships).where(
            memberships.c.segment_id == segment_id,
            memberships.c.contact_id.in_(select(t.contact_id).where(mine, t.kind == "left")),
        ),
        outbox=insert(outbox).from_select(
            ["transition_id", "created_at"],
            select(t.id, bindparam("seg_now", type_=outbox.c.created_at.type)).where(mine),
        ),
        sequence=update(contacts)
        .where(contacts.c.id.in_(select(t.contact_id).where(mine)))
        .values(transition_seq=contacts.c.transition_seq + 1),
        examples={
            kind: select(t.contact_id).where(mine, t.kind == kind).order_by(t.id).limit(_EXAMPLES)
            for kind in ("entered", "left")
        },
        counts=select(t.kind, func.count()).where(mine).group_by(t.kind),
    )


def _record(
    conn: Connection, segment_id: int, mark: int, now: datetime
) -> tuple[int, int, list[int], list[int]]:
    """Apply this step's transitions to memberships, contacts' sequence numbers and the outbox."""
    r = _recording()
    params = {"seg_id": segment_id, "seg_now": now, "seg_mark": mark}
    conn.execute(r.enter, params)
    conn.execute(r.leave, params)
    conn.execute(r.outbox, params)
    conn.execute(r.sequence, params)
    examples = {kind: list(conn.execute(query, params).scalars()) for kind, query in r.examples.items()}
    # Counted rather than taken from rowcount, which psycopg reports as -1 for INSERT ... SELECT here.
    counts = dict(conn.execute(r.counts, params).tuples().all())
    return counts.get("entered", 0), counts.get("left", 0), examples["entered"], examples["left"]
