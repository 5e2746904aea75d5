"""Real-time benchmark: a signed Stripe webhook in -> the consumer receives `segment.entered`.

Run: `.venv/bin/python bench/realtime.py` (50/s and 500/s), or `--rate 50 --seconds 10`.
A real `crmhub serve` process (SQLite, scheduler off) sits between the sandbox's receiver and this
script. Each webhook is an `invoice.paid` for a new customer, so each one makes a contact enter the
"paid in the last 7 days" segment; latency is from just before the POST to the receiver's arrival time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.config import sandbox_config
from crmhub.sandbox.harness import ServeProcess
from crmhub.sandbox.webhooks_out import stripe_signature

SEGMENT = "paid_last_7_days"
_SECRET = credentials.STRIPE_WEBHOOK_SECRET


def _event(n: int, run: str) -> bytes:
    now = int(time.time())
    invoice = {
        "id": f"in_{run}_{n}",
        "object": "invoice",
        "customer": f"cus_{run}_{n}",
        "customer_email": f"rt.{run}.{n}@example.com",
        "status": "paid",
        "amount_paid": 2000,
        "currency": "usd",
        "created": now,
    }
    event = {
        "id": f"evt_{run}_{n}",
        "object": "event",
        "created": now,
        "type": "invoice.paid",
        "data": {"object": invoice},
        "livemode": False,
    }
    return json.dumps(event).encode()


async def _send(url: str, rate: float, seconds: float, run: str) -> dict[str, float]:
    """POST `rate` webhooks per second for `seconds`; the send time of each customer's email."""
    sent: dict[str, float] = {}
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(n: int) -> None:
            body = _event(n, run)
            headers = {
                "content-type": "application/json",
                "stripe-signature": stripe_signature(
                    body, credentials.STRIPE_WEBHOOK_SECRET, int(time.time())
                ),
            }
            sent[f"rt.{run}.{n}@example.com"] = time.time()
            response = await client.post(f"{url}/hooks/stripe", content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"webhook {n}: {response.status_code} {response.text}")

        started = time.perf_counter()
        tasks = []
        for n in range(total):
            # Open loop: each request leaves at its own time, whether or not earlier ones have answered.
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return sent


def _received(box: Sandbox) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in box.receiver.state()["accepted"]:
        payload: dict[str, Any] = row["payload"]
        if payload["type"] == "segment.entered" and payload["data"]["segment"]["key"] == SEGMENT:
            email = payload["data"]["contact"].get("fields", {}).get("email") or payload["data"][
                "contact"
            ].get("email")
            if email:
                out[str(email)] = row["received_at"]
    return out


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(rate: float, seconds: float) -> dict[str, Any]:
    """One measured run at `rate` webhooks/s; the latency percentiles in ms."""
    box = Sandbox(people=10, seed=3)
    with SandboxServer(box) as sandbox, tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "crmhub.toml"
        config.write_text(sandbox_config(sandbox.url, f"sqlite:///{folder}/crmhub.db"), encoding="utf-8")
        with ServeProcess(config, credentials.ENVIRONMENT, "--no-scheduler") as serve:
            run_id = f"r{int(rate)}x{os.getpid()}"
            sent = asyncio.run(_send(serve.url, rate, seconds, run_id))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                received = _received(box)
                if len(received) >= len(sent):
                    break
                time.sleep(0.2)
    latencies = [(received[k] - t) * 1000 for k, t in sent.items() if k in received]
    return {
        "rate": rate,
        "webhooks": len(sent),
        "delivered": len(latencies),
        "p50_ms": round(_percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "load": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    """Run the requested rates and print one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, action="append", help="webhooks per second (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send at each rate")
    args = parser.parse_args()
    for rate in args.rate or [50.0, 500.0]:
        print(json.dumps(run(rate, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
