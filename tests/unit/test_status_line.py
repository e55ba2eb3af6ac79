"""The line `make up` prints every few seconds: counts, quarantine by reason, failures, a true rate."""

from __future__ import annotations

from iotpipe.ops.status import PipelineStatus, RateMeter, render, status_line


def _status(**fields: object) -> PipelineStatus:
    base: dict[str, object] = {"stack": "s", "readings_in": 2377, "aggregated": 900, "windows": 40,
                               "duplicates": 7, "anomalies": 8}
    return PipelineStatus(**{**base, **fields})  # type: ignore[arg-type]


def test_a_quarantine_flood_shows_its_reasons_and_what_is_wrong() -> None:
    # GIVEN 60 % of the readings quarantined, nearly all unknown_device (devices never registered)
    status = _status(quarantined=1424, quarantined_by_reason={"unknown_device": 1403, "schema_invalid": 21})
    line = status_line(status, 2400, 20.0)
    # THEN the line gives the reasons, biggest first, and says what is wrong and what to run
    assert "| quarantined 1424 [unknown_device 1403, schema_invalid 21] |" in line
    assert line.endswith("!! 60% of readings quarantined, mostly unknown_device "
                         "(unregistered devices: python -m simulator register)")


def test_a_failing_batch_is_counted_once_per_reading() -> None:
    # GIVEN a batch of 100 readings handed back on every retry (48,721 hand-backs) during an archive outage
    status = _status(retried=48_721, held_back_now=100, archive_failures=487)
    line = status_line(status, 2400, 20.0)
    # THEN the line shows the 100 readings held back, not the retries, and the archive failures
    assert "| held back 100 | archive failures 487 |" in line
    assert "in 2377 (20.0/s, redeliveries included) |" in line
    assert "48721" not in line
    assert "!! a batch is failing: 100 readings held back and retried; 487 archive writes failed" in line


def test_a_healthy_pipeline_has_nothing_after_the_counts() -> None:
    line = status_line(_status(quarantined=19, quarantined_by_reason={"malformed_json": 19}), 2400, 20.0)
    assert "!!" not in line
    assert line.startswith("sent 2400 | in 2377 (20.0/s) | aggregated 900 in 40 windows | duplicates 7 |")


def test_the_rate_is_right_from_the_first_line() -> None:
    # GIVEN 20 readings/s arriving from the moment the watch starts, sampled every 5 s
    meter = RateMeter(start=100.0)
    # THEN the first line already says 20/s (a trailing-minute sum / 60 said 1.7/s here)
    assert meter.add(105.0, 100) == 20.0
    rates = [meter.add(105.0 + 5 * i, 100 + 100 * i) for i in range(1, 30)]
    assert all(abs(r - 20.0) < 1e-9 for r in rates)
    # AND after a change it follows the last minute, not the average since the start
    count = 100 + 100 * 29
    for i in range(1, 13):  # 60 s at 2/s
        rate = meter.add(250.0 + 5 * i, count + 10 * i)
    assert abs(rate - 2.0) < 1e-9


def test_refused_mqtt_messages_are_shown_apart_from_the_pipelines_readings_only_when_there_are_some() -> None:
    status = _status(refused_by_reason={"device_mismatch": 3, "no_device_id": 1})
    expected = "refused      4 MQTT messages kept off the stream   [device_mismatch=3, no_device_id=1]"
    assert expected in render(status)
    assert "refused" not in render(_status())


def test_the_line_counts_refused_mqtt_messages_apart_so_sent_is_accounted_for() -> None:
    line = status_line(_status(refused_by_reason={"device_mismatch": 2}), 2400, 20.0)
    assert "| quarantined 0 | refused 2 [device_mismatch=2] | held back 0 |" in line
    assert "refused" not in status_line(_status(), 2400, 20.0)
