"""The `[field_mapping]` configuration: mapping rules, automatic fields, HubSpot push, identity."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

import jmespath
import phonenumbers
from jmespath.exceptions import JMESPathError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from field_mapping.naming import is_field_name, name_part
from field_mapping.sources import AUTO_STREAMS, KNOWN_STREAMS, SOURCES
from field_mapping.transforms import TRANSFORM_NAMES
from field_mapping.types import FieldType

__all__ = [
    "AutoConfig",
    "AutoSourceConfig",
    "FieldMappingConfig",
    "HubSpotPushConfig",
    "IdentityConfig",
    "MapTransform",
    "MappingRule",
    "TypeformAutoConfig",
]

Source = Literal["stripe", "hubspot", "typeform", "segmentio"]
Wins = Literal["latest", "first"] | tuple[Source, ...]
MapValue = str | int | float | bool

# Property names are <group>_<field> within HubSpot's 100 characters: a long group leaves fields no room.
_GROUP_NAME_MAX = 30


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _found(value: Any) -> str:
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _one_of(choices: tuple[str, ...] | list[str]) -> str:
    return ", ".join(choices)


class MapTransform(_Strict):
    """`{map = {from = "to"}}`: replace listed values; values not listed pass unchanged."""

    map: dict[str, MapValue]


def _transform(value: Any) -> Any:
    expected = f'one of {_one_of(TRANSFORM_NAMES)} or a table {{map = {{from = "to"}}}}'
    if isinstance(value, str):
        if value not in TRANSFORM_NAMES:
            raise ValueError(f"expected {expected}, found {_found(value)}")
        return value
    if isinstance(value, MapTransform):
        return value
    table = value.get("map") if isinstance(value, dict) and len(value) == 1 else None
    if not isinstance(table, dict) or not all(isinstance(v, MapValue) for v in table.values()):
        raise ValueError(f"expected {expected}, found {_found(value)}")
    return MapTransform(map=table)


TransformSpec = Annotated[str | MapTransform, BeforeValidator(_transform)]


class MappingRule(_Strict):
    """`[[field_mapping.rules]]`: one path of one stream written to one field with one type."""

    source: Source
    stream: str
    path: str
    field: str
    type: FieldType
    transforms: list[TransformSpec] = Field(default_factory=list)
    wins: Wins = "latest"
    label: str | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        if value not in SOURCES:
            raise ValueError(f"expected one of {_one_of(SOURCES)}, found {_found(value)}")
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str, info: ValidationInfo) -> str:
        source = info.data.get("source")
        if source is not None and value not in KNOWN_STREAMS[source]:
            streams = _one_of(KNOWN_STREAMS[source])
            raise ValueError(f"expected a {source} stream ({streams}), found {_found(value)}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            jmespath.compile(value)
        except (JMESPathError, TypeError, ValueError):
            raise ValueError(f"expected a JMESPath expression, found {_found(value)}") from None
        return value

    @field_validator("field")
    @classmethod
    def _field(cls, value: str) -> str:
        if not is_field_name(value):
            raise ValueError(
                "expected a field name (lowercase letters, digits and _, starting with a letter, "
                f"at most 63 characters), found {_found(value)}"
            )
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if value not in {t.value for t in FieldType}:
            raise ValueError(
                f"expected one of {_one_of([t.value for t in FieldType])}, found {_found(value)}"
            )
        return value

    @field_validator("wins", mode="before")
    @classmethod
    def _wins(cls, value: Any) -> Any:
        if value in ("latest", "first"):
            return value
        expected = 'expected "latest", "first" or a list of sources in priority order'
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"{expected}, found {_found(value)}")
        if any(v not in SOURCES for v in value) or len(set(value)) != len(value):
            raise ValueError(f"{expected} ({_one_of(SOURCES)}, each once), found {_found(value)}")
        return tuple(value)


class AutoSourceConfig(_Strict):
    """`[field_mapping.auto.<source>]`: which attributes of a source become fields by themselves."""

    source: ClassVar[str] = ""

    enabled: bool = True
    streams: list[str] | None = None
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    skip_builtin: bool = True
    enum_max_distinct: int = Field(default=20, ge=1, le=1000)
    enum_max_length: int = Field(default=64, ge=1, le=1000)

    @field_validator("streams")
    @classmethod
    def _streams(cls, value: list[str] | None) -> list[str] | None:
        allowed = AUTO_STREAMS[cls.source]
        for stream in value or ():
            if stream not in allowed:
                raise ValueError(
                    f"expected {cls.source} streams among {_one_of(allowed)}, found {_found(stream)}"
                )
        return value

    def stream_enabled(self, stream: str) -> bool:
        """Whether automatic fields are made for `stream` of this source."""
        streams = AUTO_STREAMS[self.source] if self.streams is None else self.streams
        return self.enabled and stream in streams


class StripeAutoConfig(AutoSourceConfig):
    """`[field_mapping.auto.stripe]`."""

    source: ClassVar[str] = "stripe"


class HubSpotAutoConfig(AutoSourceConfig):
    """`[field_mapping.auto.hubspot]`."""

    source: ClassVar[str] = "hubspot"


class SegmentioAutoConfig(AutoSourceConfig):
    """`[field_mapping.auto.segmentio]`."""

    source: ClassVar[str] = "segmentio"


class TypeformAutoConfig(AutoSourceConfig):
    """`[field_mapping.auto.typeform]`, plus short names for forms in field names."""

    source: ClassVar[str] = "typeform"

    form_names: dict[str, str] = Field(default_factory=dict)

    @field_validator("form_names")
    @classmethod
    def _form_names(cls, value: dict[str, str]) -> dict[str, str]:
        for form, short in value.items():
            if not short or name_part(short) != short or len(short) > 20:
                raise ValueError(
                    f"expected a short name for form {form} (lowercase letters, digits and _, "
                    f"at most 20 characters), found {_found(short)}"
                )
        return value


class AutoConfig(_Strict):
    """`[field_mapping.auto]`: one table per source."""

    stripe: StripeAutoConfig = Field(default_factory=StripeAutoConfig)
    hubspot: HubSpotAutoConfig = Field(default_factory=HubSpotAutoConfig)
    typeform: TypeformAutoConfig = Field(default_factory=TypeformAutoConfig)
    segmentio: SegmentioAutoConfig = Field(default_factory=SegmentioAutoConfig)

    def for_source(self, source: str) -> AutoSourceConfig:
        """The automatic-field settings of `source`."""
        settings: AutoSourceConfig = getattr(self, source)
        return settings


class HubSpotPushConfig(_Strict):
    """`[field_mapping.hubspot]`: create crmhub's fields as HubSpot contact properties."""

    push: bool = False
    group_name: str = "crmhub"
    group_label: str = "crmhub"

    @field_validator("group_name")
    @classmethod
    def _group_name(cls, value: str) -> str:
        if not value or name_part(value) != value or not value[0].isalpha() or len(value) > _GROUP_NAME_MAX:
            raise ValueError(
                "expected a HubSpot internal name (lowercase letters, digits and _, starting with a letter, "
                f"at most {_GROUP_NAME_MAX} characters: names are <group>_<field>), found {_found(value)}"
            )
        if value == "hs" or value.startswith("hs_"):
            # HubSpot keeps hs_ names for its own properties: `hs` would give hs_<field>.
            raise ValueError(
                f"expected a name HubSpot does not reserve (not hs or hs_...), found {_found(value)}"
            )
        return value


