"""The query API deployed on the emulator, called THROUGH its API Gateway (stage prod) with httpx.

Tables are seeded directly with boto3 under unique device ids, so the test shares the stack with others.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from functions.adapters.clients import client
from testkit.seed import anomaly_item, device_item, window_item
from tests.integration.polling import wait_for
from tests.integration.targets import facts

pytestmark = pytest.mark.integration
WINDOWS = 12
ANOMALIES = 5


def _to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    def decimals(value: Any) -> Any:
        if isinstance(value, float):
            return Decimal(str(value))
        if isinstance(value, dict):
            return {k: decimals(v) for k, v in value.items()}
        return value

    serializer = TypeSerializer()
    return {k: serializer.serialize(decimals(v)) for k, v in item.items()}


@pytest.fixture(scope="module")
def seeded(deployed_stack: dict[str, str]) -> dict[str, Any]:
    ddb = client("dynamodb")
    prefix = f"it-api-{uuid.uuid4().hex[:8]}"
    now = datetime.now(tz=UTC)
    rng = random.Random(1)
    devices = []
    for i in range(3):
        device = {**device_item(i, rng), "device_id": f"{prefix}-{i}"}
        devices.append(device)
        ddb.put_item(TableName=deployed_stack["DevicesTableName"], Item=_to_ddb(device))
    last = int(now.timestamp()) // 60 * 60 - 60
    for device in devices:
        for k in range(WINDOWS):
            item = window_item(device, last - k * 60, rng)
            ddb.put_item(TableName=deployed_stack["AggregatesTableName"], Item=_to_ddb(item))
    stamps = []
    for k in range(ANOMALIES):
        at = now - timedelta(minutes=3 + 4 * k)
        item = anomaly_item(devices[0], at, 1000 + k, ("low", "medium", "high", "critical", "high")[k])
        ddb.put_item(TableName=deployed_stack["AnomaliesTableName"], Item=_to_ddb(item))
        stamps.append(item["timestamp"])
    return {"devices": devices, "anomaly_stamps": stamps, "prefix": prefix}


def _pages(
    http: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str]
) -> list[list[dict]]:
    pages, cursor = [], None
    for _ in range(50):
        response = http.get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return pages
    raise AssertionError("pagination did not end")


def test_health_is_open(http: httpx.Client) -> None:
    response = http.get("health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("path", ["devices", "anomalies", "stats", "devices/x/aggregates"])
@pytest.mark.parametrize("headers", [{}, {"x-api-key": "not-the-key"}])
def test_missing_or_wrong_key_is_403(http: httpx.Client, path: str, headers: dict[str, str]) -> None:
    # The usage plan rejects these before the Lambda runs; the template's gateway responses give
    # them the same JSON error body as the application's own errors, where the target applies
    # GatewayResponse templates (AWS, ministack). LocalStack 4.14 keeps only their status code and
    # answers its own JSON body (tests/integration/targets.py, docs/deploying.md).
    response = http.get(path, headers=headers)
    assert response.status_code == 403
    if facts().gateway_response_templates:
        assert response.json()["error"]["code"] == "forbidden"
    else:
        assert response.json() == {"message": "Forbidden"}


def test_device_and_404(http: httpx.Client, key: dict[str, str], seeded: dict[str, Any]) -> None:
    device = seeded["devices"][1]
    body = http.get(f"devices/{device['device_id']}", headers=key).json()
    assert body["location"] == device["location"]
    assert body["latitude"] == device["latitude"]
    missing = http.get(f"devices/{seeded['prefix']}-none", headers=key)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_aggregates_paginate(http: httpx.Client, key: dict[str, str], seeded: dict[str, Any]) -> None:
    device_id = seeded["devices"][2]["device_id"]
    pages = _pages(http, f"devices/{device_id}/aggregates", {"limit": 5}, key)
    starts = [a["window_start"] for page in pages for a in page]
    assert len(pages) == 3
    assert len(starts) == WINDOWS
    assert starts == sorted(set(starts))
    assert set(pages[0][0]["channels"]) == {"temperature", "humidity", "pressure"}


def test_anomalies_by_device_and_by_day(
    http: httpx.Client, key: dict[str, str], seeded: dict[str, Any]
) -> None:
    device_id = seeded["devices"][0]["device_id"]
    expected = seeded["anomaly_stamps"]  # seeded newest first
    by_device = _pages(http, f"devices/{device_id}/anomalies", {"limit": 2}, key)
    assert [a["timestamp"] for page in by_device for a in page] == expected
    assert len(by_device) == 3
    fleet = _pages(
        http, "anomalies", {"limit": 2, "from": (datetime.now(tz=UTC) - timedelta(hours=1)).isoformat()}, key
    )
    ours = [a["timestamp"] for page in fleet for a in page if a["device_id"] == device_id]
    assert ours == expected
    severe = http.get(
        "anomalies", params={"device_id": device_id, "min_severity": "high"}, headers=key
    ).json()
    assert sorted(a["severity"] for a in severe["items"]) == ["critical", "high", "high"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("anomalies?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z", 400, "range_too_large"),
        ("anomalies?from=2026-11-21T12:00:00Z&to=2026-11-21T11:00:00Z", 400, "invalid_range"),
        ("anomalies?cursor=forged.cursor", 400, "invalid_cursor"),
        ("anomalies?limit=0", 422, "validation_error"),
        ("anomalies?min_severity=apocalyptic", 422, "validation_error"),
        ("devices?limit=100000", 400, "limit_too_large"),
    ],
)
def test_bad_parameters(http: httpx.Client, key: dict[str, str], path: str, status: int, code: str) -> None:
    response = http.get(path, headers=key)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_docs_load_the_stage_relative_openapi(http: httpx.Client) -> None:
    docs = http.get("docs")
    assert docs.status_code == 200
    assert "/prod/openapi.json" in docs.text
    spec = http.get("openapi.json")
    assert spec.status_code == 200
    assert spec.json()["servers"] == [{"url": "/prod"}]


def test_live_view_shell_and_stats(http: httpx.Client, key: dict[str, str], seeded: dict[str, Any],
                                   deployed_stack: dict[str, str]) -> None:
    page = http.get("dashboard")
    assert page.status_code == 200
    assert "iotpipe live view" in page.text
    assert 'id="world-atlas"' in page.text  # the base map travels inside the page, through the gateway
    stats = http.get("stats", headers=key).json()
    assert stats["devices"] >= 3
    assert stats["anomalies_last_hour"] >= ANOMALIES
    # AND the quarantine the live view shows is read from the processor's metrics on this target:
    # three records that are not JSON show up as malformed_json within a minute
    before = (stats["quarantined_by_reason"] or {}).get("malformed_json", 0)
    client("kinesis").put_records(StreamName=deployed_stack["StreamName"], Records=[
        {"Data": b"{not json " + str(i).encode(), "PartitionKey": f"it-stats-{i}"} for i in range(3)])

    def quarantined() -> dict[str, Any] | None:
        body = http.get("stats", headers=key).json()
        return body if (body["quarantined_by_reason"] or {}).get("malformed_json", 0) >= before + 3 else None

    latest = wait_for(quarantined, 90, 2)
    assert latest, http.get("stats", headers=key).json()
    assert latest["quarantined_last_hour"] == sum(latest["quarantined_by_reason"].values())
    assert latest["readings_in_last_hour"] >= latest["quarantined_last_hour"]
    assert latest["failures_last_hour"]["readings_held_back_now"] >= 0


def test_correlation_id_round_trip(http: httpx.Client) -> None:
    assert (
        http.get("health", headers={"x-correlation-id": "it-corr-1"}).headers["x-correlation-id"]
        == "it-corr-1"
    )


# Every operation of the API's OpenAPI document but the HTML page: the property run must reach each one.
SCHEMATHESIS_OPERATIONS = {
    "GET /health", "GET /devices", "GET /devices/{device_id}", "GET /devices/{device_id}/aggregates",
    "GET /devices/{device_id}/anomalies", "GET /anomalies", "GET /stats",
}


def test_schemathesis_through_the_gateway(deployed_stack: dict[str, str], seeded: dict[str, Any]) -> None:
    """A bounded property run against the deployed URL: no 5xx, documented statuses and bodies."""
    import schemathesis

    base = deployed_stack["ApiUrl"].rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    schema.config.update(base_url=base)
    calls: Counter[str] = Counter()
    reached: Counter[str] = Counter()  # answered by the function, not refused at the gateway (403)
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path == "/dashboard":
            continue
        _conformance_run(op, deployed_stack["ApiKey"], f"{op.method.upper()} {op.path}", calls, reached)()
    # The loop checks only what it ran: it must have run every operation, and each must have got past the
    # gateway's key check at least once (a rejected key makes every answer a documented 403).
    assert set(calls) == SCHEMATHESIS_OPERATIONS, f"operations run: {dict(calls)}"
    assert set(reached) == SCHEMATHESIS_OPERATIONS, f"operations that reached the function: {dict(reached)}"


def _conformance_run(op: Any, api_key: str, label: str, calls: Counter[str], reached: Counter[str]) -> Any:
    """The hypothesis test for one operation (built here so that each closure binds its own operation)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]

    @given(case=op.as_strategy())
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers={"x-api-key": api_key})
        calls[label] += 1
        if response.status_code != 403:
            reached[label] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
        case.validate_response(response, checks=checks)

    return run
