"""PARTIAL_BATCH_RESPONSE=auto: batchItemFailures everywhere but on ministack, which drops them."""

from __future__ import annotations

import pytest

from functions.settings import load_settings


@pytest.mark.parametrize(
    ("configured", "emulator", "expected"),
    [
        (None, None, "report"),  # AWS, LocalStack: the mapping redelivers reported records
        ("auto", None, "report"),
        ("auto", "ministack", "raise"),  # the embedded emulator's launcher marks its functions' env
        ("report", "ministack", "report"),  # an explicit choice wins
        ("raise", None, "raise"),
    ],
)
def test_auto_hands_back_whole_batches_only_on_ministack(
    monkeypatch: pytest.MonkeyPatch, configured: str | None, emulator: str | None, expected: str
) -> None:
    for name, value in (("PARTIAL_BATCH_RESPONSE", configured), ("IOTPIPE_EMULATOR", emulator)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert load_settings().partial_batch_response == expected

