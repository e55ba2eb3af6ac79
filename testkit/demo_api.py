"""The API over seeded in-memory stores, for working on the live view and for
tests/integration/test_live_view.py (no AWS needed):

    API_KEY=dev uvicorn --factory testkit.demo_api:create_app

A factory, not a module-level app: importing this module changes nothing, and the deployed app
(``functions.api.main.app``) never sees the override; the demo builds an app of its own.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI

from functions.api import main
from functions.api.deps import get_stores
from testkit.seed import seeded_stores


def create_app(now: datetime | None = None) -> FastAPI:
    app = main.create_app()
    stores = seeded_stores(now)
    app.dependency_overrides[get_stores] = lambda: stores
    return app
