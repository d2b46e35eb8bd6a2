"""RFC 8785 (JCS) canonical JSON, fast for the values the audit log records.

``rfc8785.dumps`` is pure Python: for a release event naming a thousand objects it took longer than
sanitizing them. For values made only of dicts with ASCII keys, lists, tuples, strings, booleans, None and
integers within ±(2**53 - 1), JCS and ``orjson`` with sorted keys write the same bytes: ASCII keys sort the
same by UTF-16 code units as by code points, both escape exactly ``"``, ``\\`` and the control characters
(``\\b \\t \\n \\f \\r``, the rest as lowercase ``\\u00xx``) and write everything else as UTF-8, and integers
in that range are written as their digits. Anything else (floats, other keys, big integers, lone surrogates)
goes to ``rfc8785``, so the bytes are the same either way (tests/unit/audit/test_jcs.py holds them to it).
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

__all__ = ["dumps"]

_INT_MAX = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether ``value`` is in the domain where orjson's output is the JCS output."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if not -_INT_MAX <= item <= _INT_MAX:
                return False
        elif kind is list or kind is tuple:
            push(item)
        elif kind is dict:
            if not all(type(k) is str and k.isascii() for k in item):
                return False
            push(item.values())
        else:
            return False
    return True


def dumps(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of ``value``, byte for byte what ``rfc8785.dumps`` gives."""
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: let rfc8785 say what is wrong
    return rfc8785.dumps(value)
