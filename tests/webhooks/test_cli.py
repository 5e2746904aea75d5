"""`crmhub deliver`, `crmhub deliveries` and `crmhub webhooks` through the CLI runner."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Connection, Engine, event, select, update
from standardwebhooks import Webhook
from typer.testing import CliRunner

from crmhub.cli._context import CliContext
from crmhub.cli.deliveries import deliver_command, deliveries_app, webhooks_app
from sync.config import DatabaseConfig
from sync.consent import ConsentConfig
from sync.store import create_store_engine, upgrade
from sync.store.tables import deliveries
from tests.webhooks.conftest import T0, LocalServer, add_contact, add_segment, add_transition, endpoint, seed
from webhooks import WebhooksConfig, decode_secret, fan_out, generate_secret

runner = CliRunner()


@dataclass(frozen=True)
class _Settings:
    database: DatabaseConfig
    webhooks: WebhooksConfig
    consent: ConsentConfig = field(default_factory=ConsentConfig)


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = CliContext(config=Path("unused.toml"))

    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(webhooks_app, name="webhooks")
    app.command("deliver")(deliver_command)
    return app


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    return engine


def _use(monkeypatch: pytest.MonkeyPatch, store: Engine, config: WebhooksConfig) -> None:
    settings = _Settings(DatabaseConfig(url=store.url.render_as_string(hide_password=False)), config)
    monkeypatch.setattr(CliContext, "settings", lambda self: settings)


def _run(*args: str):
    return runner.invoke(_app(), list(args), catch_exceptions=False, env={"COLUMNS": "250"})


def test_deliver_sends_signed_requests_to_a_local_consumer_through_the_ssrf_allow_list(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    seed(store, 3)
    secret = generate_secret()
    monkeypatch.setenv("LOCAL_SECRET", secret)
    with LocalServer() as server:
        local = endpoint("local", url=f"{server.url}/hooks", allow_http=True, allow_networks=["127.0.0.1/32"])
        _use(monkeypatch, store, WebhooksConfig(endpoints={"local": local}))
        result = _run("deliver", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "fanned_out": 3,
        "attempts": 3,
        "succeeded": 3,
        "held_back": {},
        "troubles": [],
        "disabled": [],
    }
    assert len(server.received) == 3
    for got in server.received:
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "segment.entered"


def test_deliver_counts_what_it_held_back_so_the_numbers_add_up(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    with store.begin() as conn:
        contact = add_contact(conn)
        for key in ("vip", "churn"):
            add_transition(conn, add_segment(conn, key), contact)
    monkeypatch.setenv("LOCAL_SECRET", generate_secret())
    with LocalServer() as server:
        capped = endpoint(
            "local", url=server.url, allow_http=True, allow_networks=["127.0.0.1/32"], cap="1 per 1d"
        )
        _use(monkeypatch, store, WebhooksConfig(endpoints={"local": capped}))
        result = _run("deliver")
    assert result.exit_code == 0, result.output
    assert "fanned out: 2, attempts: 1, succeeded: 1" in result.output
    assert "held back: 1 (cap 1; `crmhub deliveries --status suppressed` lists them)" in result.output
    listed = _run("deliveries", "--status", "suppressed", "--limit", "1", "--json")
    assert len(json.loads(listed.stdout)) == 1
    assert "note: showing the newest 1; there may be more: --limit N shows up to N" in listed.stderr


def test_deliver_without_the_allow_list_refuses_loopback(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    seed(store, 1)
    monkeypatch.setenv("LOCAL_SECRET", generate_secret())
    with LocalServer() as server:
        _use(
            monkeypatch,
            store,
            WebhooksConfig(endpoints={"local": endpoint("local", url=server.url, allow_http=True)}),
        )
        result = _run("deliver", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["dead"] == 1
    assert server.received == []
    [trouble] = json.loads(result.stdout)["troubles"]
    assert (trouble["endpoint"], trouble["status"], trouble["count"]) == ("local", "dead", 1)
    assert trouble["reason"].startswith("refused: ")


def test_deliver_names_the_endpoint_that_is_down_and_why(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    seed(store, 2)
    monkeypatch.setenv("LOCAL_SECRET", generate_secret())
    with LocalServer() as server:
        url = server.url  # a port that was just free: nothing listens there once the server stops
    down = endpoint("local", url=url, allow_http=True, allow_networks=["127.0.0.1/32"])
    _use(monkeypatch, store, WebhooksConfig(endpoints={"local": down}))
    result = _run("deliver")
    assert result.exit_code == 0, result.output
    assert "local: 2 deliveries will be retried on the schedule; latest: " in result.output
    assert "crmhub deliveries --endpoint local --status failed" in result.output


def test_after_a_410_every_run_says_the_endpoint_waits_to_be_enabled_not_retried(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    seed(store, 2)
    monkeypatch.setenv("LOCAL_SECRET", generate_secret())
    with LocalServer(status=410) as server:
        gone = endpoint("local", url=server.url, allow_http=True, allow_networks=["127.0.0.1/32"])
        _use(monkeypatch, store, WebhooksConfig(endpoints={"local": gone}))
        first = _run("deliver")
        again = _run("deliver", "--json")
    waits = "2 deliveries wait: run `crmhub webhooks enable local`"
    assert first.exit_code == 0, first.output
    assert "local: disabled at " in first.output and "(consumer answered 410 Gone)" in first.output
    assert waits in first.output and "will be retried" not in first.output
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["attempts"] == 0 and report["troubles"] == []
    [disabled] = report["disabled"]
    assert (disabled["endpoint"], disabled["reason"], disabled["waiting"]) == (
        "local",
        "consumer answered 410 Gone",
        2,
    )
    listed = _run("deliveries").stdout
    assert listed.count("waits for `crmhub webhooks enable local`") == 2
    assert _run("webhooks", "enable", "local").exit_code == 0
    assert "waits for" not in _run("deliveries").stdout


def test_deliver_reports_an_unset_secret_as_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    monkeypatch.delenv("SMS_SECRET", raising=False)
    _use(monkeypatch, store, WebhooksConfig(endpoints={"sms": endpoint("sms")}))
    result = _run("deliver")
    assert result.exit_code == 2 and "SMS_SECRET is unset" in result.output


def test_list_filters_and_replay_resends_dead_with_the_same_id(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    seed(store, 3)
    config = WebhooksConfig(endpoints={"sms": endpoint("sms")})
    _use(monkeypatch, store, config)
    fan_out(store, config, T0)
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id <= 2)
            .values(status="dead", attempts=10, reason="gave up")
        )
    listed = json.loads(_run("deliveries", "--status", "dead", "--json").stdout)
    assert [d["id"] for d in listed] == [2, 1] and listed[0]["segment"] == "vip"
    assert "gave up" in _run("deliveries", "--endpoint", "sms").stdout
    before = {r.id: r.webhook_id for r in store.connect().execute(select(deliveries))}
    result = _run("deliveries", "replay", "--status", "dead", "--json")
    assert json.loads(result.stdout) == {"replayed": 2, "withheld": {}}
    with store.connect() as conn:
        after = conn.execute(
            select(deliveries.c.id, deliveries.c.webhook_id, deliveries.c.status, deliveries.c.attempts)
        ).all()
    assert {r.id: r.webhook_id for r in after} == before
    assert {(r.status, r.attempts) for r in after} == {("pending", 0)}


def test_replay_waits_for_the_write_lock_rather_than_failing_when_another_process_writes(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    seed(store, 3)
    config = WebhooksConfig(endpoints={"sms": endpoint("sms")})
    _use(monkeypatch, store, config)
    fan_out(store, config, T0)
    with store.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id <= 2).values(status="dead", reason="gave up"))
    other_writes: list[str] = []

    def another_process_writes(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        # Between replay's read and its write, as a sync or `crmhub deliver` would commit at any moment.
        if not statement.startswith("UPDATE deliveries SET status") or other_writes:
            return
        other = sqlite3.connect(store.url.database or "", timeout=0, isolation_level=None)
        try:
            other.execute("UPDATE deliveries SET reason = 'other writer' WHERE id = 3")
            other_writes.append("committed")
        except sqlite3.OperationalError as exc:
            other_writes.append(str(exc))  # replay holds the write lock: the other one waits its turn
        finally:
            other.close()

    event.listen(Engine, "before_cursor_execute", another_process_writes)
    try:
        result = _run("deliveries", "replay", "--status", "dead", "--json")
    finally:
        event.remove(Engine, "before_cursor_execute", another_process_writes)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"replayed": 2, "withheld": {}}
    assert other_writes == ["database is locked"]


def test_replay_needs_a_selection_and_an_unknown_endpoint_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    _use(monkeypatch, store, WebhooksConfig(endpoints={"sms": endpoint("sms")}))
    assert _run("deliveries", "replay").exit_code == 2
    result = _run("deliveries", "--endpoint", "nope")
    assert result.exit_code == 2 and "webhooks.endpoints.nope" in result.output


def test_new_secret_prints_a_usable_secret() -> None:
    result = _run("webhooks", "new-secret", "--bytes", "48")
    assert result.exit_code == 0 and len(decode_secret(result.stdout.strip())) == 48


def test_backfill_queues_current_members_once(monkeypatch: pytest.MonkeyPatch, store: Engine) -> None:
    with store.begin() as conn:
        sid = add_segment(conn, "vip")
        members = [add_contact(conn) for _ in range(3)]
        for cid in members:
            add_transition(conn, sid, cid)
    config = WebhooksConfig(endpoints={"sms": endpoint("sms"), "new": endpoint("new")})
    _use(monkeypatch, store, WebhooksConfig(endpoints={"sms": endpoint("sms")}))
    fan_out(store, WebhooksConfig(endpoints={"sms": endpoint("sms")}), T0)
    _use(monkeypatch, store, config)
    first = json.loads(_run("webhooks", "backfill", "--endpoint", "new", "--segment", "vip", "--json").stdout)
    assert first == {
        "members": 3,
        "queued": 3,
        "suppressed": 0,
        "already_queued": 0,
        "without_entry_transition": 0,
    }
    again = json.loads(_run("webhooks", "backfill", "--endpoint", "new", "--segment", "vip", "--json").stdout)
    assert again["queued"] == 0 and again["already_queued"] == 3
    unknown = _run("webhooks", "backfill", "--endpoint", "new", "--segment", "vp")
    said = " ".join(unknown.output.split())
    assert (
        unknown.exit_code == 2
        and 'segment vp: not found among the evaluated segments; did you mean "vip"?' in said
    )
    text = " ".join(_run("webhooks", "backfill", "--endpoint", "new", "--segment", "vip").stdout.split())
    assert "already sent or queued: 3" in text


def test_the_list_says_when_transitions_wait_in_the_outbox(
    monkeypatch: pytest.MonkeyPatch, store: Engine
) -> None:
    with store.begin() as conn:
        sid = add_segment(conn, "vip")
        add_transition(conn, sid, add_contact(conn))
    _use(monkeypatch, store, WebhooksConfig(endpoints={"sms": endpoint("sms")}))
    listed = _run("deliveries")
    assert "no deliveries" in listed.stdout
    assert "1 transition(s) wait in the outbox" in " ".join(listed.stderr.split())
    fan_out(store, WebhooksConfig(endpoints={"sms": endpoint("sms")}), T0)
    assert "wait in the outbox" not in _run("deliveries").stderr
