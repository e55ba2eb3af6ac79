"""Pure parts of crash recovery (issue 11, findings 2 and 5): rebuild from the archive, the import
template for a lost stack's retained resources, and the sweep of dead Lambda workers' folders."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from functions.adapters.alerts import Alerter
from functions.core.readings import Reading
from functions.detector.interface import Verdict
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from iotpipe.local.emulator import sweep_worker_dirs
from iotpipe.local.recovery import import_template, resolve_name, retained_named
from iotpipe.ops.rebuild import (
    RebuildReport,
    apply_groups,
    group_readings,
    pause_mappings,
    readings_from_lines,
    rebuild_ports,
    resume_mappings,
)
from iotpipe.ops.template import load_template
from testkit.events import SEQ_BASE, make_records, reading_doc
from testkit.fakes import (
    InMemoryAggregateStore,
    InMemoryAnomalyStore,
    InMemoryCooldownStore,
    InMemoryPublisher,
)
from testkit.processor import fake_ports

NOW_S = 1_795_000_020.0
WINDOW = (int(NOW_S * 1000) // 60_000) * 60
CONFIG = ProcessorConfig(sleep=lambda _: None)
VISIBLE = ("count", "channels", "first_event_at", "last_event_at", "site", "location")


def _processed_pipeline() -> tuple[InMemoryAggregateStore, list[bytes]]:
    """Three batches on two shards (a re-sent reading, a redelivered batch, bad records included)."""
    ports = fake_ports()
    t = WINDOW * 1000
    batch1 = [reading_doc("dev-1", t + 1000 * i, temperature=20.0 + i) for i in range(5)] + [b"{bad"]
    batch2 = [reading_doc("dev-2", t + 500 * i, humidity=40.0 + i) for i in range(4)]
    batch3 = [reading_doc("dev-1", t + 1000, temperature=20.0 + 1),  # the same reading, re-sent
              reading_doc("dev-1", t + 61_000, pressure=1000.0)]  # next window
    process_batch(make_records(batch1, arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    process_batch(make_records(batch2, "shardId-000000000001", arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    records3 = make_records(batch3, first_seq=SEQ_BASE + 10, arrival_s=NOW_S + 30)
    process_batch(records3, ports, CONFIG, now_s=NOW_S + 30)
    process_batch(records3, ports, CONFIG, now_s=NOW_S + 31)  # redelivered: archived again, same key
    lines = ports.archive.lines("processed/") + ports.archive.lines("quarantine/")
    return ports.aggregates, lines


def _visible(store: InMemoryAggregateStore) -> dict:
    return {k: {f: v[f] for f in VISIBLE} for k, v in store.items.items()}


def _rebuild(lines: list[bytes], store: InMemoryAggregateStore) -> RebuildReport:
    report = RebuildReport()
    groups = group_readings(readings_from_lines(lines, report), 60, report)
    ports = rebuild_ports(fake_ports())
    ports.aggregates = store
    apply_groups(groups, ports, CONFIG, report, now_s=NOW_S + 60)
    return report


def test_rebuild_from_the_archive_restores_every_window_exactly_and_only_once() -> None:
    # GIVEN the tables and archive a processor left after three batches (one redelivered)
    reference, lines = _processed_pipeline()
    # WHEN the aggregates are rebuilt from the archive into an empty table
    store = InMemoryAggregateStore()
    report = _rebuild(lines, store)
    # THEN every window reads exactly as the processor left it
    assert _visible(store) == _visible(reference)
    assert report.readings_applied == sum(int(i["count"]) for i in reference.items.values()) == 10
    assert report.duplicates == 1  # the re-sent reading, archived as status duplicate
    assert report.quarantined == {"malformed_json": 1}
    # AND a second rebuild finds everything present and writes nothing
    again = _rebuild(lines, store)
    assert (again.readings_applied, again.windows_written) == (0, 0)
    assert again.already_present == 10


def test_rebuild_completes_a_table_restored_from_an_older_snapshot() -> None:
    # GIVEN a table that lost the last batch's effect (restored from a snapshot taken before it)
    reference, lines = _processed_pipeline()
    store = InMemoryAggregateStore()
    first_two = [line for line in lines if str(SEQ_BASE + 10).encode() not in line
                 and str(SEQ_BASE + 11).encode() not in line]
    _rebuild(first_two, store)
    # WHEN the whole archive is rebuilt into it
    report = _rebuild(lines, store)
    # THEN only what the snapshot lacked is applied, and the table matches the reference
    assert report.readings_applied == 1
    assert _visible(store) == _visible(reference)


class _FlagWarm:
    """Flags every reading of 23 degrees or more (dev-1's last two of the first window)."""

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        return [_verdict(r.channels.get("temperature", 0.0) >= 23.0) for r in readings]


def _verdict(flag: bool) -> Verdict:
    return Verdict(score=0.9 if flag else 0.1, is_anomaly=flag, severity="high" if flag else "none",
                   severity_rank=3 if flag else 0, top_feature="temperature:raw", reason="r",
                   threshold=0.5, model_version="test")


def test_rebuild_runs_the_processors_detection_stores_anomalies_once_and_sends_no_alert() -> None:
    # GIVEN the archive of the three batches, and ports with a detector, an anomaly store and a live alerter
    _, lines = _processed_pipeline()
    store, anomalies, publisher = InMemoryAggregateStore(), InMemoryAnomalyStore(), InMemoryPublisher()

    def rebuild() -> RebuildReport:
        report = RebuildReport()
        ports = fake_ports(detector=_FlagWarm())
        ports.aggregates, ports.anomaly_store = store, anomalies
        ports.alerter = Alerter(InMemoryCooldownStore(), publisher, 0)
        groups = group_readings(readings_from_lines(lines, report), 60, report)
        apply_groups(groups, rebuild_ports(ports), CONFIG, report, now_s=NOW_S + 60)
        return report

    # WHEN the aggregates are rebuilt from the archive
    report = rebuild()
    # THEN the flagged readings' anomalies are stored and counted in their window, and no alert goes out
    assert report.anomalies_stored == 2
    assert sorted(i["device_id"] for i in anomalies.items.values()) == ["dev-1", "dev-1"]
    assert store.items[("dev-1", WINDOW)]["anomaly_count"] == 2
    assert publisher.messages == []
    # AND a second rebuild detects nothing new and writes nothing
    writes = anomalies.writes
    again = rebuild()
    assert (again.readings_applied, again.windows_written, again.anomalies_stored) == (0, 0, 0)
    assert anomalies.writes == writes


def test_import_template_declares_only_the_retained_resources_with_literal_properties() -> None:
    template = load_template()
    named = retained_named(template, "iotpipe", "000000000000", "us-east-1")
    names = {lid: name for lid, _t, name in named}
    assert names["ArchiveBucket"] == "iotpipe-archive-000000000000-us-east-1"
    assert names["AggregatesTable"] == "iotpipe-aggregates"
    body = import_template(template, [r for r in named if r[0] == "ArchiveBucket"])
    bucket = body["Resources"]["ArchiveBucket"]
    assert list(body["Resources"]) == ["ArchiveBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["Properties"]["BucketName"] == "iotpipe-archive-000000000000-us-east-1"
    assert "BucketEncryption" not in bucket["Properties"]  # refers to the KMS key: added by the deploy
    assert resolve_name({"Sub": "${AWS::StackName}-${Other}"}, "s", "1", "r") is None


def test_sweep_removes_dead_workers_folders_and_keeps_live_and_young_ones(tmp_path: Path) -> None:
    # GIVEN three worker folders: one a running process uses, one just created, one abandoned
    live, young, dead = (tmp_path / f"ministack-lambda-fn-{n}" for n in ("live", "young", "dead"))
    for folder in (live, young, dead):
        (folder / "code").mkdir(parents=True)
    old = time.time() - 600
    for folder in (live, dead):
        os.utime(folder, (old, old))
    (tmp_path / "other").mkdir()
    proc = subprocess.Popen(["sleep", "30"], cwd=live / "code")
    try:
        # WHEN swept
        removed = sweep_worker_dirs(tmp_path, min_age_s=120)
    finally:
        proc.kill()
        proc.wait()
    # THEN only the abandoned worker folder is gone
    assert removed == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ministack-lambda-fn-live",
                                                          "ministack-lambda-fn-young", "other"]


class _FakeLambda:
    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    def list_event_source_mappings(self, EventSourceArn: str) -> dict:
        return {"EventSourceMappings": [{"UUID": u, "State": s} for u, s in self.states.items()]}

    def update_event_source_mapping(self, UUID: str, Enabled: bool) -> None:
        self.states[UUID] = "Enabled" if Enabled else "Disabled"


def test_rebuild_pauses_the_mappings_and_leaves_every_one_enabled_after() -> None:
    # GIVEN one enabled mapping and one a killed rebuild left disabled
    lam = _FakeLambda({"a": "Enabled", "b": "Disabled"})
    # WHEN a rebuild pauses and then resumes them
    paused = pause_mappings(lam, "arn:stream", settle_s=0)
    assert lam.states == {"a": "Disabled", "b": "Disabled"}
    resume_mappings(lam, paused)
    # THEN both run again
    assert lam.states == {"a": "Enabled", "b": "Enabled"}
