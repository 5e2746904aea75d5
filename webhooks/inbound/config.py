"""Configuration of inbound provider webhooks: `[webhooks.inbound.<provider>]`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "HubSpotInboundConfig",
    "InboundConfig",
    "SegmentioInboundConfig",
    "StripeInboundConfig",
    "TypeformInboundConfig",
]

# Stripe's own maximum payload is far below this; HubSpot sends up to 100 events per request.
_DEFAULT_MAX_BYTES = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StripeInboundConfig(_Strict):
    """`[webhooks.inbound.stripe]`: `POST /hooks/stripe`, signed with the endpoint's `whsec_` secret."""

    enabled: bool = False
    secret_env: str = "STRIPE_WEBHOOK_SECRET"
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    max_body_bytes: int = Field(default=_DEFAULT_MAX_BYTES, ge=1024)


class HubSpotInboundConfig(_Strict):
    """`[webhooks.inbound.hubspot]`: `POST /hooks/hubspot`, signed (v3) with the app's client secret."""

    enabled: bool = False
    client_secret_env: str = "HUBSPOT_CLIENT_SECRET"
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    max_body_bytes: int = Field(default=_DEFAULT_MAX_BYTES, ge=1024)


class TypeformInboundConfig(_Strict):
    """`[webhooks.inbound.typeform]`: `POST /hooks/typeform`, signed with the webhook's secret."""

    enabled: bool = False
    secret_env: str = "TYPEFORM_WEBHOOK_SECRET"
    max_body_bytes: int = Field(default=_DEFAULT_MAX_BYTES, ge=1024)


class SegmentioInboundConfig(_Strict):
    """`[webhooks.inbound.segmentio]`: the Segment.com Webhooks destination, one message per POST."""

    enabled: bool = False
    shared_secret_env: str = "SEGMENT_WEBHOOK_SHARED_SECRET"
    max_body_bytes: int = Field(default=_DEFAULT_MAX_BYTES, ge=1024)


class InboundConfig(_Strict):
    """`[webhooks.inbound]`: which providers may push to crmhub, and the secrets that sign their requests."""

    stripe: StripeInboundConfig = Field(default_factory=StripeInboundConfig)
    hubspot: HubSpotInboundConfig = Field(default_factory=HubSpotInboundConfig)
    typeform: TypeformInboundConfig = Field(default_factory=TypeformInboundConfig)
    segmentio: SegmentioInboundConfig = Field(default_factory=SegmentioInboundConfig)

    def secret_envs(self) -> dict[str, str]:
        """TOML path -> environment variable name, for every enabled provider's secret."""
        refs: dict[str, str] = {}
        for name in ("stripe", "typeform"):
            provider = getattr(self, name)
            if provider.enabled:
                refs[f"webhooks.inbound.{name}.secret_env"] = provider.secret_env
        if self.hubspot.enabled:
            refs["webhooks.inbound.hubspot.client_secret_env"] = self.hubspot.client_secret_env
        if self.segmentio.enabled:
            refs["webhooks.inbound.segmentio.shared_secret_env"] = self.segmentio.shared_secret_env
        return refs
