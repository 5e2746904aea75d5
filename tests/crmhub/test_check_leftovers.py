"""`crmhub check` names what the store still holds for segments and endpoints no longer configured."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert
from typer.testing import CliRunner

from crmhub.cli import app
from sync.store import create_store_engine, upgrade
from sync.store.tables import contacts, deliveries, memberships, segments, transitions

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _store_with_a_member_and_a_pending_delivery(url: str) -> None:
    engine = create_store_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        contact = conn.execute(
            insert(contacts).values(created_at=NOW, updated_at=NOW, changed_at=NOW).returning(contacts.c.id)
        ).scalar_one()
        segment = conn.execute(
            insert(segments)
            .values(key="old_vips", name="Old", rule={}, rule_version="v1", created_at=NOW, updated_at=NOW)
            .returning(segments.c.id)
        ).scalar_one()
        conn.execute(insert(memberships).values(segment_id=segment, contact_id=contact, entered_at=NOW))
        transition = conn.execute(
            insert(transitions)
            .values(
                segment_id=segment,
                contact_id=contact,
                kind="entered",
                occurred_at=NOW,
                reason="rule",
                rule_version="v1",
                contact_seq=1,
            )
            .returning(transitions.c.id)
        ).scalar_one()
        conn.execute(
            insert(deliveries).values(
                transition_id=transition,
                endpoint="retired_sms",
                webhook_id="msg_1",
                status="pending",
                attempts=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    engine.dispose()


def test_check_notes_a_segment_and_an_endpoint_that_left_the_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crmhub.db'}"
    _store_with_a_member_and_a_pending_delivery(url)
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any('segment "old_vips" is no longer configured; its 1 members' in n for n in notes), notes
    assert any('endpoint "retired_sms" is no longer configured; 1 deliveries wait' in n for n in notes), notes
