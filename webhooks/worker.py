"""The delivery worker: fan out, claim per endpoint within its limits, send concurrently, record attempts.

Each pass over the store is one transaction on a thread: record what finished, then fan out and claim
what may go next. A commit costs 0.5-1 ms on SQLite (far more when it checkpoints the WAL), a tenth of
a pass of 100 deliveries, so a pass commits once instead of twice.

A pass that meets a busy store (another process holding SQLite's write lock past busy_timeout, a
PostgreSQL lock wait that timed out) keeps the attempts it was to record and tries again after a
backoff: dropping them would leave their deliveries leased until the lease ran out, and then send
them a second time. Any other error ends the run, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from sync.store import write_transaction
from webhooks.busy import StoreBackoff, store_busy
from webhooks.config import WebhooksConfig
from webhooks.eligibility import DEFAULT_CHANNELS, verdicts
from webhooks.endpoints import Breaker, EndpointState, load_states
from webhooks.fanout import fan_out_batch
from webhooks.payload import contact_fields, merged_ids, ordered_fields, payload
from webhooks.queue import Job, claim, has_due, load_jobs, withhold, work_waiting
from webhooks.ratelimit import TokenBucket
from webhooks.record import Attempt, record
from webhooks.retry import Dead, Disable, RetryDecision, Succeeded
from webhooks.sender import Sender

__all__ = ["Clock", "DeliveryWorker", "Hook", "RunStats"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Decision = Succeeded | RetryDecision | Dead | Disable
Sleep = Callable[[float], Awaitable[None]]
# Called at "claimed" (before sending), "sent" (before recording) and "recorded"; tests raise from it.
Hook = Callable[[str, Job], None]
# Finished requests recorded in one transaction at the most.
RECORD_BATCH = 200
# How often a busy worker looks again at a disabled endpoint (an operator may enable it).
DISABLED_RECHECK_SECONDS = 5.0
# After a pass met a busy store: the first wait before the next try, doubling up to the second. SQLite
# has already waited busy_timeout (10 s) inside the pass; the lease (120 s) is not at stake: the lease
# holder's attempt is recorded whenever it gets through, as long as no other worker claimed it.
STORE_RETRY_SECONDS = (0.5, 30.0)


@dataclass(frozen=True, slots=True)
class _Claimed:
    """What a pass claimed: the jobs and their bodies; a full fan-out batch; an endpoint rate-limited.

    `withheld` counts the claimed deliveries closed instead of sent: what waited on them may go next.
    """

    jobs: list[Job] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    full_batch: bool = False
    throttled: bool = False
    withheld: int = 0


@dataclass
class RunStats:
    """What a run of the worker did."""

    fanned_out: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Of those fanned out, the deliveries held back and never sent, by kind of reason (cap, consent, ...).
    held_back: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def default_worker_id() -> str:
    """Host and process, so a lease shows who holds it."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


