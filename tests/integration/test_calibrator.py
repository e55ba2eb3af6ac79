"""The in-stack calibrator (functions/calibrator) on a deployed stack: a device registered with a
calibration request, its readings through Kinesis, the calibrator (on demand, or its schedule first)
storing the calibration on the item, then the processor scoring the device with it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from testkit.shared_data import SKAB_DIR

SKAB = SKAB_DIR
FILE = SKAB / "valve1" / "1.csv"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not FILE.exists(), reason="shared SKAB data not present")]


def test_a_device_is_calibrated_in_the_stack_and_then_scored_with_its_calibration(deployed_stack):
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.core.archive_layout import PROCESSED_PREFIX
    from functions.core.archive_lines import ProcessedLine
    from functions.core.timestamps import parse_ms
    from functions.detector.calibrated import fingerprint
    from functions.detector.pca_tq import PcaCalibration
    from iotpipe import aws
    from iotpipe.ops.replay_eval import _items, _send
    from model import device_calibration as dc
    from model import operating_point
    from simulator.sinks import KinesisSink

    function = deployed_stack["CalibratorFunctionName"]
    ddb, table = aws.client("dynamodb"), deployed_stack["DevicesTableName"]
    lam = aws.client("lambda")
    device = f"pump-instack-{os.getpid()}"
    registered = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ddb.put_item(TableName=table, Item={"device_id": {"S": device}, "name": {"S": "pump"},
                                        "registered_at": {"S": registered},
                                        "calibration_request": {"M": {"rows": {"N": "400"}}}})
    first = dc.invoke_calibrator(lam, function, [device])
    assert first["devices"][device] == {"status": "waiting", "archived": 0, "rows": 400}

    # GIVEN the device's first 420 readings (extra channels: current, voltage, ...) through Kinesis
    items = _items(FILE, device, int(time.time() * 1000) - 60_000, 100, None)
    sink = KinesisSink(deployed_stack["StreamName"], endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    sink.setup()
    try:
        _send(sink, items[:420])
        # WHEN the calibrator runs (on demand here; its schedule does the same every 2 minutes)
        registry = DynamoDeviceRegistry(table, ddb)
        deadline = time.monotonic() + 240
        while "calibration" not in (registry.get(device) or {}) and time.monotonic() < deadline:
            dc.invoke_calibrator(lam, function, [device])
            time.sleep(3)
        # THEN the item holds the calibration fitted on them, and the request is gone
        item = registry.get(device)
        assert item is not None
        assert "calibration" in item, item
        assert "calibration_request" not in item
        assert item["calibration"]["source"] == "archive"
        cal = PcaCalibration.from_dict(item["calibration"])
        # the shipped operating point's channels (all eight of a SKAB pump's) under the pipeline's names
        assert cal.channels == dc.pipeline_names(operating_point.load()["channels"])
        assert cal.calibration_rows == 400
        # and it is what the CLI's --from-archive fits from the same archived rows
        archive = S3Archive(deployed_stack["ArchiveBucketName"], aws.client("s3"))
        rows = dc.archive_rows(archive, device)
        assert dc.fit(rows, cal.channels, 400) == cal
        # AND the one reading path reads from a time on in the emulator's S3 (StartAfter): the device's
        # lines from its registration's hour on are those rows; from two hours later there are none yet
        since, name = parse_ms(registered), device.encode()
        mine = [ProcessedLine.decode(x) for x in archive.iter_lines(PROCESSED_PREFIX, since) if name in x]
        assert {x.epoch_ms for x in mine if x.status == "aggregated"} == {ms for ms, _ in rows}
        later = archive.iter_lines(PROCESSED_PREFIX, since + 2 * 3600_000)
        assert not [x for x in later if name in x]

        # AND the processor scores the device's later readings with it: its carried alarm state names
        # this calibration (within the device cache's TTL, DEVICE_CACHE_TTL_S, 300 s by default).
        rest = items[420:]
        deadline = time.monotonic() + 420
        sent = 0
        while True:
            state = (registry.get(device) or {}).get("detector_state") or {}
            if state.get("cal") == fingerprint(cal) or time.monotonic() > deadline:
                break
            if sent < len(rest):
                _send(sink, rest[sent:sent + 20])
                sent += 20
            time.sleep(10)
        assert state.get("cal") == fingerprint(cal), state
    finally:
        sink.close()
