"""The serving process's SageMaker contract, against the real process (python -m serving, as `serve`).

No emulator: the model server is a process of its own on 127.0.0.1, what ``iotpipe up --detector
sagemaker`` and the SageMaker backend's pipeline tests run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import botocore.exceptions
import httpx
import numpy as np
import pytest

from functions.detector.anomaly_detector import build_embedded
from iotpipe.local.model_server import ModelServer


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    started = time.monotonic()
    srv = ModelServer(endpoint_name="contract-test").start()
    srv.ready_after_s = time.monotonic() - started  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()


def test_ping_answers_within_two_seconds_and_a_full_batch_is_scored(server: ModelServer) -> None:
    # GIVEN a started server: it loads the artifact before it listens, so listening means ready
    assert server.ready_after_s < 10  # type: ignore[attr-defined]
    embedded = build_embedded()
    names = embedded.model.spec.feature_names
    # A processor batch at its largest (BatchSize 10,000 readings), as SageMakerDetector encodes it
    feats = np.random.default_rng(1).normal(size=(10_000, len(names)))
    batch = json.dumps({"features": feats.tolist(), "feature_names": names})
    with httpx.Client(base_url=server.url, timeout=30) as http:
        latencies = []
        for _ in range(5):
            t0 = time.monotonic()
            ping = http.get("/ping")
            latencies.append(time.monotonic() - t0)
            assert ping.status_code == 200
        # THEN /ping answers within SageMaker's 2 s and says which model it serves
        assert max(latencies) < 2.0, latencies
        assert ping.json()["model_version"] == embedded.model_version
        # AND the full batch gets one score per row, the embedded backend's
        answer = http.post("/invocations", content=batch, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert answer.json()["scores"] == embedded.score_features(feats).tolist()


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"{not json", "application/json", 400, "invalid_json"),
    (b"[1, 2, 3]", "application/json", 400, "invalid_features"),
    (b'{"rows": []}', "application/json", 400, "invalid_features"),
    (b'{"features": [[1, 2], [3]]}', "application/json", 400, "invalid_features"),
    (b'{"features": [["a", "b"]]}', "application/json", 400, "invalid_features"),
    (b'{"features": [[1.0, 2.0]]}', "application/json", 400, "invalid_features"),  # the wrong width
    (b'{"features": [], "feature_names": ["x"]}', "application/json", 409, "feature_mismatch"),
    (b'{"features": []}', "text/csv", 415, "unsupported_media_type"),
])
def test_a_malformed_invocation_gets_a_4xx_json_error(server: ModelServer, body: bytes, content_type: str,
                                                      status: int, code: str) -> None:
    response = httpx.post(f"{server.url}/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999"])
def test_non_finite_features_are_refused(server: ModelServer, value: str) -> None:
    names = build_embedded().model.spec.feature_names
    row = ", ".join(["0.0"] * (len(names) - 1) + [value])
    response = httpx.post(f"{server.url}/invocations", content=f'{{"features": [[{row}]]}}',
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_features")


def test_boto3s_runtime_client_gets_the_embedded_models_scores_and_its_errors(server: ModelServer) -> None:
    # GIVEN the real sagemaker-runtime client pointed at the server, as the processor's is locally
    runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
    embedded = build_embedded()
    feats = np.random.default_rng(7).normal(size=(25, len(embedded.model.spec.feature_names)))
    # WHEN it invokes the endpoint with what SageMakerDetector sends
    answer = runtime.invoke_endpoint(
        EndpointName="contract-test", ContentType="application/json", Accept="application/json",
        Body=json.dumps({"features": feats.tolist(), "feature_names": embedded.model.spec.feature_names}))
    # THEN the scores are the embedded backend's, bit for bit
    assert json.loads(answer["Body"].read())["scores"] == embedded.score_features(feats).tolist()
    # AND a malformed body is the runtime's ModelError carrying the container's 400, an unknown endpoint a
    # ValidationError, as on SageMaker
    with pytest.raises(botocore.exceptions.ClientError) as model_error:
        runtime.invoke_endpoint(EndpointName="contract-test", ContentType="application/json", Body=b"{")
    assert model_error.value.response["Error"]["Code"] == "ModelError"
    assert model_error.value.response["OriginalStatusCode"] == 400
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="another", ContentType="application/json", Body=b"{}")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"


def test_a_body_over_sagemakers_payload_limit_is_refused_unread(server: ModelServer) -> None:
    response = httpx.post(f"{server.url}/invocations", content=b" " * (6 * 1024 * 1024 + 1),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
