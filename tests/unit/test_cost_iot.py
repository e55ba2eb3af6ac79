"""IoT Core in the cost model: MQTT devices pay connections, messages and the readings rule."""

from __future__ import annotations

import pytest

from iotpipe.cost import estimate
from iotpipe.cost.prices import HOURS_PER_MONTH, Prices
from iotpipe.cost.workload import Workload

P = Prices()


def _iot(mqtt: str) -> dict[str, float]:
    e = estimate(Workload(devices=1000, rate_hz=1.0, readings_per_record=1, mqtt_ingest=mqtt), P)
    return {line.item: line.usd for line in e.lines if line.component == "iot"}


def test_publishing_to_the_device_topic_pays_every_message_and_the_rule() -> None:
    iot = _iot("messaging")
    readings = 1000 * HOURS_PER_MONTH * 3600  # one small reading per message: one 5 KB increment each
    assert iot["messages"] == pytest.approx(readings / 1e6 * P.iot_messages_per_million)
    assert iot["rules triggered"] == pytest.approx(readings / 1e6 * P.iot_rules_triggered_per_million)
    actions = readings / 1e6 * P.iot_actions_executed_per_million
    assert iot["actions executed (Kinesis)"] == pytest.approx(actions)
    assert iot["connection minutes"] == pytest.approx(1000 * HOURS_PER_MONTH * 60 / 1e6 * 0.08)


def test_basic_ingest_drops_the_messaging_charge_only_and_putrecords_has_no_iot_line() -> None:
    messaging, basic = _iot("messaging"), _iot("basic-ingest")
    assert "messages" not in basic
    assert {k: v for k, v in messaging.items() if k != "messages"} == basic
    assert _iot("none") == {}
