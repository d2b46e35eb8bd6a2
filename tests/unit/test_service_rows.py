"""How the service turns objects into collection rows."""

from __future__ import annotations

import random

from cutout.model.timestamps import format_ms
from cutout.service import _stored, _stored_copy


def test_a_copy_s_row_is_the_row_parsed_from_its_text() -> None:
    rng = random.Random(7)
    for _ in range(500):
        created = rng.randrange(0, 4_000_000_000_000_000)
        modified = created + rng.choice((0, 1000, rng.randrange(0, 10**9)))
        out = {"type": "indicator", "spec_version": "2.1", "id": "indicator--x", "created": format_ms(created)}
        if rng.random() < 0.8:
            out["modified"] = format_ms(modified)
        assert _stored_copy(out, 5, created, modified) == _stored(out, origin=5)
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--x", "value": "198.51.100.7"}
    assert _stored_copy(sco, 5, 1, 2) == _stored(sco, origin=5)
