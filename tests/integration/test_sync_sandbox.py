"""`crmhub sync` against the sandbox over real HTTP: complete, incremental, resumable after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmhub.sandbox import Sandbox, SandboxServer, credentials, parse_fault, sandbox_config, start_before
from sync.store import create_store_engine
from sync.store.tables import contact_identities, field_definitions, records

CRMHUB = str(Path(sys.executable).with_name("crmhub"))
STRIPE_STREAMS = ("customers", "subscriptions", "invoices", "charges")


def _config(tmp: Path, url: str, name: str = "hub") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(sandbox_config(url, database_url=f"sqlite:///{tmp / name}.db"), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    # Pull semantics only: a push would change the sandbox's HubSpot contacts after they were pulled.
    return {
        **os.environ,
        **credentials.ENVIRONMENT,
        "COLUMNS": "160",
        "CRMHUB_FIELD_MAPPING__HUBSPOT__PUSH": "false",
    }


def _sync(config: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [CRMHUB, "--config", str(config), "sync", "--json", *args],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _by_stream(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s['source']}.{s['stream']}": s for s in report["streams"]}


def _stored(config: Path) -> dict[tuple[str, str, str], Any]:
    engine = create_store_engine(f"sqlite:///{config.with_suffix('.db')}")
    with engine.connect() as conn:
        rows = conn.execute(
            select(records.c.source, records.c.stream, records.c.external_id, records.c.payload)
        )
        stored = {(s, st, x): p for s, st, x, p in rows}
    engine.dispose()
    return stored


def _recent(people: int, seed: int) -> Sandbox:
    """A sandbox dated as `crmhub sandbox serve` dates it: `crmhub sync` runs on the real clock."""
    return Sandbox(people=people, seed=seed, start=start_before(time.time()))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Sandbox, str]]:
    box = _recent(300, 11)
    with SandboxServer(box) as server:
        yield box, server.url


def test_a_full_sync_pulls_every_object_then_a_tick_pulls_exactly_what_changed(
    sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    box, url = sandbox
    config = _config(tmp_path, url)
    world = box.world
    first = _by_stream(_sync(config))
    for stream in STRIPE_STREAMS:
        assert first[f"stripe.{stream}"]["records"] == len(world.stripe[stream]), stream
    assert first["hubspot.contacts"]["records"] == len(world.hubspot.objects["contacts"])
    stored = _stored(config)
    assert {x for s, st, x in stored if (s, st) == ("stripe", "customers")} == {
        c.data["id"] for c in world.stripe["customers"].items
    }

    box.world.tick(2)
    second = _by_stream(_sync(config))
    stored = _stored(config)
    # No missed update: every Stripe object and HubSpot contact is stored as the sandbox now has it.
    for stream in ("customers", "subscriptions"):
        for obj in world.stripe[stream].items:
            payload = stored[("stripe", stream, obj.data["id"])]
            assert payload["status" if stream == "subscriptions" else "email"] == obj.data.get(
                "status" if stream == "subscriptions" else "email"
            )
    for contact in world.hubspot.objects["contacts"].values():
        assert (
            stored[("hubspot", "contacts", str(contact.id))]["properties"]["lastmodifieddate"]
            == (contact.properties["lastmodifieddate"])
        )
    # About changed / page_size + 1 requests per stream (the first HubSpot page also reads properties).
    for name, pulled in second.items():
        allowed = pulled["records"] // 100 + 2 + (1 if name.startswith("hubspot") else 0)
        assert pulled["requests"] <= allowed, (name, pulled)
        assert not pulled["full"], name
    assert second["stripe.subscriptions"]["records"] > 0 and second["hubspot.contacts"]["records"] > 0


def test_a_sync_killed_mid_run_and_run_again_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    box = _recent(300, 23)
    with SandboxServer(box) as server:
        reference = _config(tmp_path, server.url, "reference")
        _sync(reference)
        # Slow every Stripe page down so the kill lands in the middle of the run.
        box.faults.add(parse_fault("stripe:latency=150"))
        killed = _config(tmp_path, server.url, "killed")
        proc = subprocess.Popen(
            [CRMHUB, "--config", str(killed), "sync"],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        engine = create_store_engine(f"sqlite:///{killed.with_suffix('.db')}")
        deadline = time.monotonic() + 60
        stored = 0
        while stored < 250 and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with engine.connect() as conn:
                    stored = conn.execute(select(func.count()).select_from(records)).scalar_one()
            except Exception:  # the schema may not exist yet
                stored = 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert 0 < stored < sum(len(box.world.stripe[s]) for s in STRIPE_STREAMS), "kill did not land mid-run"
        box.faults.clear()
        _sync(killed)
        assert _stored(killed) == _stored(reference)
        with engine.connect() as conn:
            identities = conn.execute(select(func.count()).select_from(contact_identities)).scalar_one()
            fields = sorted(conn.execute(select(field_definitions.c.name, field_definitions.c.type)).all())
        engine.dispose()
        ref = create_store_engine(f"sqlite:///{reference.with_suffix('.db')}")
        with ref.connect() as conn:
            assert (
                identities == conn.execute(select(func.count()).select_from(contact_identities)).scalar_one()
            )
            assert fields == sorted(
                conn.execute(select(field_definitions.c.name, field_definitions.c.type)).all()
            )
        ref.dispose()
