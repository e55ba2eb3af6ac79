"""The query API: one FastAPI app, served by uvicorn locally and by Mangum on Lambda.

This module only wires routers, middleware and error handlers; see docs/api.md.
"""

from __future__ import annotations

from fastapi import FastAPI

from functions.api.errors import install_error_handlers
from functions.api.middleware import RequestContextMiddleware
from functions.api.routers import anomalies, dashboard, devices, health
from functions.api.slashes import TrailingSlashRedirect


def create_app() -> FastAPI:
    """A new app with every router, middleware and error handler (the demo builds its own from this)."""
    app = FastAPI(
        title="iotpipe query API",
        version="1.0.0",
        description="Devices, 1-minute aggregates and anomalies of the iotpipe pipeline. "
        "Every route but /health, /docs, /openapi.json and /dashboard needs the `x-api-key` header.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        redirect_slashes=False,  # TrailingSlashRedirect instead: relative, keeps the stage and the scheme
    )
    for module in (health, devices, anomalies, dashboard):
        app.include_router(module.router)
    app.add_middleware(TrailingSlashRedirect)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    return app


app = create_app()
