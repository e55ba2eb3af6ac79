"""Where records go: a small base class with ``setup / add / flush / close`` and one class per target.

Clients are created in ``setup()`` (never at import, never per call) from an injectable endpoint, or
injected directly (tests pass in-memory fakes).
"""

from __future__ import annotations

import gzip
import io
import random
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from simulator.clock import Clock, SystemClock
from simulator.config import SimulatorConfig
from simulator.ratelimit import TokenBucket
from simulator.stream import Produced

KINESIS_MAX_RECORDS = 500
KINESIS_MAX_BATCH_BYTES = 5 * 1024 * 1024
# A packed record (docs/data-model.md), as JSON before compression, stays at or under the processor's
# MAX_PACKED_BYTES default (1 MiB; the processor caps what a compressed record inflates to at that).
MAX_PACK_BYTES = 64 * 1024
MAX_PACKED_BYTES = 1024 * 1024
# Kinesis's record limit: data (compressed, as sent) plus partition key.
KINESIS_MAX_RECORD_BYTES = 1024 * 1024
# gzip level of compressed packs, chosen by bench/record_encoding.py (docs/data-model.md#compressed-records).
GZIP_LEVEL = 6
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
# Kinesis answers these (whole call or per entry) when it is busy; anything else is not worth retrying.
_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "ThrottlingException",
    "KMSThrottlingException",
    "LimitExceededException",
}


@dataclass
class SinkStats:
    sent: int = 0  # readings (Produced items) accepted by the target
    records: int = 0  # Kinesis records accepted (a packed record holds several readings)
    failed: int = 0  # readings given up on after retries
    rejected: int = 0  # refused by the target as invalid (HTTP 4xx): expected for malformed records
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    throttled_s: float = 0.0  # time spent waiting for the rate limiter
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "records": self.records,
            "failed": self.failed,
            "rejected": self.rejected,
            "bytes": self.bytes,
            "requests": self.requests,
            "retries": self.retries,
            "throttled_s": round(self.throttled_s, 3),
            "errors": dict(self.errors),
        }


