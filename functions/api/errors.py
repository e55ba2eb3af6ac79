"""One error shape for every failure: ``{"error": {"code": "...", "message": "..."}}``.

Routes and dependencies raise :class:`ApiError` subclasses; the handlers registered by
:func:`install_error_handlers` also reshape FastAPI's validation errors (422) and Starlette's own
HTTP errors (404 for unknown routes, 405) so a client never has to parse two error formats.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.api.observability import log_event
from functions.core.errors import StoreError, StoreThrottled


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. `invalid_cursor`.")
    message: str = Field(description="Human-readable explanation.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "request_too_large"


# Documented on every data route so the OpenAPI document (and schemathesis) knows each status.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter (time range, cursor, limit)."},
    403: {"model": ErrorBody, "description": "Missing or invalid API key."},
    413: {"model": ErrorBody, "description": "Request too large."},
    422: {"model": ErrorBody, "description": "Parameter failed validation."},
    429: {"model": ErrorBody, "description": "The table is throttling; retry after a pause."},
    503: {"model": ErrorBody, "description": "The table could not be read."},
}
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such device."}
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 429: "throttled"}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(StoreThrottled)
    async def _throttled(_: Request, exc: StoreThrottled) -> JSONResponse:
        log_event("store_throttled", level="warning", error_code=str(exc))
        return error_response(
            429, "throttled", "the table is throttling reads; retry shortly", {"Retry-After": "1"}
        )

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        log_event("store_error", level="error", error_code=str(exc))
        return error_response(503, "store_unavailable", "the table could not be read")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Log the type, not the message: messages of driver errors can carry request data.
        log_event("unhandled_error", level="error", error_type=type(exc).__name__)
        return error_response(500, "internal_error", "Internal error")
