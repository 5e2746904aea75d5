"""Scratch stores for the benches: a SQLite file, or a new PostgreSQL database per run, removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, make_url, text

from sync.store import normalize_url
from sync.store.engine import checkpointer_of

__all__ = ["close_store", "fresh_store_url"]


@contextmanager
def fresh_store_url(server_url: str | None, directory: Path, name: str) -> Iterator[str]:
    """An empty store's URL: `name`.db in `directory`, or a new database on the server of `server_url`."""
    if server_url is None:
        path = directory / f"{name}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in directory.glob(f"{path.name}*"):  # the WAL and shared-memory files too
                leftover.unlink()
        return
    database = f"{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        yield make_url(normalize_url(server_url)).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def close_store(engine: Engine) -> None:
    """Close the engine's connections and stop its checkpoint thread, before its file is removed."""
    engine.dispose()
    checkpointer = checkpointer_of(engine)
    if checkpointer is not None:
        checkpointer.close()  # otherwise it stops when the engine is collected, after the file went
