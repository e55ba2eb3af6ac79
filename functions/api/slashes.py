"""Trailing-slash redirects that keep the API Gateway stage and the scheme: relative ``Location``.

Starlette's own redirect (``redirect_slashes``) builds an absolute URL from the request as the app sees
it: behind API Gateway that URL has lost the stage prefix (``/prod``) and takes its scheme and host from
headers, so ``/prod/dashboard/`` went to ``https://127.0.0.1:4566/dashboard``. A relative reference
(``../dashboard``, RFC 3986 section 5.2) is resolved by the browser against the URL it actually used,
whatever prefix, scheme and host sit in front of the app.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send


def relative_location(path: str, query: bytes = b"") -> str:
    """``/a/b/`` -> ``../b`` (plus the query): from ``.../a/b/`` it resolves to ``.../a/b``."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    location = f"../{last}"
    return f"{location}?{query.decode('latin-1')}" if query else location


class TrailingSlashRedirect:
    """307 to the route without the trailing slash, for paths that match a route only without it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") or ""
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/") and path.strip("/"):
            router = getattr(scope.get("app"), "router", None)
            stripped = {**scope, "path": path.rstrip("/")}
            routes = getattr(router, "routes", ())
            if not any(r.matches(scope)[0] is Match.FULL for r in routes) and any(
                r.matches(stripped)[0] is not Match.NONE for r in routes
            ):
                location = relative_location(path, scope.get("query_string") or b"")
                await send({
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
                })
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
