"""The adapters behind the device credential lookup, the cursor signing secret and the SageMaker endpoint:
their requests and their error translation, with botocore's Stubber (real clients, no network)."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from functions.adapters.devices import DynamoDeviceRegistry
from functions.adapters.sagemaker import SageMakerEndpoint
from functions.adapters.secrets import SecretsManagerSecrets
from functions.core.errors import StoreError, StoreThrottled

HASH = "sha256:" + "ab" * 32


def _client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


# ---------------------------------------------------------------- devices: the credential hash


def test_the_credential_lookup_reads_only_the_hash() -> None:
    ddb = _client("dynamodb")
    registry = DynamoDeviceRegistry("devices", ddb)
    with Stubber(ddb) as stub:
        for device_id, answer in [
            ("dev-1", {"Item": {"credential_hash": {"S": HASH}}}),
            ("dev-legacy", {"Item": {"device_id": {"S": "dev-legacy"}}}),  # registered before credentials
            ("dev-odd", {"Item": {"credential_hash": {"S": "plain-text"}}}),  # not a hash: never matches
            ("dev-none", {}),
        ]:
            expected = {"TableName": "devices", "Key": {"device_id": {"S": device_id}},
                        "ProjectionExpression": "credential_hash"}
            stub.add_response("get_item", answer, expected)
        found = [registry.credential_hash(d) for d in ("dev-1", "dev-legacy", "dev-odd", "dev-none")]
        stub.assert_no_pending_responses()
    assert found == [HASH, None, None, None]


def test_a_throttled_credential_lookup_is_a_store_error_not_an_unknown_device() -> None:
    ddb = _client("dynamodb")
    with Stubber(ddb) as stub:
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException", http_status_code=400)
        with pytest.raises(StoreThrottled):
            DynamoDeviceRegistry("devices", ddb).credential_hash("dev-1")


# ---------------------------------------------------------------- Secrets Manager


ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:cursor-abc123"


@pytest.mark.parametrize(
    ("answer", "value"),
    [({"SecretString": "s3cret-text"}, b"s3cret-text"), ({"SecretBinary": b"\x00\x01raw"}, b"\x00\x01raw")],
)
def test_a_secret_is_read_as_bytes(answer: dict[str, Any], value: bytes) -> None:
    sm = _client("secretsmanager")
    with Stubber(sm) as stub:
        stub.add_response("get_secret_value", {"ARN": ARN, "Name": "cursor", **answer}, {"SecretId": ARN})
        assert SecretsManagerSecrets(sm).secret_bytes(ARN) == value


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [("AccessDeniedException", 400, False), ("ResourceNotFoundException", 400, False),
     ("InternalServiceError", 500, True)],
)
def test_secrets_manager_errors_become_store_errors(code: str, status: int, transient: bool) -> None:
    sm = _client("secretsmanager")
    with Stubber(sm) as stub:
        stub.add_client_error("get_secret_value", code, http_status_code=status)
        with pytest.raises(StoreError) as raised:
            SecretsManagerSecrets(sm).secret_bytes(ARN)
    assert (raised.value.code, raised.value.transient) == (code, transient)


# ---------------------------------------------------------------- SageMaker runtime


def test_the_endpoint_is_invoked_with_json_and_its_body_returned() -> None:
    runtime = _client("sagemaker-runtime")
    body = json.dumps({"features": [[1.0, 2.0]], "feature_names": ["a", "b"]})
    answer = json.dumps({"scores": [0.7]}).encode()
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"},
            {"EndpointName": "ep-1", "ContentType": "application/json", "Accept": "application/json",
             "Body": body},
        )
        assert SageMakerEndpoint("ep-1", runtime).invoke(body) == answer


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [("ModelError", 424, False), ("ValidationError", 400, False), ("ThrottlingException", 400, True),
     ("ServiceUnavailable", 503, True)],
)
def test_endpoint_errors_become_store_errors(code: str, status: int, transient: bool) -> None:
    runtime = _client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint", code, http_status_code=status)
        with pytest.raises(StoreError) as raised:
            SageMakerEndpoint("ep-1", runtime).invoke("{}")
    assert (raised.value.code, raised.value.transient) == (code, transient)
