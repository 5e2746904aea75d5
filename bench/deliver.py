"""Delivery benchmark: deliveries/s to a local consumer, and commit-to-receipt latency at a steady load.

Run: `.venv/bin/python bench/deliver.py` (all three), or `--only throughput` / `latency` / `client`.
The consumer is a minimal asyncio HTTP/1.1 server in a subprocess on 127.0.0.1 that answers 204 and
notes when each transition arrived; the worker signs every request, goes through the SSRF-guarded
transport (127.0.0.1 allow-listed) and records every attempt in SQLite. `client` is the HTTP ceiling:
a bare httpx.AsyncClient posting a delivery-sized body, through our transport and through httpx's
default one (httpcore), with no store and no signing. `--database-url postgresql://...` stores into
a new database on that PostgreSQL server instead of SQLite (dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, insert, select
from stores import close_store, fresh_store_url

from sync.store import create_store_engine, upgrade
from sync.store.tables import contacts, deliveries, delivery_attempts, outbox, segments, transitions
from webhooks import (
    AddressPolicy,
    DeliveryWorker,
    EndpointConfig,
    RunStats,
    WebhooksConfig,
    build_senders,
    generate_secret,
    guarded_transport,
)

_TRANSITION_ID = re.compile(rb'"transition":\{"id":(\d+)')


# --- the consumer (subprocess) ------------------------------------------------------------------


class _Consumer(asyncio.Protocol):
    def __init__(self, log: list[tuple[int, float]]) -> None:
        self.log = log
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = (
                int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
                if at >= 0
                else 0
            )
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            match = _TRANSITION_ID.search(body)
            if match:
                self.log.append((int(match[1]), time.time()))
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")  # type: ignore[attr-defined]


async def _serve(port_file: Path, log_file: Path) -> None:
    log: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Consumer(log), "127.0.0.1", 0, backlog=1024)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop.add_signal_handler(15, stop.set)
    await stop.wait()
    log_file.write_text(json.dumps(log))


# --- the producer and the worker ----------------------------------------------------------------


def _store(store_url: str, checkpoint_thread: bool) -> tuple[Engine, int]:
    engine = create_store_engine(store_url, checkpoint_thread=checkpoint_thread)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        sid = conn.execute(
            insert(segments)
            .values(key="vip", name="VIP", rule={}, rule_version="v1", created_at=now, updated_at=now)
            .returning(segments.c.id)
        ).scalar_one()
    return engine, sid


def _produce(engine: Engine, segment_id: int, n: int) -> dict[int, float]:
    """Commit `n` transitions (one contact each) with their outbox rows; returns commit times by id."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        first = (
            conn.execute(
                insert(contacts).returning(contacts.c.id),
                [{"created_at": now, "updated_at": now, "changed_at": now, "transition_seq": 1}] * n,
            )
            .scalars()
            .all()
        )
        tids = (
            conn.execute(
                insert(transitions).returning(transitions.c.id),
                [
                    {
                        "segment_id": segment_id,
                        "contact_id": cid,
                        "kind": "entered",
                        "occurred_at": now,
                        "reason": "rule",
                        "rule_version": "v1",
                        "contact_seq": 1,
                    }
                    for cid in first
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(insert(outbox), [{"transition_id": t, "created_at": now} for t in tids])
    committed = time.time()
    return dict.fromkeys(tids, committed)


def _config(url: str, concurrency: int) -> WebhooksConfig:
    endpoint = EndpointConfig(
        url=url,
        secret_envs=["BENCH_SECRET"],
        fields=["email"],
        concurrency=concurrency,
        allow_http=True,
        allow_networks=["127.0.0.1/32"],
    )
    return WebhooksConfig(endpoints={"bench": endpoint}, batch_size=500, poll_interval_seconds=0.01)


def _worker(engine: Engine, url: str, concurrency: int) -> DeliveryWorker:
    config = _config(url, concurrency)
    return DeliveryWorker(engine, config, build_senders(config, {"BENCH_SECRET": generate_secret()}))


def _now() -> datetime:
    return datetime.now(UTC)


def throughput(db: str, url: str, n: int, concurrency: int, checkpoint_thread: bool) -> dict[str, float]:
    """Deliver `n` queued transitions as fast as possible."""
    engine, sid = _store(db, checkpoint_thread)
    _produce(engine, sid, n)
    worker = _worker(engine, url, concurrency)

    async def go() -> RunStats:
        try:
            return await worker.run(_now)
        finally:
            await worker.aclose()

    started = time.perf_counter()
    stats = asyncio.run(go())
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        ok = conn.execute(select(func.count()).where(deliveries.c.status == "succeeded")).scalar_one()
        recorded = conn.execute(select(func.count()).select_from(delivery_attempts)).scalar_one()
    with engine.connect() as conn:
        errors = conn.execute(
            select(delivery_attempts.c.error, func.count())
            .where(delivery_attempts.c.error.is_not(None))
            .group_by(delivery_attempts.c.error)
        ).all()
    close_store(engine)
    if not ok == n == recorded == stats.attempts:
        raise SystemExit(
            f"expected {n} deliveries in one attempt each, found {ok} ok, {recorded} attempts: {errors}"
        )
    return {"deliveries": n, "seconds": round(elapsed, 2), "per_second": round(n / elapsed)}


def _succeeded(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(deliveries.c.status == "succeeded")).scalar_one())


def latency(
    db: str,
    url: str,
    rate: int,
    seconds: float,
    concurrency: int,
    checkpoint_thread: bool,
    drain_seconds: float = 300.0,
) -> dict[str, float]:
    """Offer `rate` transitions/s for `seconds` while the worker runs; commit times by transition id."""
    engine, sid = _store(db, checkpoint_thread)
    worker = _worker(engine, url, concurrency)
    committed: dict[int, float] = {}
    stop = asyncio.Event()

    def producer(loop: asyncio.AbstractEventLoop) -> None:
        tick, per_tick = 0.02, max(1, int(rate * 0.02))
        start = time.perf_counter()
        for i in range(int(seconds / tick)):
            committed.update(_produce(engine, sid, per_tick))
            delay = start + (i + 1) * tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        # Let the backlog drain (bounded), so every offered transition is measured.
        deadline = time.perf_counter() + drain_seconds
        while time.perf_counter() < deadline and _succeeded(engine) < len(committed):
            time.sleep(0.2)
        loop.call_soon_threadsafe(stop.set)

    async def main() -> None:
        thread = threading.Thread(target=producer, args=(asyncio.get_running_loop(),))
        thread.start()
        await worker.run(_now, forever=True, stop=stop)
        await worker.aclose()
        thread.join()

    asyncio.run(main())
    close_store(engine)
    return {"offered_per_second": rate, "transitions": len(committed), "_committed": committed}  # type: ignore[dict-item]


async def _bare(url: str, transport: httpx.AsyncBaseTransport, n: int, concurrency: int) -> float:
    """Requests/s of `concurrency` tasks posting `n` bodies the size of a delivery, nothing else."""
    body = b'{"type":"segment.entered","data":{"contact":{"email":"c@example.com"}},"pad":"%s"}' % (
        b"x" * 400
    )
    left = n

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            (await client.post(url, content=body, headers={"webhook-id": "msg_bench"})).raise_for_status()

    async with httpx.AsyncClient(transport=transport) as client:
        started = time.perf_counter()
        await asyncio.gather(*(loop(client) for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def client_ceiling(url: str, n: int, concurrency: int) -> dict[str, float]:
    """The bare-client ceiling through our pooled transport and through httpcore, one after the other."""
    loopback = AddressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    pooled = asyncio.run(_bare(url, guarded_transport(loopback, max_connections=concurrency), n, concurrency))
    limits = httpx.Limits(max_connections=concurrency)
    httpcore = asyncio.run(_bare(url, httpx.AsyncHTTPTransport(limits=limits), n, concurrency))
    return {"requests": n, "pooled_per_second": round(pooled), "httpcore_per_second": round(httpcore)}


def _percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100)
    return {
        "p50_ms": round(qs[49], 1),
        "p95_ms": round(qs[94], 1),
        "p99_ms": round(qs[98], 1),
        "max_ms": round(max(samples), 1),
    }


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["throughput", "latency", "client"])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--no-checkpoint-thread",
        action="store_true",
        help="commits checkpoint the WAL themselves, as before sync/store/checkpoint.py (a baseline)",
    )
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server to store into (a new database per run)"
    )
    parser.add_argument("--serve", nargs=2, metavar=("PORT_FILE", "LOG_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve[0]), Path(args.serve[1])))
        return
    threaded = not args.no_checkpoint_thread
    results: dict[str, object] = {"cpus": os.cpu_count(), "checkpoint_thread": threaded}
    results["store"] = "postgresql" if args.database_url else "sqlite"
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as databases:
        for kind in ("throughput", "latency", "client"):
            if args.only and args.only != kind:
                continue
            port_file, log_file = Path(tmp, f"{kind}.port"), Path(tmp, f"{kind}.log")
            server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file), str(log_file)])
            try:
                while not port_file.exists() or not port_file.read_text():
                    time.sleep(0.05)
                url = f"http://127.0.0.1:{port_file.read_text()}/hook"
                if kind == "client":  # no store
                    results[kind] = client_ceiling(url, args.deliveries, args.concurrency)
                    continue
                db = databases.enter_context(
                    fresh_store_url(args.database_url, Path(tmp), f"crmhub_bench_deliver_{kind}")
                )
                if kind == "throughput":
                    results[kind] = throughput(db, url, args.deliveries, args.concurrency, threaded)
                else:
                    out = latency(db, url, args.rate, args.seconds, args.concurrency, threaded)
                    committed = out.pop("_committed")
            finally:
                server.terminate()
                server.wait(timeout=30)
            if kind == "latency":
                received = dict(json.loads(log_file.read_text()))
                samples = [(received[t] - c) * 1000 for t, c in committed.items() if t in received]  # type: ignore[attr-defined]
                missing = len(committed) - len(samples)  # type: ignore[arg-type]
                results[kind] = out | {"received": len(samples), "missing": missing} | _percentiles(samples)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
