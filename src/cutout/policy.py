"""Agreements and the decision: which consumers an object may flow to. Fail closed.

An object flows from a provider to a consumer only while an active agreement between them matches it:
its type is among the agreement's types (all released types when none are listed), its TLP level is at
most the agreement's ``tlp_max`` (unmarked objects count as the policy's ``unmarked_tlp``), and, where the
object has coordinates, every one lies in the agreement's area. No agreement, nothing flows.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutout.sanitize.overrides import OPTIONAL_TYPES, OPTIONS

__all__ = ["RELEASE_MODES", "Agreement", "Area", "check_release", "decide", "parse_area"]

Area = tuple[float, float, float, float]  # min lon, min lat, max lon, max lat

#: how an agreement times its releases (see docs/concepts.md, "Release timing")
RELEASE_MODES = ("none", "fixed", "exponential", "pool")


@dataclass(frozen=True)
class Agreement:
    id: int
    provider_id: int
    consumer_id: int
    types: frozenset[str] | None
    tlp_max: int
    area: Area | None
    delay: int
    release: str = "fixed"
    pool_k: int = 0
    epoch: int = 0
    review: bool = False
    #: sanitizing options allowed on top of the strict profile (cutout.sanitize.overrides)
    allow: frozenset[str] = frozenset()

    @classmethod
    def from_row(cls, row: Any) -> Agreement:
        types = None if row.types is None else frozenset(json.loads(row.types))
        area = None if row.area is None else tuple(float(v) for v in json.loads(row.area))
        return cls(
            id=int(row.id),
            provider_id=int(row.provider_id),
            consumer_id=int(row.consumer_id),
            types=types,
            tlp_max=int(row.tlp_max),
            area=area,  # type: ignore[arg-type]
            delay=int(row.delay),
            release=str(row.release),
            pool_k=int(row.pool_k),
            epoch=int(row.epoch),
            review=bool(row.review),
            allow=frozenset(json.loads(row.allow)) if row.allow else frozenset(),
        )

    @functools.cached_property
    def extra_types(self) -> frozenset[str]:
        """Types released under this agreement beyond the strict profile's (those its options release)."""
        return frozenset(t for name in self.allow if name in OPTIONS for t in OPTIONS[name].releases)

    @property
    def expected_delay(self) -> int:
        """The delay one can expect, to choose between agreements: the pool's is one epoch."""
        if self.release == "none":
            return 0
        return self.epoch if self.release == "pool" else self.delay

    def matches(self, obj_type: str, tlp: int, coords: Sequence[tuple[float, float]]) -> bool:
        """Whether an object of a type the strict profile releases (or one of ``extra_types``) may flow."""
        if self.types is not None and obj_type not in self.types:
            return False
        if obj_type in OPTIONAL_TYPES and obj_type not in self.extra_types:
            return False
        if tlp > self.tlp_max:
            return False
        return self.area is None or all(in_area(self.area, lat, lon) for lat, lon in coords)


def in_area(area: Area, lat: float, lon: float) -> bool:
    min_lon, min_lat, max_lon, max_lat = area
    if not (min_lat <= lat <= max_lat):
        return False
    if min_lon <= max_lon:
        return min_lon <= lon <= max_lon
    return lon >= min_lon or lon <= max_lon  # the box crosses the antimeridian


def parse_area(text: str) -> Area:
    """Parse ``MINLON,MINLAT,MAXLON,MAXLAT``."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError("an area is MINLON,MINLAT,MAXLON,MAXLAT (four numbers)")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"an area is four numbers: {text!r}") from exc
    for lon in (min_lon, max_lon):
        if not -180 <= lon <= 180:
            raise ValueError(f"longitude {lon} is outside -180..180")
    for lat in (min_lat, max_lat):
        if not -90 <= lat <= 90:
            raise ValueError(f"latitude {lat} is outside -90..90")
    if min_lat > max_lat:
        raise ValueError("MINLAT is greater than MAXLAT")
    return (min_lon, min_lat, max_lon, max_lat)


def coordinates(
    obj: Mapping[str, Any], locations: Mapping[str, Mapping[str, Any]], tied: Iterable[str] = ()
) -> list[tuple[float, float]]:
    """The (lat, lon) points an object is tied to: its own, or those of the locations it names.

    ``locations`` maps location ids (of the same provider) to location objects. A sighting is tied to the
    locations in its ``where_sighted_refs``, a ``located-at`` relationship to its target, and any object to
    the extra location ids in ``tied`` (the targets of ``located-at`` relationships from it).
    """
    points: list[tuple[float, float]] = []
    if obj.get("type") == "location":
        lat, lon = obj.get("latitude"), obj.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            points.append((float(lat), float(lon)))
    refs: list[Any] = []
    if obj.get("type") == "sighting":
        refs.extend(obj.get("where_sighted_refs") or ())
    if obj.get("type") == "relationship" and obj.get("relationship_type") == "located-at":
        refs.append(obj.get("target_ref"))
    refs.extend(tied)
    for ref in refs:
        loc = locations.get(ref) if isinstance(ref, str) else None
        if loc is not None:
            points.extend(coordinates(loc, {}))
    return points


def decide(
    agreements: Iterable[Agreement], obj_type: str, tlp: int, coords: Sequence[tuple[float, float]]
) -> dict[int, Agreement]:
    """Consumers the object may flow to, each with the matching agreement that releases soonest."""
    out: dict[int, Agreement] = {}
    for a in agreements:
        if a.matches(obj_type, tlp, coords):
            best = out.get(a.consumer_id)
            if best is None or (a.expected_delay, a.id) < (best.expected_delay, best.id):
                out[a.consumer_id] = a
    return out


def check_release(release: str, delay: int, pool_k: int, epoch: int) -> None:
    """Refuse a release timing that makes no sense (ValueError with the reason)."""
    if release not in RELEASE_MODES:
        raise ValueError(f"release must be one of {', '.join(RELEASE_MODES)}, not {release!r}")
    if delay < 0 or pool_k < 0 or epoch < 0:
        raise ValueError("delays, pool sizes and epochs must not be negative")
    if release == "none" and delay:
        raise ValueError("release 'none' (time-critical) takes no delay")
    if release == "exponential" and delay <= 0:
        raise ValueError("release 'exponential' needs --delay, the mean delay in seconds")
    if release == "pool" and (pool_k < 2 or epoch <= 0):
        raise ValueError("release 'pool' needs --pool-k (at least 2 providers) and --epoch (seconds)")
    if release != "pool" and (pool_k or epoch):
        raise ValueError("--pool-k and --epoch go with release 'pool' only")
