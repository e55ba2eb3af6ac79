"""What every table adapter shares: the table name, the lazily created client, error translation and
paging (one round trip per call, resume keys as plain JSON values)."""

from __future__ import annotations

from typing import Any

from functions.adapters import codec
from functions.adapters.client_errors import translate_client_error
from functions.adapters.clients import client
from functions.core.ports import Key, Slice

MAX_COUNT_PAGES = 10  # count helpers stop after this many pages: every read is bounded


class DynamoTable:
    kind = "table"  # names the table in error messages ("aggregates.put_item: ...")

    def __init__(self, table_name: str, dynamodb: Any | None = None) -> None:
        self._table = table_name
        self._client = dynamodb  # None: the process's shared client, created at the first call

    @property
    def table_name(self) -> str:
        return self._table

    @property
    def _ddb(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One call on this table; botocore errors become domain errors (``adapters.client_errors``)."""
        try:
            result: dict[str, Any] = getattr(self._ddb, operation)(TableName=self._table, **kwargs)
        except Exception as exc:
            raise translate_client_error(exc, f"{self.kind}.{operation}") from exc
        return result

    @staticmethod
    def _key_in(key: Key | None) -> dict[str, Any]:
        return {"ExclusiveStartKey": codec.to_item(key)} if key else {}

    @staticmethod
    def _key_out(raw: dict[str, Any] | None) -> Key | None:
        return codec.from_item(raw) if raw else None

    def _slice(self, response: dict[str, Any]) -> Slice:
        return Slice(
            [codec.from_item(i) for i in response.get("Items", [])],
            self._key_out(response.get("LastEvaluatedKey")),
        )
