"""The ground-truth labels file: one row per record sent, for evaluating detector and quarantine.

CSV by default (``device_id,timestamp,event_ms,label,category,expected_reason``); JSON lines when the
path ends in ``.jsonl``. ``timestamp`` is what the record claims (ISO 8601 UTC, ms), so rows join the
pipeline's output on (device_id, timestamp); ``expected_reason`` is the quarantine reason a malformed
record should get (empty for good readings).
"""

from __future__ import annotations

import csv
from typing import IO

import numpy as np
import orjson

from simulator.malformed import EXPECTED_REASON
from simulator.stream import Produced

FIELDS: tuple[str, ...] = ("device_id", "timestamp", "event_ms", "label", "category", "expected_reason")


def iso_ms(event_ms: int) -> str:
    return f"{np.datetime_as_string(np.datetime64(event_ms, 'ms'), unit='ms')}Z"


class LabelWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.jsonl = path.endswith(".jsonl")
        self._file: IO[str] | None = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = None if self.jsonl else csv.writer(self._file)
        if self._csv is not None:
            self._csv.writerow(FIELDS)
        self.rows = 0

    def write(self, produced: Produced) -> None:
        assert self._file is not None, "label writer is closed"
        row = (
            produced.device_id,
            iso_ms(produced.event_ms),
            produced.event_ms,
            produced.kind,
            produced.category,
            EXPECTED_REASON.get(produced.kind, ""),
        )
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self._file.write(orjson.dumps(dict(zip(FIELDS, row, strict=True))).decode() + "\n")
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
