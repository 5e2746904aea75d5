"""The ASGI application of `crmhub serve`: routes, plus the scheduler and worker for the app's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from crmhub import __version__
from crmhub.server import admin, hooks, ingest
from crmhub.server.admin.gate import AdminGate
from crmhub.server.background import SchedulerThread, WorkerThread
from crmhub.server.inbound import BodyTooLargeError, too_large
from crmhub.server.limits import BodyDeadline
from crmhub.server.openapi import describe_outbound_webhooks
from crmhub.server.services import Services

__all__ = ["create_app"]

log = logging.getLogger("crmhub.serve")


def create_app(services: Services, *, scheduler: bool = True, worker: bool = True) -> FastAPI:
    """The app over `services`; `scheduler` / `worker` start those loops with the app."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.metrics.bind(services.engine, services.clock)
        loops: list[SchedulerThread | WorkerThread] = []
        if worker:
            loops.append(WorkerThread(services))
        if scheduler:
            loops.append(SchedulerThread(services))
        for loop in loops:
            loop.start()
        log.info("crmhub serve: ready (scheduler %s, worker %s)", _on(scheduler), _on(worker))
        try:
            yield
        finally:
            # Stop the scheduler first (its syncs stop at a page boundary), then let deliveries finish.
            services.stopping.set()
            grace = services.settings.server.shutdown_grace_seconds
            services.join_threads(grace)
            for loop in reversed(loops):
                loop.stop(grace)
            services.close()
            log.info("crmhub serve: stopped")

    app = FastAPI(
        title="crmhub",
        version=__version__,
        summary="Provider webhooks and Segment.com events in; segments, contacts and deliveries out.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_exception_handler(BodyTooLargeError, lambda _request, _exc: too_large())
    app.include_router(hooks.router)
    app.include_router(ingest.router)
    app.include_router(admin.router)
    # The last added runs first: a request without the admin token is refused before anything else.
    app.add_middleware(BodyDeadline, seconds=services.settings.server.body_timeout_seconds)
    app.add_middleware(AdminGate, services=services)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the store answers and its schema is current")
    def readyz() -> JSONResponse:
        problem = services.store_problem()
        if problem:
            return JSONResponse({"status": "unavailable", "error": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    describe_outbound_webhooks(app)
    return app


def _on(flag: bool) -> str:
    return "on" if flag else "off"
