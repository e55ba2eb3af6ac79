"""The Mangum entry point with API Gateway REST proxy events (stage ``prod``), in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api.deps import get_stores
from functions.api.lambda_handler import handler, stage_prefix
from functions.api.main import app
from functions.settings import get_settings
from testkit.seed import seeded_stores


def rest_event(path: str, query: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> dict:
    headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "req-42",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


class FakeContext:
    function_name = "query-api"
    aws_request_id = "lambda-req"


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("API_KEY", raising=False)  # on Lambda the gateway enforces the key
    get_settings.cache_clear()
    stores = seeded_stores(devices=2, minutes=5)
    app.dependency_overrides[get_stores] = lambda: stores
    yield
    app.dependency_overrides.clear()
    get_settings.cache_clear()


def invoke(path: str, **kwargs: Any) -> dict:
    return handler(rest_event(path, **kwargs), FakeContext())


def test_routes_resolve_without_the_stage_prefix() -> None:
    response = invoke("/devices")
    assert response["statusCode"] == 200
    assert [d["device_id"] for d in json.loads(response["body"])["items"]] == ["dev-000000", "dev-000001"]


def test_docs_fetch_openapi_relative_to_the_stage() -> None:
    # GIVEN a call through API Gateway's /prod stage WHEN the docs page is served
    # THEN it loads /prod/openapi.json, and the OpenAPI servers entry names the stage
    docs = invoke("/docs")
    assert docs["statusCode"] == 200
    assert "'/prod/openapi.json'" in docs["body"] or '"/prod/openapi.json"' in docs["body"]
    spec = json.loads(invoke("/openapi.json")["body"])
    assert spec["servers"] == [{"url": "/prod"}]


def test_correlation_id_defaults_to_the_gateway_request_id() -> None:
    response = invoke("/health")
    assert response["headers"]["x-correlation-id"] == "req-42"


def test_errors_keep_their_shape_through_mangum() -> None:
    response = invoke("/devices/nope")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("event_path", "context_path", "expected"),
    [("/devices", "/prod/devices", "/prod"), ("/devices", "/devices", ""), ("/", "/prod/", "/prod")],
)
def test_stage_prefix(event_path: str, context_path: str, expected: str) -> None:
    assert stage_prefix({"path": event_path, "requestContext": {"path": context_path}}) == expected
