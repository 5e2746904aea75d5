"""Who may be sent what: consent, the suppression list by channel, frequency caps, a `left` after its entry.

Fan-out decides with these when it creates deliveries; the worker asks again, with the same checks,
when it claims a delivery and when an entry's attempt failed, since an opt-out cannot cancel what is
in flight or not yet committed (`verdicts`). There it also cancels an entry made stale by the
contact leaving the segment since it was queued (`SUPERSEDED`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlalchemy import Connection, String, and_, bindparam, exists, func, or_, select

from sync.consent.config import ConsentConfig
from sync.consent.records import in_force_order
from sync.consent.suppression import identity_hash
from sync.locks import take_turns
from sync.store.tables import (
    consent_records,
    contact_identities,
    deliveries,
    memberships,
    outbox,
    suppressions,
    transitions,
)
from sync.store.types import UtcDateTime
from webhooks.config import Cap, EndpointConfig
from webhooks.payload import TransitionInfo

__all__ = [
    "DEFAULT_CHANNELS",
    "NO_ENTRY",
    "OPEN_STATUSES",
    "SUPERSEDED",
    "SUPPRESSED",
    "UNSUBSCRIBED",
    "Outgoing",
    "Standing",
    "Told",
    "blocked_at",
    "cap_counts",
    "consent_in_force",
    "consenting",
    "count_against_cap",
    "entry_told",
    "reached_kinds",
    "standing",
    "suppressed_kinds",
    "told_before",
    "verdicts",
]

# `[consent] channels` unless the caller passes the configured ones: the channel -> identity kind.
DEFAULT_CHANNELS: Mapping[str, str] = ConsentConfig().channels
_EVERY_KIND = frozenset(("email", "phone"))
SUPPRESSED = "suppression list: an e-mail or phone the endpoint sends to is suppressed"
NO_ENTRY = "no entry: no entry was sent to this endpoint"
# What an opt-out records on the entries it cancels (sync.consent.cancel_entries), at send time too.
UNSUBSCRIBED = "unsubscribed"
# The kind of reason of an entry cancelled at send time because the contact left the segment since.
SUPERSEDED = "superseded"

# Deliveries that are, or will be, sent; what caps count and what per-contact ordering waits for.
OPEN_STATUSES = ("pending", "leased", "failed")
# Closed deliveries a cap counts while they are in its window: sent, or attempted until given up.
_CLOSED_COUNTED = ("succeeded", "dead")
# Deliveries the consumer got, may have got (an attempt was made: a timeout, a 5xx after it acted), or
# will get: after such an entry, the endpoint must be told when the contact leaves.
_TOLD = (*OPEN_STATUSES, "succeeded")

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
        # An open entry counts whatever its age: one retried through an outage goes out when the
        # endpoint recovers, beside any newer one. A closed one counts from its last attempt (a sent
        # one, from when it was sent): a closed row is not written again (a replay reopens it).
        or_(
            deliveries.c.status.in_(OPEN_STATUSES),
            and_(
                deliveries.c.status.in_(_CLOSED_COUNTED),
                deliveries.c.updated_at > bindparam("since", type_=UtcDateTime()),
            ),
        ),
        transitions.c.kind == "entered",
        transitions.c.contact_id.in_(bindparam("contacts", expanding=True)),
    )
    .group_by(transitions.c.contact_id)
)
# A replay counts the other deliveries only: those it decides on are the ones it may send.
_CAP_COUNTS_EXCLUDING = _CAP_COUNTS.where(deliveries.c.id.not_in(bindparam("excluding", expanding=True)))
_LEFT, _EARLIER = transitions.alias("left_t"), transitions.alias("earlier_t")
# A `left`'s earlier transitions of its contact and segment, each with the endpoints it was told to,
# or with none (NULL) while its outbox row waits for a fan-out, another worker's perhaps.
_TOLD_BEFORE = (
    select(_LEFT.c.id, _EARLIER.c.id, deliveries.c.endpoint)
    .select_from(
        _LEFT.join(
            _EARLIER,
            and_(
                _EARLIER.c.contact_id == _LEFT.c.contact_id,
                _EARLIER.c.contact_seq < _LEFT.c.contact_seq,
                _EARLIER.c.segment_id == _LEFT.c.segment_id,
                _EARLIER.c.kind == "entered",
            ),
        )
        .outerjoin(
            deliveries,
            and_(
                deliveries.c.transition_id == _EARLIER.c.id,
                or_(deliveries.c.status.in_(_TOLD), deliveries.c.attempts > 0),
            ),
        )
        .outerjoin(outbox, outbox.c.transition_id == _EARLIER.c.id)
    )
    .where(
        _LEFT.c.id.in_(bindparam("lefts", expanding=True)),
        or_(deliveries.c.id.is_not(None), and_(outbox.c.id.is_not(None), outbox.c.dispatched_at.is_(None))),
    )
)


_ENTRY, _LATER = transitions.alias("entry_t"), transitions.alias("later_t")
# Per entry delivery, the first `left` of its contact and segment since the delivery was queued, if the
# contact is out of the segment now: one back in is announced by that entry too, and a merge hands the
# kept contact, still a member, the merged one's `left`s.
_SUPERSEDED = (
    select(deliveries.c.id, func.min(_LATER.c.occurred_at))
    .select_from(
        deliveries.join(_ENTRY, _ENTRY.c.id == deliveries.c.transition_id).join(
            _LATER,
            and_(
                _LATER.c.contact_id == _ENTRY.c.contact_id,
                _LATER.c.segment_id == _ENTRY.c.segment_id,
                _LATER.c.kind == "left",
                _LATER.c.occurred_at > deliveries.c.created_at,
            ),
        )
    )
    .where(
        deliveries.c.id.in_(bindparam("ids", expanding=True)),
        ~exists().where(
            memberships.c.contact_id == _ENTRY.c.contact_id, memberships.c.segment_id == _ENTRY.c.segment_id
        ),
    )
    .group_by(deliveries.c.id)
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


def consent_in_force(conn: Connection, contact_ids: Collection[int], channel: str) -> dict[int, str]:
    """Per contact with a consent record for `channel`, the status of the one in force."""
    if not contact_ids:
        return {}
    rows = conn.execute(_CONSENTS, {"contacts": sorted(contact_ids), "channel": channel}).all()
    latest: dict[int, str] = {}
    for contact_id, status in rows:
        latest.setdefault(contact_id, status)
    return latest


def consenting(conn: Connection, contact_ids: Collection[int], channel: str) -> set[int]:
    """Contacts whose consent record in force for `channel` is `opted_in`."""
    statuses = consent_in_force(conn, contact_ids, channel)
    return {cid for cid, status in statuses.items() if status == "opted_in"}


@dataclass(frozen=True, slots=True)
class Standing:
    """What a batch's entries are decided on: the contacts' listed identity kinds, their consent in force."""

    listed: Mapping[int, set[str]]
    consent: Mapping[str, Mapping[int, str]]  # channel -> contact -> status in force
    channels: Mapping[str, str]

    def refusal(self, endpoint: EndpointConfig, contact_id: int) -> str | None:
        """Why `endpoint` must not be sent the contact's entry (suppression first, then consent), or None."""
        kinds = self.listed.get(contact_id)
        if kinds and not reached_kinds(endpoint.requires_consent, self.channels).isdisjoint(kinds):
            return SUPPRESSED
        channel = endpoint.requires_consent
        if channel and self.consent[channel].get(contact_id) != "opted_in":
            return f"consent: no opted-in {channel} consent"
        return None

    def opted_out(self, endpoint: EndpointConfig, contact_id: int) -> bool:
        """True when the contact's consent in force for the endpoint's channel is an opt-out."""
        channel = endpoint.requires_consent
        return channel is not None and self.consent[channel].get(contact_id) == "opted_out"


