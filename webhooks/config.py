"""Configuration of outbound delivery: `[webhooks]` and one `[webhooks.endpoints.<name>]` per consumer."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from webhooks.inbound.config import InboundConfig

__all__ = ["CONTACT_KEYS", "Cap", "EndpointConfig", "EventType", "WebhooksConfig", "parse_cap"]

EventType = Literal["segment.entered", "segment.left"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_CAP = re.compile(r"^\s*(\d+)\s+per\s+(\d+)\s*([mhdw])\s*$")
_LONGEST_WINDOW = timedelta(days=366)
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class Cap(NamedTuple):
    """At most `limit` deliveries of `segment.entered` per contact in any `window`."""

    limit: int
    window: timedelta


def parse_cap(text: str) -> Cap:
    """Parse `"3 per 7d"` (units m, h, d, w, a window of at most a year) into a Cap."""
    match = _CAP.match(text)
    # Digits alone: a window of a billion weeks overflowed timedelta at load, 200,000 weeks the
    # clock arithmetic of every cap count.
    window = int(match[2]) * _UNITS[match[3]] if match and len(match[2]) <= 6 else None
    if not match or int(match[1]) < 1 or window is None or not timedelta(0) < window <= _LONGEST_WINDOW:
        raise ValueError(
            f'expected a cap like "3 per 7d" (units m, h, d, w; a window of at most 366d), found "{text}"'
        )
    return Cap(int(match[1]), window)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The identities Segment.com knows a person by: its userId, else its anonymousId (sync.identity kinds).
SEGMENTIO_IDS = ("segmentio_user", "segmentio_anonymous")
# crmhub's own keys in a body's `data.contact` (webhooks.payload): a field of that name would hide them.
CONTACT_KEYS = ("id", "merged_ids", "truncated_fields")


def _field_name(name: str) -> str:
    """Refuse a contact field named like one of crmhub's own keys in the body."""
    if name in CONTACT_KEYS:
        raise ValueError(
            f"expected a field name other than crmhub's own keys in data.contact "
            f'({", ".join(CONTACT_KEYS)}), found "{name}": map the value to another field name'
        )
    return name


class EndpointConfig(_Strict):
    """`[webhooks.endpoints.<name>]`: one consumer URL and what it receives."""

    kind: Literal["webhook", "segmentio"] = "webhook"
    url: str
    secret_envs: list[str] = Field(default_factory=list)
    write_key_env: str | None = None
    events: list[EventType] = Field(
        default_factory=lambda: list[EventType](["segment.entered", "segment.left"])
    )
    segments: list[str] = Field(default_factory=list)
    # Checked per item, so a mistake is located as `fields[i]`.
    fields: list[Annotated[str, AfterValidator(_field_name)]] = Field(default_factory=list, max_length=30)
    timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    concurrency: int = Field(default=10, ge=1, le=500)
    rate_limit: float | None = Field(default=None, gt=0)
    per_contact_ordering: bool = True
    cap: str | None = None
    requires_consent: str | None = None
    messaging: bool = False
    allow_http: bool = False
    allow_private_network: bool = False
    allow_networks: list[str] = Field(default_factory=list)

    @field_validator("cap")
    @classmethod
    def _cap(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cap(value)
        return value

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f'expected CIDR networks like "127.0.0.1/32", found "{item}"') from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> EndpointConfig:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f'expected an http(s) URL with a host, found "{self.url}"')
        if parts.scheme == "http" and not self.allow_http:
            raise ValueError(
                f'expected an https:// URL (or allow_http = true for local use), found "{self.url}"'
            )
        if self.kind == "webhook" and not self.secret_envs:
            raise ValueError("expected secret_envs to name at least one environment variable, found none")
        if self.kind == "segmentio" and not self.write_key_env:
            raise ValueError("expected write_key_env for a segmentio endpoint, found none")
        if self.messaging and not self.requires_consent:
            raise ValueError(
                'expected requires_consent (the channel, e.g. "sms" or "email") for a messaging endpoint, '
                "found none"
            )
        return self

    @property
    def payload_fields(self) -> list[str]:
        """The contact fields its payloads carry: `fields`, and for Segment.com the person's ids there."""
        if self.kind != "segmentio":
            return self.fields
        # Entries land on the profile Segment.com knows the person by, not on a new one named by our id.
        return [*self.fields, *(n for n in SEGMENTIO_IDS if n not in self.fields)]

    @property
    def parsed_cap(self) -> Cap | None:
        """The frequency cap as a value, if any."""
        return parse_cap(self.cap) if self.cap else None

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The allow-list as network objects."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allow_networks)

    def wants(self, event_type: str, segment_key: str) -> bool:
        """True when this endpoint subscribes to `event_type` for `segment_key`."""
        return event_type in self.events and (not self.segments or segment_key in self.segments)


class WebhooksConfig(_Strict):
    """`[webhooks]`: the delivery worker and its endpoints."""

    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    batch_size: int = Field(default=200, ge=1, le=5000)
    lease_seconds: float = Field(default=120.0, gt=0)
    poll_interval_seconds: float = Field(default=0.05, gt=0, le=60)
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_open_seconds: float = Field(default=30.0, gt=0)
    circuit_max_open_seconds: float = Field(default=600.0, gt=0)
    inbound: InboundConfig = Field(default_factory=InboundConfig)

    @field_validator("endpoints")
    @classmethod
    def _names(cls, value: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f'expected endpoint names of a-z, 0-9, "_" and "-", found "{name}"')
        return value

    @model_validator(mode="after")
    def _lease_outlives_requests(self) -> WebhooksConfig:
        for name, endpoint in self.endpoints.items():
            if endpoint.timeout_seconds >= self.lease_seconds:
                raise ValueError(
                    f"expected lease_seconds ({self.lease_seconds}) above endpoint {name}'s "
                    f"timeout_seconds ({endpoint.timeout_seconds}), found it lower"
                )
        return self

    def secret_envs(self) -> dict[str, str]:
        """TOML path -> environment variable name, for endpoint secrets and enabled inbound providers."""
        refs: dict[str, str] = {}
        for name, endpoint in self.endpoints.items():
            for i, env in enumerate(endpoint.secret_envs):
                refs[f"webhooks.endpoints.{name}.secret_envs[{i}]"] = env
            if endpoint.write_key_env:
                refs[f"webhooks.endpoints.{name}.write_key_env"] = endpoint.write_key_env
        return refs | self.inbound.secret_envs()
