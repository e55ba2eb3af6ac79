"""Devices write with credentials of their own (issue 11, finding 4): token format, the authorizer,
the binding of readings to the authenticated device, registration and the simulator's http sink.

The through-the-gateway half of the auth matrix is tests/integration/test_auth_matrix.py.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from functions.adapters.kinesis import KinesisPublisher
from functions.auth import device_credentials as dc
from functions.authorizer import handler as authorizer
from functions.core.errors import StoreError
from functions.ingest import handler as ingest_handler
from iotpipe.ops.template import load_template
from simulator import credentials as sim_credentials
from simulator.clock import FakeClock
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet, register_fleet
from simulator.sinks import HttpSink
from simulator.stream import generate_readings
from testkit.events import FakeLambdaContext, api_gateway_event, reading_doc
from testkit.fakes import FakeDynamoDBClient, FakeKinesisClient, InMemoryDeviceRegistry

FLEET_SECRET = "unit-test-fleet-secret"
METHOD_ARN = "arn:aws:execute-api:us-east-1:000000000000:api123/prod/POST/ingest"


def token(device_id: str, fleet_secret: str = FLEET_SECRET) -> str:
    return sim_credentials.authorization(fleet_secret, device_id)


def registry_of(*device_ids: str) -> InMemoryDeviceRegistry:
    """The devices table with each device's credential hash, as register writes it."""
    secret = sim_credentials.device_secret
    return InMemoryDeviceRegistry(
        {"device_id": d, "credential_hash": sim_credentials.hash_secret(d, secret(FLEET_SECRET, d))}
        for d in device_ids
    )


# ---------------------------------------------------------------- credential format


def test_simulator_and_function_agree_on_token_and_hash() -> None:
    # GIVEN a device secret derived by the simulator
    secret = sim_credentials.device_secret(FLEET_SECRET, "dev-000042")
    # THEN it has the documented shape, and both sides hash and format it the same way
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert sim_credentials.hash_secret("dev-000042", secret) == dc.hash_secret("dev-000042", secret)
    assert token("dev-000042") == dc.format_token("dev-000042", secret)
    assert dc.parse_token(token("dev-000042")) == dc.DeviceToken("dev-000042", secret)
    # device ids may contain dots: the secret is what follows the last one
    assert dc.parse_token(dc.format_token("site.a:dev-1", secret)).device_id == "site.a:dev-1"
    # secrets differ per device and per fleet secret, and never appear in a repr
    assert secret != sim_credentials.device_secret(FLEET_SECRET, "dev-000043")
    assert secret != sim_credentials.device_secret("another-fleet", "dev-000042")
    assert secret not in repr(dc.parse_token(token("dev-000042")))
    assert len(dc.new_secret()) == 43


def test_the_gateway_validates_the_same_token_format_as_the_code() -> None:
    # The authorizer's IdentityValidationExpression answers malformed headers with 401 at the gateway;
    # it must accept exactly what parse_token accepts.
    template = load_template()
    props = template["Resources"]["DeviceAuthorizer"]["Properties"]
    assert props["IdentityValidationExpression"] == dc.TOKEN_PATTERN
    assert props["Type"] == "TOKEN"
    assert props["IdentitySource"] == "method.request.header.Authorization"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Device",
        "Device dev-1",
        "Bearer dev-1.abc",
        "x" * 300,
        "Device dev 1." + "a" * 43,
        "Device dev-1." + "a" * 42,
        "Device dev-1." + "a" * 44,
        "Device dev-1." + "a" * 42 + "=",
    ],
)
def test_malformed_headers_do_not_parse(header: str | None) -> None:
    assert dc.parse_token(header) is None


# ---------------------------------------------------------------- the authorizer


def test_authorizer_allows_a_registered_device_as_itself() -> None:
    # GIVEN dev-1 registered WHEN it presents its own credential
    answer = authorizer.authorize(
        {"authorizationToken": token("dev-1"), "methodArn": METHOD_ARN}, registry_of("dev-1")
    )
    # THEN Allow on exactly this method, with the device as principal and in the context
    assert answer["principalId"] == "dev-1"
    assert answer["context"] == {"device_id": "dev-1"}
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}


