"""`crmhub sandbox serve` dates its world: a week before today by default, or the day --start names."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from crmhub.sandbox import LIVED_DAYS, credentials, start_before

CRMHUB = str(Path(sys.executable).with_name("crmhub"))


@contextmanager
def _serving(*args: str) -> Iterator[str]:
    """Run the command on a free port and yield its URL once it prints it."""
    command = [CRMHUB, "sandbox", "serve", "--people", "5", "--port", "0", *args]
    env = {"COLUMNS": "200", "PATH": ""}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                found = re.search(r"listening on (http://\S+)", line)
                if found:
                    yield found.group(1)
                    return
            raise AssertionError(f"crmhub sandbox serve stopped: exit {proc.wait()}")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _clock(url: str) -> int:
    return int(httpx.get(f"{url}/_sandbox/state", timeout=10).json()["now"])


def test_serve_starts_the_clock_a_week_before_today_and_lives_four_days() -> None:
    before = start_before(time.time())
    with _serving() as url:
        lived = LIVED_DAYS * 86_400
        assert _clock(url) in (before + lived, start_before(time.time()) + lived)
        # Those days happened: payments a first sync on the real clock counts as recent.
        paid = httpx.get(
            f"{url}/v1/events",
            params={"type": "invoice.paid", "limit": 100},
            headers={"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"},
            timeout=10,
        )
        assert any(e["created"] >= before for e in paid.json()["data"])


def test_serve_starts_the_clock_on_the_day_start_names() -> None:
    with _serving("--start", "2026-11-01") as url:
        assert _clock(url) == 1_793_491_200
