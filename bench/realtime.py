"""Real-time benchmark: a signed Stripe webhook in -> the consumer receives `segment.entered`.

Run: `.venv/bin/python bench/realtime.py` (50/s and 500/s), or `--rate 50 --seconds 10`.
A real `crmhub serve` process (SQLite, scheduler off) takes the webhooks; the consumer is the minimal
HTTP server of bench/deliver.py in its own process (the sandbox's receiver, in this process, would
compete with the sender for the CPU). Each webhook is an `invoice.paid` for a new customer, so each one
makes a contact enter the "paid in the last 7 days" segment; latency runs from just before the POST to
the consumer's arrival time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.config import sandbox_config
from crmhub.sandbox.harness import ServeProcess
from crmhub.sandbox.webhooks_out import invoice_paid, stripe_headers
from sync.store import create_store_engine
from sync.store.tables import contact_identities, deliveries, delivery_attempts, transitions

_SECRET = credentials.STRIPE_WEBHOOK_SECRET


async def _send(url: str, rate: float, seconds: float, run: str) -> tuple[dict[str, float], list[str]]:
    """POST `rate` webhooks per second for `seconds`: each customer id's send time, and the failures."""
    sent: dict[str, float] = {}
    failed: list[str] = []
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    # No pool timeout: at an offered rate above capacity, requests queue here and their wait is measured.
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120, pool=None)) as client:

        async def one(n: int) -> None:
            customer = f"cus_{run}_{n}"
            body = invoice_paid(customer, f"rt.{run}.{n}@example.com", int(time.time()))
            headers = stripe_headers(body, int(time.time()))
            sent[customer] = time.time()
            try:
                response = await client.post(f"{url}/hooks/stripe", content=body, headers=headers)
            except httpx.TransportError as exc:
                # Counted, not fatal: a provider would send this one again later.
                failed.append(f"webhook {n}: {type(exc).__name__}")
                return
            if response.status_code != 200:
                failed.append(f"webhook {n}: {response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        tasks = []
        for n in range(total):
            # Open loop: each request leaves at its own time, whether or not earlier ones have answered.
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return sent, failed


def _arrivals(database: Path, log: list[tuple[int, float]]) -> dict[str, float]:
    """Customer id -> when the consumer received its contact's `segment.entered`."""
    engine = create_store_engine(f"sqlite:///{database}")
    t, ci = transitions.c, contact_identities.c
    with engine.connect() as conn:
        customer = {
            tid: value
            for tid, value in conn.execute(
                select(t.id, ci.value)
                .join(contact_identities, ci.contact_id == t.contact_id)
                .where(ci.kind == "stripe_customer", t.kind == "entered")
            )
        }
    engine.dispose()
    return {customer[tid]: at for tid, at in log if tid in customer}


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _consumer(folder: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """bench/deliver.py's consumer in a subprocess; its URL and the file it writes its log to."""
    port_file, log_file = folder / "consumer.port", folder / "consumer.log"
    script = Path(__file__).with_name("deliver.py")
    process = subprocess.Popen([sys.executable, str(script), "--serve", str(port_file), str(log_file)])
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}/hook", log_file


def _config(sandbox_url: str, consumer_url: str, database: Path, concurrency: int) -> str:
    """The sandbox configuration with its receiver endpoint swapped for the consumer."""
    text = sandbox_config(sandbox_url, f"sqlite:///{database}")
    receiver = json.dumps(sandbox_url.rstrip("/") + "/_receiver/demo")
    return text.replace(f"url = {receiver}", f"url = {json.dumps(consumer_url)}\nconcurrency = {concurrency}")


def run(rate: float, seconds: float, concurrency: int, split: bool) -> dict[str, Any]:
    """One measured run at `rate` webhooks/s; the latency percentiles in ms."""
    with SandboxServer(Sandbox(people=10, seed=3)) as sandbox, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        consumer, consumer_url, log_file = _consumer(folder)
        config = folder / "crmhub.toml"
        config.write_text(
            _config(sandbox.url, consumer_url, folder / "crmhub.db", concurrency), encoding="utf-8"
        )
        try:
            # Split: webhooks in one process, the delivery worker in another (no GIL or loop shared).
            front = ("--no-scheduler", "--no-worker") if split else ("--no-scheduler",)
            worker = ServeProcess(config, credentials.ENVIRONMENT, "--no-scheduler") if split else None
            with ServeProcess(config, credentials.ENVIRONMENT, *front) as serve:
                if worker is not None:
                    worker.start()
                sent, failed = asyncio.run(_send(serve.url, rate, seconds, f"r{int(rate)}x{os.getpid()}"))
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and _succeeded(folder / "crmhub.db") < len(sent):
                    time.sleep(0.2)
                if worker is not None:
                    worker.stop()
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait()
        arrived = _arrivals(folder / "crmhub.db", json.loads(log_file.read_text()))
        stages = _stages(folder / "crmhub.db")
    latencies = [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]
    return {
        "rate": rate,
        "webhooks": len(sent),
        "send_failures": len(failed),
        "first_failure": failed[0] if failed else None,
        "delivered": len(latencies),
        "p50_ms": round(_percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "concurrency": concurrency,
        "processes": 2 if split else 1,
        **stages,
        "load": round(os.getloadavg()[0], 1),
    }


def _stages(database: Path) -> dict[str, float]:
    """Medians of the two halves: transition written -> delivery row, and the HTTP request itself."""
    engine = create_store_engine(f"sqlite:///{database}")
    t, d, a = transitions.c, deliveries.c, delivery_attempts.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.occurred_at, d.created_at, a.latency_ms)
            .join(deliveries, d.transition_id == t.id)
            .join(delivery_attempts, a.delivery_id == d.id)
        ).all()
    engine.dispose()
    if not rows:
        return {}
    return {
        "fanout_p50_ms": round(statistics.median((c - o).total_seconds() * 1000 for o, c, _ in rows), 1),
        "http_p50_ms": round(statistics.median(ms or 0.0 for _, _, ms in rows), 1),
    }


def _succeeded(database: Path) -> int:
    engine = create_store_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        done = conn.execute(select(func.count()).where(deliveries.c.status == "succeeded")).scalar_one()
    engine.dispose()
    return int(done)


def main() -> None:
    """Run the requested rates and print one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, action="append", help="webhooks per second (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send at each rate")
    parser.add_argument("--concurrency", type=int, default=50, help="the endpoint's concurrent requests")
    parser.add_argument("--split", action="store_true", help="run the delivery worker in a second process")
    args = parser.parse_args()
    for rate in args.rate or [50.0, 500.0]:
        print(json.dumps(run(rate, args.seconds, args.concurrency, args.split)), flush=True)


if __name__ == "__main__":
    main()
