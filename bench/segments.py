"""Segment evaluation at scale: 20 segments of mixed kinds plus lead scoring over generated data.

    PYTHONPATH=. .venv/bin/python bench/segments.py [--contacts 1000000] [--events 10000000]
        [--database-url postgresql://...] [--keep PATH [--skip-generate]] [--top N]

`--top N` prints each measured step's N slowest statements with their time in the database.

Data is generated set-based in the database (a recursive CTE on SQLite, generate_series on
PostgreSQL): contacts with five typed fields, SMS consent for half of them, events spread over 180
days (every 20th contact active in the last week). Then it measures
  1. the first evaluation (every segment new: the backfill writes every membership and transition),
  2. a full re-evaluation of all 20 segments and the scores at a later `now` (the steady state),
  3. an incremental run after 1,000 contacts changed, for exactly those contacts (`contact_ids`),
  4. the scheduled run after the same change (changed contacts, plus the time-dependent segments in full),
and prints each step's wall and CPU time and the peak resident set size of this process. The
tables are analyzed (untimed) after generating; on PostgreSQL also after the backfill, as
autovacuum would.
"""

from __future__ import annotations

import argparse
import atexit
import json
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    String,
    case,
    cast,
    column,
    event,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from field_mapping.types import FieldType
from sync.fields import create_field, load_fields
from sync.segments import ScoringConfig, SegmentsConfig, evaluate_segments
from sync.store import create_store_engine, upgrade
from sync.store.field_columns import fields_table, stamp
from sync.store.tables import consent_records, contacts, events, field_sources

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIELDS = {
    "city": FieldType.STRING,
    "age": FieldType.INTEGER,
    "stripe_status": FieldType.ENUM,
    "role": FieldType.ENUM,
    "birthday": FieldType.DATE,
}
CITIES = ["Hamburg", "Berlin", "Lisbon", "Austin", "Osaka", "Lyon", "Munich"]
ROLES = ["CTO", "VP Engineering", "Engineer", "Marketing", "Founder"]
STATUSES = ["trialing", "active", "canceled", "past_due"]
EVENT_NAMES = ["app.used"] * 5 + ["page.viewed"] * 2 + ["invoice.paid", "checkout.started", "form.submitted"]

