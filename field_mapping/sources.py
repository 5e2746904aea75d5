"""What field mapping knows about each source: its streams, field-name prefixes, and what to skip."""

from __future__ import annotations

__all__ = [
    "AUTO_STREAMS",
    "KNOWN_STREAMS",
    "SKIPPED_PATHS",
    "SOURCES",
    "stream_prefix",
]

SOURCES = ("stripe", "hubspot", "typeform", "segmentio")

KNOWN_STREAMS: dict[str, tuple[str, ...]] = {
    "stripe": ("customers", "subscriptions", "invoices", "charges"),
    "hubspot": ("contacts", "companies", "deals"),
    "typeform": ("responses",),
    # What connectors.segmentio makes Records of: identify -> users, group -> groups. Track and page
    # messages become ContactEvents (counted and windowed by segments), never fields.
    "segmentio": ("users", "groups"),
}

# Streams automatic fields can be made for (all of them when `streams` is not set). HubSpot companies
# and deals describe organisations, not people: their records are kept but name no contact, so
# fields made from them could never hold a contact's value. (A Segment.com group call names its
# member, so group traits are the member's.)
AUTO_STREAMS: dict[str, tuple[str, ...]] = {**KNOWN_STREAMS, "hubspot": ("contacts",)}

# The first part of automatic field names; HubSpot contacts and Segment.com users describe the
# person itself, so their fields carry only the source name (`hubspot_lifecyclestage`).
_PREFIXES: dict[tuple[str, str], str] = {
    ("stripe", "customers"): "stripe_customer",
    ("stripe", "subscriptions"): "stripe_subscription",
    ("stripe", "invoices"): "stripe_invoice",
    ("stripe", "charges"): "stripe_charge",
    ("hubspot", "contacts"): "hubspot",
    ("hubspot", "companies"): "hubspot_company",
    ("hubspot", "deals"): "hubspot_deal",
    ("typeform", "responses"): "typeform",
    ("segmentio", "users"): "segmentio",
    ("segmentio", "groups"): "segmentio_group",
}

# Glob patterns (on flattened paths) of values useless for segmenting: ids and references to other
# objects (identity uses them instead), secrets and tokens, URLs, card fragments, API bookkeeping.
# `skip_builtin = false` in `[field_mapping.auto.<source>]` turns them off; rules can map any path.
SKIPPED_PATHS: tuple[str, ...] = (
    "id",
    "*.id",
    "*_id",
    "object",
    "*.object",
    "livemode",
    "*.livemode",
    "*url",
    "*_pdf",
    "*secret*",
    "*password*",
    "token",
    "*_token",
    "*fingerprint",
    "*last4",
    "*test_clock",
    "*idempotency_key",
    "*user_agent",
    "*network_id",
    "*referer",
    "*landing_id",
    "*response_id",
    "hs_object_id",
    "customer",
    "*.customer",
    "subscription",
    "*.subscription",
    "invoice",
    "*.invoice",
    "latest_invoice",
    "schedule",
    "application",
    "on_behalf_of",
    "*payment_intent",
    "*payment_method",
    "*default_source",
    "*default_price",
    "*balance_transaction",
    "*.destination",
    "*invoice_prefix",
    "number",
    "*receipt_number",
    "*statement_descriptor*",
    "*payment_method_options",
)


def stream_prefix(source: str, stream: str) -> str:
    """The name prefix of automatic fields of one stream (`stripe_subscription`)."""
    return _PREFIXES.get((source, stream), f"{source}_{stream}")