@pytest.mark.parametrize(
    ("presented", "why"),
    [
        (lambda: token("dev-1", "wrong-fleet"), "wrong secret"),
        (lambda: token("dev-9"), "unregistered device"),
        (lambda: "Device dev-2." + token("dev-1").rpartition(".")[2], "dev-1's secret under dev-2's id"),
        (lambda: "the-reader-api-key", "reader key instead of a device credential"),
        (lambda: None, "no credential"),
    ],
)
def test_authorizer_denies_everything_else(presented: Any, why: str) -> None:
    answer = authorizer.authorize(
        {"authorizationToken": presented(), "methodArn": METHOD_ARN}, registry_of("dev-1", "dev-2")
    )
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny", why
    assert answer["principalId"] == "anonymous"
    assert "context" not in answer


def test_authorizer_store_errors_are_not_a_deny() -> None:
    # A registry outage must surface as an authorizer failure (500, not cached), not as 403.
    registry = registry_of("dev-1")
    registry.throttle = True
    with pytest.raises(StoreError):
        authorizer.authorize({"authorizationToken": token("dev-1"), "methodArn": METHOD_ARN}, registry)


def test_authorizer_lambda_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(authorizer, "_store", registry_of("dev-1"))
    event = {"type": "TOKEN", "authorizationToken": token("dev-1"), "methodArn": METHOD_ARN}
    assert authorizer.handler(event, FakeLambdaContext())["principalId"] == "dev-1"


# ---------------------------------------------------------------- ingest: readings bound to the principal


SETTINGS = ingest_handler.IngestSettings(
    ingest_max_records=10, ingest_max_body_bytes=8192, max_record_bytes=1024
)


def _publisher() -> tuple[KinesisPublisher, FakeKinesisClient]:
    fake = FakeKinesisClient([])
    return KinesisPublisher("stream", fake, max_attempts=1, sleep=lambda _: None), fake


def test_a_device_cannot_write_another_devices_readings() -> None:
    # GIVEN a request authenticated as dev-1 holding one reading of dev-2 among its own
    pub, fake = _publisher()
    docs = [reading_doc("dev-1"), reading_doc("dev-2"), reading_doc("dev-1", epoch_ms=1_795_000_001_000)]
    # WHEN ingested
    response = ingest_handler.ingest(orjson.dumps(docs), pub, SETTINGS, principal="dev-1")
    # THEN the whole request is refused, naming the foreign reading, and nothing reaches the stream
    assert response.status == 403
    assert response.body["error"]["code"] == "device_mismatch"
    assert response.body["indexes"] == [1]
    assert not fake.stored


def test_a_device_writes_its_own_readings() -> None:
    pub, fake = _publisher()
    docs = [reading_doc("dev-1", epoch_ms=1_795_000_000_000 + i * 1000) for i in range(3)]
    response = ingest_handler.ingest(orjson.dumps(docs), pub, SETTINGS, principal="dev-1")
    assert response.status == 200
    assert {pk for _, _, pk in fake.stored} == {"dev-1"}


def _event(headers: dict[str, str] | None = None, context: dict[str, str] | None = None) -> dict[str, Any]:
    event = api_gateway_event(orjson.dumps([reading_doc("dev-1")]))
    event["headers"] = {"Content-Type": "application/json", **(headers or {})}
    if context is not None:
        event["requestContext"]["authorizer"] = context
    return event


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeKinesisClient, InMemoryDeviceRegistry]:
    pub, fake = _publisher()
    registry = registry_of("dev-1", "dev-2")
    monkeypatch.setattr(ingest_handler, "_publisher", pub)
    monkeypatch.setattr(ingest_handler, "_credentials", registry)
    return fake, registry


