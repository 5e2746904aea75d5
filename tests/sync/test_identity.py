"""Identity resolution: one contact per person across sources, merges logged, nothing guessed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert, select, text

from sync.consent import current_contact
from sync.consent.suppression import listed_kinds, suppress_values, suppressed_identities
from sync.identity import _LAST_TAKEN, identities_of, merge, resolve, resolve_batch
from sync.store.tables import contact_identities, contacts, events, merge_log

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_the_same_person_from_four_sources_is_one_contact(engine: Engine) -> None:
    with engine.begin() as conn:
        [stripe] = resolve(
            conn, [{"email": "ada@example.com", "stripe_customer": "cus_1"}], source="stripe", now=NOW
        )
        [hubspot] = resolve(
            conn, [{"email": "ada@example.com", "hubspot_contact": "101"}], source="hubspot", now=NOW
        )
        [typeform] = resolve(
            conn, [{"phone": "+14155552671", "email": "ada@example.com"}], source="typeform", now=NOW
        )
        [segment] = resolve(
            conn, [{"segmentio_user": "u1", "phone": "+14155552671"}], source="segmentio", now=NOW
        )
        assert stripe == hubspot == typeform == segment
        assert conn.execute(select(contacts.c.id)).scalars().all() == [stripe]
        kinds = (
            conn.execute(select(contact_identities.c.kind).order_by(contact_identities.c.kind))
            .scalars()
            .all()
        )
    assert kinds == ["email", "hubspot_contact", "phone", "segmentio_user", "stripe_customer"]


def test_items_of_one_batch_that_share_a_hint_become_one_contact(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = resolve(
            conn,
            [
                {"stripe_customer": "cus_1"},
                {"email": "a@x.io", "stripe_customer": "cus_1"},
                {"email": "b@x.io"},
                {},
            ],
            source="stripe",
            now=NOW,
        )
    assert ids[0] == ids[1] != ids[2] and ids[3] is None


def test_a_batch_names_the_identities_its_new_contacts_were_created_with(engine: Engine) -> None:
    with engine.begin() as conn:
        [old] = resolve(conn, [{"email": "old@x.io"}], source="stripe", now=NOW)
        resolution = resolve_batch(
            conn,
            [
                {"email": "old@x.io", "phone": "+14155552671"},  # joins the stored contact
                {"email": "new@x.io", "stripe_customer": "cus_1"},
                {"stripe_customer": "cus_1", "phone": "+14155552672"},  # the same new person
            ],
            source="stripe",
            now=NOW,
        )
        first, new, same = resolution.contact_ids
        assert first == old and new == same and new is not None and new != old
        assert resolution.created == {new}
        # The phone that joined the stored contact is a new identity, but not of a new contact.
        assert sorted(resolution.created_identities) == [
            (new, "email", "new@x.io"),
            (new, "phone", "+14155552672"),
            (new, "stripe_customer", "cus_1"),
        ]
        # The suppression check of new contacts reads these instead of the store: same answer.
        suppress_values(conn, [("phone", "+14155552672"), ("email", "old@x.io")], reason="t", now=NOW)
        assert listed_kinds(conn, resolution.created_identities) == {new: {"phone"}}
        assert suppressed_identities(conn, [new]) == {new: {"phone"}}


def test_a_record_linking_two_contacts_merges_them_with_a_log(engine: Engine) -> None:
    with engine.begin() as conn:
        [first] = resolve(conn, [{"stripe_customer": "cus_1"}], source="stripe", now=NOW)
        [second] = resolve(conn, [{"email": "ada@example.com"}], source="hubspot", now=NOW)
        conn.execute(
            insert(events).values(
                contact_id=second,
                name="form.submitted",
                occurred_at=NOW,
                source="typeform",
                external_id="t1",
                properties={},
            )
        )
        assert first is not None and second is not None and first != second
        [merged] = resolve(
            conn, [{"stripe_customer": "cus_1", "email": "ada@example.com"}], source="stripe", now=NOW
        )
        assert merged == min(first, second)
        assert conn.execute(select(contacts.c.id)).scalars().all() == [merged]
        assert conn.execute(select(events.c.contact_id)).scalars().all() == [merged]
        log = conn.execute(select(merge_log)).one()
    assert (log.kept_contact_id, log.merged_contact_id) == (merged, max(first, second))
    assert log.reason == "shared identity"


def _contacts_and_merge_log_read(conn: Connection, act: Callable[[], object]) -> int:
    """Rows of contacts and merge_log that `act` read (PostgreSQL) or SQLite VM steps in thousands."""
    if conn.dialect.name == "sqlite":
        steps = [0]
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)

        def count() -> int:
            steps[0] += 1
            return 0

        driver.set_progress_handler(count, 1000)
        try:
            act()
        finally:
            driver.set_progress_handler(None, 0)
        return steps[0]
    read = text(
        "SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_xact_user_tables"
        " WHERE relname IN ('contacts', 'merge_log')"
    )
    before = conn.execute(read).scalar_one()
    act()
    return int(conn.execute(read).scalar_one() - before)


def test_a_merge_costs_the_same_however_many_contacts_the_store_holds(engine: Engine) -> None:
    # Deleting the merged contact looks for contacts and merge-log rows referring to it; unindexed,
    # that read the whole of both tables on every merge (15 ms per merge at 300,000 contacts).
    def merge_two(conn: Connection, n: int) -> int:
        pair = [f"cus_{n}_a", f"cus_{n}_b"]
        a, b = (resolve(conn, [{"stripe_customer": c}], source="stripe", now=NOW)[0] for c in pair)
        assert a is not None and b is not None
        return _contacts_and_merge_log_read(
            conn, lambda: merge(conn, keep=a, others=[b], reason="test", now=NOW)
        )

    def fill(conn: Connection, count: int) -> None:
        row = {"state": "active", "created_at": NOW, "updated_at": NOW, "changed_at": NOW}
        conn.execute(insert(contacts), [row] * count)

    with engine.begin() as conn:
        fill(conn, 2_000)
        small = merge_two(conn, 1)
        fill(conn, 20_000)
        large = merge_two(conn, 2)
    assert large <= small + 2, (small, large)


def test_hostile_identity_values_are_data(engine: Engine) -> None:
    value = "x'); DROP TABLE contacts; -- " + "ü" * 200
    with engine.begin() as conn:
        [cid] = resolve(conn, [{"segmentio_user": value}], source="segmentio", now=NOW)
        assert conn.execute(select(contact_identities.c.value)).scalar_one() == value
        assert conn.execute(select(contacts.c.id)).scalar_one() == cid


def test_identities_of_contacts_are_found_through_the_contact_index_not_every_email(engine: Engine) -> None:
    executed: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        executed.append((statement, parameters))

    with engine.begin() as conn:
        first, second, _ = contact_ids = resolve(
            conn,
            [
                {"email": "a@x.io", "phone": "+14155552671"},
                {"email": "b@x.io", "stripe_customer": "cus_2"},
                {"stripe_customer": "cus_3"},
            ],
            source="stripe",
            now=NOW,
        )
        event.listen(engine, "before_cursor_execute", note)
        try:
            # Three contacts or more: with two, SQLite already prefers the contact index.
            found = identities_of(conn, [c for c in contact_ids if c is not None], ["email", "phone"])
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert sorted(found) == [
        (first, "email", "a@x.io", True),
        (first, "phone", "+14155552671", True),
        (second, "email", "b@x.io", True),
    ]
    if engine.dialect.name == "sqlite":
        # With `kind IN (...)` in SQL, SQLite walked the (kind, value) index: every e-mail in the store.
        [(sql, parameters)] = executed
        with engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
        assert any("ix_contact_identities_contact_id" in step for step in plan), plan


def test_the_highest_taken_number_is_read_from_indexes_not_by_scanning_logs(engine: Engine) -> None:
    # Asked on every page that creates contacts: without an index the erasure log is read whole.
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans over empty tables scan whatever the indexes; the plan is SQLite's")
    with engine.connect() as conn:
        sql = str(_LAST_TAKEN.compile(dialect=conn.dialect))
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    assert "SEARCH merge_log USING COVERING INDEX ix_merge_log_merged_contact_id" in plan, plan
    assert "SEARCH erasure_log USING COVERING INDEX ix_erasure_log_contact_id" in plan, plan


def test_a_contact_merged_twice_over_still_leads_to_the_kept_one_and_its_number_stays_taken(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        first, second, third = (
            resolve(conn, [{"email": f"{name}@example.com"}], source="hubspot", now=NOW)[0]
            for name in ("a", "b", "c")
        )
        assert first is not None and second is not None and third is not None
        merge(conn, keep=second, others=[third], reason="shared identity", now=NOW)
        merge(conn, keep=first, others=[second], reason="shared identity", now=NOW)
        assert current_contact(conn, third) == first  # senders' feedback may still name the third
        [new] = resolve(conn, [{"email": "d@example.com"}], source="hubspot", now=NOW)
    assert new == third + 1
