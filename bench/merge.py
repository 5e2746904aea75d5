"""Merge cost against store size: milliseconds per merge of two contacts, with a baseline in the same run.

    .venv/bin/python bench/merge.py --contacts 100000
    .venv/bin/python bench/merge.py --contacts 100000 --database-url postgresql://postgres@127.0.0.1:5432/postgres

Fills a fresh store with `--contacts` contacts, creates `--merges` pairs of contacts with one
Stripe customer id each, and times merging each pair (`sync.identity.merge`, as identity resolution
calls it when a record shows two contacts are one person), all in one transaction. It does so twice:
first with the two indexes of migration 0011 dropped (the schema before it: deleting the merged
contact read every contact and every merge-log row), then on the current schema. With
`--database-url` each run gets a new database on that PostgreSQL server, dropped afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, insert, text
from stores import close_store, fresh_store_url

from sync.identity import merge, resolve
from sync.store import create_store_engine, upgrade
from sync.store.tables import contacts

NOW = datetime(2026, 11, 23, tzinfo=UTC)
_MIGRATION_0011 = ("ix_contacts_merged_into_id", "ix_merge_log_kept_contact_id")


@contextmanager
def _store(server_url: str | None) -> Iterator[Engine]:
    """A migrated, empty store: a SQLite file, or a new database on `server_url`."""
    with (
        tempfile.TemporaryDirectory(prefix="crmhub-merge-") as directory,
        fresh_store_url(server_url, Path(directory), "crmhub_bench_merge") as url,
    ):
        engine = create_store_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            close_store(engine)


def _ms_per_merge(engine: Engine, *, contacts_count: int, merges: int, indexed: bool) -> float:
    """Fill the store, then time `merges` merges of fresh pairs; milliseconds per merge."""
    row = {"state": "active", "created_at": NOW, "updated_at": NOW, "changed_at": NOW}
    with engine.begin() as conn:
        if not indexed:
            for index in _MIGRATION_0011:
                conn.execute(text(f"DROP INDEX {index}"))
        for start in range(0, contacts_count, 10_000):
            conn.execute(insert(contacts), [row] * min(10_000, contacts_count - start))
        pairs = []
        for n in range(merges):
            keep, other = (
                resolve(conn, [{"stripe_customer": f"cus_{n}{side}"}], source="stripe", now=NOW)[0]
                for side in "ab"
            )
            assert keep is not None and other is not None
            pairs.append((keep, other))
    started = time.perf_counter()
    with engine.begin() as conn:
        for keep, other in pairs:
            merge(conn, keep=keep, others=[other], reason="bench", now=NOW)
    return (time.perf_counter() - started) / merges * 1000


def main() -> None:
    """Run the benchmark and print one markdown table row."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--merges", type=int, default=300)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (a new database per run)")
    args = parser.parse_args()
    figures = []
    for indexed in (False, True):
        with _store(args.database_url) as engine:
            backend = engine.dialect.name
            figures.append(
                _ms_per_merge(engine, contacts_count=args.contacts, merges=args.merges, indexed=indexed)
            )
    before, after = figures
    print(f"# bench/merge.py {datetime.now(UTC):%Y-%m-%d}, {backend}, {args.merges} merges")
    print("| contacts | ms per merge before 0011 | ms per merge | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {args.contacts:,} | {before:.2f} | {after:.2f} | {before / after:.1f}x |")


if __name__ == "__main__":
    main()
