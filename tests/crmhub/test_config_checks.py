"""Checks across the configuration's parts: channels, references, secrets, each with its TOML path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from crmhub.channels import unknown_channels
from crmhub.cli import app
from crmhub.config_checks import consent_notes, reference_problems, secret_format_problems
from crmhub.settings import Settings
from field_mapping.types import FieldType
from sync.fields import create_field
from sync.store import create_store_engine, upgrade
from webhooks import generate_secret

NOW = datetime(2026, 11, 23, tzinfo=UTC)
HOOK = {"url": "https://texter.example/hook", "secret_envs": ["TEXTER_SECRET"]}


def _settings(**parts: Any) -> Settings:
    return Settings.model_validate(parts)


def test_every_channel_named_must_be_one_of_the_consent_channels() -> None:
    settings = _settings(
        segments={
            "sms_offers": {"name": "SMS", "requires_consent": "SMS", "all": [{"consent": "fax"}]},
            "mail": {"name": "Mail", "requires_consent": "email", "all": [{"consent": "email"}]},
        },
        webhooks={"endpoints": {"texter": HOOK | {"messaging": True, "requires_consent": "Sms"}}},
    )
    found = dict(unknown_channels(settings))
    assert set(found) == {
        "segments.sms_offers.requires_consent",
        "segments.sms_offers.all[0].consent",
        "webhooks.endpoints.texter.requires_consent",
    }
    assert found["segments.sms_offers.requires_consent"].startswith(
        'expected a channel of [consent] channels, found "SMS"; did you mean "sms"?'
    )
    assert 'found "fax"' in found["segments.sms_offers.all[0].consent"]


def test_a_channel_added_to_the_consent_channels_is_accepted() -> None:
    settings = _settings(
        consent={"channels": {"email": "email", "sms": "phone", "whatsapp": "phone"}},
        segments={
            "wa": {"name": "WA", "requires_consent": "whatsapp", "all": [{"field": "email", "op": "exists"}]}
        },
    )
    assert unknown_channels(settings) == []


def test_endpoints_name_segments_and_fields_that_exist_and_consent_comes_from_a_source() -> None:
    settings = _settings(
        segments={"vip": {"name": "VIP", "all": [{"field": "email", "op": "exists"}]}},
        webhooks={
            "endpoints": {"texter": HOOK | {"segments": ["vip", "vipp"], "fields": ["email", "emial"]}}
        },
        consent={
            "sources": [{"source": "typefrom", "typeform_ref": "ok", "channel": "sms", "opted_in": ["yes"]}]
        },
        connectors={"typeform": {"enabled": True, "forms": []}},
    )
    found = {p.path: p.message for p in reference_problems(settings, {"plan"})}
    assert set(found) == {
        "webhooks.endpoints.texter.segments[1]",
        "webhooks.endpoints.texter.fields[1]",
        "consent.sources[0].source",
        "connectors.typeform.forms",
    }
    assert 'found "vipp"; did you mean "vip"?' in found["webhooks.endpoints.texter.segments[1]"]
    assert 'found "emial"; did you mean "email"?' in found["webhooks.endpoints.texter.fields[1]"]
    assert 'found "typefrom"; did you mean "typeform"?' in found["consent.sources[0].source"]
    # Before the first sync no field exists yet, so fields are not judged.
    assert "webhooks.endpoints.texter.fields[1]" not in {p.path for p in reference_problems(settings, set())}


def test_a_webhook_secret_that_is_set_must_be_a_whsec_secret() -> None:
    settings = _settings(webhooks={"endpoints": {"texter": HOOK, "mailer": HOOK | {"secret_envs": ["MAIL"]}}})
    environ = {"TEXTER_SECRET": "hunter2", "MAIL": generate_secret()}
    [problem] = secret_format_problems(settings, environ)
    assert problem.path == "webhooks.endpoints.texter.secret_envs[0]"
    assert "expected a secret starting with whsec_" in problem.message
    assert secret_format_problems(settings, {}) == []  # unset ones are missing_secrets' to report


@pytest.mark.parametrize("url", ["not a url", "api.stripe.com", "ftp://api.stripe.com", "https://"])
def test_a_base_url_that_is_not_an_http_url_is_refused_at_load(url: str) -> None:
    with pytest.raises(ValidationError, match="expected an http\\(s\\) URL"):
        _settings(connectors={"stripe": {"enabled": True, "base_url": url}})


def test_fields_of_an_unknown_source_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "crmhub.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "fields", "--source", "strpe"])
    assert result.exit_code == 2
    assert (
        "--source: expected one of stripe, hubspot, typeform, segmentio, crmhub, found 'strpe'; "
        'did you mean "stripe"?' in " ".join(result.output.split())
    )


def test_check_leaves_no_store_behind(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "typo.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "check"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crmhub.toml"]


def test_a_config_naming_an_unknown_channel_stops_every_command(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "crmhub.db"}"\n'
        '[segments.sms_offers]\nname = "SMS"\nrequires_consent = "SMS"\n'
        'all = [{ field = "email", op = "exists" }]\n',
        encoding="utf-8",
    )
    for command in (["check"], ["sync"], ["segments"]):
        result = CliRunner().invoke(app, ["--config", str(config), *command])
        assert result.exit_code == 2, result.output
        assert (
            "segments.sms_offers.requires_consent: expected a channel of [consent] channels" in result.output
        )


def test_an_override_naming_no_table_is_a_problem_not_ignored(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "crmhub.db"}"\n', encoding="utf-8")
    env = {"CRMHUB_DATABSE__URL": "postgresql://elsewhere/db", "CRMHUB_SMS_WEBHOOK_SECRET": "whsec_x"}
    result = CliRunner().invoke(app, ["--config", str(config), "check"], env=env)
    assert result.exit_code == 2
    assert "CRMHUB_DATABSE__URL: expected CRMHUB_ + one of connectors" in result.output
    assert "did you mean CRMHUB_DATABASE__...?" in result.output
    assert "SMS_WEBHOOK_SECRET" not in result.output  # a secret's name, not an override


def test_check_json_gives_the_problems_as_json_too(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text("[connectors.stripe]\nenabeld = true\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--json"])
    assert result.exit_code == 2
    answer = json.loads(result.stdout)
    assert answer["valid"] is False and answer["config"] == str(config)
    assert [p["path"] for p in answer["problems"]] == ["connectors.stripe.enabeld"]


def test_check_names_a_test_the_fields_type_cannot_meet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crmhub.db'}"
    engine = create_store_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        create_field(
            conn, "mrr", FieldType.DECIMAL, now=NOW, label="MRR", origin="automatic", source="stripe"
        )
    engine.dispose()
    config = tmp_path / "crmhub.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[segments.big]\nname = "Big"\n'
        'all = [{ field = "mrr", op = "gte", value = "nine" }]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "check"])
    assert result.exit_code == 2
    assert "segments.big.all[0]: 'nine' is not a number, as mrr (decimal) holds" in result.output


def test_sync_of_an_unknown_or_pushed_source_says_what_it_meant(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "crmhub.db"}"\n', encoding="utf-8")
    typo = CliRunner().invoke(app, ["--config", str(config), "sync", "--source", "strip"])
    assert typo.exit_code == 2 and "found 'strip'; did you mean \"stripe\"?" in typo.output
    # The file is fine: the header names the options, not the configuration.
    assert "error in the command's options" in typo.output and "configuration error" not in typo.output
    pushed = CliRunner().invoke(app, ["--config", str(config), "sync", "--source", "segmentio"])
    said = " ".join(pushed.output.split())
    assert pushed.exit_code == 2 and "which is not pulled: Segment.com sends to `crmhub serve`" in said


def test_an_endpoint_requiring_consent_is_told_which_segments_an_opt_out_would_not_end() -> None:
    rule = [{"field": "email", "op": "exists"}]
    settings = _settings(
        segments={
            "birthday": {"name": "B", "requires_consent": "sms", "all": rule},
            "paid": {"name": "P", "all": rule},
            "mailing": {"name": "M", "requires_consent": "email", "all": rule},
        },
        webhooks={
            "endpoints": {
                "texter": HOOK | {"messaging": True, "requires_consent": "sms"},
                "only_birthdays": HOOK | {"requires_consent": "sms", "segments": ["birthday"]},
                "leavers": HOOK | {"requires_consent": "sms", "events": ["segment.left"]},
                "crm": HOOK,
            }
        },
    )
    notes = consent_notes(settings)
    assert len(notes) == 1
    assert notes[0].startswith(
        "webhooks.endpoints.texter requires sms consent, but segments mailing, paid do not"
    )
    assert 'add requires_consent = "sms"' in notes[0]
