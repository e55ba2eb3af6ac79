"""Every IoTPipeline metric on the dashboard or in an alarm is one the code actually publishes.

The published set is read from the source: every ``<sink>.add("Name", ..., dimensions=...)`` call in the
processor, the ingest function and the metrics adapter (parsed with ``ast``), noting whether the call
passes dimensions, plus the processor's table of counts (``functions.processor.batch.COUNTS``), which
``emit_metrics`` publishes entry by entry. A widget on a renamed or never-emitted metric - or on the
dimensionless total of a metric that is only published per dimension - fails here rather than drawing an
empty graph in production.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.test_dashboard_body import file_body, load_template

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
SOURCES = [FUNCTIONS / "processor", FUNCTIONS / "ingest", FUNCTIONS / "adapters" / "metrics.py"]
NAMESPACE = "IoTPipeline"
EMITTERS = {"add", "add_metric", "put_metric"}


def _emissions() -> set[tuple[str, bool]]:
    """(metric name, published with dimensions?) for every literal-named sink call in the sources."""
    files: list[Path] = []
    for source in SOURCES:
        files += sorted(source.rglob("*.py")) if source.is_dir() else [source]
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in EMITTERS:
                continue
            name = (
                node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            )
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value[:1].isupper():
                dims = any(k.arg == "dimensions" and not _is_none(k.value) for k in node.keywords)
                found.add((name.value, dims))
    from functions.processor.batch import COUNTS

    found.update((c.metric, c.dimension is not None) for c in COUNTS if c.metric is not None)
    return found


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def published_metrics() -> set[str]:
    return {name for name, _ in _emissions()}


def dashboard_metrics() -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for widget in file_body()["widgets"]:
        previous: list[str] = []
        for entry in widget.get("properties", {}).get("metrics", []):
            parts = [p for p in entry if not isinstance(p, dict)]
            # CloudWatch's "." shorthand repeats the previous row's value at that position.
            parts = [previous[i] if p == "." and i < len(previous) else p for i, p in enumerate(parts)]
            previous = parts
            namespace, name, *dims = parts
            found.append((namespace, name, dict(zip(dims[::2], dims[1::2], strict=True))))
    return found


def alarm_metrics() -> list[tuple[str, str]]:
    return [
        (r["Properties"]["Namespace"], r["Properties"]["MetricName"])
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]


# What the dashboard and the alarms watch today, written out: the parametrized checks below run once per
# entry, and over an empty or shrunken set (a renamed key, a dashboard that no longer parses) they would
# pass without checking anything. Adding a widget or an alarm means adding its metric here.
DASHBOARD_METRICS = {
    ("AlertsFailed", False), ("AlertsSent", False), ("AlertsSuppressed", False), ("AnomaliesDetected", False),
    ("ArchiveWriteFailures", False), ("BatchDurationMs", False), ("DuplicatesDropped", False),
    ("RecordsAggregated", False), ("RecordsIn", False), ("RecordsRedelivered", False),
    ("RecordsRejected", False), ("RecordsRejected", True), ("RecordsRetried", False),
    ("RejectedPercent", False), ("WindowLagSeconds", False),
}
ALARM_METRICS = {"AnomaliesDetected", "ArchiveWriteFailures", "RecordsRetried", "RejectedPercent"}
ALARMS = 12  # every AWS::CloudWatch::Alarm in the template, IoTPipeline or AWS namespace


def test_the_source_scan_finds_the_core_metrics() -> None:
    # Guards the regex: if it stopped matching, every other test here would pass vacuously.
    assert {"RecordsIn", "RecordsAggregated", "AnomaliesDetected"} <= published_metrics()


def test_the_dashboard_and_alarm_scans_find_every_watched_metric() -> None:
    # Guards the parametrized tests below the same way, from the template's side.
    assert {(n, bool(d)) for ns, n, d in dashboard_metrics() if ns == NAMESPACE} == DASHBOARD_METRICS
    assert {n for ns, n in alarm_metrics() if ns == NAMESPACE} == ALARM_METRICS
    assert len(alarm_metrics()) == ALARMS


@pytest.mark.parametrize(
    ("metric", "with_dimensions"),
    sorted({(n, bool(d)) for ns, n, d in dashboard_metrics() if ns == NAMESPACE}),
    ids=lambda v: str(v) if isinstance(v, str) else ("per-dimension" if v else "total"),
)
def test_dashboard_metric_is_published(metric: str, with_dimensions: bool) -> None:
    kind = "per dimension" if with_dimensions else "without dimensions"
    assert (metric, with_dimensions) in _emissions(), f"dashboard shows {metric} {kind}; no code publishes it"


@pytest.mark.parametrize("metric", sorted({n for ns, n in alarm_metrics() if ns == NAMESPACE}), ids=str)
def test_alarm_metric_is_published(metric: str) -> None:
    # Alarms in this template carry no dimensions on IoTPipeline metrics (ministack ignores them anyway),
    # so they need the dimensionless series.
    assert (metric, False) in _emissions(), f"an alarm watches {metric} (no dimensions); no code publishes it"


def test_rejection_reasons_on_the_dashboard_are_the_processors() -> None:
    from functions.processor.records import REASONS

    shown = {d["Reason"] for ns, n, d in dashboard_metrics() if n == "RecordsRejected" and "Reason" in d}
    assert REASONS  # an empty reason list would make the equality below hold over nothing
    assert shown == set(REASONS)


def test_no_metric_math_in_alarms() -> None:
    # ministack rejects metric-math alarms; the template must deploy unchanged everywhere.
    alarms = [r for r in load_template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) == ALARMS
    for resource in alarms:
        assert "Metrics" not in resource["Properties"]
