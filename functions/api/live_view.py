"""Loads the live-view page (static/dashboard.html) once and derives its Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class LivePage:
    html: str
    csp: str


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def page() -> LivePage:
    html = resources.files("functions.api").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    scripts = [_hash(body) for tag, body in _BLOCK.findall(html) if tag == "script"]
    styles = [_hash(body) for tag, body in _BLOCK.findall(html) if tag == "style"]
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(scripts)}",
            f"style-src {' '.join(styles)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return LivePage(html, csp)
