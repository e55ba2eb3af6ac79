"""The live view rendered by a real headless Chromium against the app served by uvicorn.

The app runs with seeded in-memory stores (``testkit.demo_api``), one server per ``DEMO_SCENARIO``
(healthy, a quarantine flood, an archive outage, a failing /stats, a fresh stack, the simulator's fleet):
the page's behaviour (key from the URL fragment, relative fetches, counters and the health banner, fleet
table, base map with devices coloured by state, chart with anomaly markers and a time axis fitted to its
data) is what is under test here; the same page behind API Gateway is covered by test_api_gateway.py's
/dashboard and /stats checks. ``--dump-dom`` gives the rendered DOM; layout (the fleet table at 1280 px)
is measured over the DevTools pipe (tests/integration/cdp.py). Screenshots go to out/live-view*.png for
review; their colours are checked (chart line, anomaly marker, land, the red banner), so an error page
or a view without data fails.
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

from tests.integration.cdp import Browser

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


class DemoApps:
    """The demo app per ``DEMO_SCENARIO`` (testkit/demo_api.py), each started on first use."""

    def __init__(self) -> None:
        self.servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def __getitem__(self, scenario: str) -> str:
        if scenario not in self.servers:
            self.servers[scenario] = _start_demo(scenario)
        return self.servers[scenario][1]

    def stop(self) -> None:
        for server, _ in self.servers.values():
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def _start_demo(scenario: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "API_KEY": KEY, "LOG_LEVEL": "WARNING", "DEMO_SCENARIO": scenario}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "testkit.demo_api:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {server.stderr.read().decode() if server.stderr else ''}")
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the demo app ({scenario}) did not answer /health")


@pytest.fixture(scope="module")
def apps() -> Iterator[DemoApps]:
    demo = DemoApps()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def live_app(apps: DemoApps) -> str:
    return apps["healthy"]


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
    # AND a healthy pipeline raises no alarm: the health banner stays hidden
    assert re.search(r'<section id="health"[^>]*hidden', dom), _health(dom)


def _health(dom: str) -> str:
    match = re.search(r'<section id="health"[^>]*>(.*?)</section>', dom, re.DOTALL)
    return re.sub(r"<[^>]+>", " ", match.group(1)) if match else ""


def _counter(dom: str, name: str) -> tuple[str, str]:
    """(class, text) of a counter's value."""
    match = re.search(rf'<div class="([^"]*)" id="c-{name}">([^<]*)<', dom)
    assert match, name
    return match.group(1), match.group(2)


def test_the_map_is_a_map_with_devices_coloured_by_state(chromium: Path, live_app: str) -> None:
    dom = _run_chromium(chromium, "--dump-dom", f"{live_app}/dashboard#key={KEY}").stdout
    # THEN the bundled Natural Earth land and borders are drawn (no tile fetched: the page's CSP allows
    # its own origin only), with graticule labels
    land = re.findall(r'<path d="([^"]+)" class="land"', dom)
    assert land, "no base map"
    assert sum(len(d) for d in land) > 5_000
    assert 'class="borders"' in dom
    assert re.search(r'class="axis">\d+°[NS]<', dom)
    # AND each device is a dot coloured by its state, with a tooltip naming it, its place and why
    dots = re.findall(r'<circle [^>]*class="device-dot state-(\w+)[^"]*" data-device="([^"]+)"><title>([^<]+)'
                      r"</title>", dom)
    assert len(dots) == 6
    states = {device: state for state, device, _ in dots}
    assert states["dev-000000"] == "bad"  # its critical anomaly 10 minutes ago
    assert {states[d] for d in states if d != "dev-000000"} == {"ok"}
    tooltip = next(t for _, d, t in dots if d == "dev-000000")
    assert "Berlin, DE" in tooltip
    assert "1 anomaly in the last hour (worst: critical)" in tooltip


def test_a_quarantine_flood_is_called_out(chromium: Path, apps: DemoApps) -> None:
    # GIVEN 60 % of the readings quarantined as unknown_device (devices added and never registered)
    dom = _run_chromium(chromium, "--dump-dom", f"{apps['quarantine-flood']}/dashboard#key={KEY}").stdout
    # THEN the counter says how many and why, in red, and the banner says what to do
    assert _counter(dom, "quarantined") == ("value error", "32,400")
    assert "60% of readings · unknown_device 32,290 · schema_invalid 61 · malformed_json 49" in dom
    health = _health(dom)
    assert re.search(r'<section id="health"[^>]*class="bad"', dom), health
    assert "60% of the readings received in the last hour were quarantined" in health
    assert "Most are unknown_device" in health
    assert "python -m simulator register" in health


def test_an_archive_outage_counts_held_back_readings_once(chromium: Path, apps: DemoApps) -> None:
    # GIVEN the archive refusing writes: one batch of 100 readings handed back on every retry
    dom = _run_chromium(chromium, "--dump-dom", f"{apps['archive-outage']}/dashboard#key={KEY}").stdout
    # THEN the page shows the 100 readings held back (not the 48,721 hand-backs), and the failures
    assert _counter(dom, "held-back") == ("value error", "100")
    assert "48,721 hand-backs in the last hour, counting every retry" in dom
    assert _counter(dom, "archive-failures") == ("value error", "487")
    assert "A batch is failing now: 100 readings are held back" in _health(dom)


