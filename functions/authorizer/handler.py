"""API Gateway TOKEN authorizer for ``POST /ingest``: one device, one credential.

Template handler: ``functions.authorizer.handler.handler``. API Gateway passes the ``Authorization``
header as ``authorizationToken`` (a value that does not match the authorizer's identity validation
expression never gets here: the gateway answers 401 itself). The function looks the device up in the
devices table (``functions.auth.device_credentials``) and returns

- ``Allow`` on the method ARN with ``principalId`` = the device id and ``context.device_id``; the ingest
  function reads ``requestContext.authorizer`` and refuses readings of any other device;
- ``Deny`` (the gateway's ACCESS_DENIED response, 403) for an unknown device or a wrong secret.

Store errors raise, which API Gateway turns into a 500 (AUTHORIZER_FAILURE) and does not cache: a
registry outage is not reported as a bad credential. API Gateway caches a result per token for the
authorizer's TTL (300 s), so a revoked credential stops working within that time.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from functions.auth.device_credentials import parse_token, verify
from functions.core.ports import CredentialLookup

logger = Logger(service="ingest-authorizer")
_store: CredentialLookup | None = None


def _get_store() -> CredentialLookup:
    global _store
    if _store is None:
        from functions.adapters.devices import DynamoDeviceRegistry

        _store = DynamoDeviceRegistry()
    return _store


def policy(
    principal: str, effect: str, method_arn: str, context: dict[str, str] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}],
        },
    }
    if context:
        response["context"] = context
    return response


def authorize(event: dict[str, Any], store: CredentialLookup) -> dict[str, Any]:
    """The authorizer's answer for one TOKEN event (unit-testable with a fake store)."""
    token = event.get("authorizationToken")
    method_arn = str(event.get("methodArn") or "")
    device_id = verify(token, store.credential_hash)
    if device_id is None:
        parsed = parse_token(token)
        logger.info(
            "device credential refused",
            extra={"device_id": parsed.device_id if parsed else None, "well_formed": parsed is not None},
        )
        return policy("anonymous", "Deny", method_arn)
    return policy(device_id, "Allow", method_arn, {"device_id": device_id})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return authorize(event, _get_store())
