"""The store: migrations on an empty database of each backend, idempotence, types, SQLite settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import StatementError

from sync.exceptions import SchemaOutOfDateError
from sync.store import create_store_engine, ensure_schema, normalize_url, status, upgrade
from sync.store.tables import contacts, metadata


def _schema(url: str) -> dict[str, list[str]]:
    engine = create_store_engine(url)
    try:
        insp = inspect(engine)
        return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in sorted(insp.get_table_names())}
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_twice_changes_nothing(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    assert status(engine).current is None
    first = upgrade(engine)
    schema_after_first = _schema(empty_store_url)
    second = upgrade(engine)
    assert first.up_to_date and second.up_to_date and first.current == second.current
    assert set(metadata.tables) | {"alembic_version"} == set(schema_after_first)
    assert _schema(empty_store_url) == schema_after_first
    engine.dispose()


def test_migrations_match_the_table_definitions(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert diff == [], "tables.py changed without a migration: write one in sync/store/migrations/versions"


def test_status_lists_pending_revisions_on_an_empty_database(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    before = status(engine)
    assert not before.up_to_date and before.pending[-1] == before.head
    engine.dispose()


def test_schema_behind_the_code_is_refused_when_migrations_on_start_are_off(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    with pytest.raises(SchemaOutOfDateError, match="crmhub db upgrade"):
        ensure_schema(engine, migrate=False)
    assert ensure_schema(engine, migrate=True).up_to_date
    assert ensure_schema(engine, migrate=False).up_to_date
    engine.dispose()


def test_times_round_trip_as_aware_utc(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    upgrade(engine)
    berlin = datetime(2026, 11, 23, 15, 0, tzinfo=timezone(timedelta(hours=1)))
    with engine.begin() as conn:
        conn.execute(insert(contacts).values(id=1, created_at=berlin, updated_at=berlin, changed_at=berlin))
    with engine.connect() as conn:
        stored = conn.execute(select(contacts.c.created_at)).scalar_one()
    assert stored == berlin and stored.tzinfo == UTC and stored.hour == 14
    engine.dispose()


def test_naive_times_are_refused(tmp_path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    naive = datetime(2026, 11, 23, 15, 0)
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(contacts).values(created_at=naive, updated_at=naive, changed_at=naive))
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(tmp_path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_sqlite_rolls_back_a_failed_transaction_whole(tmp_path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(insert(contacts).values(created_at=now, updated_at=now, changed_at=now))
        raise RuntimeError("crash between two writes")
    with engine.connect() as conn:
        assert conn.execute(select(contacts.c.id)).all() == []
    engine.dispose()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///crmhub.db", "sqlite:///crmhub.db"),
    ],
)
def test_postgresql_urls_use_psycopg_3(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_sqlite_time_text_is_exactly_what_sqlalchemy_stores() -> None:
    # Rows written by either path are compared as text in SQL, so the formats must not drift apart.
    from sqlalchemy.dialects import sqlite

    from sync.store.types import UtcDateTime

    dialect = sqlite.dialect()
    reference = sqlite.DATETIME().bind_processor(dialect)
    ours = UtcDateTime().bind_processor(dialect)
    assert reference is not None and ours is not None
    for when in (
        datetime(2026, 11, 23, 15, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 1, 2, 3, 4, 5, 6, UTC),
    ):
        assert ours(when) == reference(when.astimezone(UTC).replace(tzinfo=None))


def test_values_go_to_each_types_column_kind_and_come_back_typed(empty_store_url: str) -> None:
    from datetime import date
    from decimal import Decimal

    from field_mapping.types import STORAGE, FieldType, to_columns
    from sync.fields import create_field, read_values, save_values, stored_value

    at = datetime(2026, 11, 23, tzinfo=UTC)
    samples = {
        FieldType.BOOLEAN: True,
        FieldType.INTEGER: 3,
        FieldType.DECIMAL: Decimal("9.95"),
        FieldType.DATETIME: at,
        FieldType.DATE: date(2026, 1, 2),
        FieldType.EMAIL: "ada@example.com",
        FieldType.PHONE: "+14155552671",
        FieldType.ENUM: "pro",
        FieldType.STRING: "text",
    }
    assert set(samples) == set(FieldType)
    kinds = {"value_text": "_text", "value_num": "_num", "value_time": "_time", "value_bool": "_bool"}
    engine = create_store_engine(empty_store_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(contacts).values(id=1, created_at=at, updated_at=at, changed_at=at))
        fields = {
            ftype.value: create_field(
                conn, ftype.value, ftype, now=at, label="x", origin="rule", source="stripe"
            )
            for ftype in samples
        }
        for ftype, value in samples.items():
            field = fields[ftype.value]
            assert field.column.endswith(kinds[STORAGE[ftype].value])
            assert stored_value(ftype, value) == getattr(to_columns(ftype, value), STORAGE[ftype].value)
        save_values(
            conn,
            [(1, fields[t.value], stored_value(t, v), "stripe", at) for t, v in samples.items()],
            fresh={1},
        )
    with engine.connect() as conn:
        assert read_values(conn, [1], fields) == {1: {t.value: v for t, v in samples.items()}}
    engine.dispose()
