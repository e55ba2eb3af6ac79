"""Reading the archive bucket's gzip JSON-lines objects back, line by line (what the tests check against)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArchivedLine:
    key: str
    dt: str  # YYYY-MM-DD, from the key's dt= folder
    hour: str  # HH, from the key's hour= folder
    doc: dict[str, Any]


def archived_lines(s3: Any, bucket: str, prefix: str) -> Iterator[ArchivedLine]:
    """Every line of every object under ``prefix`` (``processed/`` or ``quarantine/``), in key order.

    Only name an archive prefix: the bucket also holds Athena's results and the compactor's Parquet files.
    """
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            _, dt, hour, _name = obj["Key"].split("/")
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            for line in body.splitlines():
                doc = json.loads(line)
                yield ArchivedLine(obj["Key"], dt.removeprefix("dt="), hour.removeprefix("hour="), doc)
