"""The `[webhooks]` configuration: what it accepts, what it refuses, which secrets it names."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from crmhub.settings import ConfigError, load_settings
from webhooks import Cap, EndpointConfig, WebhooksConfig, parse_cap


@pytest.mark.parametrize(
    ("text", "cap"),
    [
        ("3 per 7d", Cap(3, timedelta(days=7))),
        ("1 per 12h", Cap(1, timedelta(hours=12))),
        ("10 per 30m", Cap(10, timedelta(minutes=30))),
        (" 2 per 1w ", Cap(2, timedelta(weeks=1))),
        ("1 per 366d", Cap(1, timedelta(days=366))),
    ],
)
def test_caps_parse(text: str, cap: Cap) -> None:
    assert parse_cap(text) == cap


# "1 per 1mo" is no month and must not be read as its leading "1 per 1m", one minute.
# A window past a year is refused, not an overflow at load or at every cap count later.
@pytest.mark.parametrize(
    "text",
    [
        "3/7d",
        "0 per 7d",
        "3 per 0d",
        "3 per 7y",
        "three per week",
        "1 per 1mo",
        "1 per 367d",
        "1 per 1000000000w",
    ],
)
def test_bad_caps_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match='expected a cap like "3 per 7d"'):
        parse_cap(text)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "http://hooks.example/x", "secret_envs": ["S"]}, "expected an https:// URL"),
        ({"url": "ftp://hooks.example/x", "secret_envs": ["S"]}, "http(s) URL"),
        ({"url": "https://hooks.example/x"}, "secret_envs to name at least one"),
        ({"url": "https://h.example", "secret_envs": ["S"], "messaging": True}, "requires_consent"),
        ({"url": "https://h.example", "secret_envs": ["S"], "cap": "lots"}, "3 per 7d"),
        ({"url": "https://h.example", "secret_envs": ["S"], "allow_networks": ["local"]}, "CIDR"),
        ({"url": "https://h.example", "kind": "segmentio"}, "write_key_env"),
        ({"url": "https://h.example", "secret_envs": ["S"], "events": ["segment.moved"]}, "segment.entered"),
        ({"url": "https://h.example", "secret_envs": ["S"], "fields": ["id", "merged_ids"]}, 'found "id"'),
        ({"url": "https://h.example", "secret_envs": ["S"], "fields": ["merged_ids"]}, 'found "merged_ids"'),
    ],
)
def test_endpoint_mistakes_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EndpointConfig.model_validate(values)


def test_defaults_follow_the_contract() -> None:
    ep = EndpointConfig(url="https://h.example/hook", secret_envs=["S"])
    assert ep.timeout_seconds == 15 and ep.events == ["segment.entered", "segment.left"]
    assert ep.per_contact_ordering and not ep.allow_private_network and ep.parsed_cap is None
    assert ep.wants("segment.left", "any_segment")


def test_secret_envs_lists_every_variable_by_its_toml_path() -> None:
    config = WebhooksConfig(
        endpoints={
            "sms": EndpointConfig(url="https://h.example", secret_envs=["SMS_NEW", "SMS_OLD"]),
            "segmentio": EndpointConfig(
                url="https://api.segment.io", kind="segmentio", write_key_env="SEG_KEY"
            ),
        }
    )
    assert config.secret_envs() == {
        "webhooks.endpoints.sms.secret_envs[0]": "SMS_NEW",
        "webhooks.endpoints.sms.secret_envs[1]": "SMS_OLD",
        "webhooks.endpoints.segmentio.write_key_env": "SEG_KEY",
    }


def test_the_lease_must_outlive_a_request_and_names_must_be_simple() -> None:
    ep = EndpointConfig(url="https://h.example", secret_envs=["S"], timeout_seconds=30)
    with pytest.raises(ValidationError, match="lease_seconds"):
        WebhooksConfig(endpoints={"sms": ep}, lease_seconds=20)
    with pytest.raises(ValidationError, match="endpoint names"):
        WebhooksConfig(endpoints={"SMS Sender": ep})


@pytest.mark.parametrize("name", ["id", "merged_ids", "truncated_fields"])
def test_a_field_named_like_crmhubs_own_keys_is_refused_at_its_toml_path(tmp_path: Path, name: str) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(
        "[webhooks.endpoints.local]\n"
        'url = "https://hooks.example/local"\n'
        'secret_envs = ["LOCAL_SECRET"]\n'
        f'fields = ["email", "{name}"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    [problem] = [str(p) for p in caught.value.problems]
    assert problem == (
        "webhooks.endpoints.local.fields[1]: expected a field name other than crmhub's own keys in "
        f'data.contact (id, merged_ids, truncated_fields), found "{name}": '
        "map the value to another field name"
    )
