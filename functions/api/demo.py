"""The real app over seeded in-memory stores: ``uvicorn functions.api.demo:app`` (no AWS needed).

For working on the live view and for tests/integration/test_live_view.py. Never deployed: the Lambda
handler imports ``functions.api.main``.
"""

from __future__ import annotations

from functions.api.deps import get_stores
from functions.api.main import app as _app
from functions.api.stores.seed import seeded_stores

_stores = seeded_stores()
_app.dependency_overrides[get_stores] = lambda: _stores
app = _app
