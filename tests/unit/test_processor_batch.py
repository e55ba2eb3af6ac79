"""process_batch with in-memory fakes: reasons, archive, metrics, anomaly stage, partial failures."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from functions.core.readings import Reading
from functions.detector.interface import Verdict
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.schemas import is_valid
from testkit.events import SEQ_BASE, make_records, reading_doc
from testkit.processor import fake_ports

NOW_S = 1_795_000_020.0  # 20 s into a minute
NOW_MS = int(NOW_S * 1000)
WINDOW = (NOW_MS // 60_000) * 60
CONFIG = ProcessorConfig(sleep=lambda _: None)


def mixed_payloads() -> list[dict | bytes]:
    t = WINDOW * 1000
    return [
        reading_doc("dev-1", t + 1000, temperature=20.0),  # 0 good
        reading_doc("dev-1", t + 2000, temperature=22.0),  # 1 good
        b"{not json",  # 2 malformed_json
        {"device_id": "dev-1", "timestamp": "2026-01-01T00:00:00Z"},  # 3 schema_invalid
        reading_doc("dev-1", t + 3000, humidity=140.0),  # 4 out_of_range
        reading_doc("dev-1", NOW_MS + 3_600_000),  # 5 future_timestamp
        reading_doc("dev-1", NOW_MS - 3_600_000),  # 6 late
        reading_doc("ghost-device", t + 1000),  # 7 unknown_device
        reading_doc("dev-1", t + 1000, temperature=20.0),  # 8 duplicate of 0
        reading_doc("dev-2", t + 5000, temperature=30.0),  # 9 good, other device
    ]


def test_mixed_batch_is_fully_accounted_for() -> None:
    # GIVEN a batch with good records and one of every kind of bad record
    ports = fake_ports()
    records = make_records(mixed_payloads(), arrival_s=NOW_S)
    # WHEN processed
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN every record lands in exactly one bucket and no failure is reported
    assert out.records_in == 10
    assert out.aggregated == 3
    assert out.duplicates == 1
    assert dict(out.rejected) == {
        "malformed_json": 1,
        "schema_invalid": 1,
        "out_of_range": 1,
        "future_timestamp": 1,
        "late": 1,
        "unknown_device": 1,
    }
    assert out.aggregated + out.duplicates + out.quarantined + out.retry == out.records_in
    assert out.batch_item_failures() == []
    # AND the aggregates hold the good readings once, enriched with site and location
    item = ports.aggregates.items[("dev-1", WINDOW)]
    assert item["count"] == 2
    assert item["channels"]["temperature"]["mean"] == 21.0
    assert item["site"] == "site-a"
    assert item["location"] == "Lisbon, PT"
    assert item["window_end"] == WINDOW + 60
    assert item["version"] == 1
    assert item["watermarks"] == {"shardId-000000000000": str(SEQ_BASE + 1)}
    assert ports.aggregates.items[("dev-2", WINDOW)]["count"] == 1


def test_quarantine_and_processed_archives_are_complete_and_schema_valid() -> None:
    # GIVEN a processed mixed batch
    ports = fake_ports()
    records = make_records(mixed_payloads(), arrival_s=NOW_S)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN two objects under deterministic dt=/hour= keys named by shard and sequence range
    keys = sorted(ports.archive.objects)
    suffix = f"shardId-000000000000-{SEQ_BASE}-{SEQ_BASE + 9}.jsonl.gz"
    assert keys == [f"processed/dt=2026-11-18/hour=11/{suffix}", f"quarantine/dt=2026-11-18/hour=11/{suffix}"]
    assert out.archived_keys == [keys[0], keys[1]]
    # AND every quarantined line matches quarantined.schema.json and keeps the raw bytes
    quarantined = [orjson.loads(x) for x in ports.archive.lines("quarantine/")]
    assert len(quarantined) == 6
    assert all(is_valid("quarantined", q) for q in quarantined)
    malformed = next(q for q in quarantined if q["reason"] == "malformed_json")
    assert malformed["raw_b64"] == records[2].data_b64
    assert malformed["stage"] == "decode"
    assert next(q for q in quarantined if q["reason"] == "unknown_device")["stage"] == "enrich"
    # AND processed lines cover the other 4 records (3 aggregated + 1 duplicate), with ground truth kept
    processed = [orjson.loads(x) for x in ports.archive.lines("processed/")]
    assert sorted(p["status"] for p in processed) == ["aggregated"] * 3 + ["duplicate"]
    # AND the archive bytes are deterministic: reprocessing writes identical objects
    before = dict(ports.archive.objects)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert gzip.decompress(ports.archive.objects[keys[1]]) == gzip.decompress(before[keys[1]])
    assert ports.archive.objects[keys[1]] == before[keys[1]]


def test_metrics_use_the_data_model_names() -> None:
    ports = fake_ports()
    process_batch(make_records(mixed_payloads(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    m = ports.metrics
    assert m.total("RecordsIn") == 10
    assert m.total("RecordsAggregated") == 3
    assert m.total("DuplicatesDropped") == 1
    assert m.total("RecordsRejected") == 6
    assert m.total("RecordsRejected", Reason="late") == 1
    assert {n for n, *_ in m.points} >= {
        "AnomaliesDetected",
        "AlertsSent",
        "AlertsSuppressed",
        "WindowLagSeconds",
        "BatchDurationMs",
    }
    assert m.flushes == 1


def test_empty_batch_is_a_no_op() -> None:
    ports = fake_ports()
    out = process_batch([], ports, CONFIG, now_s=NOW_S)
    assert out.records_in == 0
    assert out.batch_item_failures() == []
    assert not ports.archive.objects


# --- anomaly stage ---------------------------------------------------------------------------------


class HotDetector:
    """Flags readings hotter than 50 degC (a stand-in for the real model)."""

    def __init__(self) -> None:
        self.seen: list[list[tuple[str, int]]] = []

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        self.seen.append([(r.device_id, r.epoch_ms) for r in readings])
        return [
            Verdict(
                score=1.0 if r.channels["temperature"] > 50 else 0.0,
                is_anomaly=r.channels["temperature"] > 50,
                severity="high" if r.channels["temperature"] > 50 else "none",
                severity_rank=3 if r.channels["temperature"] > 50 else 0,
                top_feature="temperature:raw",
                reason="hot",
                threshold=0.5,
                model_version="test",
            )
            for r in readings
        ]


@dataclass
class StageResult:  # the shape of functions.detector.pipeline_stage.StageResult (AnomalyStageResult)
    anomalies: list[dict]
    alerts_sent: int
    alerts_suppressed: int
    alerts_failed: int = 0


class RecordingStage:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, readings, verdicts, store, alerter, now) -> StageResult:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("anomalies table unavailable")
        flagged = [
            {"device_id": r.device_id} for r, v in zip(readings, verdicts, strict=True) if v.is_anomaly
        ]
        self.calls.append(len(flagged))
        return StageResult(flagged, min(len(flagged), 1), max(len(flagged) - 1, 0))


def hot_batch() -> list[dict]:
    t = WINDOW * 1000
    return [
        reading_doc("dev-2", t + 3000, temperature=20.0),
        reading_doc("dev-1", t + 2000, temperature=60.0),
        reading_doc("dev-1", t + 1000, temperature=70.0),
        reading_doc("dev-1", t + 4000, temperature=21.0),
    ]


def test_detector_sees_fresh_readings_sorted_by_device_and_time_and_counts_land_in_aggregate() -> None:
    # GIVEN a detector that flags hot readings and a recording handle_verdicts
    detector, stage = HotDetector(), RecordingStage()
    ports = fake_ports(detector=detector, handle_verdicts=stage)
    # WHEN a batch with two hot readings is processed twice (redelivery)
    records = make_records(hot_batch(), arrival_s=NOW_S)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN the detector saw the readings once, sorted by (device, time)
    t = WINDOW * 1000
    assert detector.seen == [
        [("dev-1", t + 1000), ("dev-1", t + 2000), ("dev-1", t + 4000), ("dev-2", t + 3000)]
    ]
    # AND the counts flow into the outcome, the metrics and the window's anomaly_count
    assert (out.anomalies, out.alerts_sent, out.alerts_suppressed) == (2, 1, 1)
    assert ports.metrics.total("AnomaliesDetected") == 2
    assert ports.aggregates.items[("dev-1", WINDOW)]["anomaly_count"] == 2
    assert ports.aggregates.items[("dev-2", WINDOW)]["anomaly_count"] == 0
    assert again.anomalies == 0
    assert again.redelivered == 4


def test_archive_lines_carry_the_verdict_of_the_readings_detection_ran_on() -> None:
    # GIVEN a detector that flags hot readings, and a batch with a reading sent twice
    ports = fake_ports(detector=HotDetector(), handle_verdicts=RecordingStage())
    docs = hot_batch()
    records = make_records([*docs, docs[1]], arrival_s=NOW_S)
    # WHEN it is processed
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    lines = [orjson.loads(x) for x in ports.archive.lines("processed/")]
    # THEN each aggregated line has the detector's verdict, the in-batch duplicate none
    aggregated = sorted((x["epoch_ms"], x["anomaly"], x["anomaly_score"], x["severity"])
                        for x in lines if x["status"] == "aggregated")
    t = WINDOW * 1000
    assert aggregated == [(t + 1000, True, 1.0, "high"), (t + 2000, True, 1.0, "high"),
                          (t + 3000, False, 0.0, "none"), (t + 4000, False, 0.0, "none")]
    duplicates = [x for x in lines if x["status"] == "duplicate"]
    assert len(duplicates) == 1
    assert "anomaly" not in duplicates[0]


def test_a_redelivered_batch_keeps_the_archive_object_with_the_verdicts() -> None:
    # GIVEN a batch processed and archived, then delivered again whole (e.g. the response was lost)
    ports = fake_ports(detector=HotDetector(), handle_verdicts=RecordingStage())
    records = make_records(hot_batch(), arrival_s=NOW_S)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    before = dict(ports.archive.objects)
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN the archive objects are unchanged: the first application's lines, verdicts included, are kept
    assert ports.archive.objects == before
    assert any(b'"anomaly":true' in gzip.decompress(body) for body in before.values())
    assert (again.redelivered, again.archive_kept, again.batch_item_failures()) == (4, 1, [])


def test_without_a_detector_archive_lines_have_no_verdict() -> None:
    ports = fake_ports()
    process_batch(make_records(hot_batch(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    lines = [orjson.loads(x) for x in ports.archive.lines("processed/")]
    assert len(lines) == 4
    assert not any("anomaly" in x or "anomaly_score" in x for x in lines)


def test_anomaly_stage_failure_leaves_the_batch_to_redelivery() -> None:
    # GIVEN an anomaly store that fails once
    detector, stage = HotDetector(), RecordingStage(fail=1)
    ports = fake_ports(detector=detector, handle_verdicts=stage)
    records = make_records(hot_batch(), arrival_s=NOW_S)
    # WHEN processed
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN nothing is written, the first record is reported, nothing is archived as done
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE)}]
    assert out.retry == 4
    assert not ports.aggregates.items
    assert not ports.archive.objects
    # AND the redelivery processes everything, detecting the anomalies once
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert again.batch_item_failures() == []
    assert again.anomalies == 2
    assert ports.aggregates.items[("dev-1", WINDOW)]["anomaly_count"] == 2


# --- partial failures ------------------------------------------------------------------------------


def test_registry_outage_reports_earliest_reading_and_archives_what_came_before() -> None:
    # GIVEN a registry that is down, and a batch starting with a malformed record
    ports = fake_ports()
    ports.devices._registry.fail_next = 1
    t = WINDOW * 1000
    records = make_records([b"junk", reading_doc("dev-1", t + 1000), b"junk2"], arrival_s=NOW_S)
    # WHEN processed
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN the first reading's sequence number is reported; the malformed record before it is archived
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE + 1)}]
    assert out.rejected["malformed_json"] == 1
    assert out.retry == 2
    assert len(ports.archive.lines("quarantine/")) == 1
    assert next(iter(ports.archive.objects)).endswith(f"-{SEQ_BASE}-{SEQ_BASE}.jsonl.gz")


def test_write_failure_on_one_window_reports_its_earliest_record() -> None:
    # GIVEN a store that keeps failing (more transient failures than attempts)
    ports = fake_ports()
    t = WINDOW * 1000
    payloads = [
        reading_doc("dev-1", t + 1000),
        reading_doc("dev-2", t + 1000),
        reading_doc("dev-1", t + 2000),
    ]
    ports.aggregates.transient_put_failures = 1  # the first window's first attempt fails ...
    config = ProcessorConfig(sleep=lambda _: None, max_write_attempts=1)  # ... and there is no second
    # WHEN processed
    out = process_batch(make_records(payloads, arrival_s=NOW_S), ports, config, now_s=NOW_S)
    # THEN the dev-1 window (records 0 and 2) failed: record 0 is reported and handed back with all
    # after it; the dev-2 reading is in the table, so it counts as aggregated now
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE)}]
    assert (out.retry, out.aggregated) == (2, 1)
    # AND on redelivery the dev-2 record is recognised as redelivered (counted once, above)
    assert ("dev-2", WINDOW) in ports.aggregates.items
    again = process_batch(make_records(payloads, arrival_s=NOW_S), ports, config, now_s=NOW_S)
    assert (again.aggregated, again.duplicates, again.redelivered, again.retry) == (2, 0, 1, 0)
    assert ports.aggregates.items[("dev-1", WINDOW)]["count"] == 2


def test_transient_errors_are_retried_inside_the_invocation() -> None:
    ports = fake_ports()
    ports.aggregates.transient_put_failures = 3
    out = process_batch(make_records(hot_batch(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    assert out.aggregated == 4


def test_archive_failure_redelivers_the_shard_without_double_counting() -> None:
    ports = fake_ports()
    ports.archive.fail_next = 1
    records = make_records(hot_batch(), arrival_s=NOW_S)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE)}]
    # The aggregates were written before the archive failed: counted aggregated (the table has them),
    # the failure is counted, and the records are handed back so that their archive lines get written.
    assert (out.aggregated, out.retry, out.archive_failures) == (4, 0, 1)
    assert ports.metrics.total("ArchiveWriteFailures") == 1
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert again.batch_item_failures() == []
    assert (again.redelivered, again.aggregated, again.duplicates) == (4, 0, 0)
    assert ports.aggregates.items[("dev-1", WINDOW)]["count"] == 3
    assert len(ports.archive.lines("processed/")) == 4


def test_prefetch_failure_fails_all_readings() -> None:
    ports = fake_ports()
    ports.aggregates.fail_get_many = True
    out = process_batch(make_records(hot_batch(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE)}]
    assert out.retry == 4
