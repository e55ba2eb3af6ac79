"""The DynamoDB adapters' requests and error translation, with botocore's Stubber (no network)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from functions.adapters.aggregates import DynamoAggregateStore
from functions.adapters.anomalies import DynamoAnomalyStore
from functions.adapters.devices import DynamoDeviceRegistry
from functions.core.errors import StoreError, StoreThrottled


@pytest.fixture
def ddb() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_aggregate_query_pages_and_converts_numbers(ddb: Any) -> None:
    store = DynamoAggregateStore("aggs", ddb)
    item = {
        "device_id": {"S": "d1"},
        "window_start": {"N": "120"},
        "count": {"N": "3"},
        "channels": {"M": {"temperature": {"M": {"count": {"N": "3"}, "mean": {"N": "21.5"}}}}},
    }
    with Stubber(ddb) as stub:
        stub.add_response(
            "query",
            {"Items": [item], "LastEvaluatedKey": {"device_id": {"S": "d1"}, "window_start": {"N": "120"}}},
            {
                "TableName": "aggs",
                "KeyConditionExpression": ANY,
                "ExpressionAttributeValues": {":d": {"S": "d1"}, ":lo": {"N": "60"}, ":hi": {"N": "600"}},
                "ExpressionAttributeNames": ANY,
                "ProjectionExpression": ANY,
                "ScanIndexForward": True,
                "Limit": 1,
                "ExclusiveStartKey": {"device_id": {"S": "d1"}, "window_start": {"N": "60"}},
            },
        )
        page = store.query("d1", 60, 600, 1, {"device_id": "d1", "window_start": 60})
    assert page.items[0]["window_start"] == 120
    assert page.items[0]["channels"]["temperature"]["mean"] == 21.5
    assert page.last_key == {"device_id": "d1", "window_start": 120}


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_throttles_become_store_throttled(ddb: Any, code: str) -> None:
    with Stubber(ddb) as stub:
        stub.add_client_error("get_item", service_error_code=code, http_status_code=400)
        with pytest.raises(StoreThrottled):
            DynamoDeviceRegistry("devs", ddb).get("d1")


def test_other_errors_become_store_error(ddb: Any) -> None:
    with Stubber(ddb) as stub:
        stub.add_client_error("query", service_error_code="ResourceNotFoundException", http_status_code=400)
        with pytest.raises(StoreError) as info:
            DynamoAnomalyStore("anoms", ddb).query_day("2026-11-21", "a", "b", 1, 10, None)
    assert not isinstance(info.value, StoreThrottled)


def test_by_day_query_uses_the_index_newest_first_with_severity_filter(ddb: Any) -> None:
    with Stubber(ddb) as stub:
        stub.add_response(
            "query",
            {"Items": []},
            {
                "TableName": "anoms",
                "IndexName": "by-day",
                "KeyConditionExpression": "#h = :h AND ts_seq BETWEEN :lo AND :hi",
                "ExpressionAttributeNames": {"#h": "day"},
                "ExpressionAttributeValues": {
                    ":h": {"S": "2026-11-21"},
                    ":lo": {"S": "a"},
                    ":hi": {"S": "b"},
                    ":r": {"N": "3"},
                },
                "FilterExpression": "severity_rank >= :r",
                "ScanIndexForward": False,
                "Limit": 10,
            },
        )
        page = DynamoAnomalyStore("anoms", ddb).query_day("2026-11-21", "a", "b", 3, 10, None)
    assert page.items == []
    assert page.last_key is None
