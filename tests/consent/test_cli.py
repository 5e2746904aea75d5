"""`crmhub consent`, `crmhub contact` and `crmhub hygiene` through the CLI runner, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from crmhub.cli.app import app
from sync.store.tables import contacts, erasure_log
from tests.consent.conftest import NOW, assert_reimport_stays_out, assert_unsubscribed

runner = CliRunner()

CONFIG = """
[database]
url = "{url}"

[segments.sms_offers]
name = "SMS offers"
requires_consent = "sms"
all = [{{ field = "email", op = "exists" }}]

[segments.newsletter]
name = "Newsletter"
requires_consent = "email"
all = [{{ field = "email", op = "exists" }}]

[segments.everyone]
name = "Everyone"
all = [{{ field = "email", op = "exists" }}]

[webhooks.endpoints.texter]
url = "https://texter.example/hook"
secret_envs = ["TEXTER_SECRET"]
messaging = true
requires_consent = "sms"
segments = ["sms_offers"]

[webhooks.endpoints.mailer]
url = "https://mailer.example/hook"
secret_envs = ["MAILER_SECRET"]
messaging = true
requires_consent = "email"
segments = ["newsletter"]
"""


def _config(tmp_path: Path, engine: Engine) -> Path:
    path = tmp_path / "crmhub.toml"
    path.write_text(CONFIG.format(url=engine.url.render_as_string(hide_password=False)), encoding="utf-8")
    return path


def _run(config: Path, *args: str) -> str:
    result = runner.invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_opt_out_on_the_command_line_acts_at_once_and_show_lists_the_history(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = _config(tmp_path, engine)
    at = NOW.isoformat()
    out = _run(
        config,
        "consent",
        "opt-out",
        "JANE.DOE@Example.com",
        "--channel",
        "sms",
        "--reason",
        "asked",
        "--now",
        at,
    )
    assert f"contact {jane} opted out of sms" in out and "left 1 segment(s)" in out
    assert_unsubscribed(engine, jane, "sms_offers", "texter", kept="newsletter")
    assert_reimport_stays_out(engine, jane, "sms_offers")

    shown = _run(config, "contact", "show", str(jane))
    assert "consent history" in shown and "opted_out" in shown and "asked" in shown
    data = json.loads(_run(config, "contact", "show", "+1 (415) 555-2671", "--json"))
    history = [(c["channel"], c["status"], c["source"]) for c in data["consent"]]
    assert history == [
        ("sms", "opted_in", "typeform"),
        ("email", "opted_in", "api"),
        ("sms", "opted_out", "cli"),
    ]
    assert {m["segment"] for m in data["memberships"]} == {"newsletter", "everyone"}
    assert any(t["reason"] == "unsubscribed" for t in data["transitions"])


def test_export_then_erase_on_the_command_line(tmp_path: Path, engine: Engine, jane: int) -> None:
    config = _config(tmp_path, engine)
    exported = json.loads(_run(config, "contact", "export", "jane.doe@example.com"))
    assert exported["contact"]["id"] == jane and exported["records"] and exported["consent"]
    erased = json.loads(_run(config, "contact", "erase", str(jane), "--yes", "--json"))
    assert erased["deleted"]["contacts"] == 1 and erased["wal_emptied"] is True
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(erasure_log)).scalar_one() == 1
    missing = runner.invoke(app, ["--config", str(config), "contact", "show", "jane.doe@example.com"])
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_hygiene_report_shows_each_policy(tmp_path: Path, engine: Engine, jane: int) -> None:
    config = _config(tmp_path, engine)
    later = "2027-08-01T00:00:00"
    before = json.loads(_run(config, "hygiene", "report", "--now", later, "--json"))
    assert {p["policy"]: p["would"] for p in before["policies"]}["dormant"] == 1
    assert before["last_run"] is None
    _run(config, "hygiene", "run", "--now", later)
    after = json.loads(_run(config, "hygiene", "report", "--now", later, "--json"))
    policies = {p["policy"]: p for p in after["policies"]}
    assert policies["dormant"]["did"] == 1 and policies["dormant"]["would"] == 0
    assert policies["reconfirm"]["would"] == 1
    assert "dormant" in _run(config, "hygiene", "report", "--now", later)