SEGMENTS: dict[str, Any] = {
    "hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]},
    "over_50": {"name": "Over 50", "all": [{"field": "age", "op": "gt", "value": 50}]},
    "micro": {
        "name": "Hamburg CTOs over 50",
        "all": [
            {"field": "age", "op": "gt", "value": 50},
            {"field": "city", "op": "eq", "value": "Hamburg"},
            {"field": "role", "op": "in", "value": ["CTO", "VP Engineering"]},
        ],
    },
    "trial_inactive": {
        "name": "Trial, inactive 30 days",
        "all": [
            {"field": "stripe_status", "op": "eq", "value": "trialing"},
            {"field": "last_activity_at", "op": "more_than_ago", "value": "30d"},
        ],
    },
    "paid_7d": {"name": "Paid in 7 days", "all": [{"event": "invoice.paid", "within": "7d"}]},
    "power": {"name": "Power users", "all": [{"event": "app.used", "count": {"gte": 5}, "within": "7d"}]},
    "birthday_week": {
        "name": "Birthday this week",
        "all": [{"field": "birthday", "op": "anniversary", "within_days": 6}],
    },
    "abandoned": {
        "name": "Abandoned checkout",
        "all": [
            {"event": "checkout.started", "within": "2d", "last": {"more_than_ago": "3h"}},
            {"event": "invoice.paid", "within": "2d", "performed": False},
        ],
    },
    "never_paid": {"name": "Never paid", "all": [{"event": "invoice.paid", "performed": False}]},
    "sms_ok": {"name": "SMS opted in", "all": [{"consent": "sms"}]},
    "sms_hamburg": {"name": "Hamburg by SMS", "requires_consent": "sms", "all": [{"in_segment": "hamburg"}]},
    "ber_cities": {"name": "Ber...", "all": [{"field": "city", "op": "starts_with", "value": "Ber"}]},
    "engineers": {"name": "Engineers", "all": [{"field": "role", "op": "contains", "value": "Engineer"}]},
    "south_or_young": {
        "name": "Lisbon/Austin or 20-30",
        "any": [
            {"field": "city", "op": "in", "value": ["Lisbon", "Austin"]},
            {"field": "age", "op": "between", "value": [20, 30]},
        ],
    },
    "young_elsewhere": {
        "name": "Young, not Hamburg",
        "all": [{"not": {"in_segment": "hamburg"}}, {"field": "age", "op": "lt", "value": 30}],
    },
    "ab_40_plus": {
        "name": "40+ A/B",
        "all": [{"field": "age", "op": "gte", "value": 40}],
        "split": {"a": 50, "b": 50},
        "holdout": 10,
    },
    "hot_leads": {"name": "Hot leads", "all": [{"lead_score": {"gte": 20}}]},
    "new_signups": {
        "name": "Signed up in 30 days",
        "all": [{"field": "created_at", "op": "within_last", "value": "30d"}],
    },
    "browsers": {
        "name": "2-10 page views",
        "all": [{"event": "page.viewed", "count": {"gte": 2, "lte": 10}}],
    },
    "pro_forms": {"name": "Pro form answers", "all": [{"event": "form.submitted", "where": {"plan": "pro"}}]},
}
SCORING = ScoringConfig.model_validate(
    {
        "events": [
            {"event": "invoice.paid", "points": 10, "max_points": 50, "within": "90d"},
            {"event": "app.used", "points": 1, "max_points": 20, "within": "30d"},
        ],
        "conditions": [{"when": {"field": "role", "op": "eq", "value": "CTO"}, "points": 15}],
    }
)


def _numbers(conn: Connection, low: int, high: int) -> Any:
    """A one-column selectable `n` of the integers low..high, generated by the database."""
    if conn.dialect.name == "postgresql":
        series = func.generate_series(literal(low, BigInteger), literal(high, BigInteger))
        return select(series.table_valued(column("n", BigInteger)).render_derived().c.n.label("n")).subquery()
    seq = select(literal(low, BigInteger).label("n")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.n + 1).where(seq.c.n < high))
    return seq


def _minutes_ago(conn: Connection, minutes: Any) -> Any:
    """NOW minus `minutes`, as the backend stores an aware UTC time."""
    if conn.dialect.name == "postgresql":
        return literal(NOW) - func.make_interval(0, 0, 0, 0, 0, cast(minutes, Integer))
    base = NOW.strftime("%Y-%m-%d %H:%M:%S")
    # The store keeps SQLite times as naive UTC text with microseconds; match that format.
    shifted = func.strftime("%Y-%m-%d %H:%M:%S", base, "-" + cast(minutes, String) + " minutes")
    return shifted + ".000000"


def _pick(n: Any, options: list[str]) -> Any:
    return case(
        *[(n % len(options) == i, literal(v)) for i, v in enumerate(options)], else_=literal(options[0])
    )


