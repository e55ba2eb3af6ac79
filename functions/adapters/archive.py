"""S3 archive adapter: the processor's gzip JSON-lines puts, the compactor's raw object access and the
one reading path every archive reader uses (``iter_lines``/``iter_objects``).

Keys are deterministic. The processor's puts are conditional (first write wins: a redelivered range keeps
the object its first application wrote, verdicts included); the compactor's writes overwrite (a re-run
compaction rewrites the same object). ``S3Archive`` implements ``Archive``, ``ArchiveObjects`` and
``ArchiveReader`` (functions/core/ports.py). Where a line lives is ``functions.core.archive_layout``,
what it holds ``functions.core.archive_lines``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from functions.adapters.client_errors import error_code, translate_client_error
from functions.adapters.clients import client
from functions.core import archive_layout
from functions.core.jsonl_gzip import gzip_lines
from functions.core.ports import StoredObject
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

    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> bool:
        try:
            # No ContentEncoding: readers get the .gz bytes as stored (no transparent decompression).
            # IfNoneMatch "*": first write wins (functions/core/ports.py says why); S3 answers 412.
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=gzip_lines(lines), ContentType="application/x-ndjson",
                IfNoneMatch="*",
            )
        except Exception as exc:
            if error_code(exc) == "PreconditionFailed":
                return False
            raise translate_client_error(exc, "archive.put_object") from exc
        return True

    def listing(self, prefix: str, start_after: str = "") -> list[StoredObject]:
        out: list[StoredObject] = []
        # StartAfter: S3 skips the earlier keys itself (the archive's keys sort in time order).
        bounds = {"StartAfter": start_after} if start_after else {}
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self._bucket, Prefix=prefix, **bounds)
            for page in pages:
                for obj in page.get("Contents", []):
                    etag = str(obj.get("ETag", "")).strip('"')
                    out.append(StoredObject(obj["Key"], etag, int(obj["Size"])))
        except Exception as exc:
            raise translate_client_error(exc, "archive.list_objects") from exc
        return sorted(out, key=lambda o: o.key)

    def read(self, key: str) -> bytes | None:
        try:
            body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise translate_client_error(exc, "archive.get_object") from exc
        return body

    def iter_objects(
        self, prefix: str, since_ms: int | None = None
    ) -> Iterator[tuple[StoredObject, list[bytes]]]:
        return archive_layout.iter_objects(self, prefix, since_ms)

    def iter_lines(self, prefix: str, since_ms: int | None = None) -> Iterator[bytes]:
        return archive_layout.iter_lines(self, prefix, since_ms)

    def write(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as exc:
            raise translate_client_error(exc, "archive.put_object") from exc


def _is_missing(exc: Exception) -> bool:
    """NoSuchKey from GetObject (404 without a code where a HEAD-like path answers)."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")
