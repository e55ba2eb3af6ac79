"""The cursor signing key is a real secret (issue 11, finding 6): read from Secrets Manager on Lambda,
once per container; a cursor signed with the old key derived from public stack/table names is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.adapters.secrets import SecretsManagerSecrets
from functions.api import cursor
from functions.api.errors import BadRequest
from functions.core.errors import StoreError
from functions.settings import get_settings
from iotpipe.ops.template import load_template

ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:it/cursor-signing-key-abc123"
CONTEXT = {"route": "anomalies", "from": 1, "to": 2}
STATE = {"lek": {"device_id": {"S": "dev-1"}}}


@dataclass
class Secrets:
    """The Secrets Manager API behind the adapter, stubbed: each queued answer serves one call."""

    stub: Stubber
    value: str = "s" * 64

    def answer(self) -> None:
        self.stub.add_response("get_secret_value", {"ARN": ARN, "Name": "n", "SecretString": self.value},
                               {"SecretId": ARN})


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Secrets]:
    client = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")  # never sent: the Stubber answers
    monkeypatch.setenv("CURSOR_SECRET_ARN", ARN)
    monkeypatch.delenv("API_KEY", raising=False)
    monkeypatch.setattr(cursor, "_secret_source", lambda: SecretsManagerSecrets(client))
    get_settings.cache_clear()
    cursor._secret_material.cache_clear()
    with Stubber(client) as stub:
        yield Secrets(stub)
    get_settings.cache_clear()
    cursor._secret_material.cache_clear()


def _forge(key_material: str, state: dict[str, Any]) -> str:
    """A cursor as the old code signed it: key = SHA-256 of public stack and table names."""
    key = hashlib.sha256(b"iotpipe-cursor|" + key_material.encode()).digest()
    raw = json.dumps(
        {"v": 1, "q": cursor._context_digest(CONTEXT), "s": state}, separators=(",", ":")
    ).encode()
    mac = hmac.new(key, raw, hashlib.sha256).digest()[:16]
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return f"{b64(raw)}.{b64(mac)}"


def test_cursors_are_signed_with_the_secret_read_once(secrets: Secrets) -> None:
    # GIVEN the Lambda configuration (CURSOR_SECRET_ARN, no API_KEY) and a secret that answers once
    secrets.answer()
    tokens = [cursor.encode_cursor(STATE, CONTEXT) for _ in range(5)]
    # THEN cursors round-trip, and the secret was fetched once for all of them (a second call would
    # find no answer queued and fail)
    assert all(cursor.decode_cursor(t, CONTEXT) == STATE for t in tokens)
    secrets.stub.assert_no_pending_responses()


def test_a_cursor_forged_from_public_names_is_refused(secrets: Secrets) -> None:
    secrets.answer()
    s = get_settings()
    public = f"{s.stack_name}|{s.devices_table}|{s.aggregates_table}|{s.anomalies_table}"
    forged = _forge(public, {"lek": {"device_id": {"S": "someone-else"}}})
    with pytest.raises(BadRequest):
        cursor.decode_cursor(forged, CONTEXT)
    # while the same construction with the real secret would pass: the secret is what protects it
    assert cursor.decode_cursor(_forge(secrets.value, STATE), CONTEXT) == STATE


def test_secret_unavailable_is_a_store_error(secrets: Secrets) -> None:
    # GIVEN a role that may not read the secret
    secrets.stub.add_client_error("get_secret_value", "AccessDeniedException", http_status_code=400)
    # THEN signing fails with the store error the API answers 5xx for, naming the code (not a 400)
    with pytest.raises(StoreError) as raised:
        cursor.encode_cursor(STATE, CONTEXT)
    assert raised.value.code == "AccessDeniedException"
    assert not raised.value.transient


def test_a_short_secret_is_refused(secrets: Secrets) -> None:
    secrets.value = "short"
    secrets.answer()
    with pytest.raises(StoreError, match="too short"):
        cursor.encode_cursor(STATE, CONTEXT)


def test_without_secret_or_key_the_process_key_is_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURSOR_SECRET_ARN", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        s = get_settings()
        public = f"{s.stack_name}|{s.devices_table}|{s.aggregates_table}|{s.anomalies_table}"
        with pytest.raises(BadRequest):
            cursor.decode_cursor(_forge(public, STATE), CONTEXT)
        assert cursor.decode_cursor(cursor.encode_cursor(STATE, CONTEXT), CONTEXT) == STATE
    finally:
        get_settings.cache_clear()


def test_template_generates_the_secret_and_grants_only_the_query_api() -> None:
    template = load_template()
    resources = template["Resources"]
    secret = resources["CursorSigningSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert "SecretString" not in secret["Properties"]
    assert secret["Properties"]["KmsKeyId"] == {"Ref": "PipelineKey"}
    env = resources["QueryApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CURSOR_SECRET_ARN"] == {"Ref": "CursorSigningSecret"}
    readers = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                if any(a.startswith("secretsmanager:") for a in actions):
                    readers.append((name, actions, statement["Resource"]))
    # The secret's own name (Name above) plus Secrets Manager's 6-character suffix: that one secret only.
    assert secret["Properties"]["Name"] == {"Sub": "${AWS::StackName}/cursor-signing-key"}
    assert readers == [("QueryApiRole", ["secretsmanager:GetSecretValue"], {"Sub": (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
        "${AWS::StackName}/cursor-signing-key-??????")})]
