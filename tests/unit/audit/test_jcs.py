"""The fast canonical JSON writes exactly what rfc8785 writes, or fails where it fails."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.audit._jcs import dumps

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"))
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8), inner)
    ),
    max_leaves=30,
)


def _either(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        return type(exc)


@settings(max_examples=600, deadline=None)
@given(_values)
def test_same_bytes_as_rfc8785(value: Any) -> None:
    expected = _either(value)
    if isinstance(expected, bytes):
        assert dumps(value) == expected
    else:
        with pytest.raises(expected):
            dumps(value)


@pytest.mark.parametrize("code", [*range(0x80), 0x2028, 0x2029, 0xFEFF, 0xFFFF, 0x10000, 0x10FFFF])
def test_every_escape(code: int) -> None:
    text = f"a{chr(code)}b"
    assert dumps({"k": [text, {"x": text}]}) == rfc8785.dumps({"k": [text, {"x": text}]})


def test_key_order_beyond_the_basic_plane() -> None:
    # UTF-16 order puts U+10000 (a surrogate pair, 0xD800...) before U+E000; code point order does not
    value = {"\ue000": 1, "\U00010000": 2, "a": 3}
    assert dumps(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("n", [2**53 - 1, -(2**53) + 1, 2**53, -(2**53), 2**63])
def test_integer_domain(n: int) -> None:
    assert _either({"n": n}) == (rfc8785.dumps({"n": n}) if abs(n) < 2**53 else rfc8785.IntegerDomainError)
    if abs(n) < 2**53:
        assert dumps({"n": n}) == rfc8785.dumps({"n": n})
    else:
        with pytest.raises(rfc8785.IntegerDomainError):
            dumps({"n": n})


def test_lone_surrogate_refused_as_before() -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        dumps({"k": "\ud800"})
