"""Fixtures shared by every test package: databases on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from sync.store import create_store_engine, normalize_url, upgrade

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


@pytest.fixture
def fresh_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database, dropped afterwards."""
    name = f"crmhub_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend crmhub supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crmhub.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
def engine(empty_store_url: str) -> Iterator[Engine]:
    """A migrated, empty store on each backend."""
    store = create_store_engine(empty_store_url)
    upgrade(store)
    yield store
    store.dispose()
