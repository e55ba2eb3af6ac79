"""What each deploy target does with the template features the project relies on, as measured.

One table, read by the tests that touch these features (each asserts its target's row, so a target
that changes its behaviour fails a test instead of being skipped) and mirrored in
docs/deploying.md ("What differs per target"). ``aws`` is AWS's documented behaviour; the suite does
not run there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class TargetFacts:
    # API Gateway applies a GatewayResponse's template and headers (the project's JSON error body for
    # a missing or wrong key); False: only its status code, body {"message": "Forbidden"}
    gateway_response_templates: bool
    # AWS::CloudWatch::Dashboard creates a dashboard (GetDashboard finds it)
    dashboard_created: bool
    # AWS::Kinesis::Stream StreamEncryption is applied (DescribeStreamSummary: EncryptionType KMS)
    stream_encryption: bool
    # Lambda LoggingConfig is kept on the function (GetFunctionConfiguration returns its LogGroup)
    logging_config_kept: bool
    # The Kinesis mapping runs a shard's batches ParallelizationFactor at a time (False: the value is
    # stored and returned by GetEventSourceMapping, and one batch runs at a time; test_fault_scale.py
    # proves the processor's part with concurrent in-process batches instead)
    parallelization_honoured: bool = False
    # SplitShard/MergeShards keep the parent shard's records readable until retention (False: the parent
    # and every record it held are deleted at once, so a test must let the mapping drain it first)
    reshard_keeps_parent: bool = True
    # Glue + Athena run queries over the archive (ArchiveSql not disabled; ministack: on DuckDB). False:
    # the stack deploys without them (LocalStack 4.14 community has neither), test_archive_sql.py skips
    archive_sql: bool = True
    # The aggregates table's target-tracking resources (AWS::ApplicationAutoScaling::*) are in the stack.
    # False: deploy.sh passes AggregatesCapacityScaling=disabled (ministack 1.5.33 has no provider for
    # them); the table is PROVISIONED at its fixed minimum capacity on every target. LocalStack 4.14
    # community has no provider either and marks them complete without creating anything (its
    # CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES default); neither emulator throttles a provisioned table.
    capacity_scaling_in_stack: bool = True
    # IoT Core's data plane: an MQTT broker with mTLS and topic rules (IotCoreIngest=enabled; ministack
    # 1.5.33: rules have no kinesis action, so IotRuleAction=sqs). False: the stack deploys without
    # the IoT path (LocalStack 4.14 community has IoT only in Pro), test_mqtt_ingest.py skips.
    iot_data_plane: bool = True
    # Each function's calls are evaluated against its execution role's policies (ministack: AUTH=true,
    # iotpipe/local/emulator.py). False: any call is allowed, test_iam_denials.py skips.
    iam_enforced: bool = True
    # dynamodb:Attributes is resolved for writes (the attributes an UpdateExpression names), so a role
    # limited to some attributes of an item cannot write others. False (ministack 1.5.33): resolved from
    # projections only; on a write the key is absent and a ForAllValues condition holds.
    write_attributes_evaluated: bool = True


FACTS = {
    # ministack 1.5.33: one poller thread invokes every shard's batches in turn; SplitShard/MergeShards
    # delete the parent shard with its records, and the mapping starts a shard it has not seen at its end
    # (LATEST); UpdateShardCount rebuilds the shard map under the same shard ids (the mapping's positions
    # then point past the new shards' records), so the tests reshard with SplitShard/MergeShards.
    "embedded": TargetFacts(gateway_response_templates=True, dashboard_created=True, stream_encryption=False,
                            logging_config_kept=True, parallelization_honoured=False,
                            reshard_keeps_parent=False, capacity_scaling_in_stack=False,
                            write_attributes_evaluated=False),
    # LocalStack 4.14.0 community (localstack-core; the compose file's default image): one poller per
    # mapping, shards round-robin, one batch at a time; kinesis-mock keeps closed parents; the poller finds
    # children only when a closed parent's iterator ends, and then re-reads every shard from its
    # StartingPosition (TRIM_HORIZON: a redelivery of the whole stream, which the watermarks absorb)
    "localstack": TargetFacts(gateway_response_templates=False, dashboard_created=False,
                              stream_encryption=False, logging_config_kept=True,
                              parallelization_honoured=False, reshard_keeps_parent=True,
                              archive_sql=False, iot_data_plane=False, iam_enforced=False),
    "aws": TargetFacts(gateway_response_templates=True, dashboard_created=True, stream_encryption=True,
                       logging_config_kept=True, parallelization_honoured=True, reshard_keeps_parent=True),
}

TARGET = os.environ.get("IOTPIPE_TARGET", "embedded")


def facts() -> TargetFacts:
    return FACTS[TARGET]
