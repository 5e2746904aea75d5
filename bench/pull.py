"""Pull throughput: records/s from the sandbox into the store, next to the raw fetch limit, same run.

    .venv/bin/python bench/pull.py --people 135000 --streams stripe.customers
    .venv/bin/python bench/pull.py --people 20000 --latency-ms 100   # a provider 100 ms away
    .venv/bin/python bench/pull.py --people 20000 --latency-ms 100 --together \
        --streams stripe.customers,hubspot.contacts,typeform.responses

The sandbox runs in its own process (so its memory is not counted); for each stream the same pages
are first fetched with a bare httpx loop (no SDK, no parsing beyond JSON, no storing) to give the
raw fetch limit, then pulled end to end by crmhub into a fresh SQLite store. That first sync also
walks the event history Stripe keeps (30 days) for contact events, which the raw loop does not:
its events and requests are printed beside the records. Peak memory is this process's maximum
resident set size.

`--together` then pulls the streams twice more, each time into a fresh store: one run per stream,
one after another (the baseline: how crmhub pulled before sources and Stripe's streams went side
by side), and one run of them all, as `crmhub sync` pulls them. It prints the seconds each spent
on pages (up to the last page stored; the runs' segment evaluations are left out) and their
ratio. `--latency-ms` delays the answers of every provider. `--database-url postgresql://...` names
a PostgreSQL server to pull into instead of SQLite: each run gets a database of its own there,
dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from stores import close_store, fresh_store_url

from connectors import Source, build_source
from crmhub.runtime import tune_garbage_collector
from crmhub.sandbox import credentials, sandbox_config, start_before
from crmhub.settings import load_settings, secret
from crmhub.wiring import build_sync_engine
from sync.engine import SyncEngine
from sync.store import create_store_engine, upgrade


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_sandbox(people: int, seed: int, latency_ms: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    crmhub = Path(sys.executable).with_name("crmhub")
    args = [
        str(crmhub),
        "sandbox",
        "serve",
        "--people",
        str(people),
        "--seed",
        str(seed),
        "--port",
        str(port),
        # A week before today with no days lived through, as before crmhub.sandbox.LIVED_DAYS: the same
        # world, and so the same work, as the figures recorded in BENCHMARKS.md before 2026-12-06.
        "--start",
        f"{datetime.fromtimestamp(start_before(time.time()), UTC):%Y-%m-%d}",
    ]
    if latency_ms:
        # Every API answer waits this long, as a provider across the internet would.
        for api in ("stripe", "hubspot", "typeform"):
            args += ["--fault", f"{api}:latency={latency_ms}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_sandbox/state", timeout=2).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                sys.exit("the sandbox exited before it served")
            time.sleep(0.5)
    proc.kill()
    sys.exit("the sandbox did not start in 15 minutes")


def _raw_stripe(url: str, resource_name: str) -> tuple[int, float]:
    """Every object of a Stripe list endpoint with a bare httpx loop: (objects, seconds)."""
    headers = {"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"}
    params: dict[str, str | int] = {"limit": 100}
    if resource_name == "subscriptions":
        params["status"] = "all"
    count, started = 0, time.perf_counter()
    with httpx.Client(base_url=url, headers=headers) as client:
        while True:
            page = client.get(f"/v1/{resource_name}", params=params).json()
            count += len(page["data"])
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
    return count, time.perf_counter() - started


@contextmanager
def _syncing(
    config: Path, names: list[str], checkpoint_thread: bool, store_url: str
) -> Iterator[tuple[SyncEngine, list[Source]]]:
    """crmhub's sync engine on the store at `store_url` and the named sources, as `crmhub sync` has them."""
    settings = load_settings(config)
    engine = create_store_engine(store_url, checkpoint_thread=checkpoint_thread)
    upgrade(engine)
    try:
        with httpx.Client(timeout=settings.connectors.timeout_seconds) as http:
            keys = {n: secret(settings, f"connectors.{n}.api_key_env") for n in names}
            yield (
                build_sync_engine(settings, engine),
                [build_source(n, settings.connectors, keys[n], http) for n in names],
            )
    finally:
        close_store(engine)


def _crmhub(
    config: Path, source: str, stream: str, checkpoint_thread: bool, store_url: str
) -> tuple[int, float, float, int, int]:
    """The same stream pulled by crmhub into the empty store at `store_url`.

    Returns (records, seconds of the run, seconds of the stream, contact events, requests).
    """
    with _syncing(config, [source], checkpoint_thread, store_url) as (sync, built):
        started = time.perf_counter()
        report = sync.run(built, now=datetime.now(UTC), streams={f"{source}.{stream}"})
        seconds = time.perf_counter() - started
    [result] = report.streams
    if result.error:
        sys.exit(f"{source}.{stream} failed: {result.error}")
    # The run also evaluates segments once at its end; the stream's own time is its pages alone.
    return result.records, seconds, result.seconds, result.events, result.requests


