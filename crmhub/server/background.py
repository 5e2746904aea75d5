"""The loops `crmhub serve` runs beside the HTTP endpoints: the scheduler and the delivery worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import datetime

from crmhub.jobs import EXPLAINED_FAILURES
from crmhub.server.services import Services
from crmhub.wiring import pull_source_names
from sync.schedule import Job, jobs, next_run
from webhooks import DeliveryWorker, build_senders

__all__ = ["SchedulerThread", "WorkerThread"]

log = logging.getLogger("crmhub.serve")
# The scheduler looks at the clock at least this often, so a stop or a clock jump is noticed quickly.
_MAX_NAP_SECONDS = 1.0


class SchedulerThread:
    """Starts each job when its cron expression fires; never starts a job whose last run is still going."""

    def __init__(self, services: Services) -> None:
        self.services = services
        enabled = pull_source_names(services.settings, None)
        self.jobs: list[Job] = jobs(services.settings.sync.schedule, enabled)
        self._running: dict[str, threading.Thread] = {}
        self._thread = threading.Thread(target=self._loop, name="crmhub-scheduler", daemon=True)

    def start(self) -> None:
        """Run the loop in its own thread."""
        if self.jobs:
            log.info("scheduler: %s", ", ".join(f"{j.name} at {j.cron!r} UTC" for j in self.jobs))
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Wait up to `timeout` for running jobs to stop at a page boundary (`services.stopping` is set)."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        for thread in list(self._running.values()):
            thread.join(timeout)

    def _loop(self) -> None:
        stopping = self.services.stopping
        now = self.services.clock()
        due = {job.name: next_run(job.cron, now) for job in self.jobs}
        while not stopping.is_set():
            now = self.services.clock()
            for job in self.jobs:
                if due[job.name] <= now:
                    self._start(job, due[job.name])
                    due[job.name] = next_run(job.cron, now)
            nap = min((min(due.values()) - self.services.clock()).total_seconds(), _MAX_NAP_SECONDS)
            stopping.wait(max(nap, 0.0))

    def _start(self, job: Job, fired_at: datetime) -> None:
        running = self._running.get(job.name)
        if running is not None and running.is_alive():
            # Reported, not doubled: the next firing starts it again once this one is done.
            log.warning(
                "scheduler: %s due at %s skipped: its previous run is still going", job.name, fired_at
            )
            self.services.metrics.runs.labels(job.name, "overran").inc()
            return
        thread = threading.Thread(target=self._run, args=(job,), name=f"crmhub-{job.name}", daemon=True)
        self._running[job.name] = thread
        thread.start()

    def _run(self, job: Job) -> None:
        log.info("scheduler: %s started", job.name)
        try:
            outcome = self.services.run(job, trigger="schedule")
        except EXPLAINED_FAILURES as exc:
            log.error("scheduler: %s failed: %s", job.name, exc)
            return
        except Exception:
            # One failing run must not end the scheduler; the next firing tries again.
            log.exception("scheduler: %s failed", job.name)
            return
        if outcome.push_error is not None:
            log.error("scheduler: %s failed: %s", job.name, outcome.push_error)  # the pull was stored
        for lease, holder in outcome.busy.items():
            log.warning(
                "scheduler: %s skipped %s: held by %s (a run elsewhere overran)", job.name, lease, holder
            )
        report = outcome.report
        if report is not None:
            records = sum(s.records for s in report.streams)
            log.info(
                "scheduler: %s finished: run %d %s, %d records",
                job.name,
                report.run_id,
                "stopped" if report.stopped else report.status,
                records,
            )


class WorkerThread:
    """The delivery worker on its own event loop, woken at once when new transitions commit."""

    def __init__(self, services: Services) -> None:
        self.services = services
        config = services.settings.webhooks
        self.worker = DeliveryWorker(
            services.engine,
            config,
            build_senders(config, services.environ),
            channels=services.settings.consent.channels,
        )
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="crmhub-worker", daemon=True
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        """Start delivering; `services.wake_worker` now reaches this worker."""
        self._thread.start()
        self._ready.wait()
        self.services.wake_worker = self.wake

    def wake(self) -> None:
        """Look for due deliveries now (callable from any thread)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self, timeout: float) -> None:
        """Let in-flight sends finish and be recorded; what is left returns to the queue."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self.wake()
        self._thread.join(timeout)

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    await self.worker.run(self.services.clock, forever=True, stop=self._stop, sleep=self._nap)
                except Exception:
                    # A busy store is waited out inside run(), its results kept; any other failure must
                    # not end delivery for the life of the process: leases expire and the work is
                    # claimed again.
                    log.exception("worker: delivery loop failed; restarting in 1 s")
                    await asyncio.sleep(1.0)
        finally:
            await self.worker.aclose()

    async def _nap(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()
