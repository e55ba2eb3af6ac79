"""Nothing one device's item can stop, and numbers that do not cancel, on the deployed stack.

One batch through Kinesis carries readings of devices whose registry items are broken in each way a red
team found (a calibration number the store cannot decode, parameters that parse but overflow or give
NaN), of a device scored by a valid calibration, of a plain device, a device whose values are
999999999.1 .. 999999999.9 and a reading with a literal 1e-400. Every reading must end aggregated,
duplicate or quarantined with a reason (conservation), the broken devices scored by the fleet model and
counted by reason (metric, ``iotpipe status``, the live view's /stats), the window's standard deviation
the true one. Then the calibrator: requests it cannot serve are refused per device, with a reason on the
item, while a good one in the same run is calibrated.
"""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from collections import Counter
from typing import Any

import boto3
import httpx
import numpy as np
import orjson
import pytest

from tests.integration.polling import wait_for
from tests.integration.streams import put_records

pytestmark = pytest.mark.integration

POLL_S = 150.0
CORE = ("temperature", "humidity", "pressure")


def iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms / 1000)) + f".{epoch_ms % 1000:03d}Z"


def calibration() -> dict[str, Any]:
    """A valid pca-t2q-v1 record over the core channels (what the calibrator would store)."""
    from functions.detector.pca_fit import calibrate_columns, load_operating_point

    rng = np.random.default_rng(7)
    a = rng.normal(size=400)
    values = np.column_stack([21.0 + a, 45.0 + 2 * a + rng.normal(size=400), 1013.0 + rng.normal(size=400)])
    return calibrate_columns(CORE, values, load_operating_point(), 400).to_dict()


def to_attr(value: Any) -> dict[str, Any]:
    from functions.adapters import codec

    return codec.to_attribute(value)


