"""Settings: defaults declared once, every variable checked at load, a clear message naming it."""

from __future__ import annotations

import pytest

from functions.processor.decode import DecodeRules
from functions.settings import ProcessorSettings, Settings, SettingsError, default, load_settings


@pytest.mark.parametrize(
    ("var", "raw", "message"),
    [
        ("WINDOW_SECONDS", "0", "WINDOW_SECONDS (window_seconds) must be > 0"),
        ("WINDOW_SECONDS", "sixty", "WINDOW_SECONDS must be an integer"),
        ("MAX_PACKED_READINGS", "501", "MAX_PACKED_READINGS (max_packed_readings) must be <= 500"),
        ("MAX_PACKED_READINGS", "0", "MAX_PACKED_READINGS (max_packed_readings) must be >= 1"),
        ("WRITE_CONCURRENCY", "65", "WRITE_CONCURRENCY (write_concurrency) must be <= 64"),
        ("SAGEMAKER_TIMEOUT_S", "soon", "SAGEMAKER_TIMEOUT_S must be a number"),
        ("METRICS_SINK", "statsd", "METRICS_SINK must be one of"),
    ],
)
def test_a_bad_variable_fails_the_load_naming_it(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str, message: str
) -> None:
    # GIVEN one malformed or out-of-range variable WHEN the settings load THEN the error names it
    monkeypatch.setenv(var, raw)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_defaults_are_declared_once_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("WINDOW_SECONDS", "WRITE_CONCURRENCY", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    for var in names:
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert (s.window_seconds, s.write_concurrency, s.region) == (60, 16, "us-east-1")
    # an empty variable is unset; the second name of a field is its fallback
    monkeypatch.setenv("WINDOW_SECONDS", "")
    monkeypatch.setenv("WRITE_CONCURRENCY", "4")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s = load_settings()
    assert (s.window_seconds, s.write_concurrency, s.region) == (60, 4, "eu-west-1")
    # the decode stage's defaults are the settings' own
    assert DecodeRules() == DecodeRules.from_settings(Settings())
    assert DecodeRules().max_packed_readings == default("max_packed_readings") == 500


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="window_seconds"):
        ProcessorSettings(window_seconds=-1)
