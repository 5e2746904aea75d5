"""Migrations that move data: 0005 (field rows to typed columns and back), 0008 (memberships rebuilt),
0010 (payments keyed by invoice), 0016 (a column on sync_runs, which other tables refer to)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, bindparam, column, insert, inspect, select, table, text

from sync.fields import load_fields, read_values
from sync.runs import start_run
from sync.store import create_store_engine
from sync.store.field_columns import stamp
from sync.store.tables import contacts, events, field_sources, records
from sync.store.types import UtcDateTime

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _sources(conn: Connection, contact_id: int) -> dict[str, list[str]]:
    fs = field_sources.c
    return dict(conn.execute(select(fs.sources).where(fs.contact_id == contact_id)).scalar_one())


def _migrate(conn: Connection, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", "sync.store:migrations")
    config.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(config, revision)


# The key-value table as revision 0004 has it, to write and read it without the current tables.
_FIELD_VALUES = table(
    "field_values",
    column("contact_id"),
    column("field_id"),
    column("value_text"),
    column("value_num"),
    column("value_time", UtcDateTime()),
    column("value_bool"),
    column("source"),
    column("updated_at", UtcDateTime()),
)
_HELD: list[tuple[Any, ...]] = [
    (1, 1, "gold", None, None, None, "stripe", T0),
    (1, 2, None, 3.0, None, None, "hubspot", T0 + timedelta(hours=1)),
    (2, 3, None, None, None, True, "crmhub", T0 + timedelta(microseconds=5)),
    (2, 4, None, None, datetime(1980, 5, 17, tzinfo=UTC), None, "typeform", T0 - timedelta(days=2)),
    (2, 2, None, None, None, None, "stripe", T0 - timedelta(days=3)),  # a value a record cleared
]


def test_migration_0005_copies_field_values_with_their_provenance_and_back(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    try:
        with engine.begin() as conn:
            _migrate(conn, "0004")
            _seed_key_values(conn)
        with engine.begin() as conn:
            _migrate(conn, "head")
        with engine.connect() as conn:
            assert "field_values" not in _tables(conn)
            assert read_values(conn, [1, 2, 3], load_fields(conn)) == {
                1: {"plan": "gold", "seats": 3},
                2: {"vip": True, "born": date(1980, 5, 17)},
            }
            assert _sources(conn, 1) == {
                "1": ["stripe", stamp(T0)],
                "2": ["hubspot", stamp(T0 + timedelta(hours=1))],
            }
            assert _sources(conn, 2) == {
                "2": ["stripe", stamp(T0 - timedelta(days=3))],
                "3": ["crmhub", stamp(T0 + timedelta(microseconds=5))],
                "4": ["typeform", stamp(T0 - timedelta(days=2))],
            }
        with engine.begin() as conn:
            _migrate(conn, "0004", down=True)
        with engine.connect() as conn:
            assert "contact_fields" not in _tables(conn)
            back = conn.execute(
                select(_FIELD_VALUES).order_by(_FIELD_VALUES.c.contact_id, _FIELD_VALUES.c.field_id)
            )
            # Nulls are not values: the key-value rows that come back are those holding one.
            held = [row for row in _HELD if any(v is not None for v in row[2:6])]
            assert [tuple(row) for row in back] == sorted(held, key=lambda row: (row[0], row[1]))
    finally:
        engine.dispose()


def _seed_contacts(conn: Connection, ids: tuple[int, ...]) -> None:
    """Contacts written without the current tables, as every revision knows them."""
    conn.execute(
        text(
            "INSERT INTO contacts (id, state, created_at, updated_at, changed_at, transition_seq)"
            " VALUES (:id, 'active', :at, :at, :at, 0)"
        ).bindparams(bindparam("at", type_=UtcDateTime())),
        [{"id": i, "at": T0} for i in ids],
    )


def _seed_key_values(conn: Connection) -> None:
    """Contacts, definitions and key-value rows written as revision 0004 knows them."""
    at = bindparam("at", type_=UtcDateTime())
    _seed_contacts(conn, (1, 2, 3))
    conn.execute(
        text(
            "INSERT INTO field_definitions (id, name, type, label, origin, first_seen_at, updated_at)"
            " VALUES (:id, :name, :type, :name, 'rule', :at, :at)"
        ).bindparams(at),
        [
            {"id": 1, "name": "plan", "type": "enum", "at": T0},
            {"id": 2, "name": "seats", "type": "integer", "at": T0},
            {"id": 3, "name": "vip", "type": "boolean", "at": T0},
            {"id": 4, "name": "born", "type": "date", "at": T0},
        ],
    )
    names = _FIELD_VALUES.c.keys()
    conn.execute(
        text(
            f"INSERT INTO field_values ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
        ).bindparams(
            bindparam("value_time", type_=UtcDateTime()), bindparam("updated_at", type_=UtcDateTime())
        ),
        [dict(zip(names, row, strict=True)) for row in _HELD],
    )


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _memberships_ddl(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'memberships'").scalar_one())


def test_migration_0008_clusters_memberships_on_sqlite_and_keeps_every_row(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    rows = [(1, 1, "a"), (1, 2, None), (2, 1, "b")]
    try:
        with engine.begin() as conn:
            _migrate(conn, "0007")
            _seed_contacts(conn, (1, 2))
            at = bindparam("at", type_=UtcDateTime())
            conn.execute(
                text(
                    "INSERT INTO segments (id, key, name, rule, rule_version, depends_on_time, created_at,"
                    " updated_at) VALUES (:id, :key, :key, '{}', 'v1', false, :at, :at)"
                ).bindparams(at),
                [{"id": i, "key": f"s{i}", "at": T0} for i in (1, 2)],
            )
            conn.execute(
                text(
                    "INSERT INTO memberships (segment_id, contact_id, entered_at, variant)"
                    " VALUES (:s, :c, :at, :v)"
                ).bindparams(at),
                [{"s": s, "c": c, "v": v, "at": T0} for s, c, v in rows],
            )
        stored = "SELECT segment_id, contact_id, variant FROM memberships ORDER BY segment_id, contact_id"
        for revision, down in (("head", False), ("0007", True), ("head", False)):
            with engine.begin() as conn:
                _migrate(conn, revision, down=down)
            with engine.connect() as conn:
                assert [tuple(r) for r in conn.exec_driver_sql(stored)] == rows
                indexes = {i["name"] for i in inspect(conn).get_indexes("memberships")}
                assert indexes == {"ix_memberships_contact_id"}
                if conn.dialect.name == "sqlite":
                    assert ("WITHOUT ROWID" in _memberships_ddl(conn)) is not down
    finally:
        engine.dispose()


def test_payments_stored_under_event_ids_are_keyed_by_their_invoice_once(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    with engine.begin() as conn:
        _migrate(conn, "0009")
    at = datetime(2026, 11, 1, tzinfo=UTC)

    def paid(
        row_id: int, key: str, invoice: str, contact: int = 1, name: str = "invoice.paid"
    ) -> dict[str, object]:
        props = {"object": "invoice", "object_id": invoice}
        return {
            "id": row_id,
            "contact_id": contact,
            "name": name,
            "occurred_at": at,
            "source": "stripe",
            "external_id": key,
            "properties": props,
        }

    with engine.begin() as conn:
        conn.execute(
            insert(contacts),
            [{"id": c, "created_at": at, "updated_at": at, "changed_at": at} for c in (1, 2)],
        )
        conn.execute(
            insert(events),
            [
                paid(1, "evt_a", "in_a"),  # old key only: re-keyed
                paid(2, "evt_b1", "in_b"),  # the same payment twice under old keys: one kept
                paid(3, "evt_b2", "in_b"),
                paid(4, "evt_c", "in_c", contact=2),  # already stored under the new key too
                paid(5, "in_c", "in_c", contact=2),
                paid(6, "evt_d", "in_d", name="invoice.payment_failed"),  # not a payment: untouched
            ],
        )
    with engine.begin() as conn:
        _migrate(conn, "head")
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.id, events.c.external_id, events.c.name).order_by(events.c.id)
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "in_a", "invoice.paid"),
        (2, "in_b", "invoice.paid"),
        (5, "in_c", "invoice.paid"),
        (6, "evt_d", "invoice.payment_failed"),
    ]


def test_migration_0016_adds_and_drops_the_runs_holder_keeping_every_reference_to_runs(
    empty_store_url: str,
) -> None:
    engine = create_store_engine(empty_store_url)
    try:
        with engine.begin() as conn:
            _migrate(conn, "head")
            run_id = start_run(conn, source="stripe", trigger="manual", now=T0, holder="host:1:abcd")
            conn.execute(
                insert(records).values(
                    source="stripe",
                    stream="customers",
                    external_id="cus_1",
                    updated_at=T0,
                    stored_at=T0,
                    payload={},
                    run_id=run_id,
                )
            )
        for revision, down in (("0015", True), ("head", False)):
            with engine.begin() as conn:
                _migrate(conn, revision, down=down)
            with engine.connect() as conn:
                columns = {c["name"] for c in inspect(conn).get_columns("sync_runs")}
                assert ("holder" in columns) is not down
                # A copied and dropped sync_runs would have set every record's run to NULL.
                assert conn.execute(select(records.c.run_id)).scalar_one() == run_id
                indexes = {i["name"] for i in inspect(conn).get_indexes("sync_runs")}
                assert indexes == {"ix_sync_runs_started_at"}
    finally:
        engine.dispose()
