from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cutout.errors import BadRequest
from cutout.model.timestamps import ceil_us, floor_us, format_ms, format_us, parse_us
from cutout.model.tlp import TLP2_IDS, object_tlp, parse_tlp


def test_parse_fractional_digits() -> None:
    base = parse_us("2026-01-02T03:04:05Z")
    assert parse_us("2026-01-02T03:04:05.1Z") == base + 100_000
    assert parse_us("2026-01-02T03:04:05.123456Z") == base + 123_456
    assert parse_us("2026-01-02T03:04:05.123456789Z") == base + 123_456


@pytest.mark.parametrize(
    "bad", ["", "2026-01-02", "2026-01-02T03:04:05", "2026-13-02T03:04:05Z", "2026-01-02 03:04:05Z", "x" * 500]
)
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_us(bad)


@given(st.integers(min_value=0, max_value=4_000_000_000_000_000))
def test_format_parse_round_trip(us: int) -> None:
    assert parse_us(format_us(us)) == us
    assert parse_us(format_ms(us)) == us - us % 1000
    assert format_ms(us).count(".") == 1 and len(format_ms(us).split(".")[1]) == 4  # 3 digits + Z


@given(st.integers(min_value=0, max_value=4_000_000_000_000_000), st.integers(min_value=0, max_value=86_400))
def test_coarsening_brackets(us: int, step: int) -> None:
    assert floor_us(us, step) <= us <= ceil_us(us, step)


def test_tlp_levels() -> None:
    assert parse_tlp("white") == parse_tlp("clear") == 0
    assert parse_tlp("TLP:AMBER+STRICT") == 3
    with pytest.raises(ValueError, match="unknown TLP"):
        parse_tlp("purple")


def test_object_tlp_takes_the_strictest_and_default() -> None:
    tlp1_green = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
    assert object_tlp({"object_marking_refs": [tlp1_green]}, 4) == 1
    assert object_tlp({"object_marking_refs": [tlp1_green, TLP2_IDS[4]]}, 0) == 4
    assert object_tlp({"granular_markings": [{"marking_ref": TLP2_IDS[3], "selectors": ["name"]}]}, 0) == 3
    assert object_tlp({}, 4) == 4
    assert object_tlp({"object_marking_refs": ["marking-definition--00000000-0000-4000-8000-000000000000"]}, 2) == 2


def _reference_parse_us(text: str) -> int:
    """parse_us as first written, with datetime (the fast one must agree with it)."""
    import re
    from datetime import UTC, datetime

    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$", text)
    if m is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    dt = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + int((m.group(7) or "").ljust(6, "0")[:6])


def test_timestamps_agree_with_datetime() -> None:
    import random
    from datetime import UTC, datetime

    rng = random.Random(5)
    for _ in range(20_000):
        us = rng.randrange(-2 * 10**15, 25 * 10**16)
        dt = datetime.fromtimestamp(us // 1_000_000, tz=UTC)
        assert format_us(us) == f"{dt:%Y-%m-%dT%H:%M:%S}.{us % 1_000_000:06d}Z"
        assert format_ms(us) == f"{dt:%Y-%m-%dT%H:%M:%S}.{us % 1_000_000 // 1000:03d}Z"
        text = format_us(us)
        digits = rng.randrange(0, 10)
        text = text[:19] + ("." + "".join(rng.choice("0123456789") for _ in range(digits)) if digits else "") + "Z"
        pos = rng.choice((None, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18))
        if pos is not None:
            text = text[:pos] + rng.choice("0123456789") + text[pos + 1 :]
        try:
            expected: int | None = _reference_parse_us(text)
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(BadRequest):
                parse_us(text)
        else:
            assert parse_us(text) == expected
