"""Configuration of the sources: where each API lives, which env var holds its key, what to pull."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

HubSpotObject = Literal["contacts", "companies", "deals"]


def _http_url(value: str) -> str:
    # Caught here, a typo is one clear line; at the first request it was ten seconds of retries.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL such as https://api.example.com, found {value!r}")
    return value


BaseUrl = Annotated[str, AfterValidator(_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StripeConfig(_Strict):
    """`[connectors.stripe]`."""

    enabled: bool = False
    base_url: BaseUrl = "https://api.stripe.com"
    api_key_env: str = "STRIPE_API_KEY"
    page_size: int = Field(default=100, ge=1, le=100)
    requests_per_second: float = Field(default=20.0, gt=0)


class HubSpotConfig(_Strict):
    """`[connectors.hubspot]`."""

    enabled: bool = False
    base_url: BaseUrl = "https://api.hubapi.com"
    api_key_env: str = "HUBSPOT_ACCESS_TOKEN"
    objects: list[HubSpotObject] = Field(default_factory=lambda: list[HubSpotObject](["contacts"]))
    properties: list[str] = Field(default_factory=list)
    page_size: int = Field(default=100, ge=1, le=200)
    requests_per_second: float = Field(default=9.0, gt=0)
    search_requests_per_second: float = Field(default=4.0, gt=0)


class TypeformConfig(_Strict):
    """`[connectors.typeform]`."""

    enabled: bool = False
    base_url: BaseUrl = "https://api.typeform.com"
    api_key_env: str = "TYPEFORM_TOKEN"
    forms: list[str] = Field(default_factory=list)
    page_size: int = Field(default=1000, ge=1, le=1000)
    requests_per_second: float = Field(default=2.0, gt=0)


class SegmentioConfig(_Strict):
    """`[connectors.segmentio]`: events pushed to crmhub in the Segment Spec."""

    enabled: bool = False
    write_key_env: str = "SEGMENT_WRITE_KEY"


class ConnectorsConfig(_Strict):
    """`[connectors]`: one table per source, plus the HTTP behaviour they share."""

    timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    stripe: StripeConfig = Field(default_factory=StripeConfig)
    hubspot: HubSpotConfig = Field(default_factory=HubSpotConfig)
    typeform: TypeformConfig = Field(default_factory=TypeformConfig)
    segmentio: SegmentioConfig = Field(default_factory=SegmentioConfig)

    def secret_envs(self) -> dict[str, str]:
        """TOML path -> environment variable name, for every enabled source's secret."""
        refs: dict[str, str] = {}
        for name in ("stripe", "hubspot", "typeform"):
            source = getattr(self, name)
            if source.enabled:
                refs[f"connectors.{name}.api_key_env"] = source.api_key_env
        if self.segmentio.enabled:
            refs["connectors.segmentio.write_key_env"] = self.segmentio.write_key_env
        return refs

    def enabled_sources(self) -> list[str]:
        """Names of the sources switched on, in a fixed order."""
        return [n for n in ("stripe", "hubspot", "typeform", "segmentio") if getattr(self, n).enabled]
