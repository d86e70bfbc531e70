"""The application factory: ``create_app(settings)`` builds everything, imports build
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from media_service import __version__
from media_service.audit.router import router as audit_router
from media_service.biometrics.router import router as biometrics_router
from media_service.config import Settings
from media_service.db.migrate import upgrade_to_head
from media_service.frames.cache_router import router as cache_router
from media_service.frames.router import frames as frames_router
from media_service.frames.router import schedules as schedules_router
from media_service.health import router as health_router
from media_service.jobs.router import router as admin_jobs_router
from media_service.logs import configure_logging
from media_service.media.router import router as files_router
from media_service.metadata.router import router as metadata_router
from media_service.metrics import ServiceMetrics
from media_service.middleware import RequestContextMiddleware
from media_service.playlists.router import router as playlists_router
from media_service.preprocessing.router import router as preprocessing_router
from media_service.privacy.export_router import router as export_router
from media_service.privacy.router import erasures as erasures_router
from media_service.privacy.router import users as erase_users_router
from media_service.problems import install_problem_handlers
from media_service.runtime import restore_collector, start_background
from media_service.state import ServiceState
from media_service.versions.router import router as versions_router


def create_worker_app() -> FastAPI:
    """The app of one process of ``serve --workers N``: a fresh interpreter, whose logging
    is set up here as ``serve`` sets up its own (JSON, redacted) before building the app."""
    settings = Settings()
    configure_logging(settings)
    return create_app(settings)


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    """A ready-to-serve app; backends open in its lifespan, not here."""
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service_state = state or ServiceState.build(settings)
        if settings.migrate_on_start:
            await upgrade_to_head(service_state.engine)
        metrics.attach(service_state)
        await start_background(service_state)
        app.state.media = service_state
        try:
            yield
        finally:
            if state is None:
                await service_state.close()
            else:  # a state lent by the caller (tests): stop what we started, keep the rest
                await service_state.stop_background()
            restore_collector()

    app = FastAPI(
        title="Media Service",
        version=__version__,
        description="Stores photos, videos and documents and serves what their consumers need.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, on_request=metrics.request_done)
    app.include_router(health_router)
    app.include_router(files_router)
    app.include_router(admin_jobs_router)
    app.include_router(audit_router)
    app.include_router(preprocessing_router)
    app.include_router(metadata_router)
    app.include_router(playlists_router)
    app.include_router(versions_router)
    app.include_router(frames_router)
    app.include_router(schedules_router)
    app.include_router(cache_router)
    app.include_router(export_router)
    app.include_router(erase_users_router)
    app.include_router(erasures_router)
    app.include_router(biometrics_router)
    app.include_router(metrics.router())
    return app
