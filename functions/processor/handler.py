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

from functions.processor import wiring
from functions.processor.batch import ProcessorConfig, ProcessorPorts
from functions.processor.ingestion_processor import process_batch
from functions.processor.records import KinesisRecord
from functions.settings import get_settings

logger = Logger(service="processor")
copy_config_to_registered_loggers(source_logger=logger, include={"functions"})

_ports: ProcessorPorts | None = None
_config: ProcessorConfig | None = None


class HandBack(RuntimeError):
    """Fails the invocation on purpose: the mapping retries the whole batch (PARTIAL_BATCH_RESPONSE=raise)."""


def build_ports(aggregates_dynamodb: Any | None = None) -> ProcessorPorts:
    """Real adapters from the process's settings, created once per container (the device cache lives as
    long as the container); the clients are the shared ones, created at their first call.

    ``aggregates_dynamodb``: the DynamoDB client of the aggregates adapter (None: the shared one); the
    test hooks pass a fault-injecting wrapper here.
    """
    return wiring.build_ports(get_settings(), aggregates_dynamodb=aggregates_dynamodb)


def build_config() -> ProcessorConfig:
    return wiring.build_config(get_settings())


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
