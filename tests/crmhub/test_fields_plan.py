"""`crmhub plan` names a rule's type change and how many stored values it would clear, writing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.fields_plan import cleared_by_retypes
from field_mapping.model import FieldDefinition, Origin
from field_mapping.registry import FieldChange
from field_mapping.types import FieldType
from sync.fields import load_fields, read_values, save_definitions, save_values, stored_value
from sync.store import create_store_engine, upgrade
from sync.store.tables import contacts

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STAGE = FieldDefinition(
    "stage", FieldType.ENUM, "Stage", Origin("rule", "hubspot", "contacts", "properties.stage", 0)
)


def _hold(engine: Engine, values: list[str]) -> None:
    """Contacts 1, 2, ... holding `values` of the enum field `stage`."""
    ids = list(range(1, len(values) + 1))
    with engine.begin() as conn:
        conn.execute(
            insert(contacts), [{"id": i, "created_at": T0, "updated_at": T0, "changed_at": T0} for i in ids]
        )
        stage = save_definitions(conn, [STAGE], T0)["stage"]
        rows = [
            (i, stage, stored_value(FieldType.ENUM, v), "hubspot", T0)
            for i, v in zip(ids, values, strict=True)
        ]
        save_values(conn, rows, fresh=set(ids))


def test_a_retype_is_counted_by_the_syncs_own_conversion_and_rolled_back(engine: Engine) -> None:
    _hold(engine, ["3", "lead", "customer", "7"])
    change = FieldChange("stage", FieldType.ENUM, FieldType.INTEGER)
    assert cleared_by_retypes(engine, [change]) == {"stage": 2}
    with engine.connect() as conn:
        fields = load_fields(conn)
        held = read_values(conn, range(1, 5), fields)
    assert fields["stage"].type is FieldType.ENUM  # nothing written
    assert [held[i]["stage"] for i in range(1, 5)] == ["3", "lead", "customer", "7"]


def test_plan_lists_the_retype_with_what_it_would_clear(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    config = tmp_path / "crmhub.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[[field_mapping.rules]]\nsource = "hubspot"\nstream = "contacts"\n'
        'path = "properties.stage"\nfield = "stage"\ntype = "integer"\n',
        encoding="utf-8",
    )
    store = create_store_engine(url)
    upgrade(store)
    _hold(store, ["3", "lead"])
    store.dispose()
    runner = CliRunner()
    # No source is enabled, so none is read: the rule's type change is known from the configuration.
    result = runner.invoke(app, ["--config", str(config), "plan", "--json"])
    assert result.exit_code == 0, result.output
    fields = json.loads(result.stdout)["fields"]
    assert fields["retype"] == [{"name": "stage", "from": "enum", "to": "integer", "cleared": 1}]
    shown = " ".join(runner.invoke(app, ["--config", str(config), "plan"]).stdout.split())
    assert "stage enum -> integer its rule's type; 1 stored value(s) not fitting integer cleared" in shown
