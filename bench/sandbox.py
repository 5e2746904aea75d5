"""Sandbox throughput: pages of 100 Stripe customers per second, walked to the end with `starting_after`.

    PYTHONPATH=. .venv/bin/python bench/sandbox.py [--people 10000] [--seconds 10] [--clients 1]

The sandbox runs in this process on a free loopback port; each client (a bare `httpx.Client` on one
kept-alive connection, parsing every page as JSON to find the next cursor) runs in a subprocess so
that it does not share the server's GIL. With `--clients N` they run side by side and the figures
are their sum. Prints pages/s, objects/s, MB/s and per-page latencies; exit 1 below the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import httpx

from crmhub.sandbox import Sandbox, SandboxServer, credentials

TARGET_PAGES_PER_SECOND = 300


def walk(url: str, seconds: float) -> dict[str, float]:
    """Fetch `/v1/customers?limit=100` pages through to the end, again and again, for `seconds`."""
    headers = {"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"}
    pages = objects = size = walks = 0
    latencies: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        client.get("/v1/customers", params={"limit": 1}).raise_for_status()
        started = time.perf_counter()
        cpu_started = time.process_time()
        while time.perf_counter() - started < seconds:
            after: str | None = None
            while True:
                params: dict[str, str | int] = {"limit": 100}
                if after is not None:
                    params["starting_after"] = after
                sent = time.perf_counter()
                answer = client.get("/v1/customers", params=params)
                answer.raise_for_status()
                page = json.loads(answer.content)
                latencies.append(time.perf_counter() - sent)
                pages += 1
                objects += len(page["data"])
                size += len(answer.content)
                if not page["has_more"]:
                    break
                after = page["data"][-1]["id"]
            walks += 1
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    latencies.sort()
    return {
        "walks": walks,
        "pages": pages,
        "objects": objects,
        "seconds": elapsed,
        "pages_per_second": pages / elapsed,
        "objects_per_second": objects / elapsed,
        "megabytes_per_second": size / elapsed / 1e6,
        "client_cpu_ms_per_page": cpu / pages * 1000,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "latency_max_ms": latencies[-1] * 1000,
    }


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes running side by side")
    parser.add_argument("--walk-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.walk_only:
        print(json.dumps(walk(args.walk_only, args.seconds)))
        return 0

    generated = time.perf_counter()
    sandbox = Sandbox(people=args.people, seed=args.seed)
    generated = time.perf_counter() - generated
    customers = len(sandbox.world.stripe["customers"])
    with SandboxServer(sandbox) as server:
        command = [sys.executable, __file__, "--walk-only", server.url, "--seconds", str(args.seconds)]
        # This process only serves while the clients run, so its CPU time is the server's.
        server_cpu = time.process_time()
        clients = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.clients)]
        results = [json.loads(client.communicate()[0]) for client in clients]
        server_cpu = time.process_time() - server_cpu
    if any(client.returncode for client in clients):
        print("a client failed", file=sys.stderr)
        return 2
    result = {key: sum(r[key] for r in results) for key in ("walks", "pages", "objects")}
    for key in ("pages_per_second", "objects_per_second", "megabytes_per_second"):
        result[key] = sum(r[key] for r in results)
    for key in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms", "client_cpu_ms_per_page"):
        result[key] = max(r[key] for r in results)
    # The clients' warm-up requests are in the server's CPU time too: one page in thousands.
    server_ms_per_page = server_cpu / result["pages"] * 1000
    print(f"sandbox: {args.people} people, {customers} Stripe customers, generated in {generated:.1f} s")
    print(f"clients: {args.clients} process(es), one kept-alive connection each, {result['walks']} walks")
    print(f"pages/s:   {result['pages_per_second']:.0f} (target {TARGET_PAGES_PER_SECOND})")
    print(f"objects/s: {result['objects_per_second']:.0f}")
    print(f"MB/s:      {result['megabytes_per_second']:.1f}")
    print(
        f"CPU/page:  server {server_ms_per_page:.2f} ms (capacity ~{1000 / server_ms_per_page:.0f} pages per "
        f"CPU-second), client {result['client_cpu_ms_per_page']:.2f} ms"
    )
    print(
        f"latency:   p50 {result['latency_p50_ms']:.2f} ms, p99 {result['latency_p99_ms']:.2f} ms, "
        f"max {result['latency_max_ms']:.2f} ms"
    )
    return 0 if result["pages_per_second"] >= TARGET_PAGES_PER_SECOND else 1


if __name__ == "__main__":
    raise SystemExit(main())
