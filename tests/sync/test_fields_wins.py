"""A mapping rule's `wins` decides which source's value a field keeps when sources disagree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from connectors import Batch, Record
from field_mapping.config import FieldMappingConfig, Wins
from field_mapping.mapper import Mapper
from field_mapping.types import FieldType
from sync.fields import create_field, load_fields, read_values, save_values
from sync.ingest import PageStore
from sync.runs import start_run
from sync.store.tables import contacts

T0 = datetime(2026, 11, 23, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("wins", "kept"),
    [
        ("latest", "pro"),  # the default: the newest record
        ("first", "enterprise"),
        (("hubspot", "stripe"), "enterprise"),
        (("stripe", "hubspot"), "pro"),
        (("typeform",), "pro"),  # neither listed: the newest of them
    ],
)
@pytest.mark.parametrize("together", [False, True], ids=["two-pages", "one-page"])
def test_the_rules_wins_decides_between_hubspot_then_stripe(
    engine: Engine, wins: Wins, kept: str, together: bool
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(contacts).values(id=1, created_at=T0, updated_at=T0, changed_at=T0))
        plan = create_field(conn, "plan", FieldType.STRING, now=T0, label="Plan", origin="rule", source=None)
        hubspot, stripe = (1, plan, "enterprise", "hubspot", T0), (1, plan, "pro", "stripe", LATER)
        pages = [[hubspot, stripe]] if together else [[hubspot], [stripe]]
        for page in pages:
            save_values(conn, page, wins={plan.id: wins})
        assert read_values(conn, [1], {"plan": plan})[1]["plan"] == kept


def test_a_lower_ranked_source_sending_nothing_does_not_clear_the_value(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(contacts).values(id=1, created_at=T0, updated_at=T0, changed_at=T0))
        plan = create_field(conn, "plan", FieldType.STRING, now=T0, label="Plan", origin="rule", source=None)
        save_values(conn, [(1, plan, "enterprise", "hubspot", T0)], wins={plan.id: ("hubspot",)})
        save_values(conn, [(1, plan, None, "stripe", LATER)], wins={plan.id: ("hubspot",)})
        assert read_values(conn, [1], {"plan": plan})[1]["plan"] == "enterprise"


def test_a_sync_keeps_the_value_of_the_source_the_rules_rank_first(engine: Engine) -> None:
    rules = [
        {
            "source": source,
            "stream": stream,
            "path": path,
            "field": "plan",
            "type": "string",
            "wins": ["hubspot", "stripe"],
        }
        for source, stream, path in (
            ("hubspot", "contacts", "properties.plan"),
            ("stripe", "customers", "metadata.plan"),
        )
    ]
    store = PageStore(Mapper(FieldMappingConfig.model_validate({"rules": rules})))
    hubspot = Record(
        "hubspot",
        "contacts",
        "7",
        T0,
        {"id": "7", "properties": {"email": "ada@example.com", "plan": "enterprise"}},
    )
    stripe = Record(
        "stripe",
        "customers",
        "cus_7",
        LATER,
        {"id": "cus_7", "email": "ada@example.com", "metadata": {"plan": "pro"}},
    )
    for record in (hubspot, stripe):
        with engine.begin() as conn:
            run_id = start_run(conn, source=record.source, trigger="test", now=LATER)
            store(conn, Batch(record.source, record.stream, [record]), run_id=run_id, now=LATER)
    with engine.connect() as conn:
        plan = load_fields(conn)["plan"]
        assert list(read_values(conn, [1], {"plan": plan}).values()) == [{"plan": "enterprise"}]
