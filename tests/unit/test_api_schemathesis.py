"""Property-based conformance of the query API to its own OpenAPI document (schemathesis, in-process).

Bounded: 50 examples per operation, no deadline. Checks: no 5xx, documented status codes, content
types and response bodies that match the declared schemas.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from functions.api.deps import get_stores
from functions.api.main import app
from functions.settings import get_settings
from testkit.seed import seeded_stores

KEY = "schemathesis-key"

load_all_checks()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("API_KEY", KEY)
    get_settings.cache_clear()
    stores = seeded_stores(devices=3, minutes=10)
    app.dependency_overrides[get_stores] = lambda: stores
    yield
    app.dependency_overrides.clear()
    get_settings.cache_clear()


@schema.exclude(path="/dashboard").parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    response = case.call(headers={"x-api-key": KEY})
    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