def standing(
    conn: Connection,
    contact_ids: Collection[int],
    endpoints: Iterable[EndpointConfig],
    channels: Mapping[str, str],
) -> Standing:
    """The suppression list and, per channel `endpoints` require, the consent of `contact_ids`."""
    needed = sorted({e.requires_consent for e in endpoints if e.requires_consent})
    consent = {channel: consent_in_force(conn, contact_ids, channel) for channel in needed}
    return Standing(suppressed_kinds(conn, contact_ids), consent, channels)


class Told(NamedTuple):
    """An earlier entry of a `left`'s contact and segment, and an endpoint it went (or goes) to."""

    transition_id: int
    endpoint: str | None  # None: not fanned out yet, so it may go to any endpoint


def told_before(conn: Connection, left_ids: Collection[int]) -> dict[int, list[Told]]:
    """Per `left` transition, its membership's earlier entries that endpoints were or will be told."""
    if not left_ids:
        return {}
    found: dict[int, list[Told]] = defaultdict(list)
    for left_id, *told in conn.execute(_TOLD_BEFORE, {"lefts": sorted(left_ids)}):
        found[left_id].append(Told(*told))
    return dict(found)


def entry_told(
    told: Iterable[Told], endpoint: str, *, batch: Collection[int] = (), sent_in_batch: Collection[int] = ()
) -> bool:
    """True when `endpoint` was (or will be) told of an entry of the membership before a `left`.

    Any entry, not only the last transition told: a merge renumbers the merged contact's history after
    the kept one's, so a `left` of the merged contact can sort after the kept contact's entry, and a
    rule on the last one would hold back the kept contact's `left` for good. A second `left` to an
    endpoint that knew the person (after an entry it was not sent) tells it nothing new; a missed
    one keeps it messaging someone who left. `batch` are transitions being fanned out now, and
    `sent_in_batch` those of them that go to `endpoint`.
    """
    for item in told:
        if item.transition_id in batch:
            reaches = item.transition_id in sent_in_batch
        else:
            reaches = item.endpoint is None or item.endpoint == endpoint
        if reaches:
            return True
    return False