def test_handler_takes_the_principal_from_the_authorizer(
    wired: tuple[FakeKinesisClient, InMemoryDeviceRegistry],
) -> None:
    fake, registry = wired
    # GIVEN the gateway's authorizer context for dev-1 (AWS, ministack)
    ok = ingest_handler.handler(
        _event(context={"principalId": "dev-1", "device_id": "dev-1"}), FakeLambdaContext()
    )
    # AND one for dev-2 posting dev-1's reading
    foreign = ingest_handler.handler(
        _event(context={"principalId": "dev-2", "device_id": "dev-2"}), FakeLambdaContext()
    )
    # THEN the first is written, the second refused; the function did not look the credential up again
    assert ok["statusCode"] == 200
    assert foreign["statusCode"] == 403
    assert orjson.loads(foreign["body"])["error"]["code"] == "device_mismatch"
    assert len(fake.stored) == 1
    assert registry.credential_lookups == []


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"x-api-key": "the-reader-key"}, 401, "unauthorized"),
        ({"Authorization": "the-reader-key"}, 403, "forbidden"),
        ({"Authorization": token("dev-1", "wrong-fleet")}, 403, "forbidden"),
        ({"authorization": token("dev-2")}, 403, "device_mismatch"),
        ({"Authorization": token("dev-1")}, 200, None),
    ],
)
def test_handler_checks_the_credential_itself_without_an_authorizer(
    wired: tuple[FakeKinesisClient, InMemoryDeviceRegistry],
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    # LocalStack 4.14 community runs no Lambda authorizer: the request arrives without a context.
    fake, _ = wired
    response = ingest_handler.handler(_event(headers), FakeLambdaContext())
    assert response["statusCode"] == status
    body = orjson.loads(response["body"])
    if code:
        assert body["error"]["code"] == code
        assert not fake.stored
    else:
        assert body["accepted"] == 1


# ---------------------------------------------------------------- registration and the simulator


def test_register_writes_a_credential_hash_and_never_the_secret() -> None:
    fleet = generate_fleet(3, 42)
    fake = FakeDynamoDBClient(("device_id",))
    register_fleet(fleet, "devices", fake, fleet_secret=FLEET_SECRET)
    registry = registry_of(*(d.device_id for d in fleet))
    assert len(fake.items) == 3
    for item in fake.items.values():
        device_id = item["device_id"]["S"]
        assert item["credential_hash"]["S"] == registry.credential_hash(device_id)
        assert sim_credentials.device_secret(FLEET_SECRET, device_id) not in orjson.dumps(item).decode()
        # what the authorizer would then accept
        assert dc.verify(token(device_id), registry.credential_hash) == device_id


def test_fleet_secret_file_is_created_private_and_reused(tmp_path: Any) -> None:
    path = tmp_path / "sub" / "fleet.secret"
    with pytest.raises(sim_credentials.CredentialsError):
        sim_credentials.load_fleet_secret("", path)
    created = sim_credentials.load_fleet_secret("", path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert sim_credentials.load_fleet_secret("", path) == created
    assert sim_credentials.load_fleet_secret("explicit", path) == "explicit"


class FakeHttp:
    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str]]] = []

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> Any:
        self.posts.append((content, headers))
        return type("R", (), {"status_code": 200})()


def test_http_sink_posts_each_devices_readings_with_its_own_credential() -> None:
    # GIVEN a fleet of 4 producing readings, a fifth of them malformed (some naming unregistered devices)
    config = SimulatorConfig(devices=4, count=400, malformed_rate=0.2)
    items = list(generate_readings(config, generate_fleet(4, 1), 1_780_000_000_000))
    fake = FakeHttp()
    sink = HttpSink("http://127.0.0.1:1/ingest", token, client=fake, clock=FakeClock(), max_records=7)
    # WHEN sent
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN every JSON array holds readings of one device only, sent with that device's credential and
    # never with an API key; nothing is lost or duplicated on the way
    arrays = 0
    for content, headers in fake.posts:
        assert "x-api-key" not in headers
        device = dc.parse_token(headers["authorization"]).device_id
        if content.startswith(b"["):
            arrays += 1
            docs = orjson.loads(content)
            assert 1 <= len(docs) <= 7
            assert {d.get("device_id", device) for d in docs} == {device}
    assert arrays > 4
    assert sink.stats.sent == len(items)
    assert any(p.kind == "unknown_device" for p in items)
