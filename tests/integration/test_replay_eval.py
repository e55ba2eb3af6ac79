"""iotpipe model replay-eval on the deployed stack: SKAB files through Kinesis, the processor's per-device
detector (calibrated from the archive), the anomalies table; against the offline evaluation."""

from __future__ import annotations

import json

import pytest

from testkit.shared_data import SKAB_DIR

SKAB = SKAB_DIR
FILES = [SKAB / "valve1" / "1.csv", SKAB / "valve2" / "3.csv"]

pytestmark = pytest.mark.skipif(not all(p.exists() for p in FILES), reason="shared SKAB data not present")


def test_replayed_skab_files_score_as_the_offline_evaluation(deployed_stack, capsys):
    from iotpipe.cli import main

    stack = deployed_stack["StackName"]
    argv = ["model", "replay-eval", *map(str, FILES), "--timeout", "300", "--stack", stack]
    assert main(argv) == 0
    out = capsys.readouterr()
    result = json.loads(out.out.strip().splitlines()[-1])
    assert "calibration rows" in out.err  # progress on stderr
    assert result["calibration_rows"] == 400
    assert result["confusion"]["tp"] + result["confusion"]["fn"] > 0  # the files' faults were scored
    # Same calibration, same operating point, same values: the pipeline's verdicts are the offline ones.
    assert abs(result["f1_difference"]) <= 0.02
    assert result["mismatched_rows"] == 0
    assert result["f1"] > 0.5
    # The processor persisted each device's alarm ring on its item (the conditional UpdateItem works on
    # this target), up to the device's last reading.
    for f in result["per_file"]:
        assert f["detector_state_ts"] == f["last_epoch_ms"], f


def test_calibrate_from_a_csv_writes_the_device_item_the_processor_reads(deployed_stack, capsys):
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.detector.pca_tq import PcaCalibration
    from iotpipe import aws
    from iotpipe.cli import main
    from model import device_calibration as dc
    from model import operating_point

    ddb = aws.client("dynamodb")
    table = deployed_stack["DevicesTableName"]
    ddb.put_item(TableName=table, Item={"device_id": {"S": "pump-cli-1"}, "name": {"S": "pump"},
                                        "detector_state": {"M": {"ts": {"N": "5"}}}})
    argv = ["model", "calibrate", "--device", "pump-cli-1", "--csv", str(FILES[0]),
            "--stack", deployed_stack["StackName"]]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rows"] == 400
    info = DynamoDeviceRegistry(table, ddb).get_many(["pump-cli-1"])["pump-cli-1"]
    cal = PcaCalibration.from_dict(info.calibration)  # what the processor's projection returns parses
    # the shipped operating point's channels (all eight of a SKAB pump's) under the pipeline's names
    assert cal.channels == dc.pipeline_names(operating_point.load()["channels"])
    assert info.detector_state is None  # a new calibration drops the old ring

    missing = ["model", "calibrate", "--device", "nobody-here", "--csv", str(FILES[0]),
               "--stack", deployed_stack["StackName"]]
    assert main(missing) == 1
    assert "no device 'nobody-here'" in capsys.readouterr().err


def test_a_pending_device_is_calibrated_from_the_archive(deployed_stack, capsys):
    """The pipeline's way: readings flow, the archive holds the first N, `calibrate --pending` has the
    stack's calibrator fit them."""
    import os
    import time

    from functions.adapters.devices import DynamoDeviceRegistry
    from iotpipe import aws
    from iotpipe.cli import main
    from iotpipe.ops.replay_eval import _items, _send
    from simulator.sinks import KinesisSink

    ddb, table = aws.client("dynamodb"), deployed_stack["DevicesTableName"]
    ddb.put_item(TableName=table, Item={"device_id": {"S": "pump-pending-1"}, "name": {"S": "pump"},
                                        "calibration_request": {"M": {"rows": {"N": "400"}}}})
    argv = ["model", "calibrate", "--pending", "--stack", deployed_stack["StackName"]]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["pump-pending-1"]["status"] == "waiting"

    sink = KinesisSink(deployed_stack["StreamName"], endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    sink.setup()
    try:
        _send(sink, _items(FILES[0], "pump-pending-1", int(time.time() * 1000) - 30_000, 100, 420))
    finally:
        sink.close()
    deadline = time.monotonic() + 180
    while True:
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        if result.get("pump-pending-1", {}).get("status") != "waiting" or time.monotonic() > deadline:
            break
        time.sleep(5)
    # --pending invokes the stack's calibrator; its schedule (every 2 minutes) may have been first, and
    # then the device is no longer pending when --pending looks.
    assert result.get("pump-pending-1", {"status": "calibrated", "archived": 420, "rows": 400}) == {
        "status": "calibrated", "archived": 420, "rows": 400}
    item = DynamoDeviceRegistry(table, ddb).get("pump-pending-1")
    assert item["calibration"]["source"] == "archive"
    assert "calibration_request" not in item
    assert main(argv) == 0  # nothing pending any more
    assert "pump-pending-1" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
