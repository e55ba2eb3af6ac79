"""Device identities: what `iotpipe devices provision` stores and how registry errors surface (Stubber)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from iotpipe.devices import provision as prov
from iotpipe.devices.registry import DeviceRegistryError, IotRegistry

CERT_ID = "c" * 64
ARN = f"arn:aws:iot:us-east-1:123456789012:cert/{CERT_ID}"


def _registry() -> tuple[IotRegistry, Stubber]:
    iot = boto3.client("iot", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return IotRegistry(iot=iot, endpoint_url=""), Stubber(iot)


def test_provision_stores_key_0600_certificate_and_identity_and_binds_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOTPIPE_MQTT_ENDPOINT", "127.0.0.1:8883")
    registry, stub = _registry()
    # a thing that exists already is kept: provisioning again only adds a certificate
    stub.add_client_error("create_thing", "ResourceAlreadyExistsException", "exists")
    stub.add_response("create_keys_and_certificate", {
        "certificateArn": ARN, "certificateId": CERT_ID, "certificatePem": "CERT",
        "keyPair": {"PublicKey": "PUB", "PrivateKey": "-----BEGIN RSA PRIVATE KEY-----"},
    }, {"setAsActive": True})
    stub.add_response("attach_thing_principal", {}, {"thingName": "dev-1", "principal": ARN})
    stub.add_response("attach_policy", {}, {"policyName": "s-device", "target": ARN})
    with stub:
        (identity,) = prov.provision(registry, tmp_path / "keys", ["dev-1"], "s-device", "s/devices")
    stub.assert_no_pending_responses()
    device_dir = tmp_path / "keys" / "dev-1"
    assert stat.S_IMODE((device_dir / prov.KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(device_dir.stat().st_mode) == 0o700
    assert (device_dir / prov.CERT_FILE).read_text() == "CERT"
    assert json.loads((device_dir / prov.IDENTITY_FILE).read_text()) == {
        "thing_name": "dev-1", "certificate_id": CERT_ID, "certificate_arn": ARN,
        "topic": "s/devices/dev-1/readings", "endpoint": "127.0.0.1:8883",
    }
    assert prov.load_identity(tmp_path / "keys", "dev-1") == identity
    assert not (tmp_path / "keys" / prov.CA_FILE).exists()  # AWS: Amazon's public roots, no CA to store


def test_revoke_sets_the_stored_certificate_inactive_and_errors_name_call_and_code(tmp_path: Path) -> None:
    device_dir = tmp_path / "dev-1"
    device_dir.mkdir()
    (device_dir / prov.IDENTITY_FILE).write_text(json.dumps({
        "thing_name": "dev-1", "certificate_id": CERT_ID, "certificate_arn": ARN, "topic": "t",
        "endpoint": "e"}))
    registry, stub = _registry()
    stub.add_response("update_certificate", {}, {"certificateId": CERT_ID, "newStatus": "INACTIVE"})
    stub.add_client_error("update_certificate", "ResourceNotFoundException", "no such certificate")
    with stub:
        assert prov.revoke(registry, tmp_path, "dev-1").certificate_id == CERT_ID
        expected = f"update_certificate {CERT_ID}: ResourceNotFoundException"
        with pytest.raises(DeviceRegistryError, match=expected):
            prov.revoke(registry, tmp_path, "dev-1")
    with pytest.raises(FileNotFoundError, match="iotpipe devices provision"):
        prov.revoke(registry, tmp_path, "dev-2")


def test_ensure_keeps_known_identities_repoints_them_and_never_undoes_a_revocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN dev-1 stored with an old broker address and known to the registry (revoked: INACTIVE),
    # and dev-2 stored but unknown to this registry (an emulator started afresh)
    monkeypatch.setenv("IOTPIPE_MQTT_ENDPOINT", "127.0.0.1:9999")
    for thing, cert in (("dev-1", CERT_ID), ("dev-2", "d" * 64)):
        (tmp_path / thing).mkdir()
        (tmp_path / thing / prov.IDENTITY_FILE).write_text(json.dumps({
            "thing_name": thing, "certificate_id": cert, "certificate_arn": ARN, "topic": "t",
            "endpoint": "127.0.0.1:1111"}))
    registry, stub = _registry()
    stub.add_response("describe_certificate", {"certificateDescription": {"status": "INACTIVE"}},
                      {"certificateId": CERT_ID})
    stub.add_client_error("describe_certificate", "ResourceNotFoundException", "gone")
    stub.add_response("create_thing", {})
    new_id = "e" * 64
    stub.add_response("create_keys_and_certificate", {
        "certificateArn": ARN, "certificateId": new_id, "certificatePem": "CERT",
        "keyPair": {"PublicKey": "PUB", "PrivateKey": "KEY"}})
    stub.add_response("attach_thing_principal", {})
    stub.add_response("attach_policy", {})
    with stub:
        assert prov.ensure(registry, tmp_path, ["dev-1", "dev-2"], "p", "s/devices") == (1, 1)
    stub.assert_no_pending_responses()
    # THEN dev-1 keeps its (revoked) certificate, pointed at the current broker; dev-2 has a new one
    kept = prov.load_identity(tmp_path, "dev-1")
    assert (kept.certificate_id, kept.endpoint) == (CERT_ID, "127.0.0.1:9999")
    assert prov.load_identity(tmp_path, "dev-2").certificate_id == new_id
