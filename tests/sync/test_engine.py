"""The sync engine: each page and its cursor commit together, so a crash anywhere resumes cleanly."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.exc import OperationalError

from connectors import Batch, ContactEvent, Record
from connectors.base import Source, Stream
from connectors.exceptions import PermanentError
from connectors.stripe.mapping import event_record
from field_mapping.config import FieldMappingConfig
from field_mapping.mapper import Mapper
from sync.engine import BatchResult, SyncEngine
from sync.fields import load_fields, read_values
from sync.ingest import PageStore
from sync.runs import earliest_storing_start, load_cursor, mark_interrupted, tracking_runs
from sync.segments import EvaluationReport, evaluate_segments
from sync.store import create_store_engine, upgrade, write_transaction
from sync.store.field_columns import field_columns, fields_table
from sync.store.tables import (
    contact_identities,
    contacts,
    cursors,
    events,
    field_definitions,
    field_sources,
    quarantine,
    records,
    sync_runs,
    transitions,
)
from tests.segments.conftest import Seeder, segments_from

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PAGES = 5
PER_PAGE = 4


def _customer(n: int) -> Record:
    email = f"  Person{n}@Example.COM " if n % 2 else f"person{n}@example.com"
    payload = {"id": f"cus_{n}", "object": "customer", "email": email, "name": f"Person {n}", "balance": n}
    return Record("stripe", "customers", f"cus_{n}", NOW - timedelta(hours=n), payload)


class PagedStream(Stream):
    """Pages of customers; the cursor is the index of the next page."""

    source = "stripe"
    name = "customers"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.started_at: list[int] = []

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        start = 0 if full or cursor is None else json.loads(cursor)["page"]
        self.started_at.append(start)
        for page in range(start, PAGES):
            if self.fail_after is not None and page == self.fail_after:
                raise PermanentError("stripe: connection lost (simulated)")
            recs = [_customer(page * PER_PAGE + i) for i in range(PER_PAGE)]
            ev = [
                ContactEvent(
                    "stripe", "invoice.paid", f"evt_{r.external_id}", NOW, {"stripe_customer": r.external_id}
                )
                for r in recs
            ]
            yield Batch("stripe", "customers", recs, ev, cursor=json.dumps({"page": page + 1}))


class OneStreamSource(Source):
    name = "stripe"

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    @property
    def streams(self) -> list[Stream]:
        return [self._stream]


def _page_store() -> PageStore:
    return PageStore(Mapper(FieldMappingConfig()))


def _snapshot(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "records": sorted(conn.execute(select(records.c.external_id, records.c.payload)).all()),
            "identities": sorted(
                conn.execute(select(contact_identities.c.kind, contact_identities.c.value)).all()
            ),
            "contacts": conn.execute(select(contacts.c.id)).all().__len__(),
            "events": sorted(conn.execute(select(events.c.external_id, events.c.name)).all()),
            "fields": sorted(conn.execute(select(field_definitions.c.name, field_definitions.c.type)).all()),
            "values": _values(conn),
            "cursor": conn.execute(select(cursors.c.value)).scalar_one_or_none(),
        }


def _values(conn: Connection) -> list[tuple[Any, ...]]:
    """Every value a record wrote (nulls too) with its provenance, by contact e-mail and field name.

    Keyed by names, not ids: a crashed transaction leaves gaps in PostgreSQL's id sequences.
    """
    fields = load_fields(conn)
    names = {str(field.id): name for name, field in fields.items()}
    ci = contact_identities.c
    emails = {c: e for c, e in conn.execute(select(ci.contact_id, ci.value).where(ci.kind == "email"))}
    rows = conn.execute(select(field_sources.c.contact_id, field_sources.c.sources)).all()
    held = read_values(conn, [contact_id for contact_id, _ in rows], fields)
    return sorted(
        (emails[contact_id], names[key], held.get(contact_id, {}).get(names[key]), *provenance)
        for contact_id, sources in rows
        for key, provenance in sources.items()
    )


def test_a_run_stores_records_contacts_fields_events_and_the_cursor(engine: Engine) -> None:
    report = SyncEngine(engine, _page_store()).run([OneStreamSource(PagedStream())], now=NOW)
    assert report.status == "succeeded"
    [stream] = report.streams
    assert (stream.records, stream.events, stream.pages) == (PAGES * PER_PAGE, PAGES * PER_PAGE, PAGES)
    snap = _snapshot(engine)
    assert snap["contacts"] == PAGES * PER_PAGE
    assert ("email", "person1@example.com") in snap["identities"]  # case and whitespace normalized
    assert ("stripe_customer_balance", "integer") in snap["fields"]
    assert snap["cursor"] == json.dumps({"page": PAGES})


def test_a_streams_warnings_reach_the_run_report_once(engine: Engine) -> None:
    class Warning(PagedStream):
        def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
            for batch in super().pull(cursor, now=now, full=full):
                batch.warnings.append("stripe.customers: events rendered at another API version")
                yield batch

    report = SyncEngine(engine, _page_store()).run([OneStreamSource(Warning())], now=NOW)
    assert report.streams[0].widenings == ["stripe.customers: events rendered at another API version"]


def test_stripe_events_of_one_second_keep_the_later_state_whatever_order_they_arrive_in(
    engine: Engine,
) -> None:
    second = int(NOW.timestamp())
    customer = {"id": "cus_9", "object": "customer", "email": "old@example.com", "name": "Old"}
    created = {"id": "evt_1", "type": "customer.created", "created": second, "data": {"object": customer}}
    changed = {**customer, "email": "new@example.com", "name": "New"}
    updated = {"id": "evt_2", "type": "customer.updated", "created": second, "data": {"object": changed}}
    deleted = {"id": "evt_3", "type": "customer.deleted", "created": second, "data": {"object": changed}}

    class Reversed(PagedStream):
        def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
            for given in (deleted, updated, created):  # as webhooks may come: newest first
                yield Batch(
                    "stripe", "customers", [event_record("customers", given)], cursor=str(given["id"])
                )

    SyncEngine(engine, _page_store()).run([OneStreamSource(Reversed())], now=NOW)
    with engine.connect() as conn:
        stored = conn.execute(select(records.c.payload, records.c.deleted)).one()
    assert (stored.payload["email"], stored.deleted) == ("new@example.com", True)


def test_a_second_run_resumes_from_the_cursor_and_changes_nothing(engine: Engine) -> None:
    stream = PagedStream()
    sync = SyncEngine(engine, _page_store())
    sync.run([OneStreamSource(stream)], now=NOW)
    before = _snapshot(engine)
    report = sync.run([OneStreamSource(stream)], now=NOW + timedelta(hours=1))
    assert stream.started_at == [0, PAGES]
    assert report.streams[0].records == 0
    assert _snapshot(engine) == before


@pytest.mark.parametrize("fail_at_page", [1, 3])
def test_a_failure_between_pages_keeps_what_was_stored_and_resumes_without_gaps(
    engine: Engine, fail_at_page: int, tmp_path
) -> None:
    reference = create_store_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(reference)
    SyncEngine(reference, _page_store()).run([OneStreamSource(PagedStream())], now=NOW)

    sync = SyncEngine(engine, _page_store())
    failed = sync.run([OneStreamSource(PagedStream(fail_after=fail_at_page))], now=NOW)
    assert failed.status == "failed" and "connection lost" in (failed.streams[0].error or "")
    with engine.connect() as conn:
        assert load_cursor(conn, "stripe", "customers") == json.dumps({"page": fail_at_page})
    resumed = PagedStream()
    sync.run([OneStreamSource(resumed)], now=NOW)
    assert resumed.started_at == [fail_at_page]
    assert _snapshot(engine) == _snapshot(reference)
    reference.dispose()


class CrashingStore:
    """Stores pages until the n-th, then dies mid-transaction (after writing part of it)."""

    def __init__(self, inner: PageStore, crash_on: int) -> None:
        self.inner, self.crash_on, self.calls = inner, crash_on, 0

    def __call__(self, conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        self.calls += 1
        result = self.inner(conn, batch, run_id=run_id, now=now)
        if self.calls == self.crash_on:
            raise SystemExit("killed between the store and its commit")
        return result


def test_a_crash_before_a_commit_loses_only_that_page_and_the_rerun_matches(engine: Engine, tmp_path) -> None:
    reference = create_store_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(reference)
    SyncEngine(reference, _page_store()).run([OneStreamSource(PagedStream())], now=NOW)

    with pytest.raises(SystemExit):
        SyncEngine(engine, CrashingStore(_page_store(), crash_on=3)).run(
            [OneStreamSource(PagedStream())], now=NOW
        )
    with engine.connect() as conn:
        assert load_cursor(conn, "stripe", "customers") == json.dumps({"page": 2})
        assert len(conn.execute(select(records.c.id)).all()) == 2 * PER_PAGE
    SyncEngine(engine, _page_store()).run([OneStreamSource(PagedStream())], now=NOW)
    assert _snapshot(engine) == _snapshot(reference)
    reference.dispose()


def test_what_names_no_person_is_quarantined_with_the_reason(engine: Engine) -> None:
    class Anonymous(PagedStream):
        def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
            payload = {"id": "cus_x", "object": "customer", "email": "not an e-mail", "name": "Nobody"}
            yield Batch(
                "stripe", "customers", [Record("stripe", "customers", "cus_x", NOW, payload)], cursor="{}"
            )

    report = SyncEngine(engine, _page_store()).run([OneStreamSource(Anonymous())], now=NOW)
    assert report.streams[0].quarantined == 0  # the customer id itself identifies the person
    with engine.connect() as conn:
        assert conn.execute(select(contact_identities.c.kind)).scalars().all() == ["stripe_customer"]

    class NoIds(PagedStream):
        def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
            ev = ContactEvent("stripe", "invoice.paid", "evt_1", NOW, {"email": "not an e-mail"})
            yield Batch("stripe", "customers", [], [ev], cursor="{}")

    report = SyncEngine(engine, _page_store()).run([OneStreamSource(NoIds())], now=NOW)
    assert report.streams[0].quarantined == 1
    with engine.connect() as conn:
        [reason] = conn.execute(select(quarantine.c.reason)).scalars().all()
    assert "no usable identity" in reason and "invoice.paid" in reason


def test_the_run_is_recorded_with_its_outcome(engine: Engine) -> None:
    SyncEngine(engine, _page_store()).run([OneStreamSource(PagedStream(fail_after=0))], now=NOW)
    with engine.connect() as conn:
        run = conn.execute(select(sync_runs)).one()
    assert run.status == "failed" and "connection lost" in run.error
    assert run.stats["streams"][0]["error"]


def test_the_run_record_says_how_long_it_took_while_its_data_keeps_the_runs_now(engine: Engine) -> None:
    class Slow(PagedStream):
        def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
            time.sleep(0.2)  # a slow provider; the bound below has room for a slow machine too
            yield from super().pull(cursor, now=now, full=full)

    SyncEngine(engine, _page_store()).run([OneStreamSource(Slow())], now=NOW)
    with engine.connect() as conn:
        run = conn.execute(select(sync_runs)).one()
        stored = set(conn.execute(select(records.c.stored_at)).scalars())
    assert run.started_at == NOW and timedelta(seconds=0.2) <= run.finished_at - run.started_at < timedelta(
        hours=1
    )
    assert stored == {NOW}


def test_a_value_that_does_not_fit_widens_the_field_and_keeps_every_stored_value(engine: Engine) -> None:
    class Changing(PagedStream):
        def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
            first = _customer(1)
            yield Batch("stripe", "customers", [first], cursor='{"page": 1}')
            odd = Record("stripe", "customers", "cus_2", NOW, {**_customer(2).payload, "balance": "unknown"})
            yield Batch("stripe", "customers", [odd], cursor='{"page": 2}')

    report = SyncEngine(engine, _page_store()).run([OneStreamSource(Changing())], now=NOW)
    assert any("stripe_customer_balance" in w and "string" in w for w in report.streams[0].widenings)
    with engine.connect() as conn:
        field = conn.execute(
            select(field_definitions.c.id, field_definitions.c.type).where(
                field_definitions.c.name == "stripe_customer_balance"
            )
        ).one()
        text, number = f"f{field.id}_text", f"f{field.id}_num"
        columns = field_columns(conn)
        table = fields_table([text])
        stored = conn.execute(select(table.c[text]).where(table.c[text].is_not(None))).scalars().all()
    assert field.type == "string"
    assert sorted(stored) == ["1", "unknown"]  # the integer moved to the text column
    assert text in columns and number not in columns


def _store(engine: Engine, store: PageStore, *pages: list[Record]) -> None:
    for page in pages:
        with engine.begin() as conn:
            store(conn, Batch("stripe", "customers", page), run_id=_run(conn), now=NOW)


def _run(conn: Connection) -> int:
    from sync.runs import start_run

    return start_run(conn, source="stripe", trigger="test", now=NOW)


def _balances(engine: Engine) -> list[tuple[str, float | None, datetime]]:
    """(e-mail, stored balance, time of the record it came from) of each contact holding one."""
    with engine.connect() as conn:
        field = load_fields(conn)["stripe_customer_balance"]
        table = fields_table([field.column])
        rows = conn.execute(
            select(contact_identities.c.value, table.c[field.column], field_sources.c.sources)
            .join(table, table.c.contact_id == contact_identities.c.contact_id)
            .join(field_sources, field_sources.c.contact_id == table.c.contact_id)
            .where(contact_identities.c.kind == "email")
        )
        return sorted(
            (value, number, datetime.fromisoformat(sources[str(field.id)][1]).replace(tzinfo=UTC))
            for value, number, sources in rows
            if str(field.id) in sources
        )


def _with(n: int, at: datetime, **changes: Any) -> Record:
    record = _customer(n)
    return Record("stripe", "customers", record.external_id, at, {**record.payload, **changes})


def test_stored_values_follow_the_latest_record_time_not_the_arrival_order(engine: Engine) -> None:
    store = _page_store()
    later, earlier = NOW, NOW - timedelta(days=1)
    _store(engine, store, [_with(1, later, balance=10)], [_with(1, earlier, balance=99)])
    assert _balances(engine) == [("person1@example.com", 10.0, later)]
    with engine.connect() as conn:
        payload = conn.execute(select(records.c.payload)).scalar_one()
    assert payload["balance"] == 10  # the older copy of the raw record is not stored either
    _store(engine, store, [_with(1, later + timedelta(hours=1), balance=11)])
    assert _balances(engine) == [("person1@example.com", 11.0, later + timedelta(hours=1))]


def test_within_a_page_the_later_record_wins_a_tie_even_when_it_repeats_the_stored_value(
    engine: Engine,
) -> None:
    store = _page_store()
    same_person = {"email": "person1@example.com"}
    _store(engine, store, [_with(1, NOW, balance=5)])
    # Two customers of one person, same time: the last one of the page wins, as the upsert runs in order.
    _store(engine, store, [_with(2, NOW, balance=7, **same_person), _with(1, NOW, balance=5)])
    assert _balances(engine) == [("person1@example.com", 5.0, NOW)]
    _store(engine, store, [_with(1, NOW, balance=5), _with(2, NOW, balance=7, **same_person)])
    assert _balances(engine) == [("person1@example.com", 7.0, NOW)]


def test_replaying_pages_writes_no_field_value_and_keeps_every_link(engine: Engine) -> None:
    pages = [[_customer(page * PER_PAGE + i) for i in range(PER_PAGE)] for page in range(2)]
    _store(engine, _page_store(), *pages)
    before = _snapshot(engine)
    with engine.connect() as conn:
        links = sorted(conn.execute(select(records.c.external_id, records.c.contact_id)).all())
    written: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(("INSERT INTO contact_fields", "UPDATE contact_fields")):
            written.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        _store(engine, _page_store(), *pages)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert written == []
    assert _snapshot(engine) == before
    with engine.connect() as conn:
        assert sorted(conn.execute(select(records.c.external_id, records.c.contact_id)).all()) == links
    assert all(contact_id is not None for _, contact_id in links)


def test_an_older_copy_that_names_its_person_links_the_stored_record_and_keeps_its_data(
    engine: Engine,
) -> None:
    store = _page_store()
    # Stored first with nothing that identifies anyone: kept, linked to no contact.
    _store(
        engine, store, [Record("stripe", "customers", "cus_1", NOW, {"object": "customer", "balance": 10})]
    )
    _store(engine, store, [_with(1, NOW - timedelta(hours=1), balance=99)])
    with engine.connect() as conn:
        linked, payload = conn.execute(select(records.c.contact_id, records.c.payload)).one()
        person = conn.execute(
            select(contact_identities.c.contact_id).where(contact_identities.c.value == "cus_1")
        ).scalar_one()
    assert linked == person
    assert payload["balance"] == 10  # the stored copy is newer: its data stays


def test_a_value_that_becomes_null_clears_the_stored_one(engine: Engine) -> None:
    store = _page_store()
    _store(engine, store, [_with(1, NOW - timedelta(hours=1), balance=3)], [_with(1, NOW, balance=None)])
    assert _balances(engine) == [("person1@example.com", None, NOW)]


class _Counting:
    """A page store that stores nothing and counts what it was given, in order."""

    def __init__(self) -> None:
        self.pages: list[str] = []

    def __call__(self, conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        self.pages.append(f"{batch.source}.{batch.stream}")
        return BatchResult(records=len(batch.records))


class _Gated(Stream):
    """Two pages; before its first it waits for `gate`, a stream of another source, to have started."""

    def __init__(
        self,
        source: str,
        name: str,
        started: dict[str, threading.Event],
        gate: str | None,
        *,
        alone: bool = True,
    ) -> None:
        self.source, self.name, self.started, self.gate, self.alone = source, name, started, gate, alone
        self.running = started.setdefault(f"{source}.{name}", threading.Event())

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        others = [k for k, e in self.started.items() if k.startswith(f"{self.source}.") and e.is_set()]
        if others and self.alone:
            raise PermanentError(f"{self.source}: {others} still running beside {self.name}")
        self.running.set()
        if self.gate is not None and not self.started[self.gate].wait(5):
            raise PermanentError(f"{self.source}.{self.name}: waited 5 s for {self.gate} to start")
        for page in range(2):
            yield Batch(self.source, self.name, [_customer(page)], cursor=str(page))
        self.running.clear()


class _Named(Source):
    def __init__(self, name: str, streams: list[Stream], *, side_by_side: bool = False) -> None:
        self.name, self._streams = name, streams
        self.streams_side_by_side = side_by_side

    @property
    def streams(self) -> list[Stream]:
        return self._streams


def test_sources_are_pulled_side_by_side_and_a_sources_streams_in_turn(engine: Engine) -> None:
    started: dict[str, threading.Event] = {}
    # stripe.customers waits for hubspot.contacts to start: pulled one source after another it would
    # wait in vain; stripe.invoices checks that no other stripe stream is running beside it.
    stripe = _Named(
        "stripe",
        [
            _Gated("stripe", "customers", started, "hubspot.contacts"),
            _Gated("stripe", "invoices", started, None),
        ],
    )
    hubspot = _Named("hubspot", [_Gated("hubspot", "contacts", started, None)])
    store = _Counting()
    report = SyncEngine(engine, store).run([stripe, hubspot], now=NOW)
    assert [s.error for s in report.streams] == [None, None, None]
    assert [f"{s.source}.{s.stream}" for s in report.streams] == [
        "stripe.customers",
        "stripe.invoices",
        "hubspot.contacts",
    ]
    assert sorted(store.pages) == sorted(
        ["stripe.customers"] * 2 + ["stripe.invoices"] * 2 + ["hubspot.contacts"] * 2
    )
    assert [s.records for s in report.streams] == [2, 2, 2]
    assert report.pull_seconds >= max(s.seconds for s in report.streams) > 0
    with engine.connect() as conn:
        assert (
            load_cursor(conn, "hubspot", "contacts") == "1" and load_cursor(conn, "stripe", "invoices") == "1"
        )


def test_a_stop_ends_every_source_at_a_page_and_reports_only_streams_that_began(engine: Engine) -> None:
    stripe = _Named("stripe", [PagedStream(), _Gated("stripe", "invoices", {}, None)])
    store = _Counting()
    report = SyncEngine(engine, store).run([stripe], now=NOW, should_stop=lambda: len(store.pages) >= 2)
    assert report.stopped and store.pages == ["stripe.customers"] * 2
    assert [(s.stream, s.pages) for s in report.streams] == [("customers", 2)]
    with engine.connect() as conn:
        assert load_cursor(conn, "stripe", "customers") == json.dumps({"page": 2})
        assert load_cursor(conn, "stripe", "invoices") is None


def test_a_source_that_allows_it_has_its_streams_pulled_side_by_side(engine: Engine) -> None:
    started: dict[str, threading.Event] = {}
    # Each waits for the other to start: pulled one after another, the first would wait in vain.
    streams: list[Stream] = [
        _Gated("stripe", "customers", started, "stripe.invoices", alone=False),
        _Gated("stripe", "invoices", started, "stripe.customers", alone=False),
    ]
    report = SyncEngine(engine, _Counting()).run([_Named("stripe", streams, side_by_side=True)], now=NOW)
    assert [(s.stream, s.error, s.records) for s in report.streams] == [
        ("customers", None, 2),
        ("invoices", None, 2),
    ]


def test_progress_names_every_stream_in_config_order_before_any_page(engine: Engine) -> None:
    started: dict[str, threading.Event] = {}
    stripe = _Named(
        "stripe",
        [_Gated("stripe", n, started, None, alone=False) for n in ("customers", "invoices")],
        side_by_side=True,
    )
    hubspot = _Named("hubspot", [_Gated("hubspot", "contacts", started, None)])
    seen: list[tuple[str, int]] = []
    SyncEngine(engine, _Counting()).run(
        [stripe, hubspot], now=NOW, on_progress=lambda s: seen.append((f"{s.source}.{s.stream}", s.pages))
    )
    # The live display adds a line per stream as it first hears of it: config order, not arrival.
    assert seen[:3] == [("stripe.customers", 0), ("stripe.invoices", 0), ("hubspot.contacts", 0)]
    assert len(seen) == 3 + 3 * 3  # then two pages and the end of each stream


def test_a_run_evaluates_segments_when_its_pull_is_over_not_at_its_start(engine: Engine) -> None:
    paid_7d = segments_from({"paid7": {"name": "P", "all": [{"event": "invoice.paid", "within": "7d"}]}})
    webhook, evaluated = NOW + timedelta(minutes=5), NOW + timedelta(minutes=10)

    def evaluate(
        conn: Connection, *, now: datetime, run_id: int | None, contact_ids: Collection[int] | None
    ) -> EvaluationReport:
        return evaluate_segments(conn, paid_7d, now=now, run_id=run_id, contact_ids=contact_ids)

    with engine.begin() as conn:
        s = Seeder(conn)
        late, lapsing = s.contact(at=NOW), s.contact(at=NOW)
        # Paid 7 days before 12:07: in the segment at the webhook's 12:05, out at the run's 12:10.
        s.event(lapsing, "invoice.paid", NOW - timedelta(days=7) + timedelta(minutes=7))
        evaluate_segments(conn, paid_7d, now=NOW - timedelta(hours=1))

    def webhook_during_the_pull(stream: Any) -> None:
        if stream.pages == 1:
            with engine.begin() as conn:
                s.conn = conn
                s.event(late, "invoice.paid", webhook)
                evaluate(conn, now=webhook, run_id=None, contact_ids=[late])

    report = SyncEngine(engine, _page_store(), evaluate).run(
        [OneStreamSource(PagedStream())],
        now=NOW,
        clock=lambda: evaluated,
        on_progress=webhook_during_the_pull,
    )
    assert report.evaluation is not None and report.evaluation.now == evaluated
    with engine.connect() as conn:
        t = transitions.c
        moves = conn.execute(
            select(t.contact_id, t.kind, t.occurred_at)
            .where(t.contact_id.in_([late, lapsing]))
            .order_by(t.id)
        ).all()
    assert [tuple(m) for m in moves] == [
        (lapsing, "entered", NOW - timedelta(hours=1)),
        (late, "entered", webhook),  # and no `left` at the run's start
        (lapsing, "left", evaluated),  # its week ran out by the time the run evaluated
    ]


class LockedStore:
    """Stores pages until the n-th, which another process's write lock keeps out past the busy timeout."""

    def __init__(self, inner: PageStore, fail_on: int, error: BaseException) -> None:
        self.inner, self.fail_on, self.error, self.calls = inner, fail_on, error, 0

    def __call__(self, conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error
        return self.inner(conn, batch, run_id=run_id, now=now)


def _locked() -> OperationalError:
    """`database is locked` as SQLAlchemy raises it: its text holds the statement and its parameters."""
    orig = sqlite3.OperationalError("database is locked")
    return OperationalError("SELECT id FROM contacts WHERE email = ?", ("someone@example.com",), orig)


def test_a_run_that_raises_is_closed_as_failed_with_its_error_and_the_error_goes_on(engine: Engine) -> None:
    store = LockedStore(_page_store(), fail_on=3, error=_locked())
    with pytest.raises(OperationalError, match="database is locked"):
        SyncEngine(engine, store).run([OneStreamSource(PagedStream())], now=NOW)
    with engine.connect() as conn:
        run = conn.execute(select(sync_runs)).one()
        still_storing = earliest_storing_start(conn, now=NOW + timedelta(minutes=1))
    # Closed, not `running` for ever: it would hold back every segment cut and HubSpot push.
    assert (run.status, run.error) == ("failed", "OperationalError: database is locked")
    assert run.finished_at is not None and still_storing is None
    assert [s["records"] for s in run.stats["streams"]] == [2 * PER_PAGE]  # the pages it stored
    with engine.connect() as conn:
        assert load_cursor(conn, "stripe", "customers") == json.dumps({"page": 2})


def test_a_run_that_fails_while_evaluating_is_closed_as_failed_too(engine: Engine) -> None:
    def evaluate(
        conn: Connection, *, now: datetime, run_id: int | None, contact_ids: Collection[int] | None
    ) -> EvaluationReport:
        raise _locked()

    with pytest.raises(OperationalError):
        SyncEngine(engine, _page_store(), evaluate).run([OneStreamSource(PagedStream())], now=NOW)
    with engine.connect() as conn:
        run = conn.execute(select(sync_runs)).one()
    assert (run.status, run.error) == ("failed", "OperationalError: database is locked")


def test_ctrl_c_leaves_the_run_for_the_command_to_close_as_interrupted(engine: Engine) -> None:
    store = LockedStore(_page_store(), fail_on=2, error=KeyboardInterrupt())
    with tracking_runs() as started, pytest.raises(KeyboardInterrupt):
        SyncEngine(engine, store).run([OneStreamSource(PagedStream())], now=NOW)
    with engine.connect() as conn:
        assert conn.execute(select(sync_runs.c.status)).scalar_one() == "running"
    with write_transaction(engine) as conn:
        assert mark_interrupted(conn, started, now=NOW) == [started[0][0]]
    with engine.connect() as conn:
        assert conn.execute(select(sync_runs.c.status)).scalar_one() == "interrupted"
