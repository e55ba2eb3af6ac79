"""S3 archive adapter: one gzip JSON-lines object per put, overwriting (deterministic keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from functions.adapters.client_errors import translate_client_error
from functions.adapters.clients import client
from functions.core.jsonl_gzip import gzip_lines
from functions.settings import get_settings


class S3Archive:
    def __init__(self, bucket: str | None = None, s3: Any | None = None) -> None:
        self._bucket = bucket or get_settings().archive_bucket
        self._client = s3

    @property
    def _s3(self) -> Any:
        if self._client is None:
            self._client = client("s3")
        return self._client

    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> None:
        try:
            # No ContentEncoding: readers get the .gz bytes as stored (no transparent decompression).
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=gzip_lines(lines), ContentType="application/x-ndjson"
            )
        except Exception as exc:
            raise translate_client_error(exc, "archive.put_object") from exc
