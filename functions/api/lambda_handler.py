"""Lambda entry point: the FastAPI app behind API Gateway (REST, proxy integration) via Mangum.

API Gateway's proxy event carries the path without the stage (``/devices``) and the full one in
``requestContext.path`` (``/prod/devices``). Routing uses the former; the stage prefix becomes the ASGI
``root_path`` so the docs page fetches ``/prod/openapi.json`` and the OpenAPI ``servers`` entry points
at the stage.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.api.main import app


def stage_prefix(event: dict[str, Any]) -> str:
    """``/prod`` for an execute-api URL; "" when a custom domain maps the API at its root."""
    context = event.get("requestContext") or {}
    full, path = str(context.get("path") or ""), str(event.get("path") or "")
    if full and path and full.endswith(path) and full != path:
        return full[: len(full) - len(path)].rstrip("/")
    return ""


class StageRootPath:
    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "aws.event" in scope:
            scope = {**scope, "root_path": stage_prefix(scope["aws.event"])}
        await self.inner(scope, receive, send)


# lifespan off: the app has no startup work, and Lambda would run it on every cold start anyway.
handler = Mangum(StageRootPath(app), lifespan="off", api_gateway_base_path="/")
