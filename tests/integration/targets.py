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


FACTS = {
    # ministack 1.5.33
    "embedded": TargetFacts(gateway_response_templates=True, dashboard_created=True, stream_encryption=True,
                            logging_config_kept=True),
    # LocalStack 4.14.0 community (localstack-core; the compose file's default image)
    "localstack": TargetFacts(gateway_response_templates=False, dashboard_created=False,
                              stream_encryption=False, logging_config_kept=True),
    "aws": TargetFacts(gateway_response_templates=True, dashboard_created=True, stream_encryption=True,
                       logging_config_kept=True),
}

TARGET = os.environ.get("IOTPIPE_TARGET", "embedded")


def facts() -> TargetFacts:
    return FACTS[TARGET]
