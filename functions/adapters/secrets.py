"""Secrets Manager adapter: a secret's value, the only Secrets Manager call shipped code makes.

Used by the query API's cursor signing (``functions.api.cursor``), which caches the value per container.
"""

from __future__ import annotations

from typing import Any

from functions.adapters.client_errors import translate_client_error
from functions.adapters.clients import client


class SecretsManagerSecrets:
    """The ``SecretSource`` port (``functions.core.ports``) on Secrets Manager."""

    def __init__(self, secretsmanager: Any | None = None) -> None:
        self._client = secretsmanager  # None: the process's shared client, created at the first call

    def secret_bytes(self, secret_id: str) -> bytes:
        if self._client is None:
            self._client = client("secretsmanager")
        try:
            value = self._client.get_secret_value(SecretId=secret_id)
        except Exception as exc:  # access denied, no such secret, throttling, a network error
            raise translate_client_error(exc, "secretsmanager.get_secret_value") from exc
        text = value.get("SecretString")
        return text.encode() if isinstance(text, str) else bytes(value.get("SecretBinary") or b"")