class Sink:
    """Base class: buffer in ``add``, deliver in ``flush``; ``close`` flushes and releases clients."""

    name = "sink"

    def __init__(self) -> None:
        self.stats = SinkStats()

    def setup(self) -> None:
        """Create clients and open files."""

    def add(self, produced: Produced) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Deliver everything buffered."""

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Sink:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullSink(Sink):
    """Counts and drops: measures the generator alone."""

    name = "null"

    def add(self, produced: Produced) -> None:
        self.stats.sent += 1
        self.stats.bytes += len(produced.payload)


class ListSink(Sink):
    """Keeps everything in memory (tests)."""

    name = "list"

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Produced] = []
        self.flushes = 0

    def add(self, produced: Produced) -> None:
        self.items.append(produced)
        self.stats.sent += 1
        self.stats.bytes += len(produced.payload)

    def flush(self) -> None:
        self.flushes += 1


class JsonLinesSink(Sink):
    """One payload per line to a file, or to stdout when ``path`` is None or ``-``."""

    name = "jsonl"

    def __init__(self, path: str | None = None, stream: IO[bytes] | None = None) -> None:
        super().__init__()
        self.path = None if path in (None, "-") else path
        self._stream = stream
        self._owned = False
        self._buffer = io.BytesIO()

    def setup(self) -> None:
        if self._stream is None:
            if self.path is None:
                self._stream = sys.stdout.buffer
            else:
                self._stream = open(self.path, "ab")  # noqa: SIM115 - closed in close()
                self._owned = True

    def add(self, produced: Produced) -> None:
        # Payloads never contain a raw newline (orjson escapes them), so lines stay one record each.
        self._buffer.write(produced.payload)
        self._buffer.write(b"\n")
        self.stats.sent += 1
        self.stats.bytes += len(produced.payload)
        if self._buffer.tell() > 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._stream is None:
            return
        self._stream.write(self._buffer.getvalue())
        self._stream.flush()
        self._buffer = io.BytesIO()

    def close(self) -> None:
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
            self._stream = None


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog): sleep U(0, min(cap, base * 2^n))."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random) -> None:
        self.base_s, self.cap_s, self.rng = base_s, cap_s, rng

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap_s, self.base_s * 2**attempt))


# Pack groups (see KinesisSink): a power of two, so they divide evenly over 1, 2, 4, ... shards.
PACK_GROUPS = 64
_HASH_SPACE = 2**128


def pack_group(device_id: str) -> int:
    """The pack group of a device: stable across runs and processes (crc32, not ``hash``)."""
    return zlib.crc32(device_id.encode()) % PACK_GROUPS


def group_entry(data: bytes, group: int) -> dict[str, Any]:
    """A PutRecords entry for a group: its partition key, and an explicit hash key in the middle of the
    group's slice of the hash space (an even spread over shards, which MD5 of 64 keys would not give)."""
    return {"Data": data, "PartitionKey": f"pack-{group:02d}",
            "ExplicitHashKey": str((2 * group + 1) * _HASH_SPACE // (2 * PACK_GROUPS))}


def encode_pack(payloads: Sequence[bytes], compress: bool = False, level: int = GZIP_LEVEL) -> bytes:
    """A pack's record data: the lone payload as it is, else the JSON array of the payloads, gzip-compressed
    when ``compress`` (mtime 0, so the same readings give the same bytes). A lone reading is never
    compressed: gzip's 18-byte frame takes back most of what deflate saves on ~150 bytes."""
    if len(payloads) == 1:
        return payloads[0]
    data = b"[" + b",".join(payloads) + b"]"
    return gzip.compress(data, compresslevel=level, mtime=0) if compress else data


class KinesisSink(Sink):
    """PutRecords in batches of <= 500 records and <= 5 MiB; optionally packs readings into records.

    With ``pack`` > 1, up to ``pack`` good readings are packed into one Kinesis record per flush: a JSON
    array of the readings' payloads (docs/data-model.md), at most ``max_pack_bytes`` (64 KiB) of JSON,
    and with ``compress`` the gzip of that array (``encode_pack``): the processor caps what a record
    inflates to, so the pack size limit is the JSON's; Kinesis's 1 MiB record limit is the compressed
    record's (a pack over it, which only incompressible readings can make, is split in two). A pack
    holds readings of one *pack group* only (``PACK_GROUPS`` groups, a device's group fixed by a hash of
    its id), and every record of a group carries the group's partition key and an explicit hash key in
    the middle of the group's slice of the hash space. So a device's records always land on one shard
    and, with ParallelizationFactor > 1, in one of that shard's concurrent batches, in send order: the
    precondition of the processor's per-shard watermark (docs/processing.md#exactly-once). Packing any
    devices together (as before) put one device's readings on several shards and, under a
    parallelization factor, in concurrent batches of one shard, where a later batch's watermark could
    hide an earlier batch's readings. 64 groups spread evenly over 1, 2, 4, ... 64 shards.
    A pack of one reading is sent as the plain object. Malformed test records are always sent alone, as
    produced (so the processor sees exactly their malformation), under their device's group key, after
    closing that group's open pack so that send order per key is kept. ``pack=1`` sends one record per
    reading, partition key = device id.

    Only the entries that failed are resent (PutRecords is not all-or-nothing), with exponential
    backoff and jitter; a failed packed entry is resent whole. A token bucket keeps the producer under
    the stream's write limits (1000 records/s and 1 MiB/s per shard, counted in Kinesis records and
    bytes) assuming partition keys spread evenly over shards.
    """

    name = "kinesis"

    def __init__(
        self,
        stream_name: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        shard_count: int | None = None,
        client: Any = None,
        clock: Clock | None = None,
        max_attempts: int = 10,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 2.0,
        headroom: float = 0.95,
        rng: random.Random | None = None,
        pack: int = 1,
        max_pack_bytes: int = MAX_PACK_BYTES,
        compress: bool = False,
        gzip_level: int = GZIP_LEVEL,
        max_record_bytes: int = KINESIS_MAX_RECORD_BYTES,
    ) -> None:
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1, got {pack}")
        if not 1 <= max_pack_bytes <= MAX_PACKED_BYTES:
            raise ValueError(f"max_pack_bytes must be in [1, {MAX_PACKED_BYTES}], got {max_pack_bytes}")
        self.stream_name = stream_name
        self.endpoint_url = endpoint_url
        self.region = region
        self.shard_count = shard_count
        self.client = client
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.backoff = Backoff(backoff_base_s, backoff_cap_s, rng or random.Random())
        self.headroom = headroom
        self.pack = pack
        self.max_pack_bytes = max_pack_bytes
        self.compress = compress
        self.gzip_level = gzip_level
        self.max_record_bytes = max_record_bytes
        # Entries waiting for PutRecords, each with the number of readings it carries.
        self._batch: list[tuple[dict[str, Any], int]] = []
        self._batch_bytes = 0
        # The open pack of each group: payloads of good readings and its JSON array size.
        self._packs: dict[int, tuple[list[bytes], int]] = {}
        self.max_batch_records = KINESIS_MAX_RECORDS
        self.max_batch_bytes = KINESIS_MAX_BATCH_BYTES
        self._records_bucket: TokenBucket | None = None
        self._bytes_bucket: TokenBucket | None = None

    def setup(self) -> None:
        if self.client is None:
            import boto3
            from botocore.config import Config

            self.client = boto3.client(
                "kinesis",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                # We retry failed entries ourselves; keep botocore's whole-call retries modest.
                config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5),
            )
        if self.shard_count is None:
            summary = self.client.describe_stream_summary(StreamName=self.stream_name)
            self.shard_count = int(summary["StreamDescriptionSummary"]["OpenShardCount"])
        shards = max(1, self.shard_count)
        records_per_s = shards * SHARD_RECORDS_PER_S * self.headroom
        bytes_per_s = shards * SHARD_BYTES_PER_S * self.headroom
        self._records_bucket = TokenBucket(records_per_s, records_per_s, self.clock)
        self._bytes_bucket = TokenBucket(bytes_per_s, bytes_per_s, self.clock)
        # A batch bigger than one second of the stream's budget would be throttled on arrival.
        self.max_batch_records = min(KINESIS_MAX_RECORDS, int(records_per_s))
        self.max_batch_bytes = min(KINESIS_MAX_BATCH_BYTES, int(bytes_per_s))

    def add(self, produced: Produced) -> None:
        payload = produced.payload
        if self.pack <= 1:
            self._add_entry({"Data": payload, "PartitionKey": produced.device_id}, 1)
            return
        group = pack_group(produced.device_id)
        if produced.category == "malformed":
            self._close_pack(group)  # keep send order per key: the group's open pack goes first
            self._add_entry(group_entry(payload, group), 1)
            return
        size = len(payload) + 1  # + the comma (or bracket) that joins it
        open_pack, pack_bytes = self._packs.get(group, ([], 1))
        if open_pack and pack_bytes + size > self.max_pack_bytes:
            self._close_pack(group)
            open_pack, pack_bytes = [], 1
        open_pack.append(payload)
        self._packs[group] = (open_pack, pack_bytes + size)
        if len(open_pack) >= self.pack:
            self._close_pack(group)

    def _close_pack(self, group: int) -> None:
        pack = self._packs.pop(group, ([], 1))[0]
        if pack:
            self._put_pack(pack, group)

    def _put_pack(self, pack: list[bytes], group: int) -> None:
        entry = group_entry(encode_pack(pack, self.compress, self.gzip_level), group)
        if len(pack) > 1 and len(entry["Data"]) + len(entry["PartitionKey"]) > self.max_record_bytes:
            # Over Kinesis's record limit: two packs, in order (so the group's send order holds).
            half = len(pack) // 2
            self._put_pack(pack[:half], group)
            self._put_pack(pack[half:], group)
            return
        self._add_entry(entry, len(pack))

    def _add_entry(self, entry: dict[str, Any], readings: int) -> None:
        size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
        if self._batch and (
            len(self._batch) >= self.max_batch_records or self._batch_bytes + size > self.max_batch_bytes
        ):
            self._send_batch()
        self._batch.append((entry, readings))
        self._batch_bytes += size

    def flush(self) -> None:
        for group in sorted(self._packs):
            self._close_pack(group)
        self._send_batch()

    def _send_batch(self) -> None:
        if not self._batch:
            return
        batch, size = self._batch, self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        assert self._records_bucket is not None, "call setup() first"
        assert self._bytes_bucket is not None, "call setup() first"
        self.stats.throttled_s += self._records_bucket.take(len(batch))
        self.stats.throttled_s += self._bytes_bucket.take(size)
        self._send(batch)

    def _send(self, entries: list[tuple[dict[str, Any], int]]) -> None:
        from botocore.exceptions import ClientError, EndpointConnectionError

        pending = entries
        for attempt in range(self.max_attempts):
            if attempt:
                self.stats.retries += 1
                self.clock.sleep(self.backoff.delay(attempt - 1))
            try:
                self.stats.requests += 1
                response = self.client.put_records(
                    StreamName=self.stream_name, Records=[entry for entry, _ in pending]
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "ClientError")
                self.stats.errors[code] += 1
                if code not in _RETRYABLE:
                    break
                continue
            except EndpointConnectionError:
                self.stats.errors["EndpointConnectionError"] += 1
                continue
            results = response.get("Records", [])
            retry: list[tuple[dict[str, Any], int]] = []
            for pair, result in zip(pending, results, strict=False):
                code = result.get("ErrorCode")
                if code:
                    self.stats.errors[code] += 1
                    retry.append(pair)  # a packed entry is resent whole
                else:
                    self.stats.sent += pair[1]
                    self.stats.records += 1
                    self.stats.bytes += len(pair[0]["Data"])
            # A response shorter than the request would be a service bug; treat the rest as failed.
            retry.extend(pending[len(results) :])
            pending = retry
            if not pending:
                return
        self.stats.failed += sum(n for _, n in pending)


class HttpSink(Sink):
    """POST JSON arrays to the API Gateway ``/ingest`` URL, each device with its own credential.

    ``/ingest`` accepts a request only with ``Authorization: Device <id>.<secret>`` and only readings of
    that device (docs/security.md), so readings are batched per device: a device's batch is posted when
    it reaches ``max_records`` / ``max_body_bytes`` and at every ``flush()``. ``authorization(device_id)``
    gives the header value (``simulator.credentials.authorization`` over the fleet secret).

    The device a record is sent as is the ``device_id`` it names when its payload is a JSON object with
    one (an ``unknown_device`` record then goes out as that unregistered device and is refused at the
    edge, as a real unregistered device would be), else the device that produced it. Records whose
    payload is not valid JSON cannot sit inside an array, so each is sent alone as the raw body. 4xx
    answers count as rejected (expected for malformed records); 429 and 5xx are retried with backoff.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        authorization: Callable[[str], str] | None = None,
        *,
        max_records: int = 500,
        max_body_bytes: int = 1_000_000,
        timeout_s: float = 10.0,
        client: Any = None,
        clock: Clock | None = None,
        max_attempts: int = 6,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        if not url:
            raise ValueError("HttpSink needs the ingest URL (SIM_INGEST_URL)")
        if authorization is None:
            raise ValueError("HttpSink needs the devices' credentials (SIM_DEVICE_SECRET or its file)")
        self.url = url
        self.authorization = authorization
        self.max_records = max_records
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.client = client
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.backoff = Backoff(0.1, 5.0, rng or random.Random())
        self._batches: dict[str, list[bytes]] = {}
        self._batch_bytes: dict[str, int] = {}
        self.statuses: Counter[int] = Counter()

    def setup(self) -> None:
        if self.client is None:
            import httpx

            self.client = httpx.Client(timeout=self.timeout_s)

    def add(self, produced: Produced) -> None:
        payload = produced.payload
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._post(produced.device_id, payload, 1)
            return
        named = doc.get("device_id") if isinstance(doc, dict) else None
        device = named if isinstance(named, str) and named else produced.device_id
        batch = self._batches.setdefault(device, [])
        size = self._batch_bytes.get(device, 2)
        if batch and (len(batch) >= self.max_records or size + len(payload) + 1 > self.max_body_bytes):
            self._flush_device(device)
            batch, size = self._batches.setdefault(device, []), 2
        batch.append(payload)
        self._batch_bytes[device] = size + len(payload) + 1

    def _flush_device(self, device: str) -> None:
        batch = self._batches.pop(device, [])
        self._batch_bytes.pop(device, None)
        if batch:
            self._post(device, b"[" + b",".join(batch) + b"]", len(batch))

    def flush(self) -> None:
        for device in list(self._batches):
            self._flush_device(device)

    def _post(self, device: str, body: bytes, count: int) -> None:
        headers = {"content-type": "application/json", "authorization": self.authorization(device)}
        for attempt in range(self.max_attempts):
            if attempt:
                self.stats.retries += 1
                self.clock.sleep(self.backoff.delay(attempt - 1))
            self.stats.requests += 1
            try:
                response = self.client.post(self.url, content=body, headers=headers)
            except Exception as exc:  # any transport error is retried, then counted
                self.stats.errors[type(exc).__name__] += 1
                continue
            status = response.status_code
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.stats.sent += count
                self.stats.bytes += len(body)
                return
            if status == 429 or status >= 500:
                continue
            self.stats.rejected += count
            return
        self.stats.failed += count

    def close(self) -> None:
        self.flush()
        if self.client is not None and hasattr(self.client, "close"):
            self.client.close()


def make_sink(config: SimulatorConfig, clock: Clock | None = None) -> Sink:
    """The sink ``config.sink`` names, configured from ``config`` (not yet set up)."""
    if config.sink == "kinesis":
        return KinesisSink(
            config.stream_name,
            endpoint_url=config.endpoint_url,
            region=config.region,
            shard_count=config.shard_count,
            clock=clock,
            pack=config.pack,
            compress=config.compress,
        )
    if config.sink == "http":
        if not config.ingest_url:
            raise ValueError("HttpSink needs the ingest URL (SIM_INGEST_URL)")
        from simulator.credentials import authorization, load_fleet_secret

        fleet_secret = load_fleet_secret(config.device_secret, config.device_secret_file)
        return HttpSink(config.ingest_url, lambda device: authorization(fleet_secret, device), clock=clock)
    if config.sink == "mqtt":
        from simulator.mqtt_sink import MqttSink

        return MqttSink(config.mqtt_key_dir)
    if config.sink == "file":
        if not config.output_path:
            raise ValueError("the file sink needs SIM_OUTPUT_PATH / --output")
        return JsonLinesSink(config.output_path)
    if config.sink == "null":
        return NullSink()
    return JsonLinesSink(None)
