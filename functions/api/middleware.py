"""Per-request plumbing as one pure ASGI middleware: correlation id, size limits, access log.

- Correlation id: the caller's ``x-correlation-id`` if it is sane, else API Gateway's request id, else
  a fresh uuid; echoed back in the response header and put on every log line of the request.
- Size limits: no route takes a body, so anything beyond a small body or a long query string is
  refused with 413 before routing (API Gateway has its own 10 MB cap; this one also guards uvicorn).
- One structured access line per request (method, route path, status, duration); never the query
  string or headers, which can carry keys and cursors.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.api.errors import error_response
from functions.api.observability import correlation_id, log_event

MAX_BODY_BYTES = 16 * 1024
MAX_QUERY_BYTES = 4 * 1024
HEADER = "x-correlation-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _pick_correlation_id(scope: Scope) -> str:
    given = _header(scope, HEADER.encode())
    if given and _SANE_ID.match(given):
        return given
    event: dict[str, Any] = scope.get("aws.event") or {}
    request_id = (event.get("requestContext") or {}).get("requestId")
    return str(request_id) if request_id else uuid.uuid4().hex


def _too_large(scope: Scope) -> bool:
    if len(scope.get("query_string") or b"") > MAX_QUERY_BYTES:
        return True
    length = _header(scope, b"content-length")
    try:
        return length is not None and int(length) > MAX_BODY_BYTES
    except ValueError:
        return True


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = _pick_correlation_id(scope)
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((HEADER.encode(), cid.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        try:
            if _too_large(scope):
                response = error_response(
                    413,
                    "request_too_large",
                    f"query string or body too large (max {MAX_QUERY_BYTES} / {MAX_BODY_BYTES} bytes)",
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            log_event(
                "request",
                method=scope.get("method"),
                path=getattr(route, "path", None) or scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            correlation_id.reset(token)
