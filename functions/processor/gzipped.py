"""Compressed records: a Kinesis record's data may be the gzip (RFC 1952) of a reading or packed record.

gzip rather than raw zlib or a framing of our own: every language's standard library writes it
(Python ``gzip.compress``, Java ``GZIPOutputStream``, Go ``compress/gzip``, Node ``zlib.gzipSync``, the
``gzip`` tool), and its two magic bytes (1f 8b) can never start JSON text, so a record says by itself
whether it is compressed and the decoder needs no flag. One gzip member per record (docs/data-model.md).

Decompression is hostile-input safe: it never produces more than ``cap + 1`` bytes, whatever the input
claims (a few KB of gzip can inflate to gigabytes), and it refuses truncated streams and bytes after the
end of the stream instead of guessing.
"""

from __future__ import annotations

import zlib

from functions.processor.records import MALFORMED_JSON, OVERSIZED

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 31  # zlib's gzip framing (16 + a 32 KiB window): header and CRC-32/size trailer checked


class GzipRefused(ValueError):
    """A compressed record that cannot be read: ``reason`` is the quarantine reason, ``detail`` why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def is_gzip(raw: bytes) -> bool:
    return raw[:2] == GZIP_MAGIC


def inflate(raw: bytes, cap: int) -> bytes:
    """The decompressed bytes of ``raw`` (one gzip member), at most ``cap`` of them.

    Raises ``GzipRefused``: ``oversized`` when the data would inflate past ``cap`` bytes (decompression
    stops at ``cap + 1``), ``malformed_json`` when it is not gzip, is truncated, fails its CRC or length
    check, or has bytes after the end of the gzip stream.
    """
    inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
    try:
        out = inflater.decompress(raw, cap + 1)
    except zlib.error as exc:
        raise GzipRefused(MALFORMED_JSON, f"gzip data does not decompress: {exc}") from None
    if len(out) > cap:
        raise GzipRefused(OVERSIZED, f"gzip record inflates past {cap} bytes")
    if not inflater.eof:
        raise GzipRefused(MALFORMED_JSON, "gzip data does not decompress: truncated (no end of stream)")
    if inflater.unused_data:
        raise GzipRefused(
            MALFORMED_JSON,
            f"gzip data does not decompress: {len(inflater.unused_data)} bytes after the end of the stream",
        )
    return out
