"""The archive's object format: gzip JSON lines, byte-for-byte deterministic; and reading them back.

Shared by the S3 adapter and the in-memory archive fake, so both hold exactly the bytes S3 would.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence


def gzip_lines(lines: Sequence[bytes]) -> bytes:
    """Deterministic gzip of newline-terminated lines (mtime=0: same input, same bytes, same ETag)."""
    return gzip.compress(b"".join(line + b"\n" for line in lines), compresslevel=6, mtime=0)


def gunzip_lines(body: bytes) -> list[bytes]:
    """The non-empty lines of one archive object (``gzip_lines`` reversed)."""
    return [line for line in gzip.decompress(body).splitlines() if line.strip()]
