"""Issue 11: the live view's failure counters (/stats) and stage-preserving trailing-slash redirects."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from functions.api.deps import get_now, get_stores
from functions.api.main import app
from functions.settings import get_settings
from testkit.fakes import MemoryTotals
from testkit.seed import seeded_stores

KEY = "unit-test-key"
NOW = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("API_KEY", KEY)
    get_settings.cache_clear()
    stores = dataclasses.replace(
        seeded_stores(now=NOW, devices=2, minutes=5),
        metrics=MemoryTotals({"RecordsRetried": 744, "ArchiveWriteFailures": 31, "AlertsFailed": 2,
                              "RecordsIn": 2000},
                             by_dimension={"RecordsRejected": {"unknown_device": 1403, "schema_invalid": 21}},
                             peaks={"RecordsRetried": 100},
                             reasons={"CalibrationFallbacks": {"invalid_calibration": 12}}),
    )
    app.dependency_overrides[get_stores] = lambda: stores
    app.dependency_overrides[get_now] = lambda: NOW
    yield TestClient(app, raise_server_exceptions=False)
    app.dependency_overrides.clear()
    get_settings.cache_clear()


def test_stats_show_the_failures_the_tables_cannot(api: TestClient) -> None:
    body = api.get("/stats", headers={"x-api-key": KEY}).json()
    # a batch of 100 readings retried over and over: 744 hand-backs, 100 readings held back
    assert body["failures_last_hour"] == {
        "records_retried": 744, "readings_held_back_now": 100, "archive_write_failures": 31,
        "alerts_failed": 2, "records_redelivered": 0,
        "calibration_fallbacks": {"invalid_calibration": 12}, "detection_failures": {},
    }
    # AND the readings quarantined, in total and per reason (the figure the tables cannot give either)
    assert body["readings_in_last_hour"] == 2000
    assert body["quarantined_last_hour"] == 1424
    assert body["quarantined_by_reason"] == {"unknown_device": 1403, "schema_invalid": 21}


def test_unreadable_metrics_are_unknown_not_zero(api: TestClient) -> None:
    stores = app.dependency_overrides[get_stores]()
    app.dependency_overrides[get_stores] = lambda: dataclasses.replace(stores, metrics=MemoryTotals(None))
    body = api.get("/stats", headers={"x-api-key": KEY}).json()
    assert body["failures_last_hour"] is None
    assert (body["quarantined_last_hour"], body["quarantined_by_reason"]) == (None, None)


def test_the_live_view_shows_the_failure_counters(api: TestClient) -> None:
    html = api.get("/dashboard").text
    for counter in ("c-quarantined", "c-held-back", "c-archive-failures", "c-alerts-failed", "c-fallbacks"):
        assert f'id="{counter}"' in html
    for field in ("failures_last_hour", "readings_held_back_now", "quarantined_by_reason"):
        assert field in html


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        ("https://abc.execute-api.eu-west-1.amazonaws.com/prod/dashboard/",
         "https://abc.execute-api.eu-west-1.amazonaws.com/prod/dashboard"),
        ("http://127.0.0.1:4566/_aws/execute-api/abc/prod/dashboard/?k=1",
         "http://127.0.0.1:4566/_aws/execute-api/abc/prod/dashboard?k=1"),
        ("http://127.0.0.1:8000/dashboard/", "http://127.0.0.1:8000/dashboard"),
    ],
)
def test_trailing_slash_redirect_keeps_stage_scheme_and_host(
    api: TestClient, used: str, expected: str
) -> None:
    # GIVEN the app behind a prefix it cannot see (API Gateway strips the stage before the app)
    query = used.partition("?")[2]
    response = api.get("/dashboard/" + (f"?{query}" if query else ""), follow_redirects=False)
    # THEN the redirect is relative, so the browser resolves it against the URL it actually used
    assert response.status_code == 307
    assert urljoin(used, response.headers["location"]) == expected


def test_unknown_paths_with_a_slash_are_still_404(api: TestClient) -> None:
    assert api.get("/nope/", follow_redirects=False).status_code == 404
