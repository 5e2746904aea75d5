"""The worker end to end against recording consumers: signatures, crashes, outages, breaker, ordering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select
from standardwebhooks import Webhook

from field_mapping.types import FieldType
from sync.fields import create_field, save_values
from sync.identity import merge
from sync.store.tables import contact_identities, deliveries, delivery_attempts, endpoint_states
from tests.webhooks.conftest import (
    T0,
    Clock,
    Consumer,
    add_contact,
    add_segment,
    add_transition,
    endpoint,
    make_config,
    make_worker,
    matches_schema,
    secrets_for,
    seed,
)
from webhooks import SCHEDULE, WebhooksConfig
from webhooks.endpoints import enable
from webhooks.queue import load_jobs
from webhooks.worker import DeliveryWorker


def run(worker: DeliveryWorker, clock: Any, **kwargs: Any) -> Any:
    return asyncio.run(worker.run(clock, **kwargs))


def rows(engine: Engine, table: Any = deliveries) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


def drive(worker: DeliveryWorker, engine: Engine, clock: Clock, *, max_steps: int = 500) -> None:
    """Run the worker, jump the clock to the next moment anything can happen, repeat until all is settled."""
    for _ in range(max_steps):
        run(worker, clock)
        moments = [
            m
            for r in rows(engine)
            if r["status"] in ("pending", "failed", "leased")
            for m in (r["next_attempt_at"], r["lease_expires_at"])
            if m is not None and m > clock.now
        ]
        moments += [s["circuit_open_until"] for s in rows_states(engine) if s["circuit_open_until"]]
        moments = [m for m in moments if m > clock.now]
        if not any(r["status"] in ("pending", "failed", "leased") for r in rows(engine)) or not moments:
            return
        clock.now = min(moments)
    raise AssertionError("deliveries did not settle")


def rows_states(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(endpoint_states)).mappings()]


def signature_ok(secret: str, request: httpx.Request) -> bool:
    """standardwebhooks' own signer, at the request's timestamp (the test clock is not the wall clock)."""
    stamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(request.headers["webhook-id"], stamp, request.content.decode())
    return expected in request.headers["webhook-signature"].split(" ")


def test_a_standardwebhooks_consumer_verifies_every_delivery_across_rotation(engine: Engine) -> None:
    seed(engine, 4)
    config = make_config(("sms", endpoint("sms")))
    environ = secrets_for(config)
    old = environ["SMS_SECRET"]
    verified: list[dict[str, Any]] = []

    def verify_with(secret: str) -> Consumer:
        def answer(request: httpx.Request) -> httpx.Response:
            verified.append(Webhook(secret).verify(request.content, dict(request.headers)))
            return httpx.Response(200)

        return Consumer(answer)

    run(make_worker(engine, config, {"sms": verify_with(old)}, environ), lambda: datetime.now(UTC))
    assert len(verified) == 4

    # Rotation: the new secret is current, the old one still valid; consumers on either verify.
    rotated = make_config(("sms", endpoint("sms", secret_envs=["SMS_SECRET_NEW", "SMS_SECRET"])))
    environ["SMS_SECRET_NEW"] = secrets_for(make_config(("sms", endpoint("sms"))))["SMS_SECRET"]
    with engine.begin() as conn:
        sid = add_segment(conn, "rotated")
        for secret_holder in range(2):
            add_transition(conn, sid, add_contact(conn, f"r{secret_holder}@example.com"))
    consumer_old, consumer_new = verify_with(old), verify_with(environ["SMS_SECRET_NEW"])
    both = Consumer(lambda r: consumer_old.answer(r) and consumer_new.answer(r))
    run(make_worker(engine, rotated, {"sms": both}, environ), lambda: datetime.now(UTC))
    assert len(verified) == 4 + 4
    for body in verified:
        matches_schema(body)
    assert {r["status"] for r in rows(engine)} == {"succeeded"}


def test_the_body_carries_the_requested_fields_and_the_per_contact_sequence(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn, "vip")
        cid = add_contact(conn, "ada@example.com")
        plan = create_field(conn, "plan", FieldType.ENUM, now=T0, label="Plan", origin="rule", source=None)
        save_values(conn, [(cid, plan, "gold", "t", T0)])
        add_transition(conn, sid, cid, "entered")
        add_transition(conn, sid, cid, "left")
    config = make_config(("sms", endpoint("sms", fields=["email", "plan", "city"])))
    consumer = Consumer()
    run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)), Clock())
    entered, left = consumer.bodies()
    assert entered["type"] == "segment.entered" and left["type"] == "segment.left"
    assert entered["timestamp"] == "2026-11-23T12:00:00Z"
    assert entered["data"]["segment"] == {"key": "vip", "name": "VIP"}
    assert entered["data"]["contact"] == {"id": cid, "email": "ada@example.com", "plan": "gold", "city": None}
    assert [b["data"]["transition"]["sequence"] for b in (entered, left)] == [1, 2]
    assert len(consumer.received[0].content) < 20_000
    for body in (entered, left):
        matches_schema(body)


class Crash(Exception):
    """Stands for the process being killed."""


@pytest.mark.parametrize("point", ["claimed", "sent", "recorded"])
def test_a_worker_killed_anywhere_leaves_everything_delivered_with_the_same_id(
    engine: Engine, point: str
) -> None:
    tids = seed(engine, 6)
    config = make_config(("sms", endpoint("sms", concurrency=2)))
    environ, consumer, clock = secrets_for(config), Consumer(), Clock()

    def kill(where: str, _job: Any) -> None:
        if where == point:
            raise Crash(where)

    with pytest.raises(Crash):
        run(make_worker(engine, config, {"sms": consumer}, environ, worker_id="doomed", hook=kill), clock)
    clock.advance(timedelta(seconds=config.lease_seconds + 1))
    run(make_worker(engine, config, {"sms": consumer}, environ, worker_id="restarted"), clock)

    stored = {r["transition_id"]: r for r in rows(engine)}
    assert set(stored) == set(tids)
    assert {r["status"] for r in stored.values()} == {"succeeded"}, "nothing stuck"
    by_id = {r["webhook_id"] for r in stored.values()}
    assert set(consumer.ids()) == by_id, "every transition received, always under its stored webhook-id"
    assert all(signature_ok(environ["SMS_SECRET"], r) for r in consumer.received)


def test_a_consumer_down_for_30_hours_receives_everything_after_it_recovers(engine: Engine) -> None:
    seed(engine, 5)
    config = make_config(("sms", endpoint("sms")))
    clock = Clock()
    down_until = T0 + timedelta(hours=30)
    consumer = Consumer(lambda _r: httpx.Response(503 if clock.now < down_until else 204))
    environ = secrets_for(config)
    drive(make_worker(engine, config, {"sms": consumer}, environ), engine, clock)
    assert {r["status"] for r in rows(engine)} == {"succeeded"}
    delivered = [
        r for r in consumer.received if int(r.headers["webhook-timestamp"]) >= down_until.timestamp()
    ]
    assert sorted({r.headers["webhook-id"] for r in delivered}) == sorted(
        r["webhook_id"] for r in rows(engine)
    )
    assert all(signature_ok(environ["SMS_SECRET"], r) for r in consumer.received)


def test_an_always_503_consumer_gets_no_more_than_the_schedule_and_does_not_slow_another(
    engine: Engine,
) -> None:
    seed(engine, 4)
    config = make_config(("broken", endpoint("broken")), ("healthy", endpoint("healthy")))
    broken, healthy = Consumer(lambda _r: httpx.Response(503)), Consumer()
    clock = Clock()
    worker = make_worker(engine, config, {"broken": broken, "healthy": healthy}, secrets_for(config))
    run(worker, clock)
    assert len(healthy.received) == 4 and all(
        int(r.headers["webhook-timestamp"]) == T0.timestamp() for r in healthy.received
    )
    drive(worker, engine, clock)
    dead = [r for r in rows(engine) if r["endpoint"] == "broken"]
    assert {r["status"] for r in dead} == {"dead"} and all(r["attempts"] <= 10 for r in dead)
    assert len(broken.received) == sum(r["attempts"] for r in dead) <= 4 * 10
    attempts = rows(engine, delivery_attempts)
    for delivery in dead:
        times = [a["attempted_at"] for a in attempts if a["delivery_id"] == delivery["id"]]
        for n, (earlier, later) in enumerate(pairwise(times)):
            assert later - earlier >= SCHEDULE[n] * 0.9, "never sooner than the schedule (jitter is 10 %)"


def test_a_hanging_consumer_does_not_hold_up_another_endpoint(engine: Engine) -> None:
    seed(engine, 3)
    config = make_config(("slow", endpoint("slow", timeout_seconds=10)), ("fast", endpoint("fast")))
    fast_done = asyncio.Event()

    async def slow_answer(_r: httpx.Request) -> httpx.Response:
        await fast_done.wait()  # answers only once the other endpoint has had everything
        return httpx.Response(204)

    def fast_answer(_r: httpx.Request) -> httpx.Response:
        if len(fast.received) == 3:
            fast_done.set()
        return httpx.Response(204)

    slow, fast = Consumer(slow_answer), Consumer(fast_answer)
    run(make_worker(engine, config, {"slow": slow, "fast": fast}, secrets_for(config)), Clock())
    assert {r["status"] for r in rows(engine)} == {"succeeded"}


def test_a_slow_consumer_times_out_and_is_retried(engine: Engine) -> None:
    seed(engine, 1)
    config = make_config(("sms", endpoint("sms", timeout_seconds=0.05)))
    never = asyncio.Event()

    async def answer(_r: httpx.Request) -> httpx.Response:
        if len(consumer.received) == 1:
            await never.wait()
        return httpx.Response(200)

    consumer, clock = Consumer(answer), Clock()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config))
    run(worker, clock)
    (first,) = rows(engine, delivery_attempts)
    assert first["status_code"] is None and "timed out" in first["error"]
    (delivery,) = rows(engine)
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] > T0
    clock.now = delivery["next_attempt_at"]
    run(worker, clock)
    assert rows(engine)[0]["status"] == "succeeded" and len(consumer.received) == 2
    assert consumer.received[0].headers["webhook-id"] == consumer.received[1].headers["webhook-id"]


def test_410_disables_the_endpoint_and_deliveries_wait_for_it(engine: Engine) -> None:
    seed(engine, 3)
    config = make_config(("sms", endpoint("sms", concurrency=1)))
    gone = {"yes": True}
    consumer, clock = Consumer(lambda _r: httpx.Response(410 if gone["yes"] else 200)), Clock()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config))
    run(worker, clock)
    assert len(consumer.received) == 1
    (state,) = rows_states(engine)
    assert state["disabled_at"] == T0 and "410" in state["disabled_reason"]
    clock.advance(timedelta(days=3))
    run(worker, clock)
    assert len(consumer.received) == 1, "a disabled endpoint gets nothing"
    gone["yes"] = False
    with engine.begin() as conn:
        assert enable(conn, "sms", clock.now)
    run(worker, clock)
    assert {r["status"] for r in rows(engine)} == {"succeeded"}


def test_other_4xx_is_dead_at_once_and_kept(engine: Engine) -> None:
    seed(engine, 1)
    config = make_config(("sms", endpoint("sms")))
    consumer = Consumer(lambda _r: httpx.Response(400, text="bad payload: missing phone"))
    run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)), Clock())
    (delivery,) = rows(engine)
    assert delivery["status"] == "dead" and delivery["reason"] == "permanent failure: HTTP 400"
    (attempt,) = rows(engine, delivery_attempts)
    assert attempt["response_excerpt"] == "bad payload: missing phone"


def test_redirects_are_not_followed(engine: Engine) -> None:
    seed(engine, 1)
    config = make_config(("sms", endpoint("sms")))
    consumer = Consumer(lambda _r: httpx.Response(307, headers={"location": "http://169.254.169.254/"}))
    run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)), Clock())
    assert len(consumer.received) == 1 and rows(engine)[0]["last_status_code"] == 307


@pytest.mark.parametrize("ordered", [True, False])
def test_per_contact_ordering_holds_a_later_transition_until_the_earlier_succeeds(
    engine: Engine, ordered: bool
) -> None:
    with engine.begin() as conn:
        sid, cid = add_segment(conn), add_contact(conn)
        add_transition(conn, sid, cid, "entered")
        add_transition(conn, sid, cid, "left")
    config = make_config(("sms", endpoint("sms", per_contact_ordering=ordered)))
    answers = iter([503, 204, 204])
    consumer, clock = Consumer(lambda _r: httpx.Response(next(answers))), Clock()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config))
    run(worker, clock)
    clock.advance(timedelta(seconds=10))
    run(worker, clock)
    kinds = [b["type"] for b in consumer.bodies()]
    if ordered:
        assert kinds == ["segment.entered", "segment.entered", "segment.left"]
    else:
        assert kinds[:2] == ["segment.entered", "segment.left"]


def test_per_contact_ordering_waits_only_on_the_same_endpoint(engine: Engine) -> None:
    with engine.begin() as conn:
        sid, cid = add_segment(conn), add_contact(conn)
        add_transition(conn, sid, cid, "entered")
        add_transition(conn, sid, cid, "left")
    config = make_config(("broken", endpoint("broken")), ("healthy", endpoint("healthy")))
    broken, healthy = Consumer(lambda _r: httpx.Response(503)), Consumer()
    run(make_worker(engine, config, {"broken": broken, "healthy": healthy}, secrets_for(config)), Clock())
    assert [b["type"] for b in broken.bodies()] == ["segment.entered"], "its left waits for the retry"
    assert [b["type"] for b in healthy.bodies()] == ["segment.entered", "segment.left"]


def test_a_claim_that_fails_leaves_the_finished_attempts_recorded(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, 4)
    config = make_config(("sms", endpoint("sms", concurrency=2)))
    consumer = Consumer()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config))
    claims = 0

    def load_once(conn: Any, ids: Any) -> Any:
        nonlocal claims
        claims += 1
        if claims > 1:
            raise RuntimeError("store trouble while claiming")
        return load_jobs(conn, ids)

    monkeypatch.setattr("webhooks.worker.load_jobs", load_once)
    with pytest.raises(RuntimeError, match="while claiming"):
        run(worker, Clock())
    assert len(consumer.received) == 2
    assert len(rows(engine, delivery_attempts)) == 2, "recorded in the pass whose claim failed"
    assert sorted(r["status"] for r in rows(engine)) == ["pending", "pending", "succeeded", "succeeded"]


def test_the_circuit_breaker_stops_attempts_then_probes_once(engine: Engine) -> None:
    seed(engine, 10)
    config = make_config(("sms", endpoint("sms", concurrency=1)), circuit_failure_threshold=3)
    failing = {"yes": True}
    consumer, clock = Consumer(lambda _r: httpx.Response(503 if failing["yes"] else 204)), Clock()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config))
    run(worker, clock)
    assert len(consumer.received) == 3
    (state,) = rows_states(engine)
    assert state["circuit_open_until"] == T0 + timedelta(seconds=30)
    clock.advance(timedelta(seconds=31))
    run(worker, clock)
    assert len(consumer.received) == 4, "half-open: a single probe, which failed"
    failing["yes"] = False
    clock.advance(timedelta(seconds=61))
    run(worker, clock)
    assert {r["status"] for r in rows(engine)} == {"succeeded"}
    assert rows_states(engine)[0]["consecutive_failures"] == 0


def test_the_rate_limit_spreads_sends_over_time(engine: Engine) -> None:
    seed(engine, 6)
    config = make_config(("sms", endpoint("sms", rate_limit=2)))
    consumer, clock = Consumer(), Clock()

    async def fake_sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)), clock, sleep=fake_sleep)
    sent = sorted((a["attempted_at"] - T0).total_seconds() for a in rows(engine, delivery_attempts))
    assert len(sent) == 6 and len(consumer.received) == 6
    # A burst of two, then one every half second.
    assert all(at >= (k - 1) / 2 - 1e-6 for k, at in enumerate(sent))


def test_a_refused_address_is_dead_with_the_reason(engine: Engine) -> None:
    seed(engine, 1)
    config = WebhooksConfig(
        endpoints={"local": endpoint("local", url="http://127.0.0.1:9/hook", allow_http=True)}
    )
    from webhooks import build_senders

    worker = DeliveryWorker(engine, config, build_senders(config, secrets_for(config)))
    run(worker, Clock())
    (delivery,) = rows(engine)
    assert delivery["status"] == "dead" and "loopback or private" in delivery["reason"]


def test_a_huge_retry_after_waits_an_hour_and_the_pass_records_every_endpoint(engine: Engine) -> None:
    seed(engine, 3)
    config = make_config(("broken", endpoint("broken")), ("healthy", endpoint("healthy")))
    broken = Consumer(lambda _r: httpx.Response(503, headers={"retry-after": "100000000000000"}))
    healthy = Consumer()
    run(make_worker(engine, config, {"broken": broken, "healthy": healthy}, secrets_for(config)), Clock())
    by_endpoint = {name: [r for r in rows(engine) if r["endpoint"] == name] for name in ("broken", "healthy")}
    assert {r["status"] for r in by_endpoint["healthy"]} == {"succeeded"}
    assert [r["next_attempt_at"] for r in by_endpoint["broken"]] == [T0 + timedelta(hours=1, seconds=5)] * 3
    assert len(rows(engine, delivery_attempts)) == 6 and len(broken.received) == len(healthy.received) == 3


def test_a_sender_that_raises_fails_its_delivery_not_the_pass(engine: Engine) -> None:
    seed(engine, 2)
    config = make_config(("broken", endpoint("broken")), ("healthy", endpoint("healthy")))

    def blow_up(_r: httpx.Request) -> httpx.Response:
        raise RuntimeError("an answer the client library did not foresee")

    consumers = {"broken": Consumer(blow_up), "healthy": Consumer()}
    run(make_worker(engine, config, consumers, secrets_for(config)), Clock())
    healthy = [r for r in rows(engine) if r["endpoint"] == "healthy"]
    failed = [r for r in rows(engine) if r["endpoint"] == "broken"]
    assert {r["status"] for r in healthy} == {"succeeded"}
    assert {r["status"] for r in failed} == {"failed"} and all(r["next_attempt_at"] > T0 for r in failed)
    assert all("RuntimeError" in r["reason"] and r["attempts"] == 1 for r in failed)


def test_the_first_trip_of_a_busy_endpoint_lasts_30_s_and_doubles_per_failed_probe(engine: Engine) -> None:
    seed(engine, 10)
    config = make_config(("sms", endpoint("sms")))  # concurrency 10, threshold 5, 30 s: the defaults
    consumer, clock = Consumer(lambda _r: httpx.Response(503)), Clock()
    worker = make_worker(engine, config, {"sms": consumer}, secrets_for(config))
    run(worker, clock)
    assert len(consumer.received) == 10
    (state,) = rows_states(engine)
    assert state["circuit_open_until"] == T0 + timedelta(seconds=30)
    clock.now = T0 + timedelta(seconds=30)
    run(worker, clock)
    assert len(consumer.received) == 11, "half-open: a single probe, which failed"
    (state,) = rows_states(engine)
    assert state["circuit_open_until"] == T0 + timedelta(seconds=30 + 60)


def test_after_a_merge_the_kept_contacts_messages_name_the_merged_ids(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn, "sms_offers")
        ada, ada_phone, bob = (add_contact(conn, f"{n}@example.com") for n in ("ada", "ada2", "bob"))
        merge(conn, keep=ada, others=[ada_phone], reason="shared identity", now=T0)
        add_transition(conn, sid, ada, "entered")
        add_transition(conn, sid, ada, "left")  # an unsubscribe, say: it follows the entry sent
        add_transition(conn, sid, bob, "entered")
    config = make_config(("sms", endpoint("sms", fields=["email"])))
    consumer = Consumer()
    run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)), Clock())
    contacts = {b["data"]["contact"]["id"]: b["data"]["contact"] for b in consumer.bodies()}
    assert contacts[ada] == {"id": ada, "merged_ids": [ada_phone], "email": "ada@example.com"}
    assert contacts[bob] == {"id": bob, "email": "bob@example.com"}  # none merged: no key
    for body in consumer.bodies():
        matches_schema(body)


def test_the_phone_sent_is_the_number_an_sms_reaches_without_its_extension(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn, "sms_offers")
        cid = add_contact(conn)
        conn.execute(
            insert(contact_identities).values(
                contact_id=cid, kind="phone", value="+14155552671;ext=12", source="test", first_seen_at=T0
            )
        )
        add_transition(conn, sid, cid, "entered")
    config = make_config(("sms", endpoint("sms", fields=["phone"])))
    consumer = Consumer()
    run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)), Clock())
    [body] = consumer.bodies()
    assert body["data"]["contact"] == {"id": cid, "phone": "+14155552671"}
