"""STIX timestamps (§2.16): parsing, formatting with exactly three fractional digits, coarsening.

Internally a timestamp is an ``int`` of microseconds since the Unix epoch (UTC): cheap to compare,
exact, and what the store keeps for ``date_added``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from cutout.errors import BadRequest

__all__ = [
    "ceil_us",
    "floor_us",
    "format_ms",
    "format_us",
    "now_us",
    "parse_us",
]

_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def parse_us(text: str) -> int:
    """Parse an RFC 3339 UTC timestamp with 0-9 fractional digits; digits past microseconds are cut."""
    m = _TS.match(text)
    if m is None:
        raise BadRequest(f"not a STIX/TAXII timestamp (YYYY-MM-DDTHH:MM:SS[.s+]Z): {text[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "").ljust(6, "0")[:6]
    try:
        dt = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError as exc:
        raise BadRequest(f"not a valid date: {text[:64]!r}") from exc
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + int(frac)


def _split(us: int) -> tuple[datetime, int]:
    seconds, micro = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC), micro


def format_us(us: int) -> str:
    """Format with six fractional digits (TAXII ``date_added``: microsecond precision)."""
    dt, micro = _split(us)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{micro:06d}Z"


def format_ms(us: int) -> str:
    """Format with exactly three fractional digits (what cutout puts in STIX content)."""
    dt, micro = _split(us)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{micro // 1000:03d}Z"


def floor_us(us: int, granularity_s: int) -> int:
    """Round down to a multiple of ``granularity_s`` seconds (0 or less: to the millisecond)."""
    step = granularity_s * 1_000_000 if granularity_s > 0 else 1000
    return us - us % step


def ceil_us(us: int, granularity_s: int) -> int:
    """Round up to a multiple of ``granularity_s`` seconds (0 or less: to the millisecond)."""
    step = granularity_s * 1_000_000 if granularity_s > 0 else 1000
    rem = us % step
    return us if rem == 0 else us + step - rem
