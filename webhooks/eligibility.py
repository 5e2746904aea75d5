"""Who may be sent `segment.entered`: consent, the suppression list by channel, frequency caps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import Connection, String, bindparam, func, select

from sync.consent.config import ConsentConfig
from sync.consent.records import in_force_order
from sync.consent.suppression import identity_hash
from sync.store.tables import consent_records, contact_identities, deliveries, suppressions, transitions
from sync.store.types import UtcDateTime
from webhooks.config import Cap, EndpointConfig

__all__ = [
    "DEFAULT_CHANNELS",
    "OPEN_STATUSES",
    "SUPPRESSED",
    "blocked_at",
    "cap_counts",
    "consenting",
    "reached_kinds",
    "suppressed_kinds",
]

# `[consent] channels` unless the caller passes the configured ones: the channel -> identity kind.
DEFAULT_CHANNELS: Mapping[str, str] = ConsentConfig().channels
_EVERY_KIND = frozenset(("email", "phone"))
SUPPRESSED = "suppression list: an e-mail or phone the endpoint sends to is suppressed"

# Deliveries that are, or will be, sent; what caps count and what per-contact ordering waits for.
OPEN_STATUSES = ("pending", "leased", "failed")
_COUNTED = ("pending", "leased", "failed", "succeeded", "dead")

# Built once; each fan-out batch binds its contacts (see webhooks.queue).
_IDENTITIES = select(
    contact_identities.c.contact_id, contact_identities.c.kind, contact_identities.c.value
).where(
    contact_identities.c.contact_id.in_(bindparam("contacts", expanding=True)),
    contact_identities.c.kind.in_(("email", "phone")),
)
_LISTED = select(suppressions.c.kind, suppressions.c.value_hash).where(
    suppressions.c.value_hash.in_(bindparam("hashes", expanding=True))
)
_CONSENTS = (
    select(consent_records.c.contact_id, consent_records.c.status)
    .where(
        consent_records.c.contact_id.in_(bindparam("contacts", expanding=True)),
        consent_records.c.channel == bindparam("channel", type_=String()),
    )
    .order_by(consent_records.c.contact_id, *(t.desc() for t in in_force_order(consent_records.c)))
)
_CAP_COUNTS = (
    select(transitions.c.contact_id, func.count())
    .select_from(deliveries.join(transitions, transitions.c.id == deliveries.c.transition_id))
    .where(
        deliveries.c.endpoint == bindparam("b_endpoint", type_=String()),
        deliveries.c.status.in_(_COUNTED),
        deliveries.c.created_at > bindparam("since", type_=UtcDateTime()),
        transitions.c.kind == "entered",
        transitions.c.contact_id.in_(bindparam("contacts", expanding=True)),
    )
    .group_by(transitions.c.contact_id)
)


def reached_kinds(channel: str | None, channels: Mapping[str, str]) -> frozenset[str]:
    """The identity kinds an endpoint of `channel` sends to: a listed one of them keeps entries back."""
    # An SMS "no" lists the phone and must not hold back the newsletter; a channel not in `[consent]
    # channels`, or an endpoint with none, counts every kind, as an opt-out of it suppresses both.
    kind = channels.get(channel) if channel else None
    return frozenset((kind,)) if kind else _EVERY_KIND


def blocked_at(
    endpoint: EndpointConfig, listed: Mapping[int, set[str]], channels: Mapping[str, str]
) -> set[int]:
    """The contacts of `listed` (see `suppressed_kinds`) whose entries `endpoint` must not be sent."""
    reach = reached_kinds(endpoint.requires_consent, channels)
    return {cid for cid, kinds in listed.items() if not reach.isdisjoint(kinds)}


def suppressed_kinds(conn: Connection, contact_ids: Collection[int]) -> dict[int, set[str]]:
    """Per contact with a listed e-mail or phone identity, the kinds that are listed."""
    if not contact_ids:
        return {}
    rows = conn.execute(_IDENTITIES, {"contacts": sorted(contact_ids)}).all()
    by_hash = {(kind, identity_hash(value)): cid for cid, kind, value in rows}
    if not by_hash:
        return {}
    listed = conn.execute(_LISTED, {"hashes": sorted(h for _, h in by_hash)}).all()
    found: dict[int, set[str]] = defaultdict(set)
    for kind, digest in listed:
        if (kind, digest) in by_hash:
            found[by_hash[(kind, digest)]].add(kind)
    return dict(found)


def consenting(conn: Connection, contact_ids: Collection[int], channel: str) -> set[int]:
    """Contacts whose consent record in force for `channel` is `opted_in`."""
    if not contact_ids:
        return set()
    rows = conn.execute(_CONSENTS, {"contacts": sorted(contact_ids), "channel": channel}).all()
    latest: dict[int, str] = {}
    for contact_id, status in rows:
        latest.setdefault(contact_id, status)
    return {cid for cid, status in latest.items() if status == "opted_in"}


def cap_counts(
    conn: Connection, endpoint: str, contact_ids: Collection[int], cap: Cap, now: datetime
) -> dict[int, int]:
    """Per contact, the `segment.entered` deliveries to `endpoint` created within the cap's window."""
    if not contact_ids:
        return {}
    params = {"b_endpoint": endpoint, "since": now - cap.window, "contacts": sorted(contact_ids)}
    rows = conn.execute(_CAP_COUNTS, params).all()
    return {cid: int(n) for cid, n in rows}
