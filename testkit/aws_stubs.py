"""botocore's ``Stubber`` on a real boto3 client, recording what the adapter under test sent.

For unit tests of the adapters in ``functions/adapters``: the client is botocore's own (requests are
validated against the service model, responses against its output shapes), nothing goes over the
network, and every call is kept as ``(operation, params)`` so a test can assert on the request without
spelling out each parameter as ``expected_params``. Answers are queued in call order; a call with no
answer queued, or for another operation, fails the test (the Stubber raises).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import boto3
from botocore import xform_name
from botocore.exceptions import ClientError
from botocore.stub import Stubber

REGION = "us-east-1"


def client_error(code: str, status: int = 400, operation: str = "Op") -> ClientError:
    """A botocore ClientError as the service answers it (code and HTTP status)."""
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class StubbedClient:
    """A stubbed client for ``service``: ``answer``/``fail`` queue responses, ``calls`` records requests.

    Use as a context manager (activates the Stubber; on exit, checks every queued answer was used).
    """

    def __init__(self, service: str) -> None:
        # Dummy credentials: botocore signs the request before the Stubber answers it; nothing is sent.
        self.client: Any = boto3.client(
            service, region_name=REGION, aws_access_key_id="stub", aws_secret_access_key="stub"  # noqa: S106
        )
        self.stub = Stubber(self.client)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        service_id = self.client.meta.service_model.service_id.hyphenize()
        self.client.meta.events.register(f"before-parameter-build.{service_id}.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((xform_name(model.name), dict(params)))

    def answer(self, operation: str, response: dict[str, Any] | None = None, times: int = 1) -> StubbedClient:
        for _ in range(times):
            self.stub.add_response(operation, response or {})
        return self

    def fail(self, operation: str, code: str, status: int = 400) -> StubbedClient:
        self.stub.add_client_error(operation, service_error_code=code, http_status_code=status)
        return self

    def params(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every call of ``operation``, in order."""
        return [p for name, p in self.calls if name == operation]

    def __enter__(self) -> StubbedClient:
        self.stub.activate()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stub.deactivate()
        if kind is None:
            self.stub.assert_no_pending_responses()
