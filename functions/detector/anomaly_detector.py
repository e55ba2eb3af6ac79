"""The anomaly detector behind one interface: embedded numpy model (default) or a SageMaker endpoint.

Both backends share the feature builder and the artifact's metadata (feature spec, threshold, severity
cuts, attribution normalisation); they differ only in who computes the Isolation Forest score.

Per-device state (previous reading, current 1-minute window sums, run lengths) lives in the builder's
bounded LRU inside this process. On a cold start, or for a device evicted from the LRU, the first reading
has no context: its rate-of-change, window z-score and run-length features are 0 and its window statistics
start at that reading. It can still be flagged through its raw value and its deviation from the device
baseline; context-dependent anomalies (a jump, a stuck sensor) become visible from the next reading on.
Kinesis routes a device's readings to one shard and one shard to one container at a time, so the state is
normally warm.

SageMaker failure policy (``SAGEMAKER_FAILURE_POLICY``), applied on timeout or any endpoint error:
- ``fallback`` (default): score the batch with the embedded model instead; verdicts are complete.
- ``skip``: keep every record but do not score it (``severity="none"``, reason says why); no anomalies.
- ``fail``: raise ``DetectorUnavailable``; the processor fails the batch so Kinesis redelivers it.
Each failure is counted; the processor publishes the count as ``DetectorBackendFailures`` (its
``Policy`` dimension says which of the three applied).

The SageMaker serving container (``serving/``) scores with the embedded backend that
``build_embedded`` returns, so the endpoint and the Lambda compute the same scores from the same artifact.

No AWS SDK here: the endpoint is called through the ``ScoringEndpoint`` port, whose SageMaker adapter
(``functions.adapters.sagemaker``) is imported only when that backend is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from functions.core.readings import Reading
from functions.detector.envelope import Envelope, combine_scores
from functions.detector.features import FeatureBuilder, FeatureSpec
from functions.detector.iforest import IsolationForestScorer
from functions.detector.interface import (
    Detector,
    FailureCountingDetector,
    ScoringEndpoint,
    StatefulDetector,
    Verdict,
)
from functions.settings import ProcessorSettings, get_settings

ARTIFACT_NAME = "iforest-v1.json"
# A serverless SageMaker endpoint takes at most 4 MB per request (real-time: 6 MB). A feature row is sent as
# JSON floats of at most ~24 characters each: a batch is split into calls that stay under this budget.
MAX_REQUEST_BYTES = 3_500_000
JSON_BYTES_PER_VALUE = 24
SEVERITIES: tuple[str, ...] = ("none", "low", "medium", "high", "critical")


class DetectorUnavailable(RuntimeError):
    """The configured scoring backend failed and the policy says to fail the batch."""


def default_artifact_path(settings: ProcessorSettings | None = None) -> Path:
    """Settings path, else the copy the build puts beside this module, else the repository's model/."""
    settings = settings or get_settings()
    if settings.model_artifact_path:
        return Path(settings.model_artifact_path)
    bundled = Path(__file__).resolve().parent / "artifacts" / ARTIFACT_NAME
    if bundled.exists():
        return bundled
    return Path(__file__).resolve().parents[2] / "model" / "artifacts" / ARTIFACT_NAME


