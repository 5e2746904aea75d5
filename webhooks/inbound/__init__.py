"""Inbound: provider webhooks and the Segment.com Tracking API, verified, then ingested like a sync."""

from webhooks.inbound.config import (
    HubSpotInboundConfig,
    InboundConfig,
    SegmentioInboundConfig,
    StripeInboundConfig,
    TypeformInboundConfig,
)
from webhooks.inbound.events import HubSpotFetch
from webhooks.inbound.receiver import PROVIDERS, InboundReceiver, Provider
from webhooks.inbound.request import InboundError, InboundRequest, InboundResponse
from webhooks.inbound.tracking import TRACKING_KINDS, TrackingKind

__all__ = [
    "PROVIDERS",
    "TRACKING_KINDS",
    "HubSpotFetch",
    "HubSpotInboundConfig",
    "InboundConfig",
    "InboundError",
    "InboundReceiver",
    "InboundRequest",
    "InboundResponse",
    "Provider",
    "SegmentioInboundConfig",
    "StripeInboundConfig",
    "TrackingKind",
    "TypeformInboundConfig",
]
