"""Endpoint state in the store: disabled (410 or by hand) and the circuit breaker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from sync.store.tables import endpoint_states
from sync.store.upsert import upsert

__all__ = ["Breaker", "EndpointState", "Outcome", "disable", "enable", "load_states", "save_states"]


@dataclass(frozen=True, slots=True)
class EndpointState:
    """One endpoint's row of `endpoint_states` (defaults when it has none)."""

    name: str
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    consecutive_failures: int = 0
    circuit_open_until: datetime | None = None

    def open_at(self, now: datetime) -> bool:
        """True while the circuit is open: no attempts until it half-opens."""
        return self.circuit_open_until is not None and self.circuit_open_until > now


# One attempt's bearing on the breaker: when it was sent, and success (True), failure (False) or neither.
Outcome = tuple[datetime, bool | None]


@dataclass(frozen=True, slots=True)
class Breaker:
    """Circuit breaker policy: opens after `threshold` failures in a row, for a cool-down doubling per trip.

    `consecutive_failures` counts up to `threshold`, then one per failed half-open probe, so the
    open period is `open_for * 2 ** (failures - threshold)`, at most `max_open_for`.
    """

    threshold: int = 5
    open_for: timedelta = timedelta(seconds=30)
    max_open_for: timedelta = timedelta(minutes=10)

    def half_open(self, state: EndpointState) -> bool:
        """True when the breaker has tripped and only a single probe may go out."""
        return state.consecutive_failures >= self.threshold

    def after(self, state: EndpointState, outcomes: Iterable[Outcome], now: datetime) -> EndpointState:
        """The state after `outcomes`, in the order they were recorded, at `now`."""
        failures, open_until = state.consecutive_failures, state.circuit_open_until
        for sent_at, ok in outcomes:
            if ok is True:
                failures, open_until = 0, None
            elif ok is False and failures < self.threshold:
                failures += 1
                if failures == self.threshold:
                    open_until = now + self.open_for
            elif ok is False and (open_until is None or sent_at >= open_until):
                # A probe (sent once the circuit half-opened) failed: trip again, for twice as long.
                failures += 1
                open_until = now + self._cooldown(failures)
            # Any other failure was sent before the circuit opened (a batch in flight, or another
            # worker's probe): it says nothing new, and doubling for it would lengthen the very first trip.
        return EndpointState(state.name, state.disabled_at, state.disabled_reason, failures, open_until)

    def _cooldown(self, failures: int) -> timedelta:
        doublings = min(max(failures - self.threshold, 0), 20)
        return min(self.open_for * (1 << doublings), self.max_open_for)


def load_states(conn: Connection, names: Iterable[str], *, lock: bool = False) -> dict[str, EndpointState]:
    """The state of each endpoint in `names` (defaults for those without a row); `lock` to update them."""
    wanted = sorted(set(names))
    query = select(endpoint_states).where(endpoint_states.c.name.in_(wanted))
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    states = {name: EndpointState(name) for name in wanted}
    for row in conn.execute(query).mappings():
        states[row["name"]] = EndpointState(
            row["name"],
            row["disabled_at"],
            row["disabled_reason"],
            row["consecutive_failures"],
            row["circuit_open_until"],
        )
    return states


def save_states(conn: Connection, states: Iterable[EndpointState], now: datetime) -> None:
    """Write endpoint states back."""
    rows = [
        {
            "name": s.name,
            "disabled_at": s.disabled_at,
            "disabled_reason": s.disabled_reason,
            "consecutive_failures": s.consecutive_failures,
            "circuit_open_until": s.circuit_open_until,
            "updated_at": now,
        }
        for s in states
    ]
    upsert(
        conn,
        endpoint_states,
        rows,
        ["name"],
        ["disabled_at", "disabled_reason", "consecutive_failures", "circuit_open_until", "updated_at"],
    )


def disable(conn: Connection, name: str, reason: str, now: datetime) -> None:
    """Stop delivering to `name`; its deliveries wait (never dropped) until it is enabled again."""
    state = load_states(conn, [name], lock=True)[name]
    save_states(conn, [EndpointState(name, now, reason, state.consecutive_failures, None)], now)


def enable(conn: Connection, name: str, now: datetime) -> bool:
    """Deliver to `name` again, with a closed circuit; False if it was not disabled."""
    state = load_states(conn, [name], lock=True)[name]
    save_states(conn, [EndpointState(name)], now)
    return state.disabled_at is not None