def test_a_failing_api_is_a_clear_state_not_a_status_code(chromium: Path, apps: DemoApps) -> None:
    # GIVEN /stats answering API Gateway's 502 (the query function failed), the other routes working
    dom = _run_chromium(chromium, "--dump-dom", f"{apps['api-failing']}/dashboard#key={KEY}").stdout
    # THEN the banner says the API is failing, which request, what API Gateway said and what it means
    health = _health(dom)
    assert "The API is failing since" in health
    assert "GET stats: 502 Bad Gateway — Internal server error" in health
    assert "API Gateway got no answer from the query function" in health
    assert re.search(r'<span id="status" class="error">API failing since \d\d:\d\d:\d\d UTC', dom)
    # AND the parts that still answer are drawn; the counters are marked stale, not blank or zero
    assert dom.count('class="device-row') == 6
    assert re.search(r'<section id="counters" class="stale"', dom)


def test_a_request_that_never_answers_is_reported(chromium: Path, apps: DemoApps) -> None:
    # GIVEN /stats never answering (a gateway whose function is stuck), in real time
    with Browser(chromium, 1280, 900) as browser:
        browser.open(f"{apps['api-hanging']}/dashboard#key={KEY}")
        # THEN within the request timeout (15 s) the page says so, instead of freezing silently
        health = browser.wait_for("(document.getElementById('health').hidden ? '' : "
                                  "document.getElementById('health').textContent)", timeout_s=45)
        assert "GET stats: no answer in 15 s: the query function behind the gateway is busy" in health
        assert "The API is failing since" in health
        # AND the routes that answer are drawn meanwhile
        assert browser.evaluate("document.querySelectorAll('#fleet tbody tr.device-row').length") == 6


def test_the_chart_time_axis_spans_the_data_it_has(chromium: Path, apps: DemoApps) -> None:
    # GIVEN a stack a few minutes old (3 windows per device; its anomaly 10 minutes ago)
    dom = _run_chromium(chromium, "--dump-dom", f"{apps['fresh']}/dashboard#key={KEY}").stdout
    ticks = [int(h) * 60 + int(m) for h, m in re.findall(r'class="axis time-tick">(\d\d):(\d\d)<', dom)]
    # THEN the axis covers those minutes, not an hour with everything piled at its right edge
    assert len(ticks) >= 3, dom[-3000:]
    span = (ticks[-1] - ticks[0]) % (24 * 60)
    assert span <= 12, ticks
    assert re.search(r"of 3 1-minute windows, last (\d|1[0-2]) minutes", dom)


def test_the_fleet_table_is_readable_at_1280_px(chromium: Path, apps: DemoApps) -> None:
    # GIVEN the 20 devices `make up` registers (sites and towns with long names) in a 1280 px window
    with Browser(chromium, 1280, 900) as browser:
        browser.open(f"{apps['simulator-fleet']}/dashboard#key={KEY}")
        browser.wait_for("document.querySelectorAll('#fleet tbody tr.device-row').length === 20")
        # THEN no column is cut: the table needs no horizontal scrolling and every cell shows its text
        box = browser.evaluate("(() => { const s = document.querySelector('#fleet').parentElement;"
                               " return [s.scrollWidth, s.clientWidth]; })()")
        assert box[0] <= box[1], f"the fleet table is {box[0]} px wide in a {box[1]} px box"
        cut = browser.evaluate("[...document.querySelectorAll('#fleet td')]"
                               ".filter((td) => td.scrollWidth > td.clientWidth).map((td) => td.textContent)")
        assert cut == []
        locations = browser.evaluate(
            "[...document.querySelectorAll('#fleet tbody tr')].map((r) => r.cells[2].getBoundingClientRect()"
            ".right <= r.closest('.card').getBoundingClientRect().right)")
        assert all(locations), locations


def test_wrong_key_asks_again(chromium: Path, live_app: str) -> None:
    dom = _run_chromium(chromium, "--dump-dom", f"{live_app}/dashboard#key=wrong").stdout
    assert re.search(r'<span id="status" class="error">API key rejected</span>', dom)
    assert 'class="device-row' not in dom


@pytest.mark.parametrize("scenario", ["quarantine-flood", "archive-outage"])
def test_screenshot_of_a_pipeline_in_trouble(chromium: Path, apps: DemoApps, scenario: str) -> None:
    out = ROOT / "out" / f"live-view-{scenario}.png"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    result = _run_chromium(
        chromium, f"--screenshot={out}", "--window-size=1280,900", f"{apps[scenario]}/dashboard#key={KEY}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # THEN the trouble shows at a glance: the red banner across the page (~35,000 px at 1280x900)
    (banner,) = _pixels_near(out, [BANNER], tolerance=4)
    assert banner >= 20_000, f"{banner} banner pixels: the health banner is not shown"


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
    # (the land and the banner's pink are near the page's grey: told apart with a tight tolerance)
    land, banner = _pixels_near(out, [LAND, BANNER], tolerance=4)
    assert blue >= 1_500, f"{blue} accent-blue pixels: no chart line drawn"
    assert red >= 100, f"{red} red pixels: no anomaly marker drawn"
    # AND the map has its base map (land of the bundled Natural Earth countries), and no alarm is raised
    assert land >= 20_000, f"{land} land pixels: no base map drawn"
    assert banner < 500, f"{banner} banner pixels on a healthy pipeline"


ACCENT = (0x2F, 0x6F, 0xD6)  # --accent in functions/api/static/dashboard.html
BAD = (0xD2, 0x36, 0x2F)  # --bad
LAND = (0xE4, 0xE9, 0xE1)  # --land
BANNER = (0xFD, 0xEC, 0xEA)  # #health.bad background


def _pixels_near(png: Path, colours: list[tuple[int, int, int]], tolerance: int = 24) -> list[int]:
    """How many pixels of the image lie within ``tolerance`` (per channel) of each colour."""
    from PIL import Image

    with Image.open(png) as image:
        histogram = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    def near(rgb: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= tolerance for a, b in zip(rgb, colour, strict=True))

    return [sum(n for n, rgb in histogram if near(rgb, colour)) for colour in colours]