def broken(cal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Calibration attributes as the red team stored them (low-level: strings where a number cannot go)."""
    good = to_attr(cal)

    def with_(path: list[Any], attr: dict[str, Any]) -> dict[str, Any]:
        out = orjson.loads(orjson.dumps(good))
        node = out
        for step in path[:-1]:
            node = node["M"][step] if isinstance(step, str) else node["L"][step]
        last = path[-1]
        if isinstance(last, str):
            node["M"][last] = attr
        else:
            node["L"][last] = attr
        return out

    return {
        "huge": with_(["instant_factor"], {"N": "1e40"}),  # ministack answers 41 digits: Rounded
        "eig": with_(["eigenvalues", 0], {"S": "1e-320"}),  # T² overflows to Infinity
        "comp": with_(["components", 0, 0], {"S": "1e300"}),
        "nan": with_(["mean", 0], {"S": "nan"}),  # score NaN
        "zero": with_(["scale", 0], {"N": "0"}),
        "persist": with_(["persist_n"], {"N": "100000"}),
    }


def aggregate(ddb: Any, table: str, device: str, window: int) -> dict[str, Any] | None:
    item = ddb.get_item(TableName=table, Key={"device_id": {"S": device}, "window_start": {"N": str(window)}},
                        ConsistentRead=True).get("Item")
    return item


def archive_lines(s3: Any, bucket: str, devices: set[str], marker: bytes) -> list[dict[str, Any]]:
    lines: dict[tuple[str, str, Any, str], dict[str, Any]] = {}
    for prefix in ("processed/", "quarantine/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                if not any(d.encode() in body for d in devices) and marker not in body:
                    continue
                for raw in body.splitlines():
                    line = orjson.loads(raw)
                    ours = line.get("device_id") in devices or marker in base64.b64decode(
                        line.get("raw_b64", "") or b"")
                    if ours:
                        key = (line["shard_id"], line["sequence_number"], line.get("index"), prefix)
                        lines[key] = line
    return list(lines.values())


def test_broken_device_items_cost_their_own_detection_only_and_windows_do_not_cancel(
    deployed_stack: dict[str, str], http: httpx.Client, key: dict[str, str]
) -> None:
    ddb, kinesis, s3 = boto3.client("dynamodb"), boto3.client("kinesis"), boto3.client("s3")
    devices_table = deployed_stack["DevicesTableName"]
    aggregates_table = deployed_stack["AggregatesTableName"]
    suffix = uuid.uuid4().hex[:10]
    cal = calibration()
    bad = broken(cal)
    names = {k: f"iso-{k}-{suffix}" for k in (*bad, "plain", "calibrated", "big")}
    now_ms = int(time.time() * 1000)
    window = (now_ms // 60_000) * 60 - 60  # the previous minute: complete, well within lateness
    base_ms = window * 1000

    # GIVEN devices whose items are broken in each way found, beside a calibrated and a plain device
    for kind, device in names.items():
        item: dict[str, Any] = {"device_id": {"S": device}, "site": {"S": "iso"}}
        if kind in bad:
            item["calibration"] = bad[kind]
        elif kind == "calibrated":
            item["calibration"] = to_attr(cal)
        ddb.put_item(TableName=devices_table, Item=item)
    try:
        # AND one batch: five readings each, 999999999.1 .. .9 on an extra channel of "big", a
        # duplicate, and a reading whose temperature is the literal 1e-400
        rng = np.random.default_rng(1)
        docs: list[tuple[str, bytes]] = []
        expected: dict[str, int] = {}
        for kind, device in names.items():
            n = 9 if kind == "big" else 5
            expected[device] = n
            for i in range(n):
                doc: dict[str, Any] = {"device_id": device, "timestamp": iso(base_ms + 1000 * (i + 1)),
                                       "temperature": round(21.0 + float(rng.normal()), 3),
                                       "humidity": round(45.0 + float(rng.normal()), 3),
                                       "pressure": round(1013.0 + float(rng.normal()), 3)}
                if kind == "big":
                    doc["extra"] = {"big": 999_999_999.0 + (i + 1) / 10}
                docs.append((device, orjson.dumps(doc)))
        docs.append(docs[0])  # duplicate: counted once
        tiny = (f'{{"device_id":"{names["plain"]}","timestamp":"{iso(base_ms + 30_000)}",'
                f'"temperature":1e-400,"humidity":45.0,"pressure":1013.0}}').encode()
        docs.append((names["plain"], tiny))
        produced = len(docs)

        # WHEN it goes through the stream
        put_records(kinesis, deployed_stack["StreamName"], docs)

        # THEN every device's window holds all its readings: nothing was handed back or rejected
        def all_windows() -> dict[str, dict[str, Any]] | None:
            items = {d: aggregate(ddb, aggregates_table, d, window) for d in names.values()}
            done = all(i is not None and int(i["count"]["N"]) >= expected[d] for d, i in items.items())
            return items if done else None  # type: ignore[return-value]

        windows = wait_for(all_windows, POLL_S, 2.0)
        assert windows, {d: (i or {}).get("count") for d, i in
                         {d: aggregate(ddb, aggregates_table, d, window) for d in names.values()}.items()}
        assert {d: int(i["count"]["N"]) for d, i in windows.items()} == expected

        # AND the std of 999999999.1 .. .9 is the true ~0.258, not the 0 of cancelled sums of squares
        big = windows[names["big"]]["channels"]["M"]["big"]["M"]
        assert float(big["std"]["N"]) == pytest.approx(np.std([999_999_999.0 + k / 10 for k in range(1, 10)]),
                                                       rel=1e-6)
        assert float(big["mean"]["N"]) == pytest.approx(999_999_999.5, abs=1e-6)

        # AND conservation in the archive: produced = aggregated + duplicates + quarantined, the one
        # quarantined reading being the 1e-400 (not flushed to 0)
        marker = names["plain"].encode()

        def balanced() -> list[dict[str, Any]] | None:
            lines = archive_lines(s3, deployed_stack["ArchiveBucketName"], set(names.values()), marker)
            return lines if len(lines) >= produced else None

        lines = wait_for(balanced, POLL_S, 3.0) or []
        outcome = Counter(line.get("status") or f"quarantined:{line['reason']}" for line in lines)
        assert outcome == {"aggregated": produced - 2, "duplicate": 1,
                           "quarantined:unrepresentable_number": 1}, outcome
        assert sum(expected.values()) == outcome["aggregated"]
        scored = {line["device_id"]: line.get("anomaly_score") for line in lines
                  if line.get("status") == "aggregated"}
        assert all(isinstance(v, float) and np.isfinite(v) for v in scored.values()), scored

        # AND the fallbacks are counted by reason: metric, `iotpipe status`, the live view's /stats
        from iotpipe.ops.status import collect

        # The 1e40 calibration is `unreadable_calibration` where the store answers a number boto3 cannot
        # decode (ministack: 41 digits, `Rounded`) and `invalid_calibration` where it decodes (LocalStack's
        # DynamoDB answers 1E+40) and the check refuses it: the same isolation, by either reason.
        def enough(got: dict[str, int]) -> bool:
            unusable = got.get("unreadable_calibration", 0) + got.get("invalid_calibration", 0)
            return unusable >= 5 * len(bad) and got.get("invalid_calibration", 0) >= 5 * (len(bad) - 1)

        def counted() -> Any:
            status = collect(deployed_stack["StackName"], window_hours=1)
            return status if enough(status.calibration_fallbacks) else None

        status = wait_for(counted, 60, 3.0)
        assert status, collect(deployed_stack["StackName"], window_hours=1).calibration_fallbacks
        stats = http.get("stats", headers=key).json()
        assert enough((stats.get("failures_last_hour") or {}).get("calibration_fallbacks") or {}), stats
    finally:
        for device in names.values():
            ddb.delete_item(TableName=devices_table, Key={"device_id": {"S": device}})
            ddb.delete_item(TableName=aggregates_table,
                            Key={"device_id": {"S": device}, "window_start": {"N": str(window)}})


def test_the_calibrator_refuses_what_it_cannot_serve_per_device(deployed_stack: dict[str, str]) -> None:
    from functions.adapters.devices import DynamoDeviceRegistry
    from iotpipe import aws
    from model import device_calibration as dc

    ddb, table = aws.client("dynamodb"), deployed_stack["DevicesTableName"]
    suffix = uuid.uuid4().hex[:10]
    asks = {"abc": {"S": "abc"}, "zero": {"N": "0"}, "minus": {"N": "-5"}, "fine": {"N": "400"}}
    names = {k: f"cal-{k}-{suffix}" for k in asks}
    registered = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for kind, rows in asks.items():
        ddb.put_item(TableName=table, Item={"device_id": {"S": names[kind]},
                                            "registered_at": {"S": registered},
                                            "calibration_request": {"M": {"rows": rows}}})
    try:
        # WHEN the deployed calibrator runs on them (its schedule runs the same code over every device)
        answer = dc.invoke_calibrator(aws.client("lambda"), deployed_stack["CalibratorFunctionName"],
                                      sorted(names.values()))
        results = answer["devices"]
        # THEN each bad request is refused with its reason and the good one waits for its readings
        assert {k: results[names[k]]["status"] for k in asks} == {
            "abc": "refused", "zero": "refused", "minus": "refused", "fine": "waiting"}
        assert answer["refused"] == 3
        registry = DynamoDeviceRegistry(table, ddb)
        for kind in ("abc", "zero", "minus"):
            item = registry.get(names[kind]) or {}
            assert "calibration_request" not in item
            assert "calibration" not in item
            assert item["calibration_refused"]["reason"] == results[names[kind]]["reason"]
        assert "is not an integer" in results[names["abc"]]["reason"]
        # 10 rows per calibrated channel: the shipped operating point calibrates 8
        assert "not in [80, 100000]" in results[names["minus"]]["reason"]
        assert "calibration_request" in (registry.get(names["fine"]) or {})
    finally:
        for device in names.values():
            ddb.delete_item(TableName=table, Key={"device_id": {"S": device}})
