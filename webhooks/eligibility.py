"""Who may be sent `segment.entered`: consent, the suppression list and per-endpoint frequency caps."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, String, bindparam, func, select

from sync.consent.suppression import identity_hash
from sync.store.tables import consent_records, contact_identities, deliveries, suppressions, transitions
from sync.store.types import UtcDateTime
from webhooks.config import Cap

__all__ = ["OPEN_STATUSES", "cap_counts", "consenting", "suppressed_contacts"]

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
    .order_by(consent_records.c.contact_id, consent_records.c.recorded_at.desc(), consent_records.c.id.desc())
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


def suppressed_contacts(conn: Connection, contact_ids: Collection[int]) -> set[int]:
    """Contacts with an e-mail or phone identity on the suppression list."""
    if not contact_ids:
        return set()
    rows = conn.execute(_IDENTITIES, {"contacts": sorted(contact_ids)}).all()
    by_hash = {(kind, identity_hash(value)): cid for cid, kind, value in rows}
    if not by_hash:
        return set()
    listed = conn.execute(_LISTED, {"hashes": sorted(h for _, h in by_hash)}).all()
    return {by_hash[(kind, digest)] for kind, digest in listed if (kind, digest) in by_hash}


def consenting(conn: Connection, contact_ids: Collection[int], channel: str) -> set[int]:
    """Contacts whose latest consent record for `channel` is `opted_in`."""
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
