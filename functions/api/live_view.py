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


# Placeholders of dashboard.html filled with the vendored map files (static/vendor/README.md): the page
# stays one response that loads nothing else, through every route that serves it (API Gateway opens only
# /dashboard without a key), and the CSP below hashes the inlined script like the page's own.
# The minified script's first line is its notice with the project's URL: kept as a notice without it (the
# page names no other origin at all; the full licence is static/vendor/LICENSE.topojson-client).
_VENDOR = {
    "<!--vendor:topojson-client-->": (
        "topojson-client.min.js",
        "<script>/* topojson-client v3.1.0, Copyright 2019 Mike Bostock, ISC licence */\n{}</script>"),
    "<!--vendor:world-atlas-->": ("countries-110m.json",
                                  '<script type="application/json" id="world-atlas">{}</script>'),
}


def _inline_vendor(html: str) -> str:
    static = resources.files("functions.api").joinpath("static/vendor")
    for marker, (name, wrapper) in _VENDOR.items():
        body = static.joinpath(name).read_text(encoding="utf-8").strip()
        if body.startswith("// "):
            body = body.split("\n", 1)[1]
        if "</script" in body:
            raise ValueError(f"static/vendor/{name} cannot be inlined: it contains '</script'")
        html = html.replace(marker, wrapper.format(body))
    return html


@cache
def page() -> LivePage:
    html = _inline_vendor(
        resources.files("functions.api").joinpath("static/dashboard.html").read_text(encoding="utf-8"))
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
