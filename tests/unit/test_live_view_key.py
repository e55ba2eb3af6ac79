"""The live view keeps the reader key for the tab only: never in localStorage (issue 11, finding 4)."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "functions" / "api" / "static" / "dashboard.html"


def test_the_reader_key_is_never_written_to_local_storage() -> None:
    script = PAGE.read_text()
    # only a removal of what an older page version left behind
    assert re.findall(r"localStorage\.(\w+)", script) == ["removeItem"]
    assert "sessionStorage.setItem(KEY_STORE" in script
    assert "sessionStorage.getItem(KEY_STORE" in script