class IdentityConfig(_Strict):
    """`[field_mapping.identity]`: how people are recognised across sources."""

    default_region: str = "US"
    typeform_hidden_email: str | None = "email"
    typeform_hidden_id: str | None = "user_id"
    # That hidden id is the userId your app sends Segment.com, so it is that identity too.
    typeform_hidden_id_is_segmentio_user: bool = True

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f'expected a two-letter region code such as "US" or "FR", found {_found(value)}')
        return value


class FieldMappingConfig(_Strict):
    """`[field_mapping]`: the field_mapping package's part of the root settings."""

    rules: list[MappingRule] = Field(default_factory=list)
    auto: AutoConfig = Field(default_factory=AutoConfig)
    hubspot: HubSpotPushConfig = Field(default_factory=HubSpotPushConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)

    @model_validator(mode="after")
    def _one_type_per_field(self) -> FieldMappingConfig:
        first: dict[str, int] = {}
        errors: list[InitErrorDetails] = []
        for index, rule in enumerate(self.rules):
            seen = first.setdefault(rule.field, index)
            other = self.rules[seen]
            for key, mine, theirs in (("type", rule.type, other.type), ("wins", rule.wins, other.wins)):
                if mine != theirs:
                    message = (
                        f"expected {key} {_found(_plain(theirs))} as rules[{seen}] writes field "
                        f"{_found(rule.field)} with it, found {_found(_plain(mine))}"
                    )
                    errors.append(_value_error(("rules", index, key), mine, message))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else str(value)


def _value_error(loc: tuple[str | int, ...], found: Any, message: str) -> InitErrorDetails:
    # Shaped like the error a field validator's ValueError gives, so one formatter serves both.
    return InitErrorDetails(type="value_error", loc=loc, input=found, ctx={"error": ValueError(message)})
