"""The scoring server: SageMaker's inference contract around the processor's embedded backend.

Routes
- ``GET /ping``: 200 ``{"status": "ok", "model_version": ...}`` once the artifact is loaded (it loads
  before the server listens, so a listening server is a ready one).
- ``POST /invocations``: what SageMaker forwards to a container. The body is exactly what
  ``functions.detector.anomaly_detector.SageMakerDetector`` sends (``application/json``)::

      {"features": [[f1, ..., fk], ...], "feature_names": ["temperature:dev", ...]}

  and the answer exactly what it parses: ``{"scores": [s1, ...]}``, one score per row, on the artifact's
  scale (higher = more anomalous). Scores come from ``score_features`` of the detector that
  ``build_embedded()`` returns, the same call the Lambda's embedded backend makes on the same artifact.
- ``POST /endpoints/{name}/invocations``: the SageMaker runtime API's path (``InvokeEndpoint``), so a
  boto3 ``sagemaker-runtime`` client pointed here (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``) works
  unchanged. Errors take the runtime's shape: a container 4xx becomes ``424 ModelError`` carrying the
  original status and body, an unknown endpoint name ``400 ValidationError``.

A malformed request never reaches the model: it gets a 4xx with the API's error body
``{"error": {"code": ..., "message": ...}}``: 400 ``invalid_json`` or ``invalid_features`` (not an
object, no ``features``, ragged or non-numeric rows, non-finite values, the wrong width), 409
``feature_mismatch`` (``feature_names`` differ from the model's: the client and the endpoint were built
from different artifacts), 413 ``request_too_large``, 415 ``unsupported_media_type``.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from functions.detector.anomaly_detector import EmbeddedDetector, build_embedded

logger = logging.getLogger("serving")

# SageMaker's own payload limits: 6 MB for a real-time endpoint, 4 MB for a serverless one. The server
# takes the larger; the serverless limit is the client's to respect (docs/model-card.md).
MAX_BODY_BYTES = 6 * 1024 * 1024
JSON = "application/json"


class ModelInputError(Exception):
    """A request the model cannot score: its status, code and message go back as a JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message}})


def parse_features(body: bytes, feature_names: list[str]) -> np.ndarray:
    """The request's feature matrix (rows x len(feature_names)), or ModelInputError saying what is wrong."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ModelInputError(400, "invalid_json", f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "features" not in doc:
        raise ModelInputError(400, "invalid_features", 'body must be an object with "features": [[...], ...]')
    names = doc.get("feature_names")
    if names is not None and names != feature_names:
        raise ModelInputError(
            409, "feature_mismatch",
            f"feature_names {names!r} differ from the model's {feature_names!r}: the client and this "
            "endpoint use different artifacts",
        )
    rows = doc["features"]
    if not isinstance(rows, list):
        raise ModelInputError(400, "invalid_features", '"features" must be a list of rows')
    if not rows:
        return np.empty((0, len(feature_names)), dtype=np.float64)
    try:
        matrix = np.asarray(rows)  # no dtype: strings, nulls and booleans show up in the kind below
    except ValueError:
        raise ModelInputError(400, "invalid_features", "rows are not all lists of the same length") from None
    if matrix.ndim != 2 or matrix.dtype.kind not in "iuf":
        raise ModelInputError(400, "invalid_features", "every row must be a list of numbers")
    width = int(matrix.shape[-1])
    if width != len(feature_names):
        raise ModelInputError(
            400, "invalid_features", f"rows have {width} values, the model takes {len(feature_names)}"
        )
    matrix = matrix.astype(np.float64, copy=False)
    if not np.all(np.isfinite(matrix)):
        raise ModelInputError(400, "invalid_features", "features must be finite numbers")
    return matrix


def create_app(detector: EmbeddedDetector | None = None, endpoint_name: str | None = None) -> FastAPI:
    """The server around ``detector`` (default: ``build_embedded()``, the processor's embedded backend).

    ``endpoint_name``: the runtime path answers only this name (as SageMaker would), None any name.
    """
    detector = detector or build_embedded()
    feature_names = list(detector.model.spec.feature_names)
    version = detector.model_version
    app = FastAPI(title="iotpipe model server", version=version, docs_url=None, redoc_url=None)

    def score(body: bytes) -> bytes:
        feats = parse_features(body, feature_names)
        scores = detector.score_features(feats) if len(feats) else np.empty(0)
        return orjson.dumps({"scores": np.asarray(scores, dtype=np.float64).tolist()})

    async def invoke(request: Request) -> tuple[int, bytes]:
        """(status, body) of the container's answer to one invocation."""
        try:
            body = await _request_body(request)
            # Scoring runs on a worker thread: /ping keeps answering while a big batch is scored.
            return 200, await run_in_threadpool(score, body)
        except ModelInputError as exc:
            logger.warning("invocation refused: %s %s", exc.status, exc.message[:200])
            return exc.status, exc.body()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok", "model_version": version}

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        status, body = await invoke(request)
        return Response(body, status_code=status, media_type=JSON)

    @app.post("/endpoints/{name}/invocations")
    async def runtime_invoke_endpoint(name: str, request: Request) -> Response:
        if endpoint_name is not None and name != endpoint_name:
            return _runtime_error(400, "ValidationError", f"Endpoint {name} not found.")
        status, body = await invoke(request)
        if status >= 400:
            # How the runtime reports a container's error answer (botocore raises ModelError).
            return _runtime_error(
                424, "ModelError",
                f"Received client error ({status}) from primary with message \"{body.decode()}\".",
                OriginalStatusCode=status, OriginalMessage=body.decode(),
            )
        return Response(body, status_code=200, media_type=JSON,
                        headers={"x-Amzn-Invoked-Production-Variant": "AllTraffic"})

    return app


async def _request_body(request: Request) -> bytes:
    """The body of a JSON request within the size limit, or ModelInputError (415, 413)."""
    content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if content_type != JSON:
        raise ModelInputError(415, "unsupported_media_type", f"Content-Type must be {JSON}")
    # The declared length refuses an oversized body before reading it; the read length catches a
    # chunked one that declares none.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ModelInputError(413, "request_too_large", f"body over {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ModelInputError(413, "request_too_large", f"body over {MAX_BODY_BYTES} bytes")
    return body


def _runtime_error(status: int, error_type: str, message: str, **fields: Any) -> Response:
    return Response(orjson.dumps({"message": message, **fields}), status_code=status, media_type=JSON,
                    headers={"x-amzn-ErrorType": error_type})


def main(argv: list[str] | None = None) -> int:
    """``serve``: load the artifact, then listen (SageMaker: port 8080 on every interface)."""
    import uvicorn  # deferred: tests build the app without a server

    parser = argparse.ArgumentParser(prog="serve", description="the model behind SageMaker's contract")
    # Locally the server binds the loopback interface only; the container sets SERVE_HOST so that
    # SageMaker's front end can reach it.
    parser.add_argument("--host", default=os.environ.get("SERVE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVE_PORT", "8080")))
    parser.add_argument("--endpoint-name", default=os.environ.get("SERVE_ENDPOINT_NAME") or None,
                        help="answer the runtime path for this endpoint only (default: any name)")
    parser.add_argument("--log-level", default=os.environ.get("SERVE_LOG_LEVEL", "warning"))
    # SageMaker passes "serve" as the container's argument; accept it when run as the entrypoint.
    parser.add_argument("command", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(endpoint_name=args.endpoint_name)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
