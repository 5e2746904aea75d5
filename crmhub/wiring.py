"""Building the working objects from settings: sources with their secrets, the mapper, the engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import Connection, Engine, func, make_url, select
from sqlalchemy.exc import DBAPIError

from connectors import PULL_SOURCES, HubSpotSource, Source, build_source
from crmhub.settings import ConfigError, Problem, Settings, secret
from field_mapping.config import FieldMappingConfig
from field_mapping.inference import hubspot_declared_type
from field_mapping.mapper import Mapper
from field_mapping.types import FieldType
from sync.consent import ConsentResult, opt_in, opt_out
from sync.consent.config import endpoints_by_channel
from sync.engine import Evaluate, SyncEngine
from sync.fields import load_definitions
from sync.hubspot_push import PushReport, push_to_hubspot
from sync.hygiene import run_hygiene
from sync.ingest import PageStore
from sync.locks import serialize_evaluation
from sync.segments import EvaluationReport, check_fields, evaluate_segments
from sync.segments.config import hint, segment_nodes
from sync.segments.field_checks import type_problems
from sync.store import create_store_engine, status
from sync.store.tables import deliveries, field_definitions, memberships, segments
from webhooks.eligibility import OPEN_STATUSES

T = TypeVar("T")


def pull_source_names(settings: Settings, wanted: Sequence[str] | None) -> list[str]:
    """The enabled pull sources, in pull order, limited to `wanted`; a clear error for a bad name."""
    enabled = [n for n in PULL_SOURCES if getattr(settings.connectors, n).enabled]
    if not wanted:
        return enabled
    problems = []
    for name in wanted:
        if name == "segmentio":
            # Segment.com has no API to pull from: its sources send to crmhub serve.
            why = "found 'segmentio', which is not pulled: Segment.com sends to `crmhub serve`"
            problems.append(Problem("--source", f"expected one of {', '.join(PULL_SOURCES)}, {why}"))
        elif name not in PULL_SOURCES:
            suggestion = hint(name, list(PULL_SOURCES))
            close = suggestion if "did you mean" in suggestion else ""  # the list is named already
            problems.append(
                Problem("--source", f"expected one of {', '.join(PULL_SOURCES)}, found {name!r}{close}")
            )
        elif name not in enabled:
            problems.append(
                Problem(f"connectors.{name}.enabled", f"expected true to sync {name}, found false")
            )
    if problems:
        raise ConfigError(problems)
    return [n for n in enabled if n in wanted]


def build_sources(
    settings: Settings,
    names: Sequence[str],
    http: httpx.Client,
    environ: Mapping[str, str] | None = None,
) -> list[Source]:
    """One Source per name, each with its secret read from the environment."""
    environ = os.environ if environ is None else environ
    return [
        build_source(
            name, settings.connectors, secret(settings, f"connectors.{name}.api_key_env", environ), http
        )
        for name in names
    ]


def push_problems(settings: Settings) -> list[Problem]:
    """HubSpot push needs the HubSpot connector: it writes through that connection and its token."""
    if settings.field_mapping.hubspot.push and not settings.connectors.hubspot.enabled:
        message = "expected connectors.hubspot.enabled = true (push uses that connection), found false"
        return [Problem("field_mapping.hubspot.push", message)]
    return []


def hubspot_push(
    settings: Settings,
    engine: Engine,
    http: httpx.Client,
    *,
    now: datetime,
    environ: Mapping[str, str] | None = None,
) -> PushReport | None:
    """Push fields and changed values to HubSpot when `[field_mapping.hubspot] push` is on."""
    if not settings.field_mapping.hubspot.push:
        return None
    problems = push_problems(settings)
    if problems:
        raise ConfigError(problems)
    [source] = build_sources(settings, ["hubspot"], http, environ)
    assert isinstance(source, HubSpotSource)
    return push_to_hubspot(engine, source.api, settings.field_mapping.hubspot, now=now)


def build_sync_engine(settings: Settings, engine: Engine, sources: Sequence[Source] = ()) -> SyncEngine:
    """The sync engine with a mapper seeded from the store's field definitions and the sources' types."""
    with engine.connect() as conn:
        known = load_definitions(conn)
    mapper = Mapper(settings.field_mapping, known=known)
    declare_source_types(mapper, sources)
    evaluate = evaluator(settings)
    channels = endpoints_by_channel({n: e.requires_consent for n, e in settings.webhooks.endpoints.items()})
    store = PageStore(mapper, consent=settings.consent, evaluate=evaluate, endpoints=channels)
    return SyncEngine(engine, store, evaluate)


def declare_source_types(mapper: Mapper, sources: Sequence[Source]) -> None:
    """Give `mapper` the field types the sources declare: HubSpot's property types, per object type."""
    for source in sources:
        if isinstance(source, HubSpotSource):
            for stream in source.streams:
                mapper.declare(f"hubspot.{stream.name}", partial(_hubspot_types, source, stream.name))


def _hubspot_types(source: HubSpotSource, object_type: str) -> dict[str, FieldType]:
    """Property name -> field type, from the definitions the source read to pull them (no request)."""
    # Read while a page is stored, in its write transaction: a request there would hold the lock.
    # The pull (or the webhook's read) has read them before any record of the stream exists.
    definitions = source.read_definitions(object_type) or []
    declared = ((d.name, hubspot_declared_type(d.name, d.type, d.field_type)) for d in definitions)
    return {name: ftype for name, ftype in declared if ftype is not None}


