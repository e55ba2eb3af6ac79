"""The Kinesis producer adapter: chunking limits and retry of failed entries only."""

from __future__ import annotations

from functions.adapters.kinesis import MAX_RECORDS_PER_CALL, KinesisPublisher
from testkit.fakes import FakeKinesisClient


def test_chunks_at_500_records() -> None:
    fake = FakeKinesisClient()
    pub = KinesisPublisher("s", fake, sleep=lambda _: None)
    results = pub.put_records([(b"{}", f"k{i}") for i in range(1201)])
    assert [len(c) for c in fake.calls] == [MAX_RECORDS_PER_CALL, MAX_RECORDS_PER_CALL, 201]
    assert all(r.ok for r in results)


def test_chunks_by_bytes() -> None:
    fake = FakeKinesisClient()
    pub = KinesisPublisher("s", fake, sleep=lambda _: None)
    pub.put_records([(b"x" * 1_000_000, "k")] * 6)
    assert [len(c) for c in fake.calls] == [5, 1]


def test_results_keep_input_order_across_retries() -> None:
    fake = FakeKinesisClient([{0, 2}])
    pub = KinesisPublisher("s", fake, sleep=lambda _: None)
    results = pub.put_records([(b"a", "a"), (b"b", "b"), (b"c", "c")])
    assert [r.index for r in results] == [0, 1, 2]
    assert all(r.ok for r in results)
    assert [rec["PartitionKey"] for rec in fake.calls[1]] == ["a", "c"]
    # sequence numbers follow the actual order stored
    by_data = {data: seq for seq, data, _ in fake.stored}
    assert [r.sequence_number for r in results] == [by_data[b"a"], by_data[b"b"], by_data[b"c"]]


def test_gives_up_after_max_attempts_with_the_earlier_delay_maxima() -> None:
    # Every attempt fails entry 0: 5 calls, 4 sleeps, each within 0.05 * 2**n (n = 1..4) as before Backoff.
    fake = FakeKinesisClient([{0}] * 10)
    sleeps: list[float] = []
    pub = KinesisPublisher("s", fake, sleep=sleeps.append)
    results = pub.put_records([(b"a", "a")])
    assert len(fake.calls) == 5
    assert len(sleeps) == 4
    assert all(0 <= s <= 0.05 * 2**n for n, s in enumerate(sleeps, start=1))
    assert not results[0].ok
    assert results[0].error_code == "ProvisionedThroughputExceededException"
