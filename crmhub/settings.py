"""The root settings: one model per package, read from TOML, overridden by CRMHUB_* variables."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from connectors.config import ConnectorsConfig
from crmhub.channels import unknown_channels
from crmhub.server.config import ServerConfig
from field_mapping.config import FieldMappingConfig
from sync.config import DatabaseConfig
from sync.consent import ConsentConfig
from sync.hygiene import HygieneConfig
from sync.schedule import SyncConfig
from sync.segments import ScoringConfig, SegmentsConfig
from sync.store.engine import url_problem
from webhooks.config import WebhooksConfig

DEFAULT_CONFIG_PATH = Path("crmhub.toml")
CONFIG_ENV = "CRMHUB_CONFIG"
ENV_PREFIX = "CRMHUB_"
ENV_DELIMITER = "__"

# The TOML file of the load in progress; a context variable keeps concurrent loads apart.
_toml_file: ContextVar[Path | None] = ContextVar("crmhub_toml_file", default=None)


class Settings(BaseSettings):
    """Everything crmhub is configured with; each package receives its own part."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", frozen=True
    )

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    connectors: ConnectorsConfig = Field(default_factory=ConnectorsConfig)
    field_mapping: FieldMappingConfig = Field(default_factory=FieldMappingConfig)
    segments: SegmentsConfig = Field(default_factory=dict)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    hygiene: HygieneConfig = Field(default_factory=HygieneConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables win over the TOML file; TOML is read only when a file is given."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def secret_envs(self) -> dict[str, str]:
        """TOML path -> environment variable, for every secret the configuration needs."""
        return self.connectors.secret_envs() | self.webhooks.secret_envs()


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in the configuration, located by its TOML path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], *, file: Path | None = None) -> None:
        self.problems = problems
        self.file = file
        super().__init__("\n".join(str(p) for p in problems))


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """Pick the file: --config, else $CRMHUB_CONFIG, else ./crmhub.toml."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    """Read and validate the configuration at `path`, raising ConfigError with every problem."""

    def fail(message: str) -> ConfigError:
        return ConfigError([Problem(str(path), message)], file=path)

    if not path.is_file():
        raise fail("expected a TOML config file, found none: run `crmhub init` or pass --config")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"expected valid TOML, found a syntax error: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"expected a readable UTF-8 file, found: {exc}") from None
    token = _toml_file.set(path)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [_from_environment(_problem(err), os.environ) for err in exc.errors()]
        raise ConfigError(problems, file=path) from None
    except SettingsError as exc:
        # pydantic-settings names only the top-level field; find the variable and say how to write it.
        raise ConfigError(_env_problems(os.environ) or [_unreadable_env(exc)], file=path) from None
    finally:
        _toml_file.reset(token)
    problem = url_problem(settings.database.url)
    if problem is not None:
        raise ConfigError([_from_environment(Problem("database.url", problem), os.environ)], file=path)
    problems = [Problem(where, message) for where, message in unknown_channels(settings)]
    problems += _unknown_env_tables(os.environ)
    if problems:
        raise ConfigError(problems, file=path)
    return settings


def _unknown_env_tables(environ: Mapping[str, str]) -> list[Problem]:
    """CRMHUB_<TABLE>__... variables naming no table: pydantic-settings ignores them without a word."""
    # Only names with the nested delimiter: CRMHUB_SMS_WEBHOOK_SECRET and the like are secrets.
    tables = sorted(Settings.model_fields)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_DELIMITER not in upper:
            continue
        table = upper[len(ENV_PREFIX) :].split(ENV_DELIMITER)[0].lower()
        if table not in tables:
            close = difflib.get_close_matches(table, tables, n=1)
            hint = f" (did you mean CRMHUB_{close[0].upper()}__...?)" if close else ""
            problems.append(
                Problem(name, f"expected CRMHUB_ + one of {', '.join(tables)} + __, found {table!r}{hint}")
            )
    return problems


def missing_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every secret whose environment variable is unset or empty."""
    environ = os.environ if environ is None else environ
    return [
        _unset(path, env, environ) for path, env in settings.secret_envs().items() if not environ.get(env)
    ]


def secret(settings: Settings, path: str, environ: Mapping[str, str] | None = None) -> SecretStr:
    """Read the secret that the key at `path` names, or raise ConfigError saying which variable is unset."""
    environ = os.environ if environ is None else environ
    env = settings.secret_envs()[path]
    value = environ.get(env)
    if not value:
        raise ConfigError([_unset(path, env, environ)])
    return SecretStr(value)


def _unset(path: str, env: str, environ: Mapping[str, str]) -> Problem:
    found = "set but empty" if env in environ else "unset"
    return Problem(
        path, f"expected environment variable {env} to hold the secret, found it {found}: set {env}"
    )


# --- environment variables pydantic-settings must read as JSON -----------------------------------


