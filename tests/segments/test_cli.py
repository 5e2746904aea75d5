"""The segment commands on a small seeded database, driven through the CLI runner."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from crmhub.cli._context import CliContext
from crmhub.cli.segments import explain_command, history_command, plan_command, segments_app
from field_mapping.config import FieldMappingConfig
from sync.config import DatabaseConfig
from sync.identity import merge
from sync.segments import ScoringConfig, evaluate_segments
from sync.store import create_store_engine, upgrade
from sync.store.tables import contact_identities, transitions
from tests.segments.conftest import NOW, Seeder, segments_from

RAW = {
    "hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]},
    "active": {"name": "Active", "all": [{"event": "app.used", "within": "7d"}], "split": {"a": 1, "b": 1}},
}

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = CliContext(config=None)

    app.add_typer(segments_app, name="segments")
    app.command("explain")(explain_command)
    app.command("plan")(plan_command)
    app.command("history")(history_command)
    return app


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = create_store_engine(url)
    upgrade(engine)
    configured = segments_from(RAW)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob, twin = s.contact(), s.contact(), s.contact()
        s.email(ann, "ann@example.com")
        phone = {"kind": "phone", "value": "+14155550483", "source": "test", "first_seen_at": NOW}
        conn.execute(contact_identities.insert().values(contact_id=ann, **phone))
        # Ann was also known as a second contact, merged into her since.
        merge(conn, keep=ann, others=[twin], reason="test", now=NOW)
        s.value(ann, "city", "string", "Hamburg")
        s.value(bob, "city", "string", "Berlin")
        s.event(bob, "app.used", NOW - timedelta(days=1))
        evaluate_segments(conn, configured, now=NOW)
    engine.dispose()
    settings = SimpleNamespace(
        database=DatabaseConfig(url=url),
        segments=configured,
        scoring=ScoringConfig(),
        field_mapping=FieldMappingConfig(),
    )
    monkeypatch.setattr(CliContext, "settings", lambda self: settings)
    return {"url": url, "ann": ann, "bob": bob, "twin": twin, "settings": settings}


def _run(*args: str) -> Any:
    return runner.invoke(_app(), list(args), catch_exceptions=False)


def test_segments_lists_counts_and_last_change(seeded: dict[str, Any]) -> None:
    result = _run("segments", "--json")
    assert result.exit_code == 0
    rows = {r["key"]: r for r in json.loads(result.stdout)}
    assert rows["hamburg"]["members"] == 1 and rows["active"]["members"] == 1
    assert rows["hamburg"]["last_change"].startswith("2026-03-15")
    table = _run("segments")
    assert table.exit_code == 0 and "hamburg" in table.stdout and "Active" in table.stdout
    assert _run("segments", "list").exit_code == 0


def test_members_prints_contacts_with_email_and_variant(seeded: dict[str, Any]) -> None:
    result = _run("segments", "members", "hamburg", "--json")
    assert result.exit_code == 0
    assert [(m["contact_id"], m["email"]) for m in json.loads(result.stdout)] == [
        (seeded["ann"], "ann@example.com")
    ]
    active = json.loads(_run("segments", "members", "active", "--json").stdout)
    assert active[0]["variant"] in ("a", "b")
    missing = _run("segments", "members", "hamburgh")
    said = " ".join(missing.output.split())
    assert (
        missing.exit_code == 2
        and 'no segment "hamburgh" in the configuration; did you mean "hamburg"?' in said
    )


def test_explain_by_email_shows_the_tree_values_and_time(seeded: dict[str, Any]) -> None:
    result = _run(
        "explain",
        "--contact",
        "ANN@example.com",
        "--segment",
        "hamburg",
        "--now",
        "2026-03-15T12:00",
        "--json",
    )
    assert result.exit_code == 0
    tree = json.loads(result.stdout)
    assert tree["member"] is True and tree["now"].startswith("2026-03-15T12:00")
    rule = tree["children"][1]["children"][0]
    assert rule == {"rule": 'city eq "Hamburg"', "result": True, "detail": {"found": ["Hamburg"]}}
    window = _run(
        "explain",
        "--contact",
        str(seeded["bob"]),
        "--segment",
        "active",
        "--now",
        "2026-03-22T12:00",
        "--json",
    )
    event = json.loads(window.stdout)["children"][1]["children"][0]
    assert event["result"] is False
    assert event["detail"]["window"] == ["2026-03-15T12:00:00+00:00", "2026-03-22T12:00:00+00:00"]
    assert event["detail"]["count"] == 0
    text = _run("explain", "--contact", str(seeded["bob"]), "--segment", "hamburg")
    assert text.exit_code == 0 and "does not belong to hamburg" in text.stdout and "Berlin" in text.stdout


def test_explain_reports_unknown_contact_and_segment(seeded: dict[str, Any]) -> None:
    nobody = _run("explain", "--contact", "nobody@example.com", "--segment", "hamburg")
    assert nobody.exit_code == 1 and 'contact "nobody@example.com" not found' in nobody.output
    unknown = _run("explain", "--contact", "1", "--segment", "hamburgh")
    said = " ".join(unknown.output.split())
    assert (
        unknown.exit_code == 2
        and 'no segment "hamburgh" in the configuration; did you mean "hamburg"?' in said
    )


def test_plan_counts_what_would_change_and_writes_nothing(seeded: dict[str, Any]) -> None:
    seeded["settings"].segments = segments_from(
        RAW | {"hamburg": {"name": "H", "all": [{"field": "city", "op": "in", "value": ["Berlin"]}]}}
    )
    result = _run("plan", "--now", "2026-03-25T00:00", "--json")
    assert result.exit_code == 0
    plan = {s["key"]: s for s in json.loads(result.stdout)["segments"]}
    assert (plan["hamburg"]["enter"], plan["hamburg"]["leave"]) == (1, 1)
    assert plan["hamburg"]["enter_examples"] == [seeded["bob"]]
    assert (plan["active"]["enter"], plan["active"]["leave"]) == (0, 1)
    engine = create_store_engine(seeded["url"])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(transitions)).scalar_one() == 2
    engine.dispose()
    shown = " ".join(_run("plan", "--now", "2026-03-25T00:00").stdout.split())
    assert "would enter" in shown and f"enter: {seeded['bob']}; leave: {seeded['ann']}" in shown


def test_plan_before_the_last_evaluation_plans_at_it_and_says_so(seeded: dict[str, Any]) -> None:
    earlier = (NOW - timedelta(days=2)).isoformat()
    result = _run("plan", "--now", earlier, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["now"] == NOW.isoformat()  # the segments were evaluated at NOW
    assert "is before the segments' last evaluation: planned at" in " ".join(result.stderr.split())


def test_history_lists_transitions_in_order(seeded: dict[str, Any]) -> None:
    result = _run("history", "--contact", "ann@example.com", "--json")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert body["contact_id"] == seeded["ann"]
    assert [(t["contact_seq"], t["segment"], t["kind"]) for t in body["transitions"]] == [
        (1, "hamburg", "entered")
    ]
    assert "hamburg" in _run("history", "--contact", str(seeded["ann"])).stdout


@pytest.mark.parametrize("ref", ["twin", "(415) 555-0483", "+1 415 555 0483", "+14155550483"])
def test_history_and_explain_find_a_contact_by_merged_id_or_phone_as_contact_show_does(
    seeded: dict[str, Any], ref: str
) -> None:
    asked = str(seeded["twin"]) if ref == "twin" else ref
    history = _run("history", "--contact", asked, "--json")
    assert history.exit_code == 0, history.output
    assert json.loads(history.stdout)["contact_id"] == seeded["ann"]
    explained = _run("explain", "--contact", asked, "--segment", "hamburg", "--json")
    assert explained.exit_code == 0, explained.output
    assert json.loads(explained.stdout)["contact_id"] == seeded["ann"]
    note = f"contact {seeded['twin']} was merged into {seeded['ann']}"
    assert (note in history.stderr and note in explained.stderr) == (ref == "twin")


def test_explain_says_a_held_segment_keeps_its_members(seeded: dict[str, Any]) -> None:
    # `city` is text: `gt 5` can never hold, so a sync holds `hamburg` and Ann stays a member.
    mistyped = {"hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "gt", "value": 5}]}}
    seeded["settings"].segments = segments_from(RAW | mistyped)
    result = _run("explain", "--contact", "ann@example.com", "--segment", "hamburg", "--json")
    assert result.exit_code == 0, result.output
    tree = json.loads(result.stdout)
    assert tree["member"] is True
    assert tree["children"][0]["rule"] == (
        'held: segments.hamburg.all[0]: "gt" does not apply to city, a string field (text values); '
        "members kept as they were"
    )
    text = " ".join(_run("explain", "--contact", str(seeded["bob"]), "--segment", "hamburg").stdout.split())
    assert "does not belong to hamburg" in text and "members kept as they were" in text