def _fill_fields(conn: Connection, n_contacts: int) -> None:
    """Create the five fields and one contact_fields row per contact, each field 90% filled."""
    fields = {
        name: create_field(conn, name, ftype, now=NOW, label=name, origin="rule", source="bench")
        for name, ftype in FIELDS.items()
    }
    values: dict[str, Callable[[Any], Any]] = {
        "city": lambda n: _pick(n, CITIES),
        "age": lambda n: 18 + (n * 31) % 60,
        "stripe_status": lambda n: _pick(n // 3, STATUSES),
        "role": lambda n: _pick(n // 7, ROLES),
        "birthday": lambda n: _minutes_ago(conn, ((n * 7) % 18000 + 7000) * 1440),
    }
    n = _numbers(conn, 1, n_contacts).c.n
    columns = [case(((n + len(name)) % 10 != 0, make(n)), else_=null()) for name, make in values.items()]
    names = [fields[name].column for name in values]
    conn.execute(insert(fields_table(names)).from_select(["contact_id", *names], select(n, *columns)))
    # Every value came from one bench record, as save_values would note it.
    sources = json.dumps({str(f.id): ["bench", stamp(NOW)] for f in fields.values()})
    n = _numbers(conn, 1, n_contacts).c.n
    conn.execute(
        insert(field_sources).from_select(["contact_id", "sources"], select(n, _json(conn, sources)))
    )


def _json(conn: Connection, body: str) -> Any:
    """A JSON constant as the backend's JSON column takes it."""
    return cast(literal(body), JSONB) if conn.dialect.name == "postgresql" else literal(body)


def generate(conn: Connection, n_contacts: int, n_events: int) -> None:
    """Fill an empty store with contacts, field values, consent and events."""
    n = _numbers(conn, 1, n_contacts).c.n
    state = case(
        (n % 100 == 0, literal("merged")), (n % 10 == 1, literal("dormant")), else_=literal("active")
    )
    created = _minutes_ago(conn, (n * 7919) % (900 * 1440))
    touched = _minutes_ago(conn, 1440 + n % 60)
    active = _minutes_ago(conn, (n * 104729) % (120 * 1440))
    cols = ["id", "state", "created_at", "updated_at", "changed_at", "last_activity_at", "transition_seq"]
    conn.execute(
        insert(contacts).from_select(cols, select(n, state, created, touched, touched, active, literal(0)))
    )
    _fill_fields(conn, n_contacts)
    n = _numbers(conn, 1, n_contacts).c.n
    consent_cols = ["contact_id", "channel", "status", "source", "proof", "recorded_at"]
    proof = _json(conn, "{}")
    opted = select(
        n, literal("sms"), literal("opted_in"), literal("bench"), proof, _minutes_ago(conn, 5000 + n % 100)
    )
    conn.execute(insert(consent_records).from_select(consent_cols, opted.where(n % 2 == 0)))
    out = select(n, literal("sms"), literal("opted_out"), literal("bench"), proof, _minutes_ago(conn, 100))
    conn.execute(insert(consent_records).from_select(consent_cols, out.where(n % 20 == 0)))
    chunk = 1_000_000
    for low in range(1, n_events + 1, chunk):
        high = min(low + chunk - 1, n_events)
        n = _numbers(conn, low, high).c.n
        contact = 1 + ((n - 1) * n_contacts) // n_events
        recent = contact % 20 == 0
        spread = case((recent, (n * 7919) % (7 * 1440)), else_=(n * 7919) % (180 * 1440))
        plan = case((n % 3 == 0, literal('{"plan": "pro"}')), else_=literal('{"plan": "free"}'))
        props = cast(plan, JSONB) if conn.dialect.name == "postgresql" else plan
        rows = select(
            cast(contact, BigInteger),
            _pick(n, EVENT_NAMES),
            _minutes_ago(conn, spread),
            literal("bench"),
            literal("e") + cast(n, String),
            props,
        )
        conn.execute(
            insert(events).from_select(
                ["contact_id", "name", "occurred_at", "source", "external_id", "properties"], rows
            )
        )
        print(f"  events {high:,}/{n_events:,}", flush=True)


class _Statements:
    """Times every statement the engine runs, so a step can print its slowest ones (`--top`)."""

    def __init__(self, engine: Engine, top: int) -> None:
        self.top = top
        self.times: list[tuple[float, str]] = []
        if top:
            event.listen(engine, "before_cursor_execute", self._before)
            event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.times.append((time.perf_counter() - conn.info.pop("bench_started"), statement))

    def report(self) -> None:
        """Print the step's slowest statements and forget them."""
        if self.top:
            print(f"   {len(self.times)} statements, {sum(t for t, _ in self.times):.2f} s in the database")
            for seconds, statement in sorted(self.times, reverse=True)[: self.top]:
                print(f"   {seconds:7.3f} s  {' '.join(statement.split())[:150]}")
        self.times.clear()


def _timed(label: str, action: Callable[[], Any], statements: _Statements | None = None) -> Any:
    start, cpu = time.perf_counter(), time.process_time()
    result = action()
    # CPU beside wall time: the gap is waiting, mostly for pages the kernel evicted from its cache.
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label}: {wall:.2f} s ({used:.2f} s CPU)", flush=True)
    if statements is not None:
        statements.report()
    return result


def _scratch_file() -> Path:
    """A new SQLite file, removed with its directory when the bench ends (it grows past 1 GB)."""
    directory = Path(tempfile.mkdtemp(prefix="crmhub-segments-bench-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory / "segments.db"


def main() -> None:
    """Generate, evaluate, print timings and peak memory."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--database-url", help="an empty database (default: a new SQLite file)")
    parser.add_argument("--keep", type=Path, help="write the SQLite file here and keep it")
    parser.add_argument(
        "--skip-generate", action="store_true", help="reuse the data already in --keep / --database-url"
    )
    parser.add_argument("--top", type=int, default=0, help="print each step's N slowest statements")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{args.keep or _scratch_file()}"
    engine = create_store_engine(url)
    upgrade(engine)
    statements = _Statements(engine, args.top)
    configured = TypeAdapter(SegmentsConfig).validate_python(SEGMENTS)
    sizes = f"{args.contacts:,} contacts, {args.events:,} events, {len(configured)} segments"
    print(f"{sizes} on {engine.dialect.name}")
    if not args.skip_generate:
        with engine.begin() as conn:
            _timed("generate", lambda: generate(conn, args.contacts, args.events))
        with engine.begin() as conn:
            _timed("analyze", lambda: conn.exec_driver_sql("ANALYZE"))
    with engine.begin() as conn:
        report = _timed(
            "1. first evaluation (backfill)",
            lambda: evaluate_segments(conn, configured, now=NOW, scoring=SCORING),
        )
        print(f"   {report.transitions:,} transitions, {report.scores_changed:,} scores written")
        statements.times.clear()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            # The backfill wrote 4.4M memberships and transitions. Autovacuum would analyze them
            # before the next sync; where it is off (as on this machine) the plans would be those of
            # empty tables. Not timed. SQLite has no such daemon and crmhub runs no ANALYZE there.
            conn.exec_driver_sql("ANALYZE")
    later = NOW + timedelta(minutes=10)
    with engine.begin() as conn:
        report = _timed(
            "2. full re-evaluation, 20 segments + scores",
            lambda: evaluate_segments(conn, configured, now=later, scoring=SCORING, full=True),
            statements,
        )
        print(f"   {report.transitions:,} transitions, {report.scores_changed:,} scores changed")
        for s in report.segments:
            print(f"   {s.key:16} {s.mode:12} +{s.entered} -{s.left}")
    changed = list(range(7, args.contacts + 1, max(1, args.contacts // 1000)))[:1000]
    later = later + timedelta(minutes=10)
    with engine.begin() as conn:
        city = load_fields(conn)["city"].column
        table = fields_table([city])
        conn.execute(update(table).where(table.c.contact_id.in_(changed)).values({city: "Hamburg"}))
        conn.execute(update(contacts).where(contacts.c.id.in_(changed)).values(changed_at=later))
    statements.times.clear()
    with engine.begin() as conn:
        report = _timed(
            f"3. incremental, {len(changed):,} changed contacts (contact_ids)",
            lambda: evaluate_segments(conn, configured, now=later, scoring=SCORING, contact_ids=changed),
            statements,
        )
        print(f"   {report.transitions:,} transitions")
    with engine.begin() as conn:
        report = _timed(
            "4. scheduled run after the change (time-dependent segments and scores in full)",
            lambda: evaluate_segments(conn, configured, now=later, scoring=SCORING),
            statements,
        )
        modes = Counter(s.mode for s in report.segments)
        print(f"   {report.transitions:,} transitions; segments by mode: {dict(modes)}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS of this process): {peak:.0f} MB")


if __name__ == "__main__":
    main()
