"""Ingest throughput: mapping + identity + store of in-memory records, no HTTP.

    .venv/bin/python bench/ingest.py --records 1000000

Records are Stripe-customer-shaped (e-mail in mixed case, phones in mixed formats, metadata,
address), generated a page at a time outside the timed part, so a million records need no more
memory than one page; pages of --page-size records are stored by the same PageStore the sync
engine uses, one transaction per page, into a fresh SQLite file (or --database-url).

Prints records/s over the wall time spent storing (mapping, identity, store, commit), the CPU time
per record of the same part (the steadier figure on a shared machine), the load average, and the
peak resident set size of this process. On SQLite it also prints the SQL floor in the same run:
each page's statements replayed with the bare sqlite3 driver in a child process (bench/sql_floor.py),
what SQLite alone needs for the work crmhub asked of it; `--no-floor` skips it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sql_floor import SqlFloor

from connectors import Batch, Record
from crmhub.runtime import tune_garbage_collector
from field_mapping.config import FieldMappingConfig
from field_mapping.mapper import Mapper
from sync.ingest import PageStore
from sync.runs import start_run
from sync.store import create_store_engine, upgrade

NOW = datetime(2026, 11, 23, tzinfo=UTC)
_CITIES = ("Hamburg", "Berlin", "Lisbon", "Austin", "Osaka", "Lyon")
_PLANS = ("basic", "pro", "enterprise")


def _customer(n: int, rng: random.Random) -> Record:
    created = NOW - timedelta(days=rng.randrange(900), seconds=rng.randrange(86_400))
    phone = rng.choice((f"+1415555{n % 10_000:04d}", f"(415) 555-{n % 10_000:04d}", None))
    payload = {
        "id": f"cus_{n:08d}",
        "object": "customer",
        "email": rng.choice((f"Person{n}@Example.com", f" person{n}@example.com ")),
        "name": f"Person {n}",
        "phone": phone,
        "created": int(created.timestamp()),
        "currency": "usd",
        "balance": rng.randrange(-5_000, 5_000),
        "delinquent": rng.random() < 0.05,
        "livemode": False,
        "address": {"city": rng.choice(_CITIES), "country": "US", "line1": None, "postal_code": "94107"},
        "metadata": {"plan": rng.choice(_PLANS), "seats": str(rng.randrange(1, 50))},
        "invoice_settings": {"default_payment_method": None, "footer": None},
    }
    return Record("stripe", "customers", f"cus_{n:08d}", created, payload)


def _pages(total: int, size: int, seed: int) -> Iterator[Batch]:
    rng = random.Random(seed)
    for start in range(0, total, size):
        records = [_customer(n, rng) for n in range(start, min(start + size, total))]
        yield Batch("stripe", "customers", records, cursor=f'{{"n": {start}}}')


def main() -> None:
    """Run the benchmark and print one markdown table row."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-floor", action="store_true", help="skip the bare-sqlite3 replay")
    parser.add_argument(
        "--no-checkpoint-thread",
        action="store_true",
        help="commits checkpoint the WAL themselves, as before sync/store/checkpoint.py (a baseline)",
    )
    args = parser.parse_args()
    tune_garbage_collector()  # as every crmhub command does (crmhub/runtime.py)

    store_file = Path(tempfile.mkdtemp(prefix="crmhub-ingest-")) / "ingest.db"
    # The store of a million records is over 2 GB: it goes when the bench ends, however it ends.
    atexit.register(shutil.rmtree, store_file.parent, ignore_errors=True)
    threaded = not args.no_checkpoint_thread
    engine = create_store_engine(args.database_url or f"sqlite:///{store_file}", checkpoint_thread=threaded)
    upgrade(engine)
    store = PageStore(Mapper(FieldMappingConfig()))
    with engine.begin() as conn:
        run_id = start_run(conn, source="stripe", trigger="bench", now=NOW)
    floor = (
        None
        if args.no_floor or args.database_url
        else SqlFloor(engine, store_file, checkpoint_thread=threaded)
    )
    load_before = os.getloadavg()[0]
    seconds = cpu = 0.0
    for batch in _pages(args.records, args.page_size, args.seed):
        if floor is not None:
            floor.start_page()
        started, cpu_started = time.perf_counter(), time.process_time()
        with engine.begin() as conn:
            store(conn, batch, run_id=run_id, now=NOW)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        if floor is not None:
            floor.end_page()
    load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
    floor_text = "n/a"
    if floor is not None:
        floor.close()
        floor_text = f"{args.records / floor.seconds:,.0f} ({seconds / floor.seconds:.1f}x)"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    checkpoints = "on a thread" if threaded else "in commits"
    store_text = (
        f"sqlite, checkpoints {checkpoints}" if engine.dialect.name == "sqlite" else engine.dialect.name
    )
    where = f"{store_text}, page size {args.page_size}, {os.cpu_count()} CPUs"
    print(f"# bench/ingest.py {today}, {where}")
    print(
        "| records | seconds | records/s | CPU µs/record | SQL floor records/s (crmhub's time / floor's) "
        "| load avg | peak RSS MB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.records:,} | {seconds:.1f} | {args.records / seconds:,.0f} "
        f"| {cpu / args.records * 1e6:,.0f} | {floor_text} | {load} | {peak:,.0f} |"
    )


if __name__ == "__main__":
    main()
