"""Scratch databases for the benches: a new PostgreSQL database per run, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url, text

from sync.store import normalize_url

__all__ = ["fresh_postgres_database"]


@contextmanager
def fresh_postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on the server of `server_url`, dropped when done."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(normalize_url(server_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
