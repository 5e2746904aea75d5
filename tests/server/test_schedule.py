"""Scheduled runs of two `crmhub serve` processes sharing one store: on schedule, never overlapping."""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.config import sandbox_config
from crmhub.sandbox.harness import ServeProcess
from sync.store import create_store_engine
from sync.store.tables import cursors, locks, sync_runs

# Every 2 seconds: a first full sync of the sandbox takes longer, so firings meet a run still going.
SCHEDULE = """
[sync.schedule]
every = "* * * * * */2"
segments = "* * * * * */3"
"""
_LINE = re.compile(r"^(\S+ \S+) INFO crmhub\.jobs: (\S+) (took|released) (.+)$")


def _intervals(logs: list[str]) -> dict[str, list[tuple[datetime, datetime, str]]]:
    """Per lease: (taken, released, holder) from the `crmhub.jobs` log lines of every process."""
    taken: dict[tuple[str, str], datetime] = {}
    out: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for log in logs:
        for line in log.splitlines():
            match = _LINE.match(line)
            if not match:
                continue
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            for lease in match[4].split(", "):
                key = (lease, match[2])
                if match[3] == "took":
                    taken[key] = at
                else:
                    out[lease].append((taken.pop(key), at, match[2]))
    return out


def test_two_servers_on_one_schedule_never_run_the_same_thing_at_once(tmp_path: Path) -> None:
    with SandboxServer(Sandbox(people=150, seed=5)) as sandbox:
        config = tmp_path / "crmhub.toml"
        text = sandbox_config(sandbox.url, f"sqlite:///{tmp_path / 'crmhub.db'}") + SCHEDULE
        config.write_text(text, encoding="utf-8")
        first = ServeProcess(config, credentials.ENVIRONMENT, "--no-worker").start()
        second = ServeProcess(config, credentials.ENVIRONMENT, "--no-worker").start()
        try:
            time.sleep(9)
        finally:
            first.stop()
            second.stop()
        logs = [first.log(), second.log()]
    intervals = _intervals(logs)
    assert set(intervals) >= {"sync:stripe", "sync:hubspot", "sync:typeform", "segments"}, logs
    for lease, runs in intervals.items():
        runs.sort()
        for (_, end, holder), (start, _, other) in itertools.pairwise(runs):
            assert end <= start, f"{lease}: {holder} still held it when {other} took it"
    # Both processes ran scheduled work, and every firing that met a run still going was reported.
    holders = {holder.rsplit(":", 1)[0] for runs in intervals.values() for _, _, holder in runs}
    assert len(holders) == 2, logs
    joined = "\n".join(logs)
    assert "skipped" in joined
    assert "Traceback" not in joined


def test_a_segments_schedule_fires_on_its_cron_seconds(tmp_path: Path) -> None:
    with SandboxServer(Sandbox(people=20, seed=5)) as sandbox:
        config = tmp_path / "crmhub.toml"
        text = sandbox_config(sandbox.url, f"sqlite:///{tmp_path / 'crmhub.db'}")
        config.write_text(text + '\n[sync.schedule]\nsegments = "* * * * * */2"\n', encoding="utf-8")
        with ServeProcess(config, credentials.ENVIRONMENT, "--no-worker") as process:
            time.sleep(5)
            log = process.log()
    starts = [start for start, _, _ in _intervals([log])["segments"]]
    assert len(starts) >= 2, log
    # Each run starts just after an even second, when its cron expression fires.
    assert all(at.second % 2 == 0 and at.microsecond < 900_000 for at in starts), starts


def test_sigterm_stops_a_running_sync_at_a_page_boundary_with_its_cursor_saved(tmp_path: Path) -> None:
    box = Sandbox(people=400, seed=5)
    box.add_fault("stripe:latency=250")  # every Stripe page takes a while: the stop lands mid-run
    with SandboxServer(box) as sandbox:
        config = tmp_path / "crmhub.toml"
        text = sandbox_config(sandbox.url, f"sqlite:///{tmp_path / 'crmhub.db'}")
        config.write_text(text + '\n[sync.schedule]\nevery = "* * * * * */1"\n', encoding="utf-8")
        process = ServeProcess(config, credentials.ENVIRONMENT, "--no-worker").start()
        try:
            deadline = time.monotonic() + 20
            while "took sync:stripe" not in process.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # a few pages in
        finally:
            code = process.stop(timeout=30)
        log = process.log()
    assert code in (0, -signal.SIGTERM), log
    assert "released sync:stripe" in log, log
    engine = create_store_engine(f"sqlite:///{tmp_path / 'crmhub.db'}")
    with engine.connect() as conn:
        statuses = set(
            conn.execute(select(sync_runs.c.status).where(sync_runs.c.trigger == "schedule")).scalars()
        )
        saved = conn.execute(select(func.count()).select_from(cursors)).scalar_one()
        held = conn.execute(select(func.count()).select_from(locks)).scalar_one()
    engine.dispose()
    assert "stopped" in statuses, statuses
    assert saved >= 1  # what was stored is covered by a cursor, so the next run resumes from there
    assert held == 0  # every lease was given back on the way out
