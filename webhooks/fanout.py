"""Outbox -> deliveries: one delivery per (transition, endpoint), decided and written in one transaction."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Integer, bindparam, select, update

from sync.store import write_transaction
from sync.store.statistics import analyze_grown
from sync.store.tables import deliveries, outbox, segments, transitions
from sync.store.types import UtcDateTime
from sync.store.upsert import insert_ignore
from webhooks.config import EndpointConfig, WebhooksConfig
from webhooks.eligibility import (
    DEFAULT_CHANNELS,
    NO_ENTRY,
    Standing,
    Told,
    cap_counts,
    count_against_cap,
    entry_told,
    standing,
    told_before,
)
from webhooks.payload import event_type

__all__ = ["FanoutStats", "TransitionRow", "decide_deliveries", "fan_out", "fan_out_batch", "new_webhook_id"]


def new_webhook_id() -> str:
    """A fresh `webhook-id` (`msg_` and 32 hex digits); it is stored, so it stays the same across retries."""
    # The clock's milliseconds first, then 80 random bits: new ids land at the end of the unique index
    # instead of on random pages of it, which halved the pages a fan-out writes (and so its checkpoints).
    return f"msg_{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(10)}"


@dataclass
class FanoutStats:
    """What one fan-out pass did."""

    outbox_rows: int = 0
    deliveries: int = 0
    suppressed: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """An outbox row's transition, as fan-out decides on it."""

    outbox_id: int
    transition_id: int
    contact_id: int
    kind: str
    segment_key: str


def fan_out(
    engine: Engine,
    config: WebhooksConfig,
    now: datetime,
    *,
    batch_size: int | None = None,
    channels: Mapping[str, str] = DEFAULT_CHANNELS,
) -> FanoutStats:
    """Turn every undispatched outbox row into deliveries, one transaction per batch."""
    total = FanoutStats()
    while True:
        with write_transaction(engine) as conn:
            stats = fan_out_batch(
                conn, config, now, batch_size=batch_size or config.batch_size, channels=channels
            )
        total.outbox_rows += stats.outbox_rows
        total.deliveries += stats.deliveries
        for reason, n in stats.suppressed.items():
            total.suppressed[reason] += n
        if stats.outbox_rows < (batch_size or config.batch_size):
            return total


# Built once, the batch size bound at run time (see webhooks.queue).
_UNDISPATCHED = (
    select(outbox.c.id, transitions.c.id, transitions.c.contact_id, transitions.c.kind, segments.c.key)
    .select_from(
        outbox.join(transitions, transitions.c.id == outbox.c.transition_id).join(
            segments, segments.c.id == transitions.c.segment_id
        )
    )
    .where(outbox.c.dispatched_at.is_(None))
    .order_by(outbox.c.id)
    .limit(bindparam("limit", type_=Integer()))
    # Several dispatchers share the outbox; each takes rows the others have not locked (SQLite: no-op).
    .with_for_update(skip_locked=True, of=outbox)
)
_DISPATCHED = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(dispatched_at=bindparam("now", type_=UtcDateTime()))
)


def fan_out_batch(
    conn: Connection,
    config: WebhooksConfig,
    now: datetime,
    *,
    batch_size: int,
    channels: Mapping[str, str] = DEFAULT_CHANNELS,
) -> FanoutStats:
    """Dispatch up to `batch_size` outbox rows inside the caller's transaction.

    `channels` is `[consent] channels` (channel -> identity kind): which listed identities keep an
    endpoint's entries back.
    """
    rows = [TransitionRow(*r) for r in conn.execute(_UNDISPATCHED, {"limit": batch_size})]
    stats = FanoutStats(outbox_rows=len(rows))
    if not rows:
        return stats
    new_rows = decide_deliveries(conn, config.endpoints, rows, now, stats, channels)
    insert_ignore(conn, deliveries, new_rows, ["transition_id", "endpoint"])
    conn.execute(_DISPATCHED, {"ids": [r.outbox_id for r in rows], "now": now})
    stats.deliveries = len(new_rows)
    # A big fan-out (a segment's backfill) on a store PostgreSQL never analyzed: claims would plan
    # for an empty queue and sort every due delivery each time (40 ms per claim at 20,000).
    analyze_grown(conn, "deliveries", rows_written=stats.deliveries)
    return stats


def decide_deliveries(
    conn: Connection,
    endpoints: Mapping[str, EndpointConfig],
    rows: list[TransitionRow],
    now: datetime,
    stats: FanoutStats,
    channels: Mapping[str, str] = DEFAULT_CHANNELS,
) -> list[dict[str, Any]]:
    """The delivery rows for `rows` at each endpoint that wants them: pending, or suppressed with why."""
    known = standing(conn, {r.contact_id for r in rows if r.kind == "entered"}, endpoints.values(), channels)
    told = told_before(conn, {r.transition_id for r in rows if r.kind == "left"})
    batch = {r.transition_id for r in rows}
    out: list[dict[str, Any]] = []
    for name, endpoint in endpoints.items():
        wanted = [r for r in rows if endpoint.wants(event_type(r.kind), r.segment_key)]
        if not wanted:
            continue
        reasons = _entry_reasons(conn, name, endpoint, wanted, known, now)
        sent = {r.transition_id for r in wanted if r.kind == "entered" and r.transition_id not in reasons}
        reasons |= _left_reasons(name, endpoint, wanted, told, batch, sent)
        for row in wanted:
            reason = reasons.get(row.transition_id)
            if reason:
                stats.suppressed[reason.split(":", 1)[0]] += 1
            out.append(
                {
                    "transition_id": row.transition_id,
                    "endpoint": name,
                    "contact_id": row.contact_id,
                    "webhook_id": new_webhook_id(),
                    "status": "suppressed" if reason else "pending",
                    "attempts": 0,
                    "next_attempt_at": None if reason else now,
                    "reason": reason,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return out


def _entry_reasons(
    conn: Connection,
    name: str,
    endpoint: EndpointConfig,
    rows: list[TransitionRow],
    known: Standing,
    now: datetime,
) -> dict[int, str]:
    """transition id -> why an entry of `rows` is not sent: suppression, consent, then the cap."""
    entering = [r for r in rows if r.kind == "entered"]
    if not entering:
        return {}
    cap = endpoint.parsed_cap
    counts: dict[int, int] = {}
    if cap:
        # Counted in turn with other fan-outs and replays, until commit (PostgreSQL: an advisory lock).
        counts = cap_counts(conn, name, {r.contact_id for r in entering}, cap, now)
    reasons: dict[int, str] = {}
    for row in entering:
        refused = known.refusal(endpoint, row.contact_id) or count_against_cap(
            counts, row.contact_id, endpoint
        )
        if refused:
            reasons[row.transition_id] = refused
    return reasons


def _left_reasons(
    name: str,
    endpoint: EndpointConfig,
    rows: list[TransitionRow],
    told: Mapping[int, list[Told]],
    batch: set[int],
    sent: set[int],
) -> dict[int, str]:
    """transition id -> why a `left` of `rows` is not sent: the endpoint was never told of the entry."""
    # A `left` tells a consumer to stop messaging someone, with their fields: to an endpoint that never
    # got the entry (held back by consent, say) it would only hand out a person it was not to know.
    # An endpoint that takes no entries of the segment is sent its lefts as they come.
    return {
        row.transition_id: NO_ENTRY
        for row in rows
        if row.kind == "left"
        and endpoint.wants("segment.entered", row.segment_key)
        and not entry_told(told.get(row.transition_id, ()), name, batch=batch, sent_in_batch=sent)
    }
