"""Processor Lambda entry point (template: ``functions.processor.handler.handler``).

Thin on purpose: parse the Kinesis event into records, call the pure ``process_batch`` with ports built
once per container, log one structured summary line, and return the partial-batch response.

Why not Powertools' ``process_partial_response``: it drives a per-record handler, while windowing,
deduplication and the one-write-per-window rule need the whole batch at once. The contract it implements
(``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``) is the same.

The handler never raises for bad data. It can raise only if building the ports fails (misconfiguration),
which is the one case where failing loudly on every invocation is the right thing, or when a test
injects a crash (``PROCESSOR_FAULTS``, see ``functions/processor/faults.py``; unset in every deployment).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from functions.processor import faults
from functions.processor.decode import DecodeRules
from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts, process_batch
from functions.processor.records import KinesisRecord
from functions.settings import get_settings

logger = Logger(service="processor")
copy_config_to_registered_loggers(source_logger=logger, include={"functions"})

WRITE_CONCURRENCY = 16  # parallel conditional writes (one per window); see ProcessorConfig
_ports: ProcessorPorts | None = None
_config: ProcessorConfig | None = None
_faults: faults.FaultInjectingDynamoDB | None = None  # only when PROCESSOR_FAULTS is set (tests)


class HandBack(RuntimeError):
    """Fails the invocation on purpose: the mapping retries the whole batch (PARTIAL_BATCH_RESPONSE=raise)."""


def build_ports() -> ProcessorPorts:
    """Real adapters, created once per container (the device cache lives as long as the container)."""
    from functions.adapters.aggregates import DynamoAggregateStore
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.adapters.metrics import get_metrics_sink
    from functions.processor.enrich import DeviceCache

    global _faults
    settings = get_settings()
    plan = faults.get_plan()  # None unless a test set PROCESSOR_FAULTS (on an emulator)
    if plan is None:
        aggregates = DynamoAggregateStore()
    else:
        from functions.adapters.clients import client

        _faults = faults.FaultInjectingDynamoDB(client("dynamodb"), plan)
        aggregates = DynamoAggregateStore(dynamodb=_faults)
        logger.warning("fault injection enabled on aggregate writes", extra={"faults": plan.describe()})
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
    return ProcessorPorts(
        devices=DeviceCache(DynamoDeviceRegistry(), ttl_s=settings.device_cache_ttl_s),
        aggregates=aggregates,
        archive=S3Archive(),
        metrics=get_metrics_sink("processor"),
        detector=detector,
        anomaly_store=anomaly_store,
        alerter=alerter,
        handle_verdicts=handle,
    )


def _get() -> tuple[ProcessorPorts, ProcessorConfig]:
    global _ports, _config
    if _ports is None or _config is None:
        settings = get_settings()
        _config = ProcessorConfig(
            rules=DecodeRules.from_settings(settings),
            window_s=settings.window_seconds,
            write_concurrency=WRITE_CONCURRENCY,
            hand_back_whole_batch=settings.partial_batch_response == "raise",
        )
        _ports = build_ports()
    return _ports, _config


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = [KinesisRecord.from_event_record(r) for r in event.get("Records") or []]
    ports, config = _get()
    if _faults is not None:
        _faults.begin_invocation()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    try:
        # The time left bounds the work: what cannot start in time is handed back, not timed out.
        outcome = process_batch(records, ports, config, remaining_ms=remaining)
    except faults.InjectedFault as exc:
        # Report it as an ordinary function error (an unhandled exception): the mapping retries the batch.
        logger.error("injected fault: invocation fails after a partial write", extra={"fault": str(exc)})
        raise RuntimeError(f"injected fault: {exc}") from exc
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
