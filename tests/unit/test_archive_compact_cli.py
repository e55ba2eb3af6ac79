"""``iotpipe archive compact --all``: which hours it leaves to the schedule."""

from __future__ import annotations

from datetime import UTC, datetime

from iotpipe.ops.archive_compaction import split_open


def test_compact_all_leaves_the_open_hours_to_the_schedule() -> None:
    # GIVEN archived hours up to the one being written, at 18:20 UTC with the compactor's 30-minute settle
    hours = ["2026-12-06T16", "2026-12-06T17", "2026-12-06T18"]
    now_ms = int(datetime(2026, 12, 6, 18, 20, tzinfo=UTC).timestamp() * 1000)
    # THEN the hour being written and the one that ended 20 minutes ago are open, the earlier one is not
    assert split_open(hours, now_ms, 30) == (["2026-12-06T16"], ["2026-12-06T17", "2026-12-06T18"])
    # AND 40 minutes after 17:00 ended, it is settled; without a settle time only the current hour is open
    later = now_ms + 20 * 60_000
    assert split_open(hours, later, 30) == (["2026-12-06T16", "2026-12-06T17"], ["2026-12-06T18"])
    assert split_open(hours, now_ms, 0) == (["2026-12-06T16", "2026-12-06T17"], ["2026-12-06T18"])
