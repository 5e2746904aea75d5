"""Settings: the example file, TOML + environment precedence, secrets, and located error messages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from crmhub.example import example_config_text
from crmhub.settings import (
    ConfigError,
    Settings,
    config_path,
    load_settings,
    missing_secrets,
    secret,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crmhub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text))
    return [str(p) for p in caught.value.problems]


def _keys(model: type[BaseModel], table: dict[str, Any] | None = None, prefix: str = "") -> set[str]:
    """Dotted keys of `model` (table None) or of `table` read as `model`; entries of a dict table as `*`."""
    keys: set[str] = set()
    for attribute, field in model.model_fields.items():
        name = field.alias or attribute  # the TOML spelling (`not` for `not_`)
        annotation: Any = field.annotation
        inner = None if table is None else table.get(name, {})
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, inner, f"{prefix}{name}.")
        elif getattr(annotation, "__origin__", None) is dict and _entry_model(annotation) is not None:
            entry = _entry_model(annotation)
            assert entry is not None
            for value in [None] if inner is None else list(inner.values()):
                keys |= _keys(entry, value, f"{prefix}{name}.*.")
        elif table is None or name in table or f"# {name} = " in example_config_text():
            # An optional key without a default may be shown commented out, with its example value.
            keys.add(f"{prefix}{name}")
    return keys


def _entry_model(annotation: Any) -> type[BaseModel] | None:
    value = annotation.__args__[1]
    return value if isinstance(value, type) and issubclass(value, BaseModel) else None


def test_example_config_loads(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, example_config_text()))
    assert settings.database.url == "sqlite:///crmhub.db"


def test_example_config_shows_every_key_that_exists() -> None:
    assert _keys(Settings, tomllib.loads(example_config_text())) == _keys(Settings)


def test_every_key_in_the_example_has_a_comment_above_it() -> None:
    # Keys repeated in later [[array]] entries (mapping rules) are explained at their first use.
    explained: set[str] = set()
    lines = example_config_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"[a-z_]+ = ", line):  # a key line, not a continuation of an array
            key = line.split("=", 1)[0].strip()
            assert lines[number - 1].startswith("#") or key in explained, f"no comment above: {line}"
            explained.add(key)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[database]\nurl = "sqlite:///a.db"\n[connectors.stripe]\npage_size = 10\n')
    monkeypatch.setenv("CRMHUB_DATABASE__URL", "sqlite:///b.db")
    monkeypatch.setenv("CRMHUB_CONNECTORS__STRIPE__PAGE_SIZE", "50")
    settings = load_settings(path)
    assert settings.database.url == "sqlite:///b.db"
    assert settings.connectors.stripe.page_size == 50


def test_config_path_precedence(tmp_path: Path) -> None:
    explicit = tmp_path / "x.toml"
    assert config_path(explicit, {"CRMHUB_CONFIG": "/etc/crmhub.toml"}) == explicit
    assert config_path(None, {"CRMHUB_CONFIG": "/etc/crmhub.toml"}) == Path("/etc/crmhub.toml")
    assert config_path(None, {}) == Path("crmhub.toml")


def test_a_typo_in_a_key_names_the_path_and_suggests_the_key(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "[connectors.stripe]\napi_key_evn = 'X'\n")
    assert problem.startswith("connectors.stripe.api_key_evn: expected one of the keys enabled, base_url")
    assert 'found unknown key "api_key_evn" (did you mean "api_key_env"?)' in problem


def test_unknown_keys_in_segment_rules_list_the_toml_keys_not_attribute_names(tmp_path: Path) -> None:
    segment = '[segments.b]\nname = "B"\nnot = { field = "x", op = "eq", value = 1, colour = "red" }\n'
    [inside] = _problems(tmp_path, segment)
    assert inside.startswith("segments.b.not.colour: expected one of the keys all, any, not, field, op")
    [beside] = _problems(tmp_path, '[segments.b]\nname = "B"\nrule = 1\n')
    assert "all, any, not, requires_consent" in beside and "not_" not in beside


def test_a_typo_in_a_table_name_is_reported(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "[conectors]\n")
    assert problem.startswith("conectors: expected one of the keys database, connectors")
    assert '(did you mean "connectors"?)' in problem


def test_a_wrong_type_says_what_was_expected_and_found(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, '[connectors.hubspot]\npage_size = "many"\n')
    assert problem == 'connectors.hubspot.page_size: expected an integer, found "many"'


def test_a_value_out_of_range_says_the_limit(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "[connectors.stripe]\npage_size = 500\n")
    assert problem == "connectors.stripe.page_size: expected a value <= 100, found 500"


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    problems = _problems(tmp_path, '[database]\nurl = "mysql://x"\n[connectors]\nmax_attempts = "x"\n')
    assert [p.split(":")[0] for p in problems] == ["database.url", "connectors.max_attempts"]


def test_a_list_entry_is_located_by_index(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, '[connectors.hubspot]\nobjects = ["contacts", "tickets"]\n')
    assert problem.startswith("connectors.hubspot.objects[1]: expected 'contacts', 'companies' or 'deals'")


def test_a_missing_file_and_broken_toml_are_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a TOML config file, found none"):
        load_settings(tmp_path / "nope.toml")
    [problem] = _problems(tmp_path, "[database\n")
    assert "expected valid TOML, found a syntax error" in problem and "line 1" in problem


def test_secrets_are_named_by_environment_variable_and_never_stored(tmp_path: Path) -> None:
    settings = load_settings(
        _write(tmp_path, '[connectors.stripe]\nenabled = true\napi_key_env = "MY_KEY"\n')
    )
    [problem] = missing_secrets(settings, {})
    assert str(problem) == (
        "connectors.stripe.api_key_env: expected environment variable MY_KEY to hold the secret, "
        "found it unset: set MY_KEY"
    )
    value = secret(settings, "connectors.stripe.api_key_env", {"MY_KEY": "sk_live_abc"})
    assert value.get_secret_value() == "sk_live_abc"
    assert "sk_live_abc" not in repr(value) and "sk_live_abc" not in str(value)
    with pytest.raises(ConfigError, match="MY_KEY"):
        secret(settings, "connectors.stripe.api_key_env", {})


def test_disabled_sources_need_no_secret(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, "[connectors.stripe]\nenabled = false\n"))
    assert missing_secrets(settings, {}) == []
