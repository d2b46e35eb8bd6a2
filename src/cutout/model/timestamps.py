"""STIX timestamps (§2.16): parsing, formatting with exactly three fractional digits, coarsening.

Internally a timestamp is an ``int`` of microseconds since the Unix epoch (UTC): cheap to compare,
exact, and what the store keeps for ``date_added``.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, date, datetime

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
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


@functools.lru_cache(maxsize=4096)
def parse_us(text: str) -> int:
    """Parse an RFC 3339 UTC timestamp with 0-9 fractional digits; digits past microseconds are cut.

    Cached (a few thousand, so memory stays flat): an object's created, modified and valid_from are often
    one timestamp, and a release run formats and reads the same release stamp for every copy.
    """
    m = _TS.match(text)
    if m is None:
        raise BadRequest(f"not a STIX/TAXII timestamp (YYYY-MM-DDTHH:MM:SS[.s+]Z): {text[:64]!r}")
    year, month, day, hour, minute, second = map(int, m.group(1, 2, 3, 4, 5, 6))
    frac = m.group(7)
    try:
        days = date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError as exc:
        raise BadRequest(f"not a valid date: {text[:64]!r}") from exc
    if hour > 23 or minute > 59:
        raise BadRequest(f"not a valid date: {text[:64]!r}")
    seconds = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59)
    return seconds * 1_000_000 + (int(frac[:6].ljust(6, "0")) if frac else 0)


def _split(us: int) -> tuple[datetime, int]:
    seconds, micro = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC), micro


def format_us(us: int) -> str:
    """Format with six fractional digits (TAXII ``date_added``: microsecond precision)."""
    dt, micro = _split(us)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{micro:06d}Z"


@functools.lru_cache(maxsize=4096)
def format_ms(us: int) -> str:
    """Format with exactly three fractional digits (what cutout puts in STIX content)."""
    dt, micro = _split(us)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{micro // 1000:03d}Z"
    )


def floor_us(us: int, granularity_s: int) -> int:
    """Round down to a multiple of ``granularity_s`` seconds (0 or less: to the millisecond)."""
    step = granularity_s * 1_000_000 if granularity_s > 0 else 1000
    return us - us % step


def ceil_us(us: int, granularity_s: int) -> int:
    """Round up to a multiple of ``granularity_s`` seconds (0 or less: to the millisecond)."""
    step = granularity_s * 1_000_000 if granularity_s > 0 else 1000
    rem = us % step
    return us if rem == 0 else us + step - rem
