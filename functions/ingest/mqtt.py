"""IoT ingest: the function IoT Core's topic rules invoke for messages on a device's readings topic.

Template handler: ``functions.ingest.mqtt.handler`` (``IotIngestFunction``, ``IotCoreIngest=enabled``).

Who may write: the thing whose certificate published the message. The device policy lets a certificate
publish only to ``<stack>/devices/<its thing name>/readings``, so the topic names the publisher, and the
rules hand it over as ``iot_thing_name`` (``topic(3)``) beside the message's own fields. A reading
whose ``device_id`` is that thing goes on the stream with the thing name as partition key, as the other
producers do; anything else - another device's id, no id, a payload that is not a JSON object - never
enters the stream: it is counted (``ReadingsRefused`` by ``Reason``) and logged, the MQTT analogue of
POST /ingest's 403 ``device_mismatch`` (a device gets no answer over MQTT, so the count is what shows it).

It is reached two ways (cloudformation/template.yaml). With ``IotRuleAction=sqs`` (the embedded
emulator, whose rules engine has no Kinesis action) the readings rule queues each message and the
function takes them in batches from the queue (an SQS event: one PutRecords per batch; its WHERE
already keeps the thing's own readings, and this function checks again). On every target the
refused-readings rule (the complement of that WHERE) invokes it directly with one message. Shape is not
checked here: the processor validates every record and quarantines what fails with its reason, exactly
as for records the Kinesis action stores on AWS.

Nothing is dropped on a failure: a queued message the stream does not take (after the adapter's
retries) is reported in ``batchItemFailures`` and delivered again (after maxReceiveCount, the dead-letter
queue); a direct invocation raises, so Lambda retries the event, then sends it to the dead-letter
queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aws_lambda_powertools import Logger

from functions.adapters.kinesis import KinesisPublisher
from functions.adapters.metrics import get_metrics_sink
from functions.core.ports import MetricsSink, Publisher
from functions.settings import get_settings

logger = Logger(service="iot-ingest")

THING_FIELD = "iot_thing_name"  # the rules' `topic(3) AS iot_thing_name`
REFUSED_METRIC = "ReadingsRefused"

_publisher: KinesisPublisher | None = None


class StreamUnavailable(RuntimeError):
    """The stream did not take a reading after the adapter's retries (Lambda retries the event)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    thing: str
    refused: str | None = None  # the reason, when the message never entered the stream
    sequence_number: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.refused:
            return {"status": "refused", "thing": self.thing, "reason": self.refused}
        return {"status": "stored", "thing": self.thing, "sequence_number": self.sequence_number}


def refusal(reading: dict[str, Any], thing: str) -> str | None:
    """Why this message is not a reading of ``thing`` (None: it is, as far as the binding goes)."""
    if not reading:
        # The rules engine projects no field out of a payload that is not a JSON object.
        return "not_json_object"
    device_id = reading.get("device_id")
    if device_id is None:
        return "no_device_id"
    if device_id != thing:
        return "device_mismatch"
    return None


def _refused(reading: dict[str, Any], thing: str, metrics: MetricsSink) -> str | None:
    """The refusal reason, counted and logged (None: the reading is the thing's own)."""
    reason = refusal(reading, thing)
    if reason is not None:
        metrics.add(REFUSED_METRIC, 1, dimensions={"Reason": reason})
        claimed = reading.get("device_id")
        logger.warning(
            "MQTT message refused",
            extra={"thing": thing, "reason": reason, "claimed": str(claimed)[:64] if claimed else None},
        )
    return reason


def ingest_message(event: dict[str, Any], publisher: Publisher, metrics: MetricsSink) -> Outcome:
    """One rule invocation: the message's fields plus ``iot_thing_name``."""
    thing = event.get(THING_FIELD)
    if not isinstance(thing, str) or not thing:
        # Not a device's doing: a rule without `topic(3) AS iot_thing_name`. Raising keeps the event
        # (Lambda retries, then the dead-letter queue) instead of guessing who sent it.
        raise ValueError(f"the rule event carries no {THING_FIELD}: the topic rule's SELECT must add it")
    reading = {key: value for key, value in event.items() if key != THING_FIELD}
    reason = _refused(reading, thing, metrics)
    if reason is not None:
        return Outcome(thing, refused=reason)
    (put,) = publisher.put_records([(orjson.dumps(reading), thing)])
    if not put.ok:
        raise StreamUnavailable(f"reading of {thing} not stored ({put.error_code}); the event is retried")
    return Outcome(thing, sequence_number=put.sequence_number)


def ingest_queued(records: list[dict[str, Any]], publisher: Publisher,
                  metrics: MetricsSink) -> dict[str, Any]:
    """A batch from the readings queue: each body is one rule event. Returns the partial-batch response
    (the message ids to deliver again)."""
    failures: list[str] = []
    stored: list[tuple[str, bytes, str]] = []  # (message id, reading, thing)
    for record in records:
        message_id = str(record.get("messageId"))
        try:
            event = orjson.loads(record.get("body") or b"")
            thing = event.get(THING_FIELD) if isinstance(event, dict) else None
            if not isinstance(thing, str) or not thing:
                raise ValueError(f"no {THING_FIELD}")
        except (orjson.JSONDecodeError, ValueError) as exc:
            # The rule always writes a JSON object with the thing name: anything else is a misconfigured
            # rule, kept (redelivered, then dead-lettered) rather than guessed about.
            logger.error("queued message is not a rule event",
                         extra={"message_id": message_id, "error": str(exc)})
            failures.append(message_id)
            continue
        reading = {key: value for key, value in event.items() if key != THING_FIELD}
        if _refused(reading, thing, metrics) is not None:
            continue
        stored.append((message_id, orjson.dumps(reading), thing))
    if stored:
        results = publisher.put_records([(data, thing) for _, data, thing in stored])
        failures += [mid for (mid, _, _), put in zip(stored, results, strict=True) if not put.ok]
    if failures:
        logger.warning("queued readings to retry", extra={"failed": len(failures), "batch": len(records)})
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _get_publisher() -> KinesisPublisher:
    global _publisher
    if _publisher is None:
        _publisher = KinesisPublisher(get_settings().stream_name)
    return _publisher


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics = get_metrics_sink(service="iot-ingest")
    try:
        if isinstance(event.get("Records"), list):
            return ingest_queued(event["Records"], _get_publisher(), metrics)
        return ingest_message(event, _get_publisher(), metrics).to_json()
    finally:
        metrics.flush()
