"""Processor Lambda entry point (template: ``functions.processor.handler.handler``).

Thin on purpose: parse the Kinesis event into records, call the pure ``process_batch`` with ports built
once per container, log one structured summary line, and return the partial-batch response.

Why not Powertools' ``process_partial_response``: it drives a per-record handler, while windowing,
deduplication and the one-write-per-window rule need the whole batch at once. The contract it implements
(``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``) is the same.

The handler never raises for bad data. It can raise only if building the ports fails (misconfiguration),
which is the one case where failing loudly on every invocation is the right thing.

Test stacks (template parameter ``TestHooks=faults``) run ``testkit.fault_handler.handler`` instead, which
builds the same ports around a fault-injecting DynamoDB client and calls :func:`run`; this module knows
nothing of it, and no production bundle contains it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from functions.processor.decode import DecodeRules
from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts, process_batch
from functions.processor.records import KinesisRecord
from functions.settings import get_settings

logger = Logger(service="processor")
copy_config_to_registered_loggers(source_logger=logger, include={"functions"})

_ports: ProcessorPorts | None = None
_config: ProcessorConfig | None = None


class HandBack(RuntimeError):
    """Fails the invocation on purpose: the mapping retries the whole batch (PARTIAL_BATCH_RESPONSE=raise)."""


def build_ports(aggregates_dynamodb: Any | None = None) -> ProcessorPorts:
    """Real adapters, created once per container (the device cache lives as long as the container).

    ``aggregates_dynamodb``: the DynamoDB client of the aggregates adapter (None: the shared one); the
    test hooks pass a fault-injecting wrapper here.
    """
    from functions.adapters.aggregates import DynamoAggregateStore
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.adapters.metrics import get_metrics_sink
    from functions.processor.enrich import DeviceCache

    settings = get_settings()
    aggregates = DynamoAggregateStore(dynamodb=aggregates_dynamodb)
    detector = anomaly_store = alerter = handle = None
    try:
        # The detector stage is a colleague's module; imported lazily so this handler works without it.
        from functions.adapters.alerts import default_alerter
        from functions.adapters.anomalies import DynamoAnomalyStore
        from functions.detector.anomaly_detector import get_detector
        from functions.detector.pipeline_stage import handle_verdicts

        detector, anomaly_store, alerter, handle = (
            get_detector(),
            DynamoAnomalyStore(),
            default_alerter(),
            handle_verdicts,
        )
    except Exception as exc:
        # Aggregates are the primary product: a missing or broken model must not stop the stream (a raising
        # handler blocks the shard forever on ministack). Loud in the logs, and detection resumes on the
        # next cold start once fixed.
        logger.error("anomaly detection disabled: detector unavailable", extra={"error": repr(exc)})
    registry = DynamoDeviceRegistry()
    return ProcessorPorts(
        devices=DeviceCache(registry, ttl_s=settings.device_cache_ttl_s),
        aggregates=aggregates,
        archive=S3Archive(),
        metrics=get_metrics_sink("processor"),
        detector=detector,
        anomaly_store=anomaly_store,
        alerter=alerter,
        handle_verdicts=handle,
        detector_state=registry,  # the per-device detector's carried alarm state, on the device item
    )


def build_config() -> ProcessorConfig:
    settings = get_settings()
    return ProcessorConfig(
        rules=DecodeRules.from_settings(settings),
        window_s=settings.window_seconds,
        write_concurrency=settings.write_concurrency,  # WRITE_CONCURRENCY (template parameter)
        hand_back_whole_batch=settings.partial_batch_response == "raise",
    )


def _get() -> tuple[ProcessorPorts, ProcessorConfig]:
    global _ports, _config
    if _ports is None or _config is None:
        _config = build_config()
        _ports = build_ports()
    return _ports, _config


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ports, config = _get()
    return run(event, context, ports, config)


def run(
    event: dict[str, Any], context: Any, ports: ProcessorPorts, config: ProcessorConfig
) -> dict[str, Any]:
    """One invocation with the given ports: process the batch, log the summary, answer the mapping."""
    records = [KinesisRecord.from_event_record(r) for r in event.get("Records") or []]
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    # The time left bounds the work: what cannot start in time is handed back, not timed out.
    outcome = process_batch(records, ports, config, remaining_ms=remaining)
    summary = outcome.summary()
    if outcome.failed_sequence_numbers and config.hand_back_whole_batch:
        # ministack drops what batchItemFailures reports but retries a failed invocation: fail it. What
        # this invocation put in the table is recognised by the watermarks on the retry.
        logger.warning("batch handed back whole: failing the invocation", extra=summary)
        raise HandBack(f"{outcome.retry} readings handed back for redelivery")
    if outcome.failed_sequence_numbers:
        logger.warning("batch partially failed; redelivery requested", extra=summary)
    else:
        logger.info("batch processed", extra=summary)
    return {"batchItemFailures": outcome.batch_item_failures()}
