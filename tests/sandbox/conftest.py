"""Shared fixtures: one sandbox served on a free loopback port for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmhub.sandbox import Sandbox, SandboxServer

PEOPLE = 300
SEED = 7


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """The shared sandbox; tests that tick or change data use their own."""
    return Sandbox(people=PEOPLE, seed=SEED)


@pytest.fixture(scope="session")
def url(sandbox: Sandbox) -> Iterator[str]:
    """Base URL of the shared sandbox."""
    with SandboxServer(sandbox) as server:
        yield server.url


@pytest.fixture(autouse=True)
def _no_leftover_faults(sandbox: Sandbox) -> Iterator[None]:
    yield
    sandbox.clear_faults()