def _pages_seconds(
    config: Path, qualified: list[str], *, together: bool, checkpoint_thread: bool, store_url: str
) -> tuple[int, float]:
    """Pull `qualified` streams into the empty store at `store_url`: one run (side by side) or one per stream.

    Returns (records, seconds from each run's start to its last page stored, summed over the runs).
    """
    names = list(dict.fromkeys(q.split(".")[0] for q in qualified))
    records, seconds = 0, 0.0
    with _syncing(config, names, checkpoint_thread, store_url) as (sync, built):
        for wanted in [qualified] if together else [[q] for q in qualified]:
            last = started = time.perf_counter()

            def progress(_stream: object) -> None:
                nonlocal last
                last = time.perf_counter()

            report = sync.run(built, now=datetime.now(UTC), streams=set(wanted), on_progress=progress)
            if report.failed:
                sys.exit("; ".join(f"{s.source}.{s.stream} failed: {s.error}" for s in report.failed))
            records += sum(s.records for s in report.streams)
            seconds += last - started
    return records, seconds


def main() -> None:
    """Run the benchmark and print one markdown table row per stream."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=135_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--streams", default="stripe.customers", help="comma-separated source.stream list")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="delay every Stripe answer, like a provider far away"
    )
    parser.add_argument(
        "--no-checkpoint-thread",
        action="store_true",
        help="commits checkpoint the WAL themselves, as before sync/store/checkpoint.py (a baseline)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="also time the streams pulled one after another against side by side, as crmhub sync does",
    )
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server to pull into (a new database per run)"
    )
    args = parser.parse_args()
    tune_garbage_collector()  # as every crmhub command does (crmhub/runtime.py)
    threaded = not args.no_checkpoint_thread

    proc, url = _start_sandbox(args.people, args.seed, args.latency_ms)
    workdir = Path(tempfile.mkdtemp(prefix="crmhub-bench-"))
    try:
        os.environ.update(credentials.ENVIRONMENT)
        config = workdir / "crmhub.toml"
        config.write_text(sandbox_config(url, database_url="sqlite://"), encoding="utf-8")
        checkpoints = "on a thread" if threaded else "in commits"
        store = "PostgreSQL" if args.database_url else f"SQLite, checkpoints {checkpoints}"
        print(
            f"# bench/pull.py {datetime.now(UTC):%Y-%m-%d}, sandbox people={args.people} seed={args.seed}"
            f" latency={args.latency_ms} ms, {store}"
        )
        print(
            "| stream | records | contact events | requests | raw fetch /s | crmhub /s | crmhub / raw "
            "| pages only /s | peak RSS MB |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for qualified in args.streams.split(","):
            source, stream = qualified.split(".")
            raw_n, raw_s = _raw_stripe(url, stream) if source == "stripe" else (0, 0.0)
            with fresh_store_url(args.database_url, workdir, "crmhub_bench_pull") as store_url:
                n, seconds, pulling, events, requests = _crmhub(config, source, stream, threaded, store_url)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            raw_rate = raw_n / raw_s if raw_s else 0.0
            rate = n / seconds
            ratio = f"{rate / raw_rate:.0%}" if raw_rate else "n/a"
            raw_text = f"{raw_rate:,.0f}" if raw_rate else "n/a"
            pages = f"{n / pulling:,.0f}" if pulling else "n/a"
            print(
                f"| {qualified} | {n:,} | {events:,} | {requests:,} | {raw_text} | {rate:,.0f} | {ratio} "
                f"| {pages} | {peak:,.0f} |"
            )
        if args.together:
            _print_together(config, args.streams.split(","), threaded, workdir, args.database_url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def _print_together(
    config: Path, qualified: list[str], checkpoint_thread: bool, workdir: Path, server_url: str | None
) -> None:
    """The streams pulled one after another, then side by side, each into a fresh store."""
    timings = []
    for together in (False, True):
        with fresh_store_url(server_url, workdir, "crmhub_bench_pull") as store_url:
            timings.append(
                _pages_seconds(
                    config,
                    qualified,
                    together=together,
                    checkpoint_thread=checkpoint_thread,
                    store_url=store_url,
                )
            )
    (n_apart, apart), (n_together, together_s) = timings
    print()
    print("| streams | records | one after another s | side by side s | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    same = f"{n_apart:,}" if n_apart == n_together else f"{n_apart:,} / {n_together:,}"
    print(f"| {', '.join(qualified)} | {same} | {apart:.1f} | {together_s:.1f} | {apart / together_s:.2f}x |")


if __name__ == "__main__":
    main()