class Outgoing(Protocol):
    """A delivery about to be sent (a claimed `webhooks.queue.Job`)."""

    @property
    def delivery_id(self) -> int: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def transition(self) -> TransitionInfo: ...


def verdicts(
    conn: Connection,
    endpoints: Mapping[str, EndpointConfig],
    outgoing: Sequence[Outgoing],
    channels: Mapping[str, str],
) -> dict[int, tuple[str, str]]:
    """delivery id -> (status, reason) for those of `outgoing` that fan-out would now hold back.

    An entry to someone who opted out of the endpoint's channel is `cancelled` as an opt-out records
    it (`unsubscribed`); one the contact has left the segment since is `cancelled` as `superseded`;
    another one fan-out would refuse is `suppressed` with fan-out's reason; a `left` to an endpoint
    that was never told of the entry is `suppressed` (`NO_ENTRY`).
    """
    out = [o for o in outgoing if o.endpoint in endpoints]
    entries = [o for o in out if o.transition.kind == "entered"]
    lefts = [o for o in out if o.transition.kind == "left" and _wants_entries(endpoints[o.endpoint], o)]
    held: dict[int, tuple[str, str]] = {}
    if entries:
        reached = [endpoints[name] for name in {o.endpoint for o in entries}]
        known = standing(conn, {o.transition.contact_id for o in entries}, reached, channels)
        stale = _superseded(conn, entries)
        for o in entries:
            target, contact = endpoints[o.endpoint], o.transition.contact_id
            reason = known.refusal(target, contact)
            if reason is not None and known.opted_out(target, contact):
                held[o.delivery_id] = ("cancelled", UNSUBSCRIBED)
            elif o.delivery_id in stale:
                held[o.delivery_id] = ("cancelled", stale[o.delivery_id])
            elif reason is not None:
                held[o.delivery_id] = ("suppressed", reason)
    if lefts:
        told = told_before(conn, {o.transition.transition_id for o in lefts})
        for o in lefts:
            if not entry_told(told.get(o.transition.transition_id, ()), o.endpoint):
                held[o.delivery_id] = ("suppressed", NO_ENTRY)
    return held


def _superseded(conn: Connection, entries: Sequence[Outgoing]) -> dict[int, str]:
    """delivery id -> why an entry of `entries` is stale: its contact left the segment after it was queued."""
    # Sent now, it would announce someone who is gone, its `left` hard behind it (an endpoint down for
    # days). A `left` fanned out with its entry (a short stay caught by one pass) is not "after": both
    # go, in order. The `left` of a cancelled entry follows `entry_told`: held back if it was never
    # attempted, sent if an attempt may have reached the consumer (a timeout, a 5xx after it acted).
    if not entries:
        return {}
    segment_of = {o.delivery_id: o.transition.segment_key for o in entries}
    rows = conn.execute(_SUPERSEDED, {"ids": sorted(segment_of)}).tuples()
    return {i: f"{SUPERSEDED}: left {segment_of[i]} at {_iso(at)}" for i, at in rows}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _wants_entries(endpoint: EndpointConfig, outgoing: Outgoing) -> bool:
    """True when `endpoint` takes the segment's entries: only then does its `left` need one first."""
    return endpoint.wants("segment.entered", outgoing.transition.segment_key)


def cap_counts(
    conn: Connection,
    endpoint: str,
    contact_ids: Collection[int],
    cap: Cap,
    now: datetime,
    *,
    excluding: Collection[int] = (),
) -> dict[int, int]:
    """Per contact, the `segment.entered` deliveries to `endpoint` the cap counts, but those `excluding`.

    It counts those still to be sent, and those sent or given up within the window. Until the caller's
    transaction ends, others that count a cap wait their turn (see `take_turns`).
    """
    if not contact_ids:
        return {}
    # Two fan-outs at once (a webhook's and a sync's, on PostgreSQL), or a fan-out and a replay, would
    # each count the other's uncommitted deliveries as unsent and both send one: they count in turn.
    take_turns(conn, "capped-fan-out")  # one name for all endpoints: no lock order to deadlock on
    params = {"b_endpoint": endpoint, "since": now - cap.window, "contacts": sorted(contact_ids)}
    if excluding:
        rows = conn.execute(_CAP_COUNTS_EXCLUDING, params | {"excluding": sorted(excluding)}).all()
    else:
        rows = conn.execute(_CAP_COUNTS, params).all()
    return {cid: int(n) for cid, n in rows}


def count_against_cap(counts: dict[int, int], contact_id: int, endpoint: EndpointConfig) -> str | None:
    """Why one more entry to `contact_id` would pass the endpoint's cap, or None, counting it in `counts`."""
    cap = endpoint.parsed_cap
    if cap is None:
        return None
    sent = counts.get(contact_id, 0)
    if sent >= cap.limit:
        return f"cap: {endpoint.cap} reached"
    counts[contact_id] = sent + 1
    return None
