"""SageMaker runtime adapter: one InvokeEndpoint call, the only SageMaker call shipped code makes.

Used by the detector's SageMaker backend (``functions.detector.anomaly_detector.SageMakerDetector``),
which imports this module only when that backend is configured, so the embedded path and the serving
image never load the AWS SDK. The client comes from ``functions.adapters.clients`` with the detector's
timeout (a hung endpoint is the detector's failure policy to handle, not a long botocore retry).
"""

from __future__ import annotations

from typing import Any

from functions.adapters.client_errors import translate_client_error
from functions.adapters.clients import client


class SageMakerEndpoint:
    """The detector's ``ScoringEndpoint`` port (``functions.detector.interface``) on one endpoint."""

    def __init__(self, endpoint_name: str, runtime: Any | None = None) -> None:
        self.endpoint_name = endpoint_name
        self._client = runtime  # None: the process's shared sagemaker-runtime client, created at first use

    def invoke(self, body: str) -> bytes:
        if self._client is None:
            self._client = client("sagemaker-runtime")
        try:
            response = self._client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            )
            payload: bytes = response["Body"].read()
        except Exception as exc:  # the endpoint's error (ModelError, throttling), a timeout, a reset
            raise translate_client_error(exc, "sagemaker.invoke_endpoint") from exc
        return payload
