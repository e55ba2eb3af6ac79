"""The IoT registry adapter: every IoT control-plane call the tools make, with ClientError mapped.

The same calls serve AWS and the embedded emulator (ministack signs ``CreateKeysAndCertificate``
certificates with its own CA, served at ``/_ministack/iot/ca.pem``).
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from iotpipe import aws
from iotpipe.settings import tool_settings

EMULATOR_CA_PATH = "/_ministack/iot/ca.pem"


class DeviceRegistryError(RuntimeError):
    """An IoT registry call failed; the message names the call, the thing and AWS's error code."""

    def __init__(self, call: str, subject: str, code: str, message: str) -> None:
        super().__init__(f"{call} {subject}: {code}: {message}")
        self.call = call
        self.code = code


@dataclass(frozen=True, slots=True)
class NewCertificate:
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    private_key: str


class IotRegistry:
    def __init__(self, iot: Any | None = None, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url if endpoint_url is not None else tool_settings().endpoint_url
        self._iot = iot or aws.client("iot")

    def _call(self, call: str, subject: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(getattr(self._iot, call)(**kwargs))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            raise DeviceRegistryError(call, subject, code, message) from exc

    def ensure_thing(self, thing_name: str) -> None:
        """Create the thing; one that exists already is kept (provisioning again adds a certificate)."""
        try:
            self._call("create_thing", thing_name, thingName=thing_name)
        except DeviceRegistryError as exc:
            if exc.code != "ResourceAlreadyExistsException":
                raise

    def create_certificate(self, thing_name: str) -> NewCertificate:
        """A new key pair and an ACTIVE certificate (the private key is returned once, never again)."""
        answer = self._call("create_keys_and_certificate", thing_name, setAsActive=True)
        return NewCertificate(
            certificate_id=answer["certificateId"],
            certificate_arn=answer["certificateArn"],
            certificate_pem=answer["certificatePem"],
            private_key=answer["keyPair"]["PrivateKey"],
        )

    def bind(self, thing_name: str, certificate_arn: str, policy_name: str) -> None:
        """The certificate becomes the thing's principal and carries the fleet's device policy."""
        self._call("attach_thing_principal", thing_name, thingName=thing_name, principal=certificate_arn)
        self._call("attach_policy", thing_name, policyName=policy_name, target=certificate_arn)

    def set_certificate_status(self, certificate_id: str, status: str) -> None:
        self._call("update_certificate", certificate_id, certificateId=certificate_id, newStatus=status)

    def certificate_status(self, certificate_id: str) -> str:
        answer = self._call("describe_certificate", certificate_id, certificateId=certificate_id)
        return str(answer["certificateDescription"]["status"])

    def data_endpoint(self) -> str:
        """host:port where devices connect over MQTT with mTLS."""
        override = tool_settings().mqtt_endpoint
        if override:
            return override
        answer = self._call("describe_endpoint", "iot:Data-ATS", endpointType="iot:Data-ATS")
        return f"{answer['endpointAddress'].split(':')[0]}:8883"

    def broker_ca(self) -> str | None:
        """The CA that signs the broker's certificate, where the target serves it (the embedded
        emulator); None on AWS, whose broker presents a certificate from Amazon's public roots."""
        if not self.endpoint_url:
            return None
        url = self.endpoint_url.rstrip("/") + EMULATOR_CA_PATH
        if not url.startswith(("http://127.0.0.1", "http://localhost")):
            raise DeviceRegistryError("GET", url, "NotLocal", "the emulator's CA is read from loopback only")
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback http, checked above
            return response.read().decode()
