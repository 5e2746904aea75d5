"""Fixtures shared by every test package: databases on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from sync.store import create_store_engine, normalize_url, upgrade
from sync.store.checkpoint import truncate_wal

# rich consoles take their width from COLUMNS when built, at import; pytest-xdist's workers set it
# to 80. Tests read whole table rows, so every run gets the same wide terminal.
os.environ["COLUMNS"] = "250"

PG_ENV = "CRMHUB_TEST_DATABASE_URL"
PG_SKIP_REASON = (
    f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test); .ci/run sets it"
)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the PostgreSQL database tests may create scratch databases from."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP_REASON)
    return normalize_url(url)


@contextmanager
def _pg_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of `template`, else empty), dropped afterwards."""
    name = f"crmhub_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def fresh_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database, dropped afterwards."""
    with _pg_database(pg_admin_url) as url:
        yield url


# Migrating a database takes 0.1 s on SQLite and 0.6 s on PostgreSQL; copying a migrated one takes
# 0.02 s and 0.2 s. Each test session (each xdist worker) migrates one of each, and `engine` copies.


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store, whole in its file (no WAL beside it)."""
    path = tmp_path_factory.mktemp("template") / "crmhub.db"
    store = create_store_engine(f"sqlite:///{path}", checkpoint_thread=False)
    upgrade(store)
    with store.connect() as conn:
        assert truncate_wal(conn)
    store.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """The name of a migrated PostgreSQL database, with no connection left open (so it can be copied)."""
    with _pg_database(pg_admin_url) as url:
        store = create_store_engine(url)
        upgrade(store)
        store.dispose()
        name = make_url(url).database
        assert name is not None
        yield name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend crmhub supports."""
    name: str = request.param
    return name


@pytest.fixture
def empty_store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend crmhub supports."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'crmhub.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
def engine(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty store on each backend: a copy of the session's migrated one."""
    with ExitStack() as stack:
        if backend == "sqlite":
            path = tmp_path / "crmhub.db"
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            url = f"sqlite:///{path}"
        else:
            admin, template = request.getfixturevalue("pg_admin_url"), request.getfixturevalue("pg_template")
            url = stack.enter_context(_pg_database(admin, template=template))
        store = create_store_engine(url)
        upgrade(store)  # nothing to do on a copy; here so a stale template could not pass unnoticed
        yield store
        store.dispose()
