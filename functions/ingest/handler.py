"""Ingest Lambda behind API Gateway REST proxy ``POST /ingest``.

Template handler: ``functions.ingest.handler.handler``.

Who may write: the device the request is authenticated as (docs/security.md). API Gateway's Lambda
authorizer (``functions.authorizer.handler``) checks the device credential at the edge and passes the
device id as ``requestContext.authorizer`` (``device_id`` / ``principalId``). Where the gateway runs no
authorizer (LocalStack 4.14 community) the request arrives without that context and this function checks
the ``Authorization`` header itself with the same code. Every reading's ``device_id`` must be that
principal; a request holding any other device's reading is refused whole (403 ``device_mismatch``,
nothing written).

Body: one reading object or an array of up to ``settings.ingest_max_records``. Each record is checked
for shape only (reading.schema.json; the processor repeats every check, defence in depth) and the
accepted ones go to Kinesis with the device id as partition key.

Responses (always JSON):
- 200 ``{"accepted", "rejected", "failed", "results": [...]}``, one result per input record
  (``{"index", "status", "reason"?, "message"?, "sequence_number"?}``),
  when every accepted record is on the stream (some may have been rejected);
- 401 ``unauthorized`` without a device credential, 403 ``forbidden`` for a wrong one (only where the
  gateway did not already answer), 403 ``device_mismatch`` (with ``indexes``) for readings of another
  device;
- 400 ``{"error": {"code", "message"}}`` for a body that is not JSON, not an object or array, an empty
  array, or (with ``results``) when no record passed validation;
- 413 for a body over ``ingest_max_body_bytes`` or more than ``ingest_max_records`` records;
- 503 (``Retry-After``) when some accepted records could not be written after retries: their results say
  ``"status": "failed"`` so the client re-sends exactly those; nothing accepted is silently lost.

A plain handler rather than Powertools' resolver: there is one route, and the emulators differ in how they
present the stage in ``path``; API Gateway only routes ``POST /ingest`` here anyway.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import orjson
from aws_lambda_powertools import Logger

from functions.auth.device_credentials import header_value, verify
from functions.core.ports import CredentialLookup, Publisher
from functions.schemas import compiled_validator
from functions.settings import IngestSettings, get_settings

logger = Logger(service="ingest")

_validate = compiled_validator("reading")
_publisher: Publisher | None = None
_credentials: CredentialLookup | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def to_proxy(self) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        headers.update(self.headers or {})
        return {"statusCode": self.status, "headers": headers, "body": orjson.dumps(self.body).decode()}


def error(status: int, code: str, message: str, **extra: Any) -> HttpResponse:
    return HttpResponse(status, {"error": {"code": code, "message": message}, **extra})


def _body_bytes(event: dict[str, Any]) -> bytes | None:
    body = event.get("body")
    if body is None:
        return None
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def ingest(
    body: bytes | None, publisher: Publisher, settings: IngestSettings, *, principal: str
) -> HttpResponse:
    """The whole request logic, without API Gateway's envelope (unit-testable with a fake publisher).

    ``principal`` is the authenticated device id: every reading must carry it.
    """
    items = _items(body, settings)
    if isinstance(items, HttpResponse):
        return items
    refusal = _foreign_refusal(items, principal)
    if refusal is not None:
        return refusal
    results, entries, entry_index = _validated(items, settings)
    rejected = len(items) - len(entries)
    if not entries:
        return error(
            400,
            "no_valid_records",
            "no record passed validation",
            accepted=0,
            rejected=rejected,
            results=results,
        )
    failed = _publish(publisher, entries, entry_index, results)
    body_out = {"accepted": len(entries) - failed, "rejected": rejected, "failed": failed, "results": results}
    if failed:
        logger.warning(
            "records not stored after retries", extra={"failed": failed, "accepted": len(entries) - failed}
        )
        return HttpResponse(
            503,
            {
                "error": {
                    "code": "stream_unavailable",
                    "message": f"{failed} record(s) not stored; retry them",
                },
                **body_out,
            },
            {"Retry-After": "1"},
        )
    return HttpResponse(200, body_out)


def _items(body: bytes | None, settings: IngestSettings) -> list[Any] | HttpResponse:
    """The request's records (a single object counts as one), or the 400/413 that refuses the body."""
    if body is None or not body.strip():
        return error(400, "empty_body", "request body must be a reading object or an array of readings")
    if len(body) > settings.ingest_max_body_bytes:
        return error(413, "body_too_large", f"request body exceeds {settings.ingest_max_body_bytes} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error(400, "invalid_json", f"request body is not valid JSON: {str(exc)[:120]}")
    if isinstance(doc, dict):
        items: list[Any] = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        return error(400, "invalid_body", "request body must be a JSON object or array")
    if not items:
        return error(400, "empty_array", "request body is an empty array")
    if len(items) > settings.ingest_max_records:
        return error(413, "too_many_records", f"at most {settings.ingest_max_records} records per request")
    return items


def _foreign_refusal(items: list[Any], principal: str) -> HttpResponse | None:
    """The 403 for a request holding any reading of another device (nothing is written), else None."""
    foreign = [
        index
        for index, item in enumerate(items)
        if isinstance(item, dict) and "device_id" in item and item["device_id"] != principal
    ]
    if not foreign:
        return None
    logger.warning(
        "readings of another device refused", extra={"principal": principal, "foreign": len(foreign)}
    )
    return error(
        403,
        "device_mismatch",
        f"this credential writes readings of {principal} only; {len(foreign)} reading(s) name another"
        " device; nothing was written",
        indexes=foreign[:50],
    )


def _validated(
    items: list[Any], settings: IngestSettings
) -> tuple[list[dict[str, Any]], list[tuple[bytes, str]], list[int]]:
    """(one result per item, the Kinesis entries of the accepted ones, each entry's item index)."""
    results: list[dict[str, Any]] = []
    entries: list[tuple[bytes, str]] = []
    entry_index: list[int] = []  # position in `results` of each Kinesis entry
    for index, item in enumerate(items):
        try:
            _validate(item)
        except fastjsonschema.JsonSchemaValueException as exc:
            results.append(
                {"index": index, "status": "rejected", "reason": "schema_invalid", "message": exc.message}
            )
            continue
        data = orjson.dumps(item)
        if len(data) > settings.max_record_bytes:
            results.append(
                {
                    "index": index,
                    "status": "rejected",
                    "reason": "oversized",
                    "message": f"record exceeds {settings.max_record_bytes} bytes",
                }
            )
            continue
        results.append({"index": index, "status": "accepted"})
        entries.append((data, item["device_id"]))
        entry_index.append(index)
    return results, entries, entry_index


def _publish(
    publisher: Publisher,
    entries: list[tuple[bytes, str]],
    entry_index: list[int],
    results: list[dict[str, Any]],
) -> int:
    """Put the entries on the stream; each one's outcome goes into its result. Returns how many failed."""
    failed = 0
    for put, index in zip(publisher.put_records(entries), entry_index, strict=True):
        if put.ok:
            results[index]["sequence_number"] = put.sequence_number
        else:
            failed += 1
            results[index] = {
                "index": index,
                "status": "failed",
                "reason": "stream_unavailable",
                "message": f"not stored ({put.error_code}); retry this record",
            }
    return failed


def _get_publisher() -> Publisher:
    global _publisher
    if _publisher is None:
        from functions.adapters.kinesis import KinesisPublisher

        _publisher = KinesisPublisher(get_settings().stream_name)
    return _publisher


def authenticated_device(event: dict[str, Any], store: CredentialLookup) -> str | HttpResponse:
    """The device the request is authenticated as, or the 401/403 to answer.

    The authorizer's context wins (AWS, ministack); without one the credential is checked here.
    """
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    principal = context.get("device_id") or context.get("principalId")
    if isinstance(principal, str) and principal:
        return principal
    header = header_value(event.get("headers"))
    if not header:
        return error(401, "unauthorized", "a device credential is required (Authorization: Device ...)")
    device_id = verify(header, store.credential_hash)
    if device_id is None:
        return error(403, "forbidden", "the device credential is not valid")
    return device_id


def _get_credentials() -> CredentialLookup:
    global _credentials
    if _credentials is None:
        from functions.adapters.devices import DynamoDeviceRegistry

        _credentials = DynamoDeviceRegistry(get_settings().devices_table)
    return _credentials


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = get_settings()
    method = str(event.get("httpMethod") or "POST").upper()
    if method != "POST":
        return error(405, "method_not_allowed", "use POST").to_proxy()
    principal = authenticated_device(event, _get_credentials())
    if isinstance(principal, HttpResponse):
        logger.info("ingest request refused", extra={"status": principal.status})
        return principal.to_proxy()
    try:
        body = _body_bytes(event)
    except (binascii.Error, ValueError):
        return error(400, "invalid_body", "request body is not valid base64").to_proxy()
    response = ingest(body, _get_publisher(), settings, principal=principal)
    logger.info(
        "ingest request",
        extra={
            "status": response.status,
            **{k: response.body.get(k) for k in ("accepted", "rejected", "failed")},
        },
    )
    return response.to_proxy()
