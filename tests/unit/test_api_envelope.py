"""The envelope of a page of objects is the stored JSON joined as it is, whatever buffer type the driver gives."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import orjson
import pytest

from cutout.api.app import _objects_envelope
from cutout.service import Page

Row = namedtuple("Row", ["stix_id", "version", "date_added", "body", "spec_version"])


@pytest.mark.parametrize("buffer", [bytes, memoryview])
@pytest.mark.parametrize("n", [0, 1, 2, 5])
@pytest.mark.parametrize("more", [False, True])
def test_the_envelope_holds_the_rows_as_stored(buffer: Any, n: int, more: bool) -> None:
    stored = [orjson.dumps({"id": f"indicator--{i}", "name": "é" * i}) for i in range(n)]
    rows = [Row(f"indicator--{i}", "", i + 1, buffer(b), "2.1") for i, b in enumerate(stored)]
    page = Page(rows=rows, more=more, next="tok" if more else None)
    body = _objects_envelope(page)
    assert isinstance(body, bytes)
    expected: dict[str, Any] = {"more": more, "objects": [orjson.loads(b) for b in stored]}
    if more:
        expected["next"] = "tok"
    assert orjson.loads(body) == expected
    assert body.endswith(b",".join(stored) + b"]}")
