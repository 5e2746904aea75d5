"""`crmhub plan` on the sandbox: the fields a sync would create, with nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.demo import Demo
from sync.store.tables import cursors, field_definitions, records


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    session = Demo(tmp_path, people=40, seed=4)
    session.start()
    yield session
    session.stop()


def _plan(demo: Demo, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app, ["--config", str(demo.config_path), "plan", "--json", *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    plan: dict[str, object] = json.loads(result.stdout)
    return plan


def _count(demo: Demo, table: object) -> int:
    with demo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_plan_lists_the_fields_a_first_sync_would_create_and_writes_nothing(demo: Demo) -> None:
    fields = _plan(demo)["fields"]
    assert isinstance(fields, dict)
    created = {f["name"]: f for f in fields["create"]}
    assert created["stripe_customer_balance"]["type"] == "integer"
    assert {"stripe", "hubspot", "typeform"} <= {f["source"] for f in created.values()}
    assert fields["records_read"] > 0
    assert (_count(demo, field_definitions), _count(demo, records), _count(demo, cursors)) == (0, 0, 0)


def test_after_a_sync_the_plan_creates_no_field(demo: Demo) -> None:
    demo.sync()
    fields = _plan(demo)["fields"]
    assert isinstance(fields, dict)
    assert fields["create"] == [] and fields["widen"] == []


def test_no_fields_skips_the_sources(demo: Demo) -> None:
    assert _plan(demo, "--no-fields")["fields"] is None
