"""Public AWS list prices, us-east-1, used by the cost model (``iotpipe cost``).

Prices as published on the services' pricing pages (aws.amazon.com/<service>/pricing), us-east-1, taken
as of 2026-11 (the DynamoDB on-demand figures are those after the 2024-11-01 price cut). They were
transcribed, not fetched at run time: the machines this project is built on have no route to AWS. Check
them against the pricing pages before quoting a figure; every one is a field below, so a newer price is a
one-line change (or a ``Prices(...)`` override in code).

Free tiers are deliberately not modelled: the target is the steady-state cost of a pipeline that has
outgrown them, and free tiers are per account, shared with whatever else runs there.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11"
REGION = "us-east-1"
HOURS_PER_MONTH = 730  # AWS's own convention on its pricing pages
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
KB = 1024
GB = 1024**3


@dataclass(frozen=True)
class Prices:
    # Kinesis Data Streams, provisioned mode.
    kinesis_shard_hour: float = 0.015
    kinesis_put_payload_unit_per_million: float = 0.014  # one unit = up to 25 KB of one record
    kinesis_put_payload_unit_bytes: int = 25 * KB

    # Lambda, x86_64, first pricing tier.
    lambda_request_per_million: float = 0.20
    lambda_gb_second: float = 0.0000166667

    # DynamoDB on-demand (standard table class).
    ddb_wru_per_million: float = 0.625  # 1 WRU = one write of up to 1 KB
    ddb_rru_per_million: float = 0.125  # 1 RRU = one strongly consistent read of up to 4 KB
    ddb_storage_gb_month: float = 0.25
    ddb_pitr_gb_month: float = 0.20  # continuous backups, billed on table size
    # The Standard-Infrequent Access table class: storage 0.10 instead of 0.25 USD per GB-month, every
    # read and write (on-demand requests and provisioned capacity-hours) 25 % dearer. PITR is billed on
    # the table's size at the same rate for both classes.
    ddb_ia_storage_gb_month: float = 0.10
    ddb_ia_throughput_factor: float = 1.25
    # DynamoDB provisioned capacity (standard table class), per unit-hour, whatever is consumed: 1 WCU = one
    # write of up to 1 KB per second, 1 RCU = one strongly consistent read of up to 4 KB per second. Not
    # touched by the 2024-11 cut (which halved on-demand): steadily used, provisioned is the cheaper mode.
    ddb_wcu_hour: float = 0.00065
    ddb_rcu_hour: float = 0.00013

    # S3.
    s3_standard_gb_month: float = 0.023
    s3_standard_ia_gb_month: float = 0.0125
    s3_ia_min_object_bytes: int = 128 * KB  # Standard-IA bills every object as at least 128 KB
    s3_put_per_thousand: float = 0.005  # PUT, COPY, POST, LIST
    s3_get_per_thousand: float = 0.0004  # GET, SELECT and all other requests
    s3_transition_ia_per_thousand: float = 0.01  # lifecycle transition requests into Standard-IA

    # Athena (SQL queries, engine 3): per TB scanned, each query billed at least 10 MB.
    athena_per_tb_scanned: float = 5.00
    athena_min_bytes_per_query: int = 10 * 1000**2

    # CloudWatch.
    cw_custom_metric_month: float = 0.30  # first 10,000 metrics
    cw_put_metric_data_per_thousand: float = 0.01
    cw_logs_ingest_gb: float = 0.50  # standard log class (EMF lines are log ingestion)
    cw_logs_storage_gb_month: float = 0.03
    cw_alarm_month: float = 0.10  # standard resolution, one metric
    cw_dashboard_month: float = 3.00

    # API Gateway REST API, first 333 million requests a month.
    apigw_rest_per_million: float = 3.50

    # SNS standard topic publishes (deliveries to email/SMS are priced per subscriber and not modelled).
    sns_publish_per_million: float = 0.50

    # SageMaker Serverless Inference (the endpoint the template creates with DetectorBackend=sagemaker):
    # compute per second of inference at the configured memory (0.0000200 USD/s at 1 GB, 0.0000400 at 2 GB,
    # ... 0.0001200 at 6 GB: linear, so one price per GB-second), billed by the millisecond, and the bytes
    # of each request and response. aws.amazon.com/sagemaker/pricing, "Serverless Inference" tab,
    # us-east-1, transcribed 2026-12 (no provisioned concurrency).
    sagemaker_serverless_gb_second: float = 0.0000200
    sagemaker_data_in_per_gb: float = 0.016
    sagemaker_data_out_per_gb: float = 0.016

    # AWS IoT Core (IotCoreIngest=enabled): aws.amazon.com/iot-core/pricing, us-east-1, transcribed 2026-12.
    # Messages and rule evaluations are metered in 5 KB increments. Basic Ingest (publishing to
    # $aws/rules/<rule>/...) skips the messaging charge; rules and actions are still billed.
    iot_connectivity_per_million_minutes: float = 0.08
    iot_messages_per_million: float = 1.00  # first billion messages a month
    iot_message_bytes: int = 5 * KB
    iot_rules_triggered_per_million: float = 0.15
    iot_actions_executed_per_million: float = 0.15

    # KMS customer managed key (the template creates one) and its API requests.
    kms_key_month: float = 1.00
    kms_requests_per_10k: float = 0.03


DEFAULT_PRICES = Prices()
