"""Alerts to SNS with a per-device cooldown that holds across Lambda containers.

The cooldown state is one item per device in the anomalies table: ``(device_id, ts_seq="~alert")``
(``~`` sorts after every ISO timestamp, so time-range queries never return it) with ``last_alert_at``
(epoch seconds) and ``suppressed`` (anomalies not alerted since). Sending is decided by a conditional
UpdateItem, so two containers racing for the same device send one alert; the winner reports the
suppressed count accumulated since the previous alert and resets it.

``should_alert`` is the whole rule as a pure function; the stores only make it atomic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from functions.adapters.client_errors import error_code
from functions.adapters.clients import client
from functions.settings import ProcessorSettings, get_settings

ALERT_SORT_KEY = "~alert"
logger = logging.getLogger(__name__)


def should_alert(last_alert_at: float | None, now: float, cooldown_s: float) -> bool:
    """At most one alert per device per cooldown: send if never alerted or the cooldown has passed."""
    return last_alert_at is None or now - last_alert_at >= cooldown_s


@dataclass(frozen=True)
class Acquired:
    granted: bool
    suppressed_before: int  # suppressed since the previous alert (reported in this alert when granted)


class CooldownStore(Protocol):
    def try_acquire(self, device_id: str, now: float, cooldown_s: float) -> Acquired: ...
    def add_suppressed(self, device_id: str, count: int) -> None: ...


class Publisher(Protocol):
    def publish(self, subject: str, message: str, attributes: dict[str, str]) -> None: ...


class DynamoCooldownStore:
    def __init__(self, table_name: str | None = None, dynamodb: Any = None) -> None:
        self.table_name = table_name or get_settings().anomalies_table
        self._client = dynamodb

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    def _key(self, device_id: str) -> dict[str, Any]:
        return {"device_id": {"S": device_id}, "ts_seq": {"S": ALERT_SORT_KEY}}

    def try_acquire(self, device_id: str, now: float, cooldown_s: float) -> Acquired:
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(device_id),
                UpdateExpression="SET last_alert_at = :now, suppressed = :zero",
                # The same rule as should_alert, evaluated atomically by DynamoDB.
                ConditionExpression="attribute_not_exists(last_alert_at) OR last_alert_at <= :cutoff",
                ExpressionAttributeValues={
                    ":now": {"N": repr(float(now))},
                    ":zero": {"N": "0"},
                    ":cutoff": {"N": repr(float(now - cooldown_s))},
                },
                ReturnValues="ALL_OLD",
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return Acquired(False, 0)
            raise
        old = response.get("Attributes") or {}
        return Acquired(True, int(float(old.get("suppressed", {}).get("N", "0"))))

    def add_suppressed(self, device_id: str, count: int) -> None:
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(device_id),
            UpdateExpression="ADD suppressed :n",
            ExpressionAttributeValues={":n": {"N": str(count)}},
        )


class SnsPublisher:
    def __init__(self, topic_arn: str | None = None, sns: Any = None) -> None:
        self.topic_arn = topic_arn if topic_arn is not None else get_settings().alerts_topic_arn
        self._client = sns

    def publish(self, subject: str, message: str, attributes: dict[str, str]) -> None:
        sns = self._client or client("sns")
        sns.publish(
            TopicArn=self.topic_arn,
            Subject=subject[:100],  # SNS limit
            Message=message,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )


@dataclass(frozen=True)
class AlertOutcome:
    sent: int
    suppressed: int
    failed: int = 0  # devices whose alert could not be sent (logged; the anomalies are stored)


class Alerter:
    """One alert per device per cooldown (the batch's most severe anomaly); the rest are counted."""

    def __init__(self, cooldowns: CooldownStore, publisher: Publisher | None, cooldown_s: float) -> None:
        self.cooldowns = cooldowns
        self.publisher = publisher  # None: alerting disabled (no topic configured)
        self.cooldown_s = cooldown_s

    def notify(self, anomalies: Sequence[dict[str, Any]], now: float) -> AlertOutcome:
        if self.publisher is None or not anomalies:
            return AlertOutcome(0, 0)
        by_device: dict[str, list[dict[str, Any]]] = {}
        for item in anomalies:
            by_device.setdefault(item["device_id"], []).append(item)
        sent = suppressed = failed = 0
        for device_id, items in by_device.items():
            # An alert is a notification about anomalies already stored: a failure to send one (SNS down,
            # the cooldown item unreachable) is counted (AlertsFailed) and logged, never allowed to fail
            # the readings of the batch, and never to stop the other devices' alerts.
            try:
                worst = max(items, key=lambda i: (i["severity_rank"], i["score"]))
                acquired = self.cooldowns.try_acquire(device_id, now, self.cooldown_s)
                extra = len(items) - 1 if acquired.granted else len(items)
                if acquired.granted:
                    self.publisher.publish(*_message(worst, acquired.suppressed_before, len(items)))
                    sent += 1
                if extra:
                    self.cooldowns.add_suppressed(device_id, extra)
                    suppressed += extra
            except Exception as exc:
                logger.warning("alert failed device=%s: %r", device_id, exc)
                failed += 1
        return AlertOutcome(sent, suppressed, failed)


def _message(item: dict[str, Any], suppressed_before: int, in_batch: int) -> tuple[str, str, dict[str, str]]:
    subject = f"[{item['severity']}] anomaly on {item['device_id']}: {item['top_feature']}"
    body = {
        "device_id": item["device_id"],
        "timestamp": item["timestamp"],
        "severity": item["severity"],
        "score": item["score"],
        "threshold": item["threshold"],
        "top_feature": item["top_feature"],
        "reason": item["reason"],
        "site": item.get("site", ""),
        "location": item.get("location", ""),
        "values": item.get("values", {}),
        "suppressed_since_last_alert": suppressed_before,
        "anomalies_in_batch": in_batch,
        "model_version": item.get("model_version", ""),
    }
    return (
        subject,
        json.dumps(body, sort_keys=True),
        {"severity": item["severity"], "device_id": item["device_id"]},
    )


def default_alerter(
    settings: ProcessorSettings | None = None, dynamodb: Any = None, sns: Any = None
) -> Alerter:
    """The alerter ``settings`` describe (None: the process's), on the given clients (None: the shared)."""
    settings = settings or get_settings()
    publisher = SnsPublisher(settings.alerts_topic_arn, sns) if settings.alerts_topic_arn else None
    return Alerter(
        DynamoCooldownStore(settings.anomalies_table, dynamodb), publisher, settings.alert_cooldown_s
    )
