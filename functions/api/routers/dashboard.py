"""The live view: GET /dashboard (a static page shell, no key) and GET /stats (pipeline counters)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from functions.api import queries
from functions.api.deps import ApiKeyRequired, NowDep, StoresDep
from functions.api.errors import ERROR_RESPONSES
from functions.api.live_view import page
from functions.api.models import Stats

router = APIRouter(tags=["live view"])


@router.get("/dashboard", response_class=HTMLResponse, summary="Live view (HTML page; asks for the key)")
def dashboard() -> HTMLResponse:
    # The shell holds no data, so a browser can navigate to it without a header; every request the
    # page makes carries x-api-key. The CSP pins the inline script/style by hash and allows
    # connections to this origin only, so nothing can load from elsewhere.
    live = page()
    return HTMLResponse(live.html, headers={"Content-Security-Policy": live.csp, "Cache-Control": "no-cache"})


@router.get(
    "/stats",
    summary="Pipeline counters for the last hour",
    dependencies=ApiKeyRequired,
    responses=ERROR_RESPONSES,
)
def get_stats(stores: StoresDep, now: NowDep) -> Stats:
    return queries.stats(stores, now)