class DeliveryWorker:
    """Delivers due deliveries of every configured endpoint; one endpoint's trouble never stalls another."""

    def __init__(
        self,
        engine: Engine,
        config: WebhooksConfig,
        senders: Mapping[str, Sender],
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        hook: Hook | None = None,
        channels: Mapping[str, str] = DEFAULT_CHANNELS,
        store_retry: tuple[float, float] = STORE_RETRY_SECONDS,
    ) -> None:
        self._engine = engine
        self._config = config
        self._channels = channels
        self._senders = dict(senders)
        self.worker_id = worker_id or default_worker_id()
        self._rng = rng
        self._hook = hook
        self._breaker = Breaker(
            config.circuit_failure_threshold,
            timedelta(seconds=config.circuit_open_seconds),
            timedelta(seconds=config.circuit_max_open_seconds),
        )
        self._lease = timedelta(seconds=config.lease_seconds)
        self._buckets = {
            name: TokenBucket(ep.rate_limit)
            for name, ep in config.endpoints.items()
            if ep.rate_limit is not None
        }
        self._inflight: dict[str, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[Attempt]] = set()
        self._endpoint_of: dict[asyncio.Task[Attempt], str] = {}
        self._resting: dict[str, datetime] = {}
        # Finished attempts a pass could not record (the store was busy): the next pass records them.
        self._unrecorded: list[Attempt] = []
        self._backoff = StoreBackoff(*store_retry)

    async def run(
        self,
        clock: Clock,
        *,
        forever: bool = False,
        stop: asyncio.Event | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> RunStats:
        """Deliver until nothing is due and nothing is in flight (or, with `forever`, until `stop` is set)."""
        stats = RunStats()
        poll = self._config.poll_interval_seconds
        loop = asyncio.get_running_loop()
        self._resting = {}
        try:
            while True:
                now = clock()
                stopping = stop is not None and stop.is_set()
                launched, throttled = 0, False
                if not self._backoff.wait(loop.time()):
                    done = [t for t in self._tasks if t.done()]
                    # Record and claim in batches: a transaction per finished request would cap throughput.
                    recording = bool(self._unrecorded) or (
                        bool(done)
                        and (
                            len(done) == len(self._tasks)
                            or len(done) >= RECORD_BATCH
                            or self._room(done, now)
                        )
                    )
                    attempts = self._unrecorded + self._finish(done) if recording else []
                    claim_at = now if not stopping and self._room([], now) else None
                    if attempts or claim_at:
                        launched, throttled = await self._pass(attempts, clock(), claim_at, stats)
                # Backing off from a busy store: wait for the next try, or for a send to finish.
                wait = self._backoff.wait(loop.time())
                pending = {t for t in self._tasks if not t.done()}
                if pending:
                    await asyncio.wait(pending, timeout=wait or poll, return_when=asyncio.FIRST_COMPLETED)
                elif wait or self._unrecorded:
                    await sleep(wait)
                elif not launched and not self._tasks:
                    # A send that finished while the store was being written is still in self._tasks:
                    # the next pass records it. Stopping lets in-flight sends finish and be recorded.
                    if stopping or (not forever and not throttled):
                        return stats
                    self._resting = {}  # idle: look at every endpoint again on the next pass
                    await sleep(poll)
        finally:
            await self._abandon()

    def _room(self, done: list[asyncio.Task[Attempt]], now: datetime) -> bool:
        """True when some endpoint, once `done` is recorded, has a quarter of its concurrency free."""
        finishing: dict[str, int] = defaultdict(int)
        for task in done:
            finishing[self._endpoint_of[task]] += 1
        return any(
            endpoint.concurrency - self._inflight[name] + finishing[name] >= max(1, endpoint.concurrency // 4)
            for name, endpoint in self._config.endpoints.items()
            if not (name in self._resting and self._resting[name] > now)
        )

    def _finish(self, finished: list[asyncio.Task[Attempt]]) -> list[Attempt]:
        """Take finished sends out of flight; their attempts, once the hook has seen them sent."""
        attempts: list[Attempt] = []
        for task in finished:
            self._tasks.discard(task)
            self._inflight[self._endpoint_of.pop(task)] -= 1
            attempts.append(task.result())  # a hook's exception ends the run here, like a crash would
        for attempt in attempts:
            if self._hook is not None:
                self._hook("sent", attempt.job)
        return attempts

    async def _pass(
        self, attempts: list[Attempt], recorded_at: datetime, claim_at: datetime | None, stats: RunStats
    ) -> tuple[int, bool]:
        """Record `attempts`, claim at `claim_at` (if given) and start sending; (progress, rate-limited).

        On a busy store the attempts are kept for the next pass, after a backoff; so is a claim.
        """
        loop = asyncio.get_running_loop()
        # The store's work runs on a thread: waiting for the write lock must not stop the event loop,
        # which meanwhile sends, and reads the answers to, what is already in flight.
        try:
            decisions, claimed, busy = await asyncio.to_thread(
                self._store, attempts, recorded_at, claim_at, stats
            )
        except Exception as exc:
            if not store_busy(exc):
                self._unrecorded = []  # any other error ends the run, as a crash would
                raise
            self._unrecorded = attempts
            self._backoff.failed(exc, loop.time(), kept=len(attempts))
            return 0, False
        self._unrecorded = []
        if busy is None:
            self._backoff.succeeded(loop.time(), recorded=len(attempts))
        else:
            self._backoff.failed(busy, loop.time(), kept=0)  # the attempts are in; the claim waits
        stats.attempts += len(attempts)
        for decision, held in decisions:
            if held is not None:
                # Closed instead of retried (the contact opted out meanwhile): held back, like at a claim.
                stats.held_back[held.split(":", 1)[0]] += 1
            else:
                stats.outcomes[_label(decision)] += 1
        for attempt in attempts:
            if self._hook is not None:
                self._hook("recorded", attempt.job)
        if claim_at is not None:
            self._start(claimed, claim_at)
        # A full fan-out batch means more outbox rows may be waiting: that is progress too, and so is a
        # withheld delivery (a later transition of its contact may be claimed now).
        return len(claimed.jobs) + claimed.withheld + claimed.full_batch, claimed.throttled

    def _start(self, claimed: _Claimed, now: datetime) -> None:
        """Start sending each claimed job."""
        for job, body in zip(claimed.jobs, claimed.bodies, strict=True):
            self._inflight[job.endpoint] += 1
            task = asyncio.create_task(self._attempt(job, body, now))
            self._tasks.add(task)
            self._endpoint_of[task] = job.endpoint

    def _store(
        self, attempts: list[Attempt], recorded_at: datetime, claim_at: datetime | None, stats: RunStats
    ) -> tuple[list[tuple[Decision, str | None]], _Claimed, Exception | None]:
        """One transaction: record `attempts` and what each decides, then fan out and claim at `claim_at`.

        The third value is the busy store's error when the claim (not the records) failed on it.
        """
        if not attempts and (claim_at is None or not self._work_waiting(claim_at)):
            return [], _Claimed(), None
        claimed, failure = _Claimed(), None
        with write_transaction(self._engine) as conn:
            decisions = record(
                conn,
                attempts,
                worker_id=self.worker_id,
                breaker=self._breaker,
                now=recorded_at,
                endpoints=self._config.endpoints,
                channels=self._channels,
                rng=self._rng,
            )
            if claim_at is not None:
                try:
                    with conn.begin_nested():
                        claimed = self._claim(conn, claim_at, stats)
                except Exception as error:
                    failure = error  # raised once the records are in: a failed claim must not undo them
        if failure is not None and not store_busy(failure):
            raise failure
        return decisions, claimed, failure

    def _work_waiting(self, now: datetime) -> bool:
        """Look before locking: a read does not contend with the writers that feed the outbox."""
        wanted = [n for n in self._config.endpoints if not (n in self._resting and self._resting[n] > now)]
        with self._engine.connect() as conn:
            return work_waiting(conn, wanted, now)

    def _claim(self, conn: Connection, now: datetime, stats: RunStats) -> _Claimed:
        """Fan out, then claim what each endpoint's budget allows, with the jobs' bodies."""
        throttled = False
        fanned = fan_out_batch(
            conn, self._config, now, batch_size=self._config.batch_size, channels=self._channels
        )
        stats.fanned_out += fanned.deliveries
        for reason, count in fanned.suppressed.items():
            stats.held_back[reason] += count
        states = load_states(conn, self._config.endpoints)
        # Resting endpoints do not ask for a claim until their circuit half-opens (disabled: a moment).
        recheck = now + timedelta(seconds=DISABLED_RECHECK_SECONDS)
        self._resting = {
            n: (st.circuit_open_until if st.disabled_at is None and st.circuit_open_until else recheck)
            for n, st in states.items()
            if st.disabled_at is not None or st.open_at(now)
        }
        ids: list[int] = []
        for name, endpoint in self._config.endpoints.items():
            budget = self._budget(name, endpoint.concurrency, states[name], now)
            bucket = self._buckets.get(name)
            if bucket is not None:
                allowed = bucket.available(now)
                if allowed < 1 and budget > 0 and has_due(conn, name, now):
                    throttled = True
                budget = min(budget, allowed)
            got = claim(
                conn,
                name,
                budget,
                now,
                worker_id=self.worker_id,
                lease=self._lease,
                ordered=endpoint.per_contact_ordering,
            )
            if bucket is not None:
                bucket.take(len(got), now)
            ids.extend(got)
        claimed = load_jobs(conn, ids)
        jobs = self._still_due(conn, claimed, now, stats)
        full_batch = fanned.outbox_rows >= self._config.batch_size
        return _Claimed(jobs, self._bodies(conn, jobs), full_batch, throttled, len(claimed) - len(jobs))

    def _still_due(self, conn: Connection, jobs: list[Job], now: datetime, stats: RunStats) -> list[Job]:
        """The claimed jobs fan-out would still send now; the others are closed with why, and counted."""
        # An opt-out cancels no delivery in flight, nor one a concurrent fan-out has not committed yet:
        # what was decided at fan-out is decided again, on what the store holds now.
        held = verdicts(conn, self._config.endpoints, jobs, self._channels)
        if not held:
            return jobs
        withhold(conn, held, worker_id=self.worker_id, now=now)
        for _, reason in held.values():
            stats.held_back[reason.split(":", 1)[0]] += 1
        return [job for job in jobs if job.delivery_id not in held]

    def _budget(self, name: str, concurrency: int, state: EndpointState, now: datetime) -> int:
        if state.disabled_at is not None or state.open_at(now):
            return 0
        free = concurrency - self._inflight[name]
        if self._breaker.half_open(state):
            free = min(free, 1 - self._inflight[name])
        return max(0, min(free, self._config.batch_size))

    def _bodies(self, conn: Connection, jobs: list[Job]) -> list[dict[str, Any]]:
        names = {n for job in jobs for n in self._config.endpoints[job.endpoint].payload_fields}
        contact_ids = {job.transition.contact_id for job in jobs}
        values = contact_fields(conn, contact_ids, names)
        merged = merged_ids(conn, contact_ids)
        return [
            payload(
                job.transition,
                ordered_fields(
                    values.get(job.transition.contact_id, {}),
                    self._config.endpoints[job.endpoint].payload_fields,
                ),
                merged.get(job.transition.contact_id, ()),
            )
            for job in jobs
        ]

    async def _attempt(self, job: Job, body: dict[str, Any], now: datetime) -> Attempt:
        if self._hook is not None:
            self._hook("claimed", job)
        try:
            return await self._senders[job.endpoint].send(job, body, now)
        except Exception as exc:
            # A sender should not raise, but an answer it did not foresee must fail this delivery (retried
            # on the schedule), not the pass that records every other endpoint's results.
            log.exception("webhooks: sending delivery %d to %s failed", job.delivery_id, job.endpoint)
            return Attempt(job, now, None, 0.0, f"sender failed: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Close every endpoint's connections."""
        for sender in self._senders.values():
            await sender.aclose()

    async def _abandon(self) -> None:
        """On the way out, stop in-flight sends; their leases run out and another run retries them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._endpoint_of.clear()
        self._inflight.clear()


def _label(decision: Succeeded | RetryDecision | Dead | Disable) -> str:
    if isinstance(decision, Succeeded):
        return "succeeded"
    if isinstance(decision, RetryDecision):
        return "retrying"
    if isinstance(decision, Disable):
        return "endpoint_disabled"
    return "dead"
