"""The AWS service limits the cost model sizes shards and batches against, and the measured envelope."""

from __future__ import annotations

SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
SHARD_HEADROOM = 0.8  # size shards for 80 % of the write limits: bursts and hot devices need the rest
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
# Per record in the Lambda event besides the base64 data: kinesisSchemaVersion, partitionKey (the device
# id), a 56-digit sequenceNumber, approximateArrivalTimestamp, eventSource/Version/Name, eventID
# (shard id + sequence number), invokeIdentityArn (the role), awsRegion, eventSourceARN. Measured on
# the documented record shape with this stack's names, compact JSON: 567 bytes
# (tests/unit/test_cost.py::test_event_envelope_matches_a_kinesis_event_record).
EVENT_ENVELOPE_BYTES = 570
BATCH_GET_MAX_KEYS = 100
BATCH_WRITE_MAX_ITEMS = 25
# On-demand tables start with this many read and write units per second each (the capacity plan).
DDB_TABLE_DEFAULT_UNITS_PER_S = 40_000