def _env_problems(environ: Mapping[str, str]) -> list[Problem]:
    """Each CRMHUB_* variable that pydantic-settings cannot parse, located and with the fix."""
    problems = []
    for name, value in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() == CONFIG_ENV:
            continue
        # The library's own reading of this one variable, so the diagnosis matches what failed.
        source = EnvSettingsSource(Settings)
        source.env_vars = {name.lower(): value}
        try:
            source()
        except SettingsError:
            problems.append(_env_problem(name, value))
    return problems


def _env_problem(name: str, value: str) -> Problem:
    parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
    path = ".".join(parts)
    kind = _kind(_annotation_at(parts))
    expected = f"expected a {kind}, written as JSON in environment variable {name}"
    try:
        json.loads(value)
    except ValueError as exc:
        found = f"invalid JSON ({exc})" if value.lstrip().startswith(("[", "{")) else json.dumps(value)
    else:
        found = f"JSON that is not a {kind}: {value}"
    if kind == "list":
        items = [item.strip() for item in value.strip("[] ").split(",") if item.strip(" '\"")]
        example = json.dumps([item.strip(" '\"") for item in items] or ["a", "b"])
        return Problem(path, f"{expected}, found {found}: set {name}='{example}'")
    fix = (
        f"set its keys one by one ({name}{ENV_DELIMITER}<KEY>=...) or the whole table as JSON "
        f"({name}='{{\"key\": ...}}')"
    )
    return Problem(path, f"{expected}, found {found}: {fix}")


def _unreadable_env(exc: SettingsError) -> Problem:
    cause = f": {exc.__cause__}" if exc.__cause__ else ""
    return Problem("(environment)", f"expected CRMHUB_* variables crmhub can read, found {exc}{cause}")


def _annotation_at(parts: list[str]) -> Any:
    """The type of the setting that CRMHUB_ + `parts` names; None when no setting has that name."""
    annotation: Any = Settings
    for part in parts:
        inner = _optional(annotation)
        if get_origin(inner) is dict:
            annotation = get_args(inner)[1]  # `part` is an entry's key, as in `segments.<key>`
            continue
        model = _model_of(inner)
        if model is None:
            return None
        field = next(
            (f for n, f in model.model_fields.items() if part in (n.lower(), (f.alias or "").lower())), None
        )
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _optional(annotation: Any) -> Any:
    """`X` of `X | None`."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _kind(annotation: Any) -> str:
    """`list` for a sequence setting, `table` for the rest pydantic-settings reads as JSON."""
    inner = _optional(annotation)
    sequences = (list, tuple, set, frozenset)
    return "list" if get_origin(inner) in sequences or inner in sequences else "table"


def _from_environment(problem: Problem, environ: Mapping[str, str]) -> Problem:
    """`problem`, naming the CRMHUB_* variable that set its value, when one did."""
    if "[" in problem.path or problem.path.startswith("("):
        return problem
    wanted = ENV_PREFIX + problem.path.replace(".", ENV_DELIMITER).upper()
    name = next((key for key in environ if key.upper() == wanted), None)
    if name is None:
        return problem
    return Problem(problem.path, f"{problem.message} (set by environment variable {name})")


# --- turning pydantic's errors into TOML-path messages ------------------------------------------

_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "missing": "a value",
}

_SIGNS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _toml_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _found(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at `loc` accepts, found by walking the settings models."""
    model: Any = Settings
    skip_key = False  # the next part names an entry of a dict-valued table, not a field
    for part in loc:
        if isinstance(part, int):
            continue
        if skip_key:
            skip_key = False
            continue
        fields = model.model_fields if model is not None else {}
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return []
        skip_key = getattr(field.annotation, "__origin__", None) is dict
        model = _model_of(field.annotation)
    if model is None:
        return []
    # A field's TOML key is its alias where it has one (`not` for the `not_` attribute).
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _problem(err: Mapping[str, Any]) -> Problem:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    path = _toml_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        name = str(loc[-1])
        hint = difflib.get_close_matches(name, allowed, n=1)
        message = f"expected one of the keys {', '.join(allowed)}; found unknown key {json.dumps(name)}"
        if hint:
            message += f" (did you mean {json.dumps(hint[0])}?)"
        return Problem(path, message)
    if kind == "missing":
        return Problem(path, "expected a value, found nothing")
    if kind == "literal_error":
        return Problem(path, f"expected {err['ctx']['expected']}, found {_found(err['input'])}")
    if kind == "value_error":
        # Validators explain themselves ("expected ..., found ...", or "unknown operator ...; did you mean").
        return Problem(path, str(err["ctx"]["error"]))
    if kind in _SIGNS:
        sign = _SIGNS[kind]
        limit = next(iter(err["ctx"].values()))
        return Problem(path, f"expected a value {sign} {limit}, found {_found(err['input'])}")
    expected = _EXPECTED.get(kind, err["msg"].lower())
    return Problem(path, f"expected {expected}, found {_found(err['input'])}")
