"""The auth matrix (docs/security.md) through the deployed API Gateway: which credential reaches what.

Devices write POST /ingest with a credential of their own (``Authorization: Device <id>.<secret>``),
checked at the edge by the device authorizer where the gateway runs Lambda authorizers (ministack, AWS)
and by the ingest function itself where it does not (LocalStack 4.14 community); readers hold the reader
key (``x-api-key``). Each row asserts what the target under test does: where the targets differ, the
expected answer names the target (IOTPIPE_TARGET), so no row passes vacuously.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import pytest

from functions.adapters.clients import client
from simulator.credentials import authorization, device_secret, hash_secret
from testkit.events import reading_doc

pytestmark = pytest.mark.integration
TARGET = os.environ.get("IOTPIPE_TARGET", "embedded")
# Where API Gateway runs the device authorizer and applies the template's gateway responses.
EDGE_AUTHORIZER = TARGET in ("embedded", "aws")
FLEET_SECRET = f"it-fleet-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def devices(deployed_stack: dict[str, str]) -> dict[str, str]:
    """Two registered devices (A, B) with credentials, as `simulator register` writes them."""
    prefix = f"it-auth-{uuid.uuid4().hex[:8]}"
    ids = {"a": f"{prefix}-a", "b": f"{prefix}-b"}
    ddb = client("dynamodb")
    for device_id in ids.values():
        ddb.put_item(
            TableName=deployed_stack["DevicesTableName"],
            Item={
                "device_id": {"S": device_id},
                "site": {"S": "auth matrix"},
                "credential_hash": {"S": hash_secret(device_id, device_secret(FLEET_SECRET, device_id))},
            },
        )
    return ids


def device(device_id: str, fleet_secret: str = FLEET_SECRET) -> dict[str, str]:
    return {"authorization": authorization(fleet_secret, device_id)}


def post(http: httpx.Client, docs: list[dict[str, Any]], headers: dict[str, str]) -> httpx.Response:
    return http.post("ingest", json=docs, headers={"content-type": "application/json", **headers})


def assert_error(response: httpx.Response, status: int, code: str, *, gateway: bool) -> None:
    """A JSON error with ``status``. Errors the gateway itself answers have the template's shape where
    gateway responses are applied, and LocalStack's built-in ``{"message": ...}`` where they are not."""
    assert response.status_code == status, response.text
    body = response.json()
    if gateway and TARGET == "localstack":
        assert "message" in body, body
    else:
        assert body["error"]["code"] == code, body


def test_a_device_writes_its_own_readings(http: httpx.Client, devices: dict[str, str]) -> None:
    response = post(http, [reading_doc(devices["a"])], device(devices["a"]))
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["status"] == "accepted"
    assert result["sequence_number"]


def test_a_device_cannot_write_another_devices_readings(http: httpx.Client, devices: dict[str, str]) -> None:
    # A's credential, B's reading (alone, and hidden among A's own): refused whole on every target
    alone = post(http, [reading_doc(devices["b"])], device(devices["a"]))
    mixed = post(http, [reading_doc(devices["a"]), reading_doc(devices["b"])], device(devices["a"]))
    for response in (alone, mixed):
        assert_error(response, 403, "device_mismatch", gateway=False)
    assert mixed.json()["indexes"] == [1]


def test_no_credential_is_401(http: httpx.Client, devices: dict[str, str]) -> None:
    response = post(http, [reading_doc(devices["a"])], {})
    # ministack/AWS: the gateway (identity source missing); LocalStack: the ingest function
    assert_error(response, 401, "unauthorized", gateway=False)


def test_the_reader_key_cannot_post_ingest(
    http: httpx.Client, devices: dict[str, str], key: dict[str, str]
) -> None:
    as_header = post(http, [reading_doc(devices["a"])], key)
    as_credential = post(http, [reading_doc(devices["a"])], {"authorization": key["x-api-key"]})
    assert_error(as_header, 401, "unauthorized", gateway=False)
    if EDGE_AUTHORIZER:
        # not of the device credential's form: the gateway's validation expression answers 401
        assert_error(as_credential, 401, "unauthorized", gateway=True)
        assert as_credential.json()["error"]["message"] == "Unauthorized"
    else:
        assert_error(as_credential, 403, "forbidden", gateway=False)


def test_a_wrong_device_credential_is_403(http: httpx.Client, devices: dict[str, str]) -> None:
    wrong_secret = post(http, [reading_doc(devices["a"])], device(devices["a"], "not-the-fleet-secret"))
    unregistered = post(http, [reading_doc(devices["a"] + "-x")], device(devices["a"] + "-x"))
    for response in (wrong_secret, unregistered):
        # the authorizer's Deny answered by the gateway (the ingest function never ran) where it runs, the
        # function's own check elsewhere: the same body docs/api.md shows, on every target
        assert_error(response, 403, "forbidden", gateway=EDGE_AUTHORIZER)
        assert response.json() == {
            "error": {"code": "forbidden", "message": "the device credential is not valid"}}


@pytest.mark.parametrize("path", ["devices", "stats", "anomalies"])
def test_a_device_credential_cannot_read(http: httpx.Client, devices: dict[str, str], path: str) -> None:
    creds = device(devices["a"])
    as_authorization = http.get(path, headers=creds)
    as_api_key = http.get(path, headers={"x-api-key": creds["authorization"]})
    for response in (as_authorization, as_api_key):
        assert_error(response, 403, "forbidden", gateway=True)


def test_the_reader_key_reads(http: httpx.Client, devices: dict[str, str], key: dict[str, str]) -> None:
    response = http.get(f"devices/{devices['a']}", headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device_id"] == devices["a"]
    assert "credential_hash" not in body  # the registry's hash never leaves through the API
    listed = http.get("devices", params={"limit": 1000}, headers=key).json()["items"]
    assert all("credential_hash" not in item for item in listed)
