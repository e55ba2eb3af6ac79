"""Query API routes against the in-memory fakes (no network): data, auth, parameters, paging, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from functions.api.deps import Stores, get_now, get_stores
from functions.api.main import app
from functions.schemas import validate
from functions.settings import get_settings
from testkit.seed import anomaly_item, seeded_stores

KEY = "unit-test-key"
NOW = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
AUTH = {"x-api-key": KEY}


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    monkeypatch.setenv("API_KEY", KEY)
    monkeypatch.setenv("API_MAX_RANGE_S", str(7 * 24 * 3600))
    get_settings.cache_clear()
    seeded = seeded_stores(now=NOW, devices=4, minutes=30)
    app.dependency_overrides[get_stores] = lambda: seeded
    app.dependency_overrides[get_now] = lambda: NOW
    yield seeded
    app.dependency_overrides.clear()
    get_settings.cache_clear()


@pytest.fixture
def api(stores: Stores) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def assert_error(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code


# ---------------------------------------------------------------- open routes


def test_health_needs_no_key(api: TestClient) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/dashboard"])
def test_docs_and_page_shell_need_no_key(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 200


def test_dashboard_is_self_contained(api: TestClient) -> None:
    # GIVEN the live-view page WHEN served THEN nothing in it points at another origin
    response = api.get("/dashboard")
    html = response.text
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "connect-src 'self'" in response.headers["content-security-policy"]


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "path",
    [
        "/devices",
        "/devices/dev-000000",
        "/devices/dev-000000/aggregates",
        "/devices/dev-000000/anomalies",
        "/anomalies",
        "/stats",
    ],
)
@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_data_routes_refuse_missing_or_wrong_key(api: TestClient, path: str, headers: dict) -> None:
    assert_error(api.get(path, headers=headers), 403, "forbidden")


def test_key_is_checked_before_parameters(api: TestClient) -> None:
    assert_error(api.get("/devices?limit=abc"), 403)


def test_no_api_key_configured_means_gateway_enforces(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_KEY")
    get_settings.cache_clear()
    assert api.get("/devices").status_code == 200


# ---------------------------------------------------------------- devices


def test_list_devices(api: TestClient) -> None:
    body = api.get("/devices", headers=AUTH).json()
    assert [d["device_id"] for d in body["items"]] == [f"dev-{i:06d}" for i in range(4)]
    assert {"site", "location", "latitude", "longitude"} <= set(body["items"][0])
    assert "next_cursor" not in body


def test_devices_paginate(api: TestClient) -> None:
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = api.get("/devices", params=params, headers=AUTH).json()
        seen += [d["device_id"] for d in body["items"]]
        cursor = body.get("next_cursor")
        if not cursor:
            break
    assert seen == [f"dev-{i:06d}" for i in range(4)]


def test_get_device_and_404(api: TestClient) -> None:
    assert api.get("/devices/dev-000001", headers=AUTH).json()["location"] == "Lyon, FR"
    assert_error(api.get("/devices/nope", headers=AUTH), 404, "not_found")


def test_malformed_device_id_is_422(api: TestClient) -> None:
    assert_error(api.get("/devices/bad%20id", headers=AUTH), 422, "validation_error")


# ---------------------------------------------------------------- aggregates


def test_aggregates_default_to_last_hour_oldest_first(api: TestClient) -> None:
    body = api.get("/devices/dev-000000/aggregates", headers=AUTH).json()
    starts = [a["window_start"] for a in body["items"]]
    assert len(starts) == 30
    assert starts == sorted(starts)
    for aggregate in body["items"]:
        validate("aggregate", aggregate)  # the shared contract, not just our pydantic model
    assert body["device_id"] == "dev-000000"
    assert body["to"].startswith("2026-11-21T12:00:30")


def test_aggregates_range_with_iso_and_epoch_ms(api: TestClient) -> None:
    start = NOW - timedelta(minutes=5)
    epoch_ms = int(start.timestamp() * 1000)
    by_ms = api.get(f"/devices/dev-000000/aggregates?from={epoch_ms}", headers=AUTH).json()
    by_iso = api.get(
        "/devices/dev-000000/aggregates", params={"from": start.isoformat()}, headers=AUTH
    ).json()
    assert by_ms["items"] == by_iso["items"]
    # from 11:55:30 rounds down to its window 11:55:00; windows up to 11:59 exist
    assert [a["window_start"][11:16] for a in by_ms["items"]] == ["11:55", "11:56", "11:57", "11:58", "11:59"]


def test_aggregates_paginate_without_gaps_or_repeats(api: TestClient) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = api.get("/devices/dev-000002/aggregates", params=params, headers=AUTH).json()
        seen += [a["window_start"] for a in body["items"]]
        pages += 1
        cursor = body.get("next_cursor")
        if not cursor:
            break
    assert pages == 5
    assert len(seen) == 30
    assert len(set(seen)) == 30
    assert seen == sorted(seen)


def test_aggregates_unknown_device_404(api: TestClient) -> None:
    assert_error(api.get("/devices/dev-999999/aggregates", headers=AUTH), 404)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "yesterday"}, "invalid_time"),
        ({"to": "2026-13-01T00:00:00Z"}, "invalid_time"),
        ({"from": "2026-11-21T12:00:00Z", "to": "2026-11-21T11:00:00Z"}, "invalid_range"),
        ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-21T00:00:00Z"}, "range_too_large"),
        ({"limit": 100_000}, "limit_too_large"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ],
)
def test_aggregates_bad_parameters_are_400(api: TestClient, params: dict, code: str) -> None:
    assert_error(api.get("/devices/dev-000000/aggregates", params=params, headers=AUTH), 400, code)


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "many"}, {"from": "x" * 100}])
def test_validation_errors_are_reshaped_422(api: TestClient, params: dict) -> None:
    assert_error(
        api.get("/devices/dev-000000/aggregates", params=params, headers=AUTH), 422, "validation_error"
    )


def test_range_bound_follows_settings(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_MAX_RANGE_S", "600")
    get_settings.cache_clear()
    path = "/devices/dev-000000/aggregates"
    assert_error(api.get(path, headers=AUTH), 400, "range_too_large")  # the default hour exceeds 10 min
    assert (
        api.get(path, params={"from": (NOW - timedelta(minutes=10)).isoformat()}, headers=AUTH).status_code
        == 200
    )


def test_cursor_is_bound_to_its_query(api: TestClient) -> None:
    first = api.get("/devices/dev-000000/aggregates?limit=5", headers=AUTH).json()
    cursor = first["next_cursor"]
    # the same cursor for another device, or with a bit flipped, is refused
    assert_error(
        api.get(f"/devices/dev-000001/aggregates?cursor={cursor}", headers=AUTH), 400, "invalid_cursor"
    )
    body, mac = cursor.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    assert_error(
        api.get(f"/devices/dev-000000/aggregates?cursor={flipped}.{mac}", headers=AUTH), 400, "invalid_cursor"
    )
    assert api.get(f"/devices/dev-000000/aggregates?cursor={cursor}", headers=AUTH).status_code == 200


# ---------------------------------------------------------------- anomalies


def _add_anomalies(stores: Stores, count: int, step: timedelta) -> list[str]:
    device = stores.devices.get("dev-000003")
    assert device is not None
    stamps = []
    for i in range(count):
        at = NOW - timedelta(minutes=1) - i * step
        severity = ("low", "medium", "high", "critical")[i % 4]
        stores.anomalies.put_many([anomaly_item(device, at, 100 + i, severity)])
        stamps.append(at)
    return [s.strftime("%Y-%m-%dT%H:%M:%S") for s in stamps]


def test_anomalies_newest_first_and_match_schema(api: TestClient) -> None:
    body = api.get("/anomalies", headers=AUTH).json()
    assert body["order"] == "newest_first"
    stamps = [a["timestamp"] for a in body["items"]]
    assert stamps == sorted(stamps, reverse=True)
    assert len(stamps) == 2
    for anomaly in body["items"]:
        validate("anomaly", anomaly)


def test_anomalies_paginate_across_days(api: TestClient, stores: Stores) -> None:
    # GIVEN 12 anomalies spread over 3 UTC days (every 5 h) plus the two seeded ones
    expected = _add_anomalies(stores, 12, timedelta(hours=5))
    params = {"from": (NOW - timedelta(days=3)).isoformat(), "device_id": None}
    seen, cursor, pages = [], None, 0
    while True:
        query = {"from": params["from"], "limit": 4, **({"cursor": cursor} if cursor else {})}
        body = api.get("/anomalies", params=query, headers=AUTH).json()
        seen += [(a["timestamp"][:19], a["device_id"]) for a in body["items"]]
        pages += 1
        cursor = body.get("next_cursor")
        if not cursor:
            break
    # THEN every anomaly comes exactly once, newest first, in pages of at most 4
    ours = [t for t, d in seen if d == "dev-000003"]
    assert ours == expected
    assert len(seen) == 14
    assert len(set(seen)) == 14
    assert [t for t, _ in seen] == sorted((t for t, _ in seen), reverse=True)
    assert pages >= 4


def test_anomalies_filters(api: TestClient, stores: Stores) -> None:
    _add_anomalies(stores, 8, timedelta(minutes=7))
    high = api.get("/anomalies?min_severity=high", headers=AUTH).json()["items"]
    assert high
    assert all(a["severity"] in ("high", "critical") for a in high)
    one = api.get("/anomalies?device_id=dev-000003&limit=3", headers=AUTH).json()
    assert [a["device_id"] for a in one["items"]] == ["dev-000003"] * 3
    assert one["next_cursor"]
    rest = api.get(
        f"/anomalies?device_id=dev-000003&limit=3&cursor={one['next_cursor']}", headers=AUTH
    ).json()
    assert len(rest["items"]) == 3
    assert rest["items"][0]["timestamp"] < one["items"][-1]["timestamp"]


def test_filtered_paging_fills_pages(api: TestClient, stores: Stores) -> None:
    _add_anomalies(stores, 20, timedelta(minutes=3))
    body = api.get("/anomalies?min_severity=critical&limit=3", headers=AUTH).json()
    assert len(body["items"]) == 3
    assert all(a["severity"] == "critical" for a in body["items"])


def test_device_anomalies(api: TestClient) -> None:
    body = api.get("/devices/dev-000000/anomalies", headers=AUTH).json()
    assert [a["severity"] for a in body["items"]] == ["critical"]
    assert_error(api.get("/devices/dev-999999/anomalies", headers=AUTH), 404)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("min_severity=extreme", 422),
        ("device_id=bad%20id", 422),
        ("from=2026-01-01T00:00:00Z", 400),
        ("cursor=abc.def", 400),
    ],
)
def test_anomalies_bad_parameters(api: TestClient, query: str, status: int) -> None:
    assert_error(api.get(f"/anomalies?{query}", headers=AUTH), status)


def test_cursor_of_one_route_is_refused_by_another(api: TestClient, stores: Stores) -> None:
    _add_anomalies(stores, 5, timedelta(minutes=2))
    cursor = api.get("/devices/dev-000003/anomalies?limit=2", headers=AUTH).json()["next_cursor"]
    assert_error(
        api.get(f"/anomalies?device_id=dev-000003&cursor={cursor}", headers=AUTH), 400, "invalid_cursor"
    )


# ---------------------------------------------------------------- stats, errors, headers


def test_stats_counts_the_last_hour(api: TestClient) -> None:
    body = api.get("/stats", headers=AUTH).json()
    assert body == {
        "generated_at": "2026-11-21T12:00:30.000Z",
        "period_s": 3600,
        "devices": 4,
        "devices_truncated": False,
        "devices_sampled": 4,
        "windows_last_hour": 120,
        "readings_last_hour": 7200,
        "anomalies_last_hour": 1,
        "failures_last_hour": None,  # the seeded stores have no metrics reader
        "readings_in_last_hour": None,
        "quarantined_last_hour": None,
        "quarantined_by_reason": None,
    }


def test_throttling_is_429(api: TestClient, stores: Stores) -> None:
    stores.aggregates.throttle = True  # type: ignore[attr-defined]
    response = api.get("/devices/dev-000000/aggregates", headers=AUTH)
    assert_error(response, 429, "throttled")
    assert response.headers["retry-after"] == "1"


def test_oversized_requests_are_413(api: TestClient) -> None:
    assert_error(api.get("/devices?cursor=" + "a" * 5000, headers=AUTH), 413, "request_too_large")
    assert_error(api.post("/devices", content=b"x" * 20_000, headers=AUTH), 413)


def test_unknown_route_and_method_use_the_error_body(api: TestClient) -> None:
    assert_error(api.get("/nope", headers=AUTH), 404, "not_found")
    assert_error(api.delete("/devices", headers=AUTH), 405, "method_not_allowed")


def test_unexpected_errors_are_json_500(api: TestClient, stores: Stores) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("secret detail")

    stores.devices.get = boom  # type: ignore[method-assign]
    response = api.get("/devices/dev-000000", headers=AUTH)
    assert_error(response, 500, "internal_error")
    assert "secret" not in response.text


def test_correlation_id_is_echoed_or_created(api: TestClient) -> None:
    assert (
        api.get("/health", headers={"x-correlation-id": "abc-123"}).headers["x-correlation-id"] == "abc-123"
    )
    generated = api.get("/health", headers={"x-correlation-id": "bad id!"}).headers["x-correlation-id"]
    assert generated
    assert generated != "bad id!"


def test_openapi_documents_key_and_errors(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "x-api-key"
    aggregates = doc["paths"]["/devices/{device_id}/aggregates"]["get"]
    assert {"400", "403", "404", "413", "422", "429"} <= set(aggregates["responses"])
    assert "security" not in doc["paths"]["/health"]["get"]
