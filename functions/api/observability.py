"""Structured JSON logs with a per-request correlation id.

The correlation id lives in a ContextVar: FastAPI runs sync routes in a worker thread but copies the
context into it, so every log line of one request carries the same id without global logger state
(Powertools' ``append_keys`` is process-wide and would leak ids between concurrent requests).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger

from functions.settings import get_settings

logger = Logger(service="query-api", level=get_settings().log_level, use_rfc3339=True)
# Powertools logs through the stdlib; keep uvicorn's access log from duplicating our request lines.
logging.getLogger("uvicorn.access").disabled = True

correlation_id: ContextVar[str] = ContextVar("correlation_id", default="")


def log_event(message: str, level: str = "info", **fields: Any) -> None:
    fields.setdefault("correlation_id", correlation_id.get())
    getattr(logger, level)(message, extra=fields)
