"""Field value storage: typed key-value rows vs a typed column per field vs one JSON document per contact.

    .venv/bin/python bench/storage.py --contacts 1000000
    .venv/bin/python bench/storage.py --contacts 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/crmhub_bench_storage

Generates the same seeded contacts (20 fields of mixed types, fill rates 30-100 %) into each layout,
back to back in one process so all layouts share the machine's load:

- A:  typed key-value rows, the current schema (`sync.store.tables`, its indexes as they are);
- A2: the same rows re-indexed with partial covering indexes (field_id, value_x, contact_id);
- B:  one wide table, a typed column per field added by ALTER TABLE, an index per filtered column;
- C:  one JSON document per contact (SQLite TEXT + json_extract, PostgreSQL jsonb), expression
      indexes on the same filtered keys.

Layout A is queried through the real segment compiler (`sync.segments.compiler`), full evaluation
uncorrelated and incremental correlated, as issue 6 runs it; B and C through a small compiler here
with the same semantics, and every query's count is checked equal across layouts. Reports load and
index time, each query's median of 3, the upsert of 1,000 changed contacts, the incremental
evaluation of all queries over those contacts, schema-change costs and the size on disk. SQLite
goes to a fresh temporary directory; with --database-url the tables are dropped and re-created
in that (scratch) database, which must exist. A full run took about 11 minutes per backend on the
shared 2-core machine. Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    extract,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import Column as SqlColumn
from sqlalchemy.dialects import postgresql, sqlite

from field_mapping.types import STORAGE, FieldType
from sync.segments.compiler import Catalog, RuleCompiler
from sync.segments.config import Rule
from sync.segments.values import anniversary_days, parse_duration
from sync.store import create_store_engine
from sync.store.tables import contacts, field_definitions, field_values
from sync.store.types import Id, Json, UtcDateTime

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
_T = FieldType
_CITIES = ("Hamburg", "Berlin", "Munich", "Lisbon", "Austin", "Osaka", "Lyon", "Leeds", "Oslo", "Porto")
_ROLES = ("cto", "ceo", "developer", "marketing", "sales", "support", "finance", "other")
# name, type, fill rate, value maker; the first ten are the ones segments filter on (indexed in B, C).
FIELDS: list[tuple[str, FieldType, float, Callable[[random.Random], Any]]] = [
    ("plan", _T.ENUM, 0.9, lambda r: r.choice(("basic", "pro", "enterprise"))),
    ("status", _T.ENUM, 0.9, lambda r: r.choice(("trialing", "active", "past_due", "canceled"))),
    ("city", _T.ENUM, 0.7, lambda r: r.choice(_CITIES)),
    ("role", _T.ENUM, 0.6, lambda r: r.choice(_ROLES)),
    ("lifecycle_stage", _T.ENUM, 0.8, lambda r: r.choice(("lead", "mql", "sql", "customer"))),
    ("age", _T.INTEGER, 0.6, lambda r: r.randrange(18, 81)),
    ("seats", _T.INTEGER, 0.5, lambda r: r.randrange(1, 201)),
    ("mrr", _T.DECIMAL, 0.5, lambda r: round(r.random() * 2000, 2)),
    ("last_seen", _T.DATETIME, 0.95, lambda r: NOW - timedelta(seconds=r.randrange(400 * 86_400))),
    ("birthday", _T.DATE, 0.3, lambda r: datetime(1950, 1, 1) + timedelta(days=r.randrange(20_000))),
    ("newsletter", _T.BOOLEAN, 0.8, lambda r: r.random() < 0.6),
    (
        "trial_end",
        _T.DATETIME,
        0.4,
        lambda r: NOW + timedelta(seconds=r.randrange(-60 * 86_400, 30 * 86_400)),
    ),
    ("signup", _T.DATETIME, 1.0, lambda r: NOW - timedelta(seconds=r.randrange(1500 * 86_400))),
    ("country", _T.ENUM, 0.85, lambda r: r.choice(("DE", "US", "PT", "FR", "JP", "GB", "NO"))),
    ("nps_score", _T.INTEGER, 0.3, lambda r: r.randrange(0, 11)),
    ("lifetime_value", _T.DECIMAL, 0.5, lambda r: round(r.random() * 50_000, 2)),
    ("delinquent", _T.BOOLEAN, 0.5, lambda r: r.random() < 0.05),
    ("company", _T.STRING, 0.6, lambda r: f"Company {r.randrange(200_000)} GmbH"),
    ("job_title", _T.STRING, 0.5, lambda r: f"{r.choice(_ROLES).title()} lead {r.randrange(999)}"),
    ("utm_campaign", _T.STRING, 0.4, lambda r: f"campaign-{r.randrange(5_000)}"),
]
INDEXED = [name for name, *_ in FIELDS[:10]]
FIELD_IDS = {name: i + 1 for i, (name, *_) in enumerate(FIELDS)}
TYPES = {name: t for name, t, *_ in FIELDS}
CHANGED = ("plan", "status", "mrr", "last_seen", "age")

QUERIES: dict[str, dict[str, Any]] = {
    "eq_enum": {"field": "plan", "op": "eq", "value": "pro"},
    "range_num": {"field": "mrr", "op": "gt", "value": 1500},
    "micro_and3": {
        "all": [
            {"field": "age", "op": "gt", "value": 50},
            {"field": "city", "op": "eq", "value": "Hamburg"},
            {"field": "role", "op": "eq", "value": "cto"},
        ]
    },
    "or": {
        "any": [
            {"field": "plan", "op": "eq", "value": "enterprise"},
            {"field": "seats", "op": "gte", "value": 190},
        ]
    },
    "not": {"not": {"field": "city", "op": "eq", "value": "Berlin"}},
    "missing": {"field": "nps_score", "op": "missing"},
    "within_30d": {"field": "last_seen", "op": "within_last", "value": "30d"},
    "trial_inactive": {
        "all": [
            {"field": "status", "op": "eq", "value": "trialing"},
            {"field": "last_seen", "op": "more_than_ago", "value": "30d"},
        ]
    },
    "birthday_week": {"field": "birthday", "op": "anniversary", "within_days": 6},
    "in_and_bool": {
        "all": [
            {"field": "newsletter", "op": "eq", "value": True},
            {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
        ]
    },
}
RULES = {key: Rule.model_validate(raw) for key, raw in QUERIES.items()}
# The changed contacts an incremental run re-evaluates, as sync.segments.evaluate scopes them.
SCOPE = Table(
    "_bench_scope", MetaData(), SqlColumn("contact_id", Id, primary_key=True), prefixes=["TEMPORARY"]
)


def _stamp(value: datetime) -> str:
    """The text SQLite stores for a UTC time (and C stores on both backends): text order is time order."""
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _contacts(total: int, seed: int, chunk: int = 20_000) -> Iterator[list[tuple[int, list[Any]]]]:
    """Chunks of (contact id, one value or None per field); the same seed gives the same data."""
    rng = random.Random(seed)
    for start in range(1, total + 1, chunk):
        yield [
            (cid, [make(rng) if rng.random() < fill else None for _, _, fill, make in FIELDS])
            for cid in range(start, min(start + chunk, total + 1))
        ]


def _changes(total: int, round_: int) -> list[tuple[int, dict[str, Any]]]:
    """1,000 contacts and new values for five of their fields; the same for every layout."""
    rng = random.Random(1000 + round_)
    return [
        (cid, {name: FIELDS[FIELD_IDS[name] - 1][3](rng) for name in CHANGED})
        for cid in rng.sample(range(1, total + 1), min(1000, total))
    ]


def _scalar(conn: Connection, query: Any) -> Any:
    return conn.execute(query).scalar_one()


def _median(run: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(3):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


class Layout:
    """One way to store field values: create, load, index, compile rules, upsert, measure size."""

    name = ""
    tables: tuple[str, ...] = ()

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"

    # --- to implement ------------------------------------------------------------------------------
    def create(self, conn: Connection) -> None:
        raise NotImplementedError

    def rows(self, chunk: list[tuple[int, list[Any]]]) -> dict[str, list[tuple[Any, ...]]]:
        raise NotImplementedError

    def indexes(self) -> list[Index]:
        raise NotImplementedError

    def count(self, rule: Rule, scoped: bool) -> Any:
        raise NotImplementedError

    def upsert(self, conn: Connection, changes: list[tuple[int, dict[str, Any]]], mark: datetime) -> None:
        raise NotImplementedError

    def changed(self, mark: datetime) -> Any:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------------
    def time_text(self, value: datetime) -> Any:
        return _stamp(value) if not self.pg else _stamp(value) + "+00"

    def load(self, total: int, seed: int) -> float:
        """Bulk-load every generated contact; returns the seconds spent in the database only."""
        spent = 0.0
        raw = self.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            for chunk in _contacts(total, seed):
                batches = self.rows(chunk)
                started = time.perf_counter()
                for table, rows in batches.items():
                    columns = len(rows[0]) if rows else 0
                    if not rows:
                        continue
                    if self.pg:
                        with driver.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
                    else:
                        marks = ",".join("?" * columns)
                        driver.execute("BEGIN")
                        driver.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                        driver.execute("COMMIT")
                if self.pg:
                    driver.commit()
                spent += time.perf_counter() - started
        finally:
            raw.close()
        return spent

    def build_indexes(self) -> float:
        started = time.perf_counter()
        with self.engine.begin() as conn:
            for index in self.indexes():
                index.create(conn)
        self.analyze()
        return time.perf_counter() - started

    def analyze(self) -> None:
        if self.pg:
            # VACUUM too: after a COPY the visibility map is empty, so no scan could be index-only
            # until autovacuum came by.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in self.tables:
                    conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")

    def size(self) -> int:
        with self.engine.connect() as conn:
            if self.pg:
                return sum(
                    int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one())
                    for t in self.tables
                )
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int((pages - free) * size)


_FKS = (
    "fk_field_values_contact_id_contacts FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE CASCADE",
    "fk_field_values_field_id_field_definitions FOREIGN KEY (field_id) REFERENCES field_definitions (id) "
    "ON DELETE CASCADE",
)


class KeyValue(Layout):
    """A: the current schema, queried by the real segment compiler."""

    name = "A kv rows"
    tables = ("contacts", "field_definitions", "field_values")
    catalog = Catalog(fields={n: (FIELD_IDS[n], t) for n, t in TYPES.items()}, segment_ids={})

    def create(self, conn: Connection) -> None:
        ours = [contacts, field_definitions, field_values]
        contacts.metadata.drop_all(conn, tables=ours[::-1])
        contacts.metadata.create_all(conn, tables=ours)
        for table in (contacts, field_values):
            for index in table.indexes:
                index.drop(conn)  # rebuilt after the load, as a bulk import would
        if self.pg:  # so are the foreign keys: one check per row makes COPY ~20x slower
            for fk in _FKS:
                conn.exec_driver_sql(f"ALTER TABLE field_values DROP CONSTRAINT {fk.split()[0]}")
        conn.execute(
            field_definitions.insert(),
            [
                {
                    "id": FIELD_IDS[n],
                    "name": n,
                    "type": t.value,
                    "label": n,
                    "origin": "auto",
                    "first_seen_at": NOW,
                    "updated_at": NOW,
                }
                for n, t in TYPES.items()
            ],
        )

    def rows(self, chunk: list[tuple[int, list[Any]]]) -> dict[str, list[tuple[Any, ...]]]:
        stamp = self.time_text(NOW)
        people, values = [], []
        for cid, fields in chunk:
            people.append((cid, "active", None, stamp, stamp, None, stamp, 0))
            for (name, kind, *_), value in zip(FIELDS, fields, strict=True):
                if value is None:
                    continue
                column = STORAGE[kind].value
                row: list[Any] = [cid, FIELD_IDS[name], None, None, None, None, "bench", stamp]
                slot = {"value_text": 2, "value_num": 3, "value_time": 4, "value_bool": 5}[column]
                row[slot] = self.time_text(value) if column == "value_time" else value
                values.append(tuple(row))
        return {"contacts": people, "field_values": values}

    def indexes(self) -> list[Index]:
        return [*contacts.indexes, *field_values.indexes]

    def build_indexes(self) -> float:
        started = time.perf_counter()
        if self.pg:
            with self.engine.begin() as conn:
                for fk in _FKS:
                    conn.exec_driver_sql(f"ALTER TABLE field_values ADD CONSTRAINT {fk}")
        return time.perf_counter() - started + super().build_indexes()

    def count(self, rule: Rule, scoped: bool) -> Any:
        dialect = self.engine.dialect.name
        compiler = RuleCompiler(self.catalog, now=NOW, dialect=dialect, correlated=scoped)
        query = select(func.count()).select_from(contacts).where(compiler.compile(rule))
        return query.where(contacts.c.id.in_(select(SCOPE.c.contact_id))) if scoped else query

    def changed(self, mark: datetime) -> Any:
        return select(contacts.c.id).where(contacts.c.changed_at >= mark)

    def upsert(self, conn: Connection, changes: list[tuple[int, dict[str, Any]]], mark: datetime) -> None:
        insert = (postgresql if self.pg else sqlite).insert(field_values)
        columns = ("value_text", "value_num", "value_time", "value_bool")
        statement = insert.on_conflict_do_update(
            index_elements=["contact_id", "field_id"],
            set_={c: insert.excluded[c] for c in (*columns, "source", "updated_at")},
        )
        rows = []
        for cid, fields in changes:
            for name, value in fields.items():
                row = dict.fromkeys(columns)
                row[STORAGE[TYPES[name]].value] = (
                    value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
                )
                rows.append(
                    {
                        "contact_id": cid,
                        "field_id": FIELD_IDS[name],
                        **row,
                        "source": "bench",
                        "updated_at": mark,
                    }
                )
        conn.execute(statement, rows)
        conn.execute(
            update(contacts).where(contacts.c.id == bindparam("cid")).values(changed_at=mark),
            [{"cid": cid} for cid, _ in changes],
        )


class KeyValueCovering(KeyValue):
    """A2: the same rows, with partial covering indexes instead of the current three."""

    name = "A2 kv rows, covering"

    def build_indexes(self) -> float:
        return Layout.build_indexes(self)

    def indexes(self) -> list[Index]:
        fv = field_values.c
        return [
            Index(
                f"ix_fv_cover_{c}",
                fv.field_id,
                fv[c],
                fv.contact_id,
                sqlite_where=fv[c].is_not(None),
                postgresql_where=fv[c].is_not(None),
            )
            for c in ("value_text", "value_num", "value_time")
        ]


class _Flat(Layout):
    """Shared by B and C: a single table keyed by contact id, one expression per field."""

    table: Table

    def value(self, name: str) -> ColumnElement[Any]:
        raise NotImplementedError

    def is_text_time(self) -> bool:
        return not self.pg

    def when(self, value: datetime) -> Any:
        return value

    def compile(self, rule: Rule) -> ColumnElement[bool]:
        """The same semantics as the segment compiler: a condition on a missing value is false."""
        kind = rule.kind
        if kind in ("all", "any"):
            return (and_ if kind == "all" else or_)(*[self.compile(r) for r in rule.children()])
        if kind == "not":
            return not_(self.compile(rule.children()[0]))
        assert rule.field is not None
        value = self.value(rule.field)
        if rule.op == "missing":
            return value.is_(None)
        op, wanted = rule.op, rule.value
        if op in ("within_last", "more_than_ago"):
            since = self.when(NOW - parse_duration(str(wanted)))
            test = and_(value >= since, value <= self.when(NOW)) if op == "within_last" else value < since
        elif op == "anniversary":
            if self.is_text_time():
                month_day = cast(func.substr(value, 6, 2), Integer) * 100 + cast(
                    func.substr(value, 9, 2), Integer
                )
            else:
                month_day = extract("month", func.timezone("UTC", value)) * 100 + extract(
                    "day", func.timezone("UTC", value)
                )
            test = month_day.in_(anniversary_days(NOW, rule.within_days))
        elif op == "in":
            test = value.in_(wanted if isinstance(wanted, list) else [wanted])
        else:
            test = {"eq": value.__eq__, "gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__}[str(op)](
                wanted
            )
        return and_(value.is_not(None), test)

    def changed(self, mark: datetime) -> Any:
        return select(self.table.c.id).where(self.table.c.changed_at >= mark)

    def count(self, rule: Rule, scoped: bool) -> Any:
        query = select(func.count()).select_from(self.table).where(self.compile(rule))
        return query.where(self.table.c.id.in_(select(SCOPE.c.contact_id))) if scoped else query


_WIDE_TYPES: dict[FieldType, Any] = {
    _T.ENUM: Text,
    _T.STRING: Text,
    _T.INTEGER: Integer,
    _T.DECIMAL: Float,
    _T.DATETIME: UtcDateTime,
    _T.DATE: UtcDateTime,
    _T.BOOLEAN: Boolean,
}


class Wide(_Flat):
    """B: a typed column per field, added with ALTER TABLE ADD COLUMN as fields appear."""

    name = "B wide columns"
    tables = ("contacts_wide",)

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.table = Table(
            "contacts_wide",
            MetaData(),
            SqlColumn("id", Id, primary_key=True),
            SqlColumn("changed_at", UtcDateTime, nullable=False),
            *[SqlColumn(n, _WIDE_TYPES[t]) for n, t in TYPES.items()],
        )

    def create(self, conn: Connection) -> None:
        conn.exec_driver_sql("DROP TABLE IF EXISTS contacts_wide")
        conn.exec_driver_sql(
            f"CREATE TABLE contacts_wide (id {'BIGINT' if self.pg else 'INTEGER'} PRIMARY KEY, "
            f"changed_at {'TIMESTAMPTZ' if self.pg else 'DATETIME'} NOT NULL)"
        )
        for column in list(self.table.c)[2:]:
            kind = column.type.compile(dialect=self.engine.dialect)
            conn.exec_driver_sql(f"ALTER TABLE contacts_wide ADD COLUMN {column.name} {kind}")

    def rows(self, chunk: list[tuple[int, list[Any]]]) -> dict[str, list[tuple[Any, ...]]]:
        stamp = self.time_text(NOW)
        return {
            "contacts_wide": [
                (cid, stamp, *[self.time_text(v) if isinstance(v, datetime) else v for v in fields])
                for cid, fields in chunk
            ]
        }

    def indexes(self) -> list[Index]:
        return [Index(f"ix_wide_{n}", self.table.c[n]) for n in ("changed_at", *INDEXED)]

    def value(self, name: str) -> ColumnElement[Any]:
        return self.table.c[name]

    def upsert(self, conn: Connection, changes: list[tuple[int, dict[str, Any]]], mark: datetime) -> None:
        statement = (
            update(self.table)
            .where(self.table.c.id == bindparam("cid"))
            .values(changed_at=mark, **{n: bindparam(f"v_{n}") for n in CHANGED})
        )
        rows = [
            {
                "cid": cid,
                **{
                    f"v_{n}": v.replace(tzinfo=UTC) if isinstance(v, datetime) else v
                    for n, v in fields.items()
                },
            }
            for cid, fields in changes
        ]
        conn.execute(statement, rows)


class Document(_Flat):
    """C: one JSON document per contact, expression indexes on the keys segments filter on."""

    name = "C json document"
    tables = ("contacts_json",)

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.table = Table(
            "contacts_json",
            MetaData(),
            SqlColumn("id", Id, primary_key=True),
            SqlColumn("changed_at", UtcDateTime, nullable=False),
            SqlColumn("data", Json, nullable=False),
        )

    def create(self, conn: Connection) -> None:
        self.table.drop(conn, checkfirst=True)
        self.table.create(conn)

    def rows(self, chunk: list[tuple[int, list[Any]]]) -> dict[str, list[tuple[Any, ...]]]:
        stamp = self.time_text(NOW)
        return {"contacts_json": [(cid, stamp, _document(fields)) for cid, fields in chunk]}

    def is_text_time(self) -> bool:
        return True

    def when(self, value: datetime) -> Any:
        return _stamp(value)

    def value(self, name: str) -> ColumnElement[Any]:
        # The path is inlined (names are validated identifiers): an expression index only matches
        # a query whose path is the same constant, never a bound parameter.
        data, kind = self.table.c.data, TYPES[name]
        if not self.pg:
            return func.json_extract(data, literal_column(f"'$.{name}'"))
        as_text = data.op("->>")(literal_column(f"'{name}'"))
        if kind in (_T.INTEGER, _T.DECIMAL):
            return cast(as_text, Float)
        if kind is _T.BOOLEAN:
            return cast(as_text, Boolean)
        return as_text

    def indexes(self) -> list[Index]:
        return [
            Index("ix_json_changed_at", self.table.c.changed_at),
            *[Index(f"ix_json_{n}", self.value(n)) for n in INDEXED],
        ]

    def upsert(self, conn: Connection, changes: list[tuple[int, dict[str, Any]]], mark: datetime) -> None:
        patch = bindparam("patch", type_=Text)
        data = self.table.c.data
        merged = data.op("||")(cast(patch, postgresql.JSONB)) if self.pg else func.json_patch(data, patch)
        statement = (
            update(self.table).where(self.table.c.id == bindparam("cid")).values(changed_at=mark, data=merged)
        )
        conn.execute(
            statement,
            [
                {"cid": cid, "patch": _document(list(fields.values()), list(fields))}
                for cid, fields in changes
            ],
        )


def _document(values: list[Any], names: list[str] | None = None) -> str:
    keys = names or [n for n, *_ in FIELDS]
    return json.dumps(
        {
            k: _stamp(v) if isinstance(v, datetime) else v
            for k, v in zip(keys, values, strict=True)
            if v is not None
        },
        separators=(",", ":"),
    )


def _schema_costs(layout: Layout) -> dict[str, float]:
    """What a new field and a widened field cost once 1,000,000 contacts are stored."""
    costs: dict[str, float] = {}

    def timed(key: str, *sql: str) -> None:
        started = time.perf_counter()
        with layout.engine.begin() as conn:
            for statement in sql:
                conn.exec_driver_sql(statement)
        costs[key] = time.perf_counter() - started

    if isinstance(layout, Wide):
        timed("add_column", "ALTER TABLE contacts_wide ADD COLUMN new_field TEXT")
        timed("index_new_column", "CREATE INDEX ix_wide_new_field ON contacts_wide (new_field)")
        if layout.pg:
            timed(
                "widen_seats_to_text",
                "ALTER TABLE contacts_wide ALTER COLUMN seats TYPE TEXT USING seats::text",
            )
        else:  # no ALTER COLUMN TYPE: add, copy, and drop (its index first)
            timed(
                "widen_seats_to_text",
                "ALTER TABLE contacts_wide ADD COLUMN seats_text TEXT",
                "UPDATE contacts_wide SET seats_text = CAST(seats AS TEXT)",
                "DROP INDEX ix_wide_seats",
                "ALTER TABLE contacts_wide DROP COLUMN seats",
            )
    elif isinstance(layout, Document):
        path = "(data->>'new_field')" if layout.pg else "json_extract(data, '$.new_field')"
        timed("index_new_key", f"CREATE INDEX ix_json_new_field ON contacts_json ({path})")
    elif isinstance(layout, KeyValue):
        seats = FIELD_IDS["seats"]
        timed(
            "add_field_row",
            f"INSERT INTO field_definitions (id, name, type, label, origin, first_seen_at, "
            f"updated_at) VALUES (99, 'new_field', 'string', 'x', 'auto', '{_stamp(NOW)}', '{_stamp(NOW)}')",
        )
        timed(
            "widen_seats_to_text",
            f"UPDATE field_values SET value_text = CAST(value_num AS TEXT), "
            f"value_num = NULL WHERE field_id = {seats}",
        )
    return costs


def run(make_engine: Callable[[str], Engine], total: int, seed: int) -> None:
    """Load, index, query and write each layout in turn; SQLite gets one file per layout."""
    first = make_engine("a")
    backend = first.dialect.name
    print(
        f"# {backend}  contacts={total:,}  fields={len(FIELDS)}  load avg={os.getloadavg()[0]:.1f}  "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    layouts: list[Layout] = [
        KeyValue(first),
        KeyValueCovering(first),
        Wide(make_engine("b")),
        Document(make_engine("c")),
    ]
    reference: dict[str, int] = {}
    for layout in layouts:
        engine = layout.engine
        fresh = not isinstance(layout, KeyValueCovering)  # A2 re-indexes A's rows
        if fresh:
            with engine.begin() as conn:
                layout.create(conn)
            load = layout.load(total, seed)
        else:
            with engine.begin() as conn:
                for index in layouts[0].indexes():
                    if index.table is field_values:
                        index.drop(conn)
            load = float("nan")
        index_time = layout.build_indexes()
        print(
            f"\n## {layout.name}: load {load:.1f} s, indexes+analyze {index_time:.1f} s, "
            f"size {layout.size() / 2**20:,.0f} MiB, load avg {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        total_full = 0.0
        for key, rule in RULES.items():
            with engine.connect() as conn:
                query = layout.count(rule, False)
                seconds, found = _median(partial(_scalar, conn, query))
            total_full += seconds
            # A2 runs on A's rows after A's upserts, so only the fresh layouts are compared.
            check = "" if not fresh or reference.setdefault(key, found) == found else "  MISMATCH"
            print(f"  {key:<16} {seconds * 1000:9.1f} ms  {found:>9,}{check}", flush=True)
        print(f"  {'all 10 full':<16} {total_full * 1000:9.1f} ms")
        upserts = []
        mark = NOW
        for round_ in range(3):
            mark = NOW + timedelta(minutes=round_ + 1)
            changes = _changes(total, round_)
            started = time.perf_counter()
            with engine.begin() as conn:
                layout.upsert(conn, changes, mark)
            upserts.append(time.perf_counter() - started)
        print(f"  upsert 1,000 contacts x {len(CHANGED)} fields: {statistics.median(upserts) * 1000:.1f} ms")
        incremental, counts = 0.0, []
        with engine.begin() as conn:
            started = time.perf_counter()
            SCOPE.create(conn)
            changed = layout.changed(mark)
            conn.execute(SCOPE.insert().from_select(["contact_id"], changed))
            if layout.pg:  # unanalyzed, PostgreSQL guesses its size and may hash-join a whole field
                conn.exec_driver_sql(f"ANALYZE {SCOPE.name}")
            incremental += time.perf_counter() - started
            for key, rule in RULES.items():
                query = layout.count(rule, True)
                seconds, found = _median(partial(_scalar, conn, query))
                incremental += seconds
                counts.append(found)
                if reference.setdefault(f"inc_{key}", found) != found:
                    print(f"  incremental {key}: {found}  MISMATCH")
            SCOPE.drop(conn)
        print(
            f"  incremental, scope + all 10 over the 1,000 changed: {incremental * 1000:.1f} ms  {counts}",
            flush=True,
        )
        if not isinstance(layout, KeyValue) or isinstance(layout, KeyValueCovering):
            costs = _schema_costs(layout)
            print("  schema: " + ", ".join(f"{k} {v * 1000:,.0f} ms" for k, v in costs.items()), flush=True)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.database_url:
        engine = create_store_engine(args.database_url)
        run(lambda _name: engine, args.contacts, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="crmhub-storage-") as tmp:
        run(lambda name: create_store_engine(f"sqlite:///{Path(tmp) / name}.db"), args.contacts, args.seed)


if __name__ == "__main__":
    main()