def rule_field_problems(settings: Settings) -> tuple[list[Problem], list[str]]:
    """Segment and scoring conditions on fields no mapping rule declares and the store does not hold.

    Problems once the store holds fields (a sync would not evaluate such a segment); before the
    first sync, when automatic fields do not exist yet, notes.
    """
    types = stored_field_types(settings)
    stored = set(types)
    known = declared_fields(settings.field_mapping) | stored
    found = check_fields(settings.segments, known) + settings.scoring.check_fields(known)
    # Built-in fields (created_at, email, ...) have their types before the first sync.
    region = settings.field_mapping.identity.default_region
    typed = [
        Problem(path, f"{why} (a sync would hold the segment back)")
        for path, why in type_problems(segment_nodes(settings.segments), types, region)
    ]
    if not stored:
        fix = "automatic fields appear with the first sync; if this one does not, fix the name"
        return typed, [f"{path}: {message} ({fix})" for path, message in found]
    fix = "fix the name, or declare it with a [[field_mapping.rules]] entry if no source has sent it yet"
    return [Problem(path, f"{message} ({fix})") for path, message in found] + typed, []


def stored_field_types(settings: Settings) -> dict[str, FieldType]:
    """Fields the store already holds, with their types (automatic ones appear after a first sync)."""

    def read(conn: Connection) -> dict[str, FieldType]:
        rows = conn.execute(select(field_definitions.c.name, field_definitions.c.type))
        return {name: FieldType(kind) for name, kind in rows if kind in FieldType._value2member_map_}

    return _read_store(settings, read, {})


def stored_field_names(settings: Settings) -> set[str]:
    """Fields the store already holds; none if it is unreachable or not there yet."""
    return set(stored_field_types(settings))


def leftovers(settings: Settings) -> list[str]:
    """What the store still holds for segments and endpoints the configuration no longer names."""

    def read(conn: Connection) -> list[str]:
        notes = []
        s, m, d = segments.c, memberships.c, deliveries.c
        held = (
            select(s.key, func.count(m.contact_id))
            .outerjoin(memberships, m.segment_id == s.id)
            .group_by(s.key)
        )
        for key, members in conn.execute(held):
            if key not in settings.segments:
                notes.append(
                    f'segment "{key}" is no longer configured; its {members:,} members stay as they were '
                    "and get no transitions: configure it again, or ignore it"
                )
        waiting = select(d.endpoint, func.count()).where(d.status.in_(OPEN_STATUSES)).group_by(d.endpoint)
        for endpoint, count in conn.execute(waiting):
            if endpoint not in settings.webhooks.endpoints:
                notes.append(
                    f'endpoint "{endpoint}" is no longer configured; {count:,} deliveries wait for it: '
                    "configure it again to send them, or they stay in `crmhub deliveries list`"
                )
        return notes

    return _read_store(settings, read, [])


def _read_store(settings: Settings, read: Callable[[Connection], T], default: T) -> T:
    """`read` on the configured store, or `default` when it is unreachable, absent or not migrated yet."""
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return default  # opening it would create the file: a check must leave no store behind
    engine = create_store_engine(settings.database.url)
    try:
        if not status(engine).up_to_date:
            return default
        with engine.connect() as conn:
            return read(conn)
    except DBAPIError:
        return default
    finally:
        engine.dispose()


def declared_fields(field_mapping: FieldMappingConfig) -> set[str]:
    """The fields mapping rules write: known to segments before any value arrives."""
    return {rule.field for rule in field_mapping.rules}


def evaluator(settings: Settings) -> Evaluate | None:
    """Hygiene, lead scoring and segment evaluation as the configuration asks, or None if none is."""
    scoring = settings.scoring
    if not settings.segments and not (scoring.events or scoring.conditions) and not settings.hygiene.enabled:
        return None

    declared = declared_fields(settings.field_mapping)

    def evaluate(
        conn: Connection, *, now: datetime, run_id: int | None, contact_ids: Collection[int] | None
    ) -> EvaluationReport:
        serialize_evaluation(conn)
        if contact_ids is None and settings.hygiene.enabled:
            # A whole-store evaluation (the end of a sync, a scheduled re-evaluation) runs the hygiene
            # policies first, so the segments see this run's dormant and undeliverable flags.
            run_hygiene(conn, settings.hygiene, now=now)
        return evaluate_segments(
            conn,
            settings.segments,
            now=now,
            scoring=scoring,
            run_id=run_id,
            contact_ids=contact_ids,
            declared=declared,
            region=settings.field_mapping.identity.default_region,
        )

    return evaluate


def record_consent(
    conn: Connection,
    settings: Settings,
    *,
    contact_id: int,
    channel: str,
    opted_out: bool,
    source: str,
    proof: dict[str, Any],
    now: datetime,
) -> ConsentResult:
    """An opt-out or opt-in given by a person (the CLI, the admin API), acted on as the configuration asks."""
    common: dict[str, Any] = {
        "contact_id": contact_id,
        "channel": channel,
        "source": source,
        "proof": proof,
        "now": now,
        "evaluate": evaluator(settings),
        "config": settings.consent,
    }
    if not opted_out:
        return opt_in(conn, **common)
    requirements = {name: e.requires_consent for name, e in settings.webhooks.endpoints.items()}
    return opt_out(conn, endpoints=endpoints_by_channel(requirements).get(channel, []), **common)
