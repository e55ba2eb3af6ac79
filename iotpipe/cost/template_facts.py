"""What the cost model reads from cloudformation/template.yaml: parameter defaults and resource properties.

The defaults that mirror template parameters (BatchSize, BatchingWindowSeconds, AlertCooldownSeconds,
AnomalyTtlDays, AggregatesTtlDays, Archive*Days, ArchiveCompaction, LogRetentionDays,
ProcessorWriteConcurrency, the
processor's MemorySize, PITR and TTL per table, the archive lifecycle rules, the alarm count, the
calibrator's schedule and MemorySize) are read
when this module is imported (``DEFAULTS``), so the model follows the template it costs. Nothing here
reads function source: a figure the model needs from a function is a template parameter the function
receives in its environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from iotpipe.cost.prices import KB
from iotpipe.ops.template import TEMPLATE, load_template

ROOT = Path(__file__).resolve().parents[2]

# The template's values when this was written: used only when the template cannot be read (an installed
# package without the repository, or no PyYAML), and reported as such in the JSON ("defaults_from").
FALLBACK_DEFAULTS: dict[str, Any] = {
    "batch_size": 10_000,
    "batching_window_s": 60.0,
    "alert_cooldown_s": 300,
    "anomaly_ttl_days": 30.0,
    "aggregates_retention_days": 30.0,
    "archive_ia_after_days": 30.0,
    "archive_expire_days": 365.0,
    "archive_ia_min_object_filter": True,
    "log_retention_days": 14.0,
    "processor_memory_mb": 1024,
    "write_concurrency": 16,
    "aggregates_pitr": False,
    "anomalies_pitr": True,
    "alarms": 12,
    "aggregates_billing_mode": "PROVISIONED",
    "aggregates_min_wcu": 10,
    "aggregates_min_rcu": 10,
    "aggregates_max_units": 40_000,
    "aggregates_target_utilization": 0.70,
    "aggregates_autoscaling": True,
    "scaling_policies": 2,
    "archive_compaction": True,
    "calibration_every_s": 120.0,
    "aggregates_table_class": "STANDARD",
    "calibrator_memory_mb": 512,
    "detector_backend": "embedded",
    "sagemaker_memory_mb": 2048,
}
# The processor's environment variable that carries ProcessorWriteConcurrency (its window-writer threads).
WRITE_CONCURRENCY_ENV = "WRITE_CONCURRENCY"


def template_defaults(path: Path = TEMPLATE) -> dict[str, Any]:
    """Workload defaults that mirror the template: parameter defaults and resource properties.

    A property given as ``!Ref Param`` resolves to the parameter's default, ``!If [Cond, a, b]`` to the
    branch an ``!Equals`` condition on parameter defaults picks; a literal is taken as is.
    Raises (OSError, ImportError, KeyError, ValueError, TypeError) when the template cannot be read.
    """
    doc = load_template(path)
    params = doc.get("Parameters") or {}
    resources = doc["Resources"]
    conditions = doc.get("Conditions") or {}

    def value(v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"Ref"} and v["Ref"] in params:
            return params[v["Ref"]]["Default"]
        if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in ("If", "Fn::If"):  # !If or its long form
            name, when_true, when_false = next(iter(v.values()))
            condition = conditions[name]
            left, right = condition.get("Fn::Equals") or condition["Equals"]
            return value(when_true if str(value(left)) == str(value(right)) else when_false)
        return v

    def param(name: str) -> Any:
        return params[name]["Default"]

    def props(kind: str, name_hint: str) -> dict[str, Any]:
        found = [r.get("Properties") or {} for n, r in resources.items()
                 if r.get("Type") == kind and name_hint in n]
        if len(found) != 1:
            raise KeyError(f"expected one {kind} named like {name_hint!r}, found {len(found)}")
        return found[0]

    def pitr(table: dict[str, Any]) -> bool:
        spec = table.get("PointInTimeRecoverySpecification") or {}
        return str(value(spec.get("PointInTimeRecoveryEnabled", False))).lower() == "true"

    aggregates = props("AWS::DynamoDB::Table", "Aggregates")
    anomalies = props("AWS::DynamoDB::Table", "Anomalies")
    ttl = aggregates.get("TimeToLiveSpecification") or {}
    ttl_on = str(value(ttl.get("Enabled", False))).lower() == "true"
    if ttl_on and "AggregatesTtlDays" not in params:
        raise KeyError("aggregates table has a TTL but no AggregatesTtlDays parameter")

    rules = [r for r in (props("AWS::S3::Bucket", "Archive").get("LifecycleConfiguration") or {})
             .get("Rules", []) if str(r.get("Status")) == "Enabled"
             # a rule for one prefix (Athena's query results) is not the archive's
             and not r.get("Prefix") and not (r.get("Filter") or {}).get("Prefix")]
    ia_rules = [r for r in rules
                if any(t.get("StorageClass") == "STANDARD_IA" for t in r.get("Transitions") or [])]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    if len(ia_rules) != 1 or len(expiring) != 1:
        raise KeyError("expected one STANDARD_IA transition rule and one expiration rule")
    ia_rule = ia_rules[0]
    ia_after = next(tr["TransitionInDays"] for tr in ia_rule["Transitions"]
                    if tr["StorageClass"] == "STANDARD_IA")
    min_size = int(value(ia_rule.get("ObjectSizeGreaterThan", 0)))
    processor = props("AWS::Lambda::Function", "Processor")
    calibrator = props("AWS::Lambda::Function", "Calibrator")
    scaling = aggregates_capacity(aggregates, params, resources, value)
    return {
        **scaling,
        "batch_size": int(param("BatchSize")),
        "archive_compaction": str(param("ArchiveCompaction")) == "enabled",
        "batching_window_s": float(param("BatchingWindowSeconds")),
        "alert_cooldown_s": int(param("AlertCooldownSeconds")),
        "anomaly_ttl_days": float(param("AnomalyTtlDays")),
        # No TTL: the table grows without bound; the model then keeps the fallback's 30 days (see docs).
        "aggregates_retention_days": (
            float(param("AggregatesTtlDays")) if ttl_on else FALLBACK_DEFAULTS["aggregates_retention_days"]
        ),
        "archive_ia_after_days": float(value(ia_after)),
        "archive_expire_days": float(value(expiring[0]["ExpirationInDays"])),
        # Standard-IA bills objects as at least 128 KB: the filter keeps smaller objects in Standard.
        "archive_ia_min_object_filter": min_size >= 128 * KB,
        "log_retention_days": float(value(props("AWS::Logs::LogGroup", "Processor")["RetentionInDays"])),
        "processor_memory_mb": int(value(processor["MemorySize"])),
        "write_concurrency": processor_write_concurrency(processor, value),
        "aggregates_pitr": pitr(aggregates),
        "anomalies_pitr": pitr(anomalies),
        "alarms": sum(1 for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"),
        "aggregates_table_class": str(value(aggregates.get("TableClass", "STANDARD"))),
        "calibration_every_s": rate_seconds(props("AWS::Events::Rule", "Calibration")["ScheduleExpression"]),
        "calibrator_memory_mb": int(value(calibrator["MemorySize"])),
        "detector_backend": str(param("DetectorBackend")),
        "sagemaker_memory_mb": int(param("SageMakerServerlessMemoryMB")),
    }


def rate_seconds(expression: str) -> float:
    """Seconds between runs of an EventBridge ``rate(N unit)`` schedule."""
    found = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not found:
        raise ValueError(f"schedule {expression!r}: only rate(N minutes|hours|days) is costed")
    unit = {"minute": 60, "hour": 3600, "day": 86_400}[found.group(2).rstrip("s")]
    return float(int(found.group(1)) * unit)


def aggregates_capacity(table: dict[str, Any], params: dict[str, Any], resources: dict[str, Any],
                        value: Any) -> dict[str, Any]:
    """The aggregates table's capacity mode and, when PROVISIONED, its auto scaling: the floor (the table's
    ProvisionedThroughput, also the scalable targets' MinCapacity), the ceiling and the target utilisation
    of the target-tracking policies, and whether those resources exist (``AggregatesCapacityScaling``).

    Read from the resources rather than the parameters alone, so that a template whose table ignored a
    parameter would be costed as it deploys.
    """
    mode = str(value(table.get("BillingMode", "PROVISIONED")))
    if isinstance(table.get("BillingMode"), dict) and "Ref" not in table["BillingMode"]:
        raise ValueError(f"aggregates BillingMode {table['BillingMode']!r}: only a literal or a !Ref")
    throughput = table.get("ProvisionedThroughput") or {}
    for fn in ("If", "Fn::If"):  # the loader's spelling of !If, or the long form
        if isinstance(throughput, dict) and fn in throughput:
            throughput = throughput[fn][1]  # [condition, when provisioned, AWS::NoValue]
    kinds = {n: r for n, r in resources.items()
             if str(r.get("Type", "")).startswith("AWS::ApplicationAutoScaling")}
    targets = [r for r in kinds.values() if r["Type"].endswith("::ScalableTarget")
               and "AggregatesTable" in str((r.get("Properties") or {}).get("ResourceId"))]
    policies = [r for r in kinds.values() if r["Type"].endswith("::ScalingPolicy")]
    on = bool(targets)
    condition = next((r.get("Condition") for r in targets if r.get("Condition")), None)
    if on and condition and "AggregatesCapacityScaling" in params:
        on = str(params["AggregatesCapacityScaling"]["Default"]) == "enabled"
    target_values = [float(value(((r.get("Properties") or {}).get("TargetTrackingScalingPolicyConfiguration")
                                  or {}).get("TargetValue", 70))) for r in policies]
    max_units = [int(value((r.get("Properties") or {})["MaxCapacity"])) for r in targets]
    return {
        "aggregates_billing_mode": mode,
        "aggregates_min_wcu": int(value(throughput.get("WriteCapacityUnits", 0))) if throughput else 0,
        "aggregates_min_rcu": int(value(throughput.get("ReadCapacityUnits", 0))) if throughput else 0,
        "aggregates_max_units": max(max_units) if max_units else 0,
        "aggregates_target_utilization": (min(target_values) / 100) if target_values else 1.0,
        "aggregates_autoscaling": mode == "PROVISIONED" and on,
        "scaling_policies": len(policies) if mode == "PROVISIONED" and on else 0,
    }


def processor_write_concurrency(processor: dict[str, Any], value: Any) -> int:
    """The window-writer threads the processor runs with: its ``WRITE_CONCURRENCY`` environment variable,
    which the template sets from ``ProcessorWriteConcurrency`` (``value`` resolves that ``!Ref``).

    Read from the function's environment rather than from the parameter alone: a parameter the function
    never receives would cost a setting the pipeline does not run with.
    """
    variables = (processor.get("Environment") or {}).get("Variables") or {}
    if WRITE_CONCURRENCY_ENV not in variables:
        raise KeyError(f"the processor function has no {WRITE_CONCURRENCY_ENV} environment variable")
    threads = int(value(variables[WRITE_CONCURRENCY_ENV]))
    if threads < 1:
        raise ValueError(f"{WRITE_CONCURRENCY_ENV} must be at least 1, the template gives {threads}")
    return threads


def load_defaults(path: Path = TEMPLATE) -> tuple[dict[str, Any], str]:
    """(the template's defaults, where they came from), or the fallback and why it was used."""
    try:
        defaults = template_defaults(path)
    except (OSError, ImportError, KeyError, ValueError, TypeError, StopIteration) as exc:
        return dict(FALLBACK_DEFAULTS), f"built-in fallback ({type(exc).__name__}: {exc})"
    return defaults, str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def count_template_alarms(template: Path = TEMPLATE) -> int:  # kept for callers; template_defaults counts too
    """Alarms the template creates (each is a monthly charge); 5 if the template cannot be read."""
    try:
        return len(re.findall(r"^\s+Type:\s+AWS::CloudWatch::Alarm\s*$", template.read_text(), re.M))
    except OSError:
        return 5


DEFAULTS, DEFAULTS_FROM = load_defaults()
WRITE_CONCURRENCY: int = DEFAULTS["write_concurrency"]