def load_artifact(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return json.load(handle)


def _reason(name: str, value: float, z: float, raw: float) -> str:
    """A sentence a person can act on, from the feature that stood out most."""
    channel, _, kind = name.partition(":")
    up = value > 0
    if kind == "dev":
        return f"{channel} {abs(value):.1f} σ {'above' if up else 'below'} device baseline"
    if kind == "roc":
        return f"{channel} {'jumped' if up else 'dropped'} {abs(value):.1f} σ since the previous reading"
    if kind == "wz":
        return f"{channel} {abs(value):.1f} σ {'above' if up else 'below'} its 1-minute window mean"
    if kind == "wmean":
        return f"{channel} 1-minute mean {abs(value):.1f} σ {'above' if up else 'below'} device baseline"
    if kind == "wstd":
        if z > 0:
            return f"{channel} 1-minute spread {value:.1f}x its normal noise"
        return f"{channel} unusually flat within its 1-minute window"
    if kind == "flat":
        who = "every channel" if channel == "all" else channel
        return f"{who} repeated the same value {int(value)} times in a row (stuck sensor?)"
    return f"{channel} = {raw:.2f}, {abs(z):.1f} σ {'above' if z > 0 else 'below'} its normal range"


class ArtifactModel:
    """What both backends need from the artifact besides the forest: features, threshold, attribution."""

    def __init__(self, artifact: dict[str, Any], max_devices: int = 20_000) -> None:
        self.artifact = artifact
        self.version = str(artifact["model_version"])
        self.spec = FeatureSpec.from_dict(artifact["feature_spec"])
        self.builder = FeatureBuilder(self.spec, max_devices=max_devices)
        self.threshold = float(artifact["threshold"])
        cuts = artifact["severity_cuts"]
        self._cuts = np.array([self.threshold, cuts["medium"], cuts["high"], cuts["critical"]])
        norm = artifact["normalisation"]
        self._center = np.asarray(norm["center"], dtype=np.float64)
        self._scale = np.asarray(norm["scale"], dtype=np.float64)
        self.envelope = (
            Envelope.from_dict(artifact["envelope"], self._scale) if "envelope" in artifact else None
        )
        self._names = self.spec.feature_names
        self._channels = self.spec.channels
        self._center_by_channel = dict(zip(self.spec.channels, self.spec.center, strict=True))

    def features(self, readings: Sequence[Reading]) -> tuple[np.ndarray, np.ndarray]:
        """(features in the caller's order, raw values) -- rows are processed grouped by device."""
        n = len(readings)
        keys = [r.device_id for r in readings]
        order = None
        if any(
            (keys[i], readings[i].epoch_ms) > (keys[i + 1], readings[i + 1].epoch_ms) for i in range(n - 1)
        ):
            order = sorted(range(n), key=lambda i: (keys[i], readings[i].epoch_ms))
            readings = [readings[i] for i in order]
            keys = [keys[i] for i in order]
        center = self._center_by_channel
        values = np.array(
            [[r.channels.get(ch, center[ch]) for ch in self._channels] for r in readings], dtype=np.float64
        ).reshape(n, len(self._channels))
        baselines = np.array(
            [
                [
                    (r.device.baseline.get(ch, center[ch]) if r.device is not None else center[ch])
                    for ch in self._channels
                ]
                for r in readings
            ],
            dtype=np.float64,
        ).reshape(n, len(self._channels))
        epoch_ms = np.fromiter((r.epoch_ms for r in readings), dtype=np.int64, count=n)
        feats = self.builder.transform(keys, epoch_ms, values, baselines)
        if order is not None:
            inverse = np.empty(n, dtype=np.int64)
            inverse[np.asarray(order)] = np.arange(n)
            feats, values = feats[inverse], values[inverse]
        return feats, values

    def verdicts(self, scores: np.ndarray, feats: np.ndarray, values: np.ndarray) -> list[Verdict]:
        if self.envelope is not None:
            scores = combine_scores(scores, self.envelope.excess(feats), self.threshold)
        # Attribution: the feature furthest from its training distribution, in training standard deviations.
        z = (feats - self._center) / self._scale
        top = np.argmax(np.abs(z), axis=1)
        ranks = np.searchsorted(self._cuts, scores, side="right")  # 0 below threshold .. 4 critical
        out = []
        for i, score in enumerate(scores.tolist()):
            rank = int(ranks[i])
            j = int(top[i])
            name = self._names[j]
            if rank:
                channel = name.partition(":")[0]
                raw = (
                    float(values[i, self._channels.index(channel)]) if channel in self._channels else math.nan
                )
                reason = _reason(name, float(feats[i, j]), float(z[i, j]), raw)
            else:
                reason = ""
            out.append(
                Verdict(
                    score=score,
                    is_anomaly=rank > 0,
                    severity=SEVERITIES[rank],
                    severity_rank=rank,
                    top_feature=name,
                    reason=reason,
                    threshold=self.threshold,
                    model_version=self.version,
                )
            )
        return out

    def unscored(self, n: int, why: str) -> list[Verdict]:
        return [Verdict(0.0, False, "none", 0, "", why, self.threshold, self.version) for _ in range(n)]


class EmbeddedDetector:
    """Scores in-process with the numpy Isolation Forest (no scikit-learn, no boto3)."""

    def __init__(
        self, artifact: dict[str, Any] | Path | str | None = None, max_devices: int = 20_000
    ) -> None:
        if artifact is None:
            artifact = default_artifact_path()
        if not isinstance(artifact, dict):
            artifact = load_artifact(Path(artifact))
        self.model = ArtifactModel(artifact, max_devices=max_devices)
        self.scorer = IsolationForestScorer(artifact["forest"])

    @property
    def model_version(self) -> str:
        return self.model.version

    def score_features(self, feats: np.ndarray) -> np.ndarray:
        return self.scorer.anomaly_score(feats)

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        if not readings:
            return []
        feats, values = self.model.features(readings)
        return self.model.verdicts(self.score_features(feats), feats, values)


class SageMakerDetector:
    """Features and verdicts locally, scores from a SageMaker endpoint (``sagemaker-runtime``).

    Endpoint contract: request ``{"features": [[...], ...], "feature_names": [...]}`` (application/json),
    response ``{"scores": [...]}``: the anomaly score per row, higher = more anomalous, on the same scale as
    the artifact's threshold (e.g. the embedded model served by a SageMaker container, or a bigger
    forest retrained with the same features and threshold procedure).
    """

    def __init__(
        self,
        endpoint: str,
        timeout_s: float,
        policy: str,
        embedded: EmbeddedDetector,
        runtime: ScoringEndpoint | None = None,
    ) -> None:
        if policy not in ("fallback", "skip", "fail"):
            raise ValueError(f"unknown SageMaker failure policy {policy!r}")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.policy = policy
        # The embedded detector owns the feature state and the artifact metadata; with "fallback" it also
        # scores when the endpoint fails, so per-device state stays continuous either way.
        self.embedded = embedded
        from concurrent.futures import ThreadPoolExecutor  # deferred: only this backend needs threads

        self._runtime = runtime or _sagemaker_endpoint(endpoint)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sagemaker")
        self.failures = 0  # since the start of the container
        self._undrained = 0  # since the processor last collected them (drain_failures)

    def drain_failures(self) -> dict[str, int]:
        """Failures since the last call, by the policy that handled them (the processor's metric)."""
        out = {self.policy: self._undrained} if self._undrained else {}
        self._undrained = 0
        return out

    def _invoke(self, feats: np.ndarray) -> np.ndarray:
        """Scores of every row, in as many calls as the request size limit needs (in order)."""
        rows = max(1, MAX_REQUEST_BYTES // (JSON_BYTES_PER_VALUE * max(1, feats.shape[1]) + 4))
        if len(feats) <= rows:
            return self._invoke_once(feats)
        return np.concatenate([self._invoke_once(feats[i : i + rows]) for i in range(0, len(feats), rows)])

    def _invoke_once(self, feats: np.ndarray) -> np.ndarray:
        body = json.dumps(
            {"features": feats.tolist(), "feature_names": self.embedded.model.spec.feature_names}
        )
        payload = self._runtime.invoke(body)
        scores = np.asarray(json.loads(payload)["scores"], dtype=np.float64)
        if scores.shape != (len(feats),) or not np.all(np.isfinite(scores)):
            raise ValueError(f"endpoint returned {scores.shape} scores for {len(feats)} rows")
        return scores

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        if not readings:
            return []
        model = self.embedded.model
        feats, values = model.features(readings)
        # The call runs in a worker thread so that a hung endpoint cannot hold the batch past the timeout
        # (botocore's own read timeout is per socket read and the shared client uses a generous one).
        future = self._pool.submit(self._invoke, feats)
        try:
            scores = future.result(timeout=self.timeout_s)
        except Exception as exc:  # timeout (concurrent.futures.TimeoutError) or any endpoint error
            # A call still queued behind a hung one is dropped, so a recovered endpoint is not first
            # sent a backlog of batches that have already been handled by the policy.
            future.cancel()
            self.failures += 1
            self._undrained += 1
            if self.policy == "fallback":
                return model.verdicts(self.embedded.score_features(feats), feats, values)
            if self.policy == "skip":
                return model.unscored(
                    len(readings), f"not scored: SageMaker unavailable ({type(exc).__name__})"
                )
            raise DetectorUnavailable(f"SageMaker endpoint {self.endpoint!r} failed: {exc!r}") from exc
        return model.verdicts(scores, feats, values)


def _sagemaker_endpoint(endpoint: str) -> ScoringEndpoint:
    # Deferred: the embedded path and the serving image never load the adapters (nor the AWS SDK).
    from functions.adapters.sagemaker import SageMakerEndpoint

    return SageMakerEndpoint(endpoint)


def build_embedded(settings: ProcessorSettings | None = None) -> EmbeddedDetector:
    """The embedded backend as the processor runs it; the serving container (serving/) loads the same."""
    return EmbeddedDetector(default_artifact_path(settings))


@lru_cache(maxsize=1)
def get_detector() -> Detector:
    """The process-wide detector chosen by settings (cached: the artifact loads once per container)."""
    from functions.detector.calibrated import CalibratedDetector

    settings = get_settings()
    embedded = build_embedded(settings)
    fleet: Detector = embedded
    if settings.detector_backend == "sagemaker":
        if not settings.sagemaker_endpoint:
            raise ValueError("DETECTOR_BACKEND=sagemaker needs SAGEMAKER_ENDPOINT")
        # Typed as the protocol the per-device detector checks for, so mypy proves it is met.
        sagemaker: FailureCountingDetector = SageMakerDetector(
            settings.sagemaker_endpoint,
            settings.sagemaker_timeout_s,
            settings.sagemaker_failure_policy,
            embedded,
        )
        fleet = sagemaker
    # Devices with their own calibration are scored by it; the fleet model scores everything else.
    # (StatefulDetector: what the processor's anomaly stage drains and persists after each batch.)
    detector: StatefulDetector = CalibratedDetector(fleet)
    return detector
