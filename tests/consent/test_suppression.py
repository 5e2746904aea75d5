"""The suppression lookup of a page's new contacts: right answer, through the list's index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event

from sync.consent.suppression import identity_hash, suppress_values, suppressed_identities
from sync.identity import resolve

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_listed_identities_are_found_through_the_list_index_not_the_whole_list(engine: Engine) -> None:
    executed: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "suppressions" in statement:
            executed.append((statement, parameters))

    with engine.begin() as conn:
        suppress_values(
            conn, [("email", "b@x.io"), ("phone", "+14155552671"), ("email", "z@x.io")], reason="t", now=NOW
        )
        first, second, third = resolve(
            conn,
            [
                {"email": "a@x.io", "phone": "+14155552671"},
                {"email": "b@x.io"},
                {"email": "c@x.io", "phone": "+14155552672"},
            ],
            source="stripe",
            now=NOW,
        )
        assert first is not None and second is not None and third is not None
        event.listen(engine, "before_cursor_execute", note)
        try:
            found = suppressed_identities(conn, [first, second, third])
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert found == {first: {"phone"}, second: {"email"}}
    if engine.dialect.name == "sqlite":
        # On the hash alone SQLite read every listed identity for each page of new contacts.
        assert executed
        with engine.connect() as conn:
            for sql, parameters in executed:
                plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
                assert not any(step.startswith("SCAN") for step in plan), plan
                assert any(step.startswith("SEARCH suppressions") for step in plan), plan


def test_a_listed_line_is_listed_whatever_extension_an_identity_names() -> None:
    line = identity_hash("+14155552671")
    assert identity_hash("+14155552671;ext=12") == identity_hash("+14155552671;ext=34") == line
    assert identity_hash("ada@example.com") != line
