"""The live view rendered by a real headless Chromium against the app served by uvicorn.

The app runs with seeded in-memory stores (``testkit.demo_api``): the page's behaviour (key from the
URL fragment, relative fetches, fleet table, map, chart with anomaly markers) is what is under test
here; the same page behind API Gateway is covered by test_api_gateway.py's /dashboard and /stats checks.
A screenshot goes to out/live-view.png for review; its colours are checked (chart line, device dots,
anomaly marker), so an error page or a view without data fails.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
KEY = "live-view-key"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=10000",
]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing; CI must install Debian's chromium package")
        pytest.skip("/usr/bin/chromium not installed (apt-get install chromium); CI runs this test")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_app() -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "API_KEY": KEY, "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "testkit.demo_api:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited: {server.stderr.read().decode() if server.stderr else ''}"
                )
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def _run_chromium(chromium: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="iotpipe-chromium-") as profile:
        return subprocess.run(
            [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def test_page_renders_fleet_chart_and_anomaly(chromium: Path, live_app: str) -> None:
    # GIVEN the app with 6 devices, an hour of windows and a spike flagged as anomaly
    # WHEN Chromium opens the page with the key in the URL fragment and lets it run
    result = _run_chromium(chromium, "--dump-dom", f"{live_app}/dashboard#key={KEY}")
    dom = result.stdout
    # THEN the fleet, the map, the counters and the chart with its anomaly marker are drawn
    assert result.returncode == 0, result.stderr[-2000:]
    assert dom.count('class="device-row') == 6, dom[:3000]
    assert dom.count('class="device-dot') == 6
    assert 'class="anomaly-marker"' in dom
    assert 'class="mean"' in dom
    assert 'id="c-devices">6<' in dom
    status = re.search(r'<span id="status"[^>]*>([^<]*)</span>', dom)
    assert status is not None
    assert status.group(1).startswith("updated"), status.group(1)


def test_wrong_key_asks_again(chromium: Path, live_app: str) -> None:
    dom = _run_chromium(chromium, "--dump-dom", f"{live_app}/dashboard#key=wrong").stdout
    assert re.search(r'<span id="status" class="error">API key rejected</span>', dom)
    assert 'class="device-row' not in dom


def test_screenshot(chromium: Path, live_app: str) -> None:
    out = ROOT / "out" / "live-view.png"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    result = _run_chromium(
        chromium, f"--screenshot={out}", "--window-size=1280,900", f"{live_app}/dashboard#key={KEY}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # THEN the picture is the live view drawn with data, not just any page (an error page, the key
    # dialog, a shell whose fetches failed): the accent blue of the chart's mean line, the map's device
    # dots and the active channel tab, and the red of the anomaly marker, in amounts only the rendered
    # fleet gives (measured at 1280x900: ~3,900 blue and ~230 red pixels)
    blue, red = _pixels_near(out, [ACCENT, BAD])
    assert blue >= 1_500, f"{blue} accent-blue pixels: no chart line or device dots drawn"
    assert red >= 100, f"{red} red pixels: no anomaly marker drawn"


ACCENT = (0x2F, 0x6F, 0xD6)  # --accent in functions/api/static/dashboard.html
BAD = (0xD2, 0x36, 0x2F)  # --bad


def _pixels_near(png: Path, colours: list[tuple[int, int, int]], tolerance: int = 24) -> list[int]:
    """How many pixels of the image lie within ``tolerance`` (per channel) of each colour."""
    from PIL import Image

    with Image.open(png) as image:
        histogram = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    def near(rgb: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= tolerance for a, b in zip(rgb, colour, strict=True))

    return [sum(n for n, rgb in histogram if near(rgb, colour)) for colour in colours]
