"""dashboards/pipeline.json and the template's PipelineDashboard body are the same dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from iotpipe.ops.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudformation" / "template.yaml"
DASHBOARD = ROOT / "dashboards" / "pipeline.json"
PSEUDO = {
    "AWS::StackName": "stk",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
}
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")




def _template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def substitute(text: str) -> str:
    unknown = {name for name in PLACEHOLDER.findall(text) if name not in PSEUDO}
    assert not unknown, f"placeholders other than pseudo parameters: {sorted(unknown)}"
    return PLACEHOLDER.sub(lambda m: PSEUDO[m.group(1)], text)


def template_body() -> dict[str, Any]:
    props = _template()["Resources"]["PipelineDashboard"]["Properties"]
    return json.loads(substitute(props["DashboardBody"]["Sub"]))


def file_body() -> dict[str, Any]:
    return json.loads(substitute(DASHBOARD.read_text(encoding="utf-8")))


def test_template_body_equals_dashboard_file() -> None:
    assert template_body() == file_body()


def test_widgets_fit_the_24_column_grid_without_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for widget in file_body()["widgets"]:
        x, y, w, h = widget["x"], widget["y"], widget["width"], widget["height"]
        assert x >= 0
        assert x + w <= 24
        cells = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
        assert not cells & taken, f"overlap at {widget.get('properties', {}).get('title')}"
        taken |= cells


def test_alarm_widget_lists_the_templates_alarms() -> None:
    resources = _template()["Resources"]
    names = {
        substitute(r["Properties"]["AlarmName"]["Sub"])
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    listed = {
        arn.rsplit(":alarm:", 1)[1]
        for w in file_body()["widgets"]
        if w["type"] == "alarm"
        for arn in w["properties"]["alarms"]
    }
    assert listed == names
