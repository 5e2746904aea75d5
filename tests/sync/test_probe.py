"""PostgreSQL lookups of many (kind, value) keys probe the unique index per value, whatever the plan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Column, Engine, event, insert
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from sync.consent.suppression import identity_hash, listed_kinds
from sync.identity import resolve
from sync.store.probe import probe_unique
from sync.store.tables import contact_identities, suppressions
from tests.pg_plans import rows_read

NOW = datetime(2026, 11, 23, tzinfo=UTC)
POSTGRES = [pytest.param("postgresql", marks=pytest.mark.postgres)]
ci, sup = contact_identities.c, suppressions.c


def _fill(engine: Engine, table: str, count: int) -> list[str]:
    """`count` rows of kind email in `table`; every 200th stored value."""
    with engine.begin() as conn:
        if table == "contact_identities":
            [cid] = resolve(conn, [{"email": "first@x.io"}], source="stripe", now=NOW)
            values = [f"p{n}@x.io" for n in range(count)]
            rows: list[dict[str, Any]] = [
                {"contact_id": cid, "kind": "email", "value": v, "source": "stripe", "first_seen_at": NOW}
                for v in values
            ]
            conn.execute(insert(contact_identities), rows)
        else:
            values = [identity_hash(f"p{n}@x.io") for n in range(count)]
            rows = [{"kind": "email", "value_hash": v, "reason": "import", "created_at": NOW} for v in values]
            conn.execute(insert(suppressions), rows)
    return values[::200]


@pytest.mark.parametrize("backend", POSTGRES, indirect=True)
@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("contact_identities", (ci.kind, ci.value, ci.contact_id)),
        ("suppressions", (sup.kind, sup.value_hash)),
    ],
)
def test_a_probe_reads_one_row_per_value_in_a_generic_plan_of_a_table_never_analyzed(
    engine: Engine, table: str, columns: tuple[Column[Any], ...]
) -> None:
    # psycopg prepares a statement run five times; with `value IN (...)` the generic plan of a table
    # never analyzed (a first sync outruns autovacuum) read every row of the kind: 40,002 here.
    wanted = _fill(engine, table, 20_000)
    sql = str(probe_unique(*columns).compile(dialect=PGDialect_psycopg(paramstyle="numeric_dollar")))
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        # Parameters bound on the client: the server cannot type a utility statement's own.
        cursor = psycopg.ClientCursor(driver)
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE probe AS {sql}")
        execute = "EXECUTE probe(%s::varchar[], %s, 1)"
        [[[plan]]] = cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}", (wanted, "email")).fetchall()
        found = cursor.execute(execute, (wanted, "email")).fetchall()
        cursor.execute("DEALLOCATE probe")
    assert sorted(row[0] for row in found) == sorted(wanted)
    assert rows_read(plan["Plan"], table) <= 2 * len(wanted), plan


@pytest.mark.parametrize("backend", POSTGRES, indirect=True)
def test_identity_resolution_and_the_suppression_list_look_up_by_probe_on_postgresql(engine: Engine) -> None:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.begin() as conn:
        [cid] = resolve(conn, [{"email": "ada@x.io"}], source="stripe", now=NOW)
        assert cid is not None
        conn.execute(
            insert(suppressions).values(
                kind="email", value_hash=identity_hash("ada@x.io"), reason="import", created_at=NOW
            )
        )
        assert listed_kinds(conn, [(cid, "email", "ada@x.io")]) == {cid: {"email"}}
    probes = [s for s in statements if "JOIN LATERAL" in s]
    assert [p.split("FROM ")[2].split()[0] for p in probes] == ["contact_identities", "suppressions"]
