"""The processor's ports and config from a settings object and AWS clients: one wiring, two users.

The Lambda handler builds them from the process's settings with the shared lazily created clients;
``iotpipe rebuild`` builds them from settings made from a stack's outputs with its own clients, and runs
the same stages through them. Nothing here reads the environment: the caller passes the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from functions.processor.batch import ProcessorConfig, ProcessorPorts
from functions.processor.decode import DecodeRules
from functions.processor.enrich import DeviceCache
from functions.settings import ProcessorSettings

logger = logging.getLogger(__name__)

Clients = Callable[[str], Any]  # service name -> boto3 client (functions.adapters.clients.client)


def build_ports(
    settings: ProcessorSettings,
    clients: Clients | None = None,
    *,
    aggregates_dynamodb: Any | None = None,
    detection: bool = True,
) -> ProcessorPorts:
    """Real adapters on ``settings``' resources.

    ``clients``: where each adapter gets its client (None: the process's shared one, created at the first
    call). ``aggregates_dynamodb``: the aggregates adapter's DynamoDB client only (the test hooks pass a
    fault-injecting wrapper). ``detection=False``: no detector, as when it cannot be loaded.
    """
    from functions.adapters.aggregates import DynamoAggregateStore
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.adapters.metrics import get_metrics_sink

    def client(service: str) -> Any:
        return None if clients is None else clients(service)

    dynamodb = client("dynamodb")
    registry = DynamoDeviceRegistry(settings.devices_table, dynamodb)
    ports = ProcessorPorts(
        devices=DeviceCache(registry, ttl_s=settings.device_cache_ttl_s),
        aggregates=DynamoAggregateStore(settings.aggregates_table, aggregates_dynamodb or dynamodb),
        archive=S3Archive(settings.archive_bucket, client("s3")),
        metrics=get_metrics_sink("processor", settings, client("cloudwatch")),
        detector_state=registry,  # the per-device detector's carried alarm state, on the device item
    )
    if not detection:
        return ports
    try:
        # The detector stage is a colleague's module; imported lazily so this works without it.
        from functions.adapters.alerts import default_alerter
        from functions.adapters.anomalies import DynamoAnomalyStore
        from functions.detector.anomaly_detector import get_detector
        from functions.detector.pipeline_stage import handle_verdicts

        ports.detector = get_detector()
        ports.anomaly_store = DynamoAnomalyStore(settings.anomalies_table, dynamodb)
        ports.alerter = default_alerter(settings, dynamodb, client("sns"))
        ports.handle_verdicts = handle_verdicts
    except Exception as exc:
        # Aggregates are the primary product: a missing or broken model must not stop the stream (a raising
        # handler blocks the shard forever on ministack). Loud in the logs, and detection resumes on the
        # next cold start once fixed.
        logger.error("anomaly detection disabled: detector unavailable: %r", exc)
        ports.detector = ports.anomaly_store = ports.alerter = ports.handle_verdicts = None
    return ports


def build_config(settings: ProcessorSettings) -> ProcessorConfig:
    return ProcessorConfig(
        rules=DecodeRules.from_settings(settings),
        window_s=settings.window_seconds,
        write_concurrency=settings.write_concurrency,  # WRITE_CONCURRENCY (template parameter)
        hand_back_whole_batch=settings.partial_batch_response == "raise",
        aggregates_ttl_days=settings.aggregates_ttl_days,
    )
