"""The exchange's own STIX vocabulary: outcomes, Admiralty grades and requests for information.

Three extension definitions (STIX 2.1 §7.3) are published by the cutout project, with fixed ids that are the
same on every cutout exchange (so a tool can recognise them, and so they say nothing about any one exchange):

- **grade** (property extension on released SDOs/SROs): the provider's source reliability (A–F) and the
  object's information credibility (1–6), REFERENCE.md §3 / STIX Appendix A;
- **outcome** (property extension on opinions and sightings): what a consumer's action on an object gave
  (``OUTCOMES``);
- **request** (a new SDO, ``x-cutout-request``): a consumer's request for information.

Everything here is pure: no database, no HTTP. docs/extensions.md documents the same, field by field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutout.errors import BadRequest
from cutout.model.timestamps import parse_us

__all__ = [
    "DEFINITIONS",
    "GRADES",
    "GRADE_EXT",
    "OUTCOMES",
    "OUTCOME_EXT",
    "PRIORITIES",
    "REQUEST_EXT",
    "REQUEST_TYPE",
    "TrackRecord",
    "beta_cdf",
    "beta_quantile",
    "boxes_meet",
    "check_outcome",
    "check_request",
    "credibility",
    "opinion_for",
    "outcome_of",
    "request_area",
    "request_types",
]

_PROJECT = "identity--8d4c7f0e-5b1a-5c3e-9f2d-6a7b8c9d0e1f"
_CREATED = "2026-11-26T00:00:00.000Z"
GRADE_EXT = "extension-definition--3a1f6c2e-7d4b-5e8a-9c0f-1b2d3e4f5a60"
OUTCOME_EXT = "extension-definition--3a1f6c2e-7d4b-5e8a-9c0f-1b2d3e4f5a61"
REQUEST_EXT = "extension-definition--3a1f6c2e-7d4b-5e8a-9c0f-1b2d3e4f5a62"
REQUEST_TYPE = "x-cutout-request"

#: source reliability (Admiralty): A completely reliable … E unreliable, F reliability cannot be judged
GRADES = ("A", "B", "C", "D", "E", "F")
#: what a consumer reports back about an object it received
OUTCOMES = ("confirmed-hit", "acted-unconfirmed", "not-found", "false-positive", "stale")
#: the STIX opinion that carries each outcome (an opinion without the extension is read the same way back)
_OPINION = {
    "confirmed-hit": "strongly-agree",
    "acted-unconfirmed": "agree",
    "stale": "neutral",
    "not-found": "disagree",
    "false-positive": "strongly-disagree",
}
_OUTCOME_OF_OPINION = {v: k for k, v in _OPINION.items()}
PRIORITIES = ("low", "medium", "high", "critical")


def _definition(id_: str, name: str, description: str, schema: str, types: list[str]) -> dict[str, Any]:
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": id_,
        "created_by_ref": _PROJECT,
        "created": _CREATED,
        "modified": _CREATED,
        "name": name,
        "description": description,
        "schema": schema,
        "version": "1.0.0",
        "extension_types": types,
    }


#: the published definitions, as served at ``/<api_root>/extensions/`` and in docs/extensions.md
DEFINITIONS: tuple[dict[str, Any], ...] = (
    _definition(
        GRADE_EXT,
        "cutout grade",
        "The Admiralty grading of a released object: the source reliability the exchange's operator gives "
        "the (unnamed) provider, and the information credibility of the object.",
        "Properties: source_reliability (string, one of A, B, C, D, E, F; omitted when the exchange's policy "
        "withholds it), information_credibility (integer 1-6; 1-5 follow STIX Appendix A from the object's "
        "confidence, 6 when it has none).",
        ["property-extension"],
    ),
    _definition(
        OUTCOME_EXT,
        "cutout outcome",
        "What acting on an object gave, as reported by a consumer and returned to the provider.",
        "Properties: outcome (string, one of confirmed-hit, acted-unconfirmed, not-found, false-positive, "
        "stale). On an opinion it agrees with the opinion value: strongly-agree confirmed-hit, agree "
        "acted-unconfirmed, neutral stale, disagree not-found, strongly-disagree false-positive.",
        ["property-extension"],
    ),
    _definition(
        REQUEST_EXT,
        "cutout request for information",
        "A request for information (x-cutout-request), routed by the exchange to the providers whose "
        "agreements with the requester cover it, without naming the requester.",
        "Properties: question (string, required), expires (timestamp, required), priority (low, medium, high "
        "or critical; required), area (array of four numbers: min longitude, min latitude, max longitude, max "
        "latitude), window_start and window_end (timestamps: the period the question is about), "
        "object_types (array of STIX type names wanted).",
        ["new-sdo"],
    ),
)


def outcome_of(obj: Mapping[str, Any]) -> str | None:
    """The outcome a feedback object reports: the extension's, else the opinion's, else a hit for a
    sighting; None for a note or anything else."""
    ext = (obj.get("extensions") or {}).get(OUTCOME_EXT) if isinstance(obj.get("extensions"), dict) else None
    if isinstance(ext, dict) and ext.get("outcome") in OUTCOMES:
        return str(ext["outcome"])
    if obj.get("type") == "opinion":
        return _OUTCOME_OF_OPINION.get(str(obj.get("opinion")))
    if obj.get("type") == "sighting":
        return "confirmed-hit"
    return None


def check_outcome(obj: Mapping[str, Any]) -> str | None:
    """A problem with a feedback object's outcome extension, or None."""
    exts = obj.get("extensions")
    if not isinstance(exts, dict) or OUTCOME_EXT not in exts:
        return None
    ext = exts[OUTCOME_EXT]
    if not isinstance(ext, dict) or ext.get("outcome") not in OUTCOMES:
        return f"the outcome must be one of {', '.join(OUTCOMES)}"
    if obj.get("type") not in ("opinion", "sighting"):
        return "an outcome goes on an opinion or a sighting"
    if obj.get("type") == "opinion" and _OPINION[ext["outcome"]] != obj.get("opinion"):
        return f"outcome {ext['outcome']} goes with opinion {_OPINION[ext['outcome']]}, not {obj.get('opinion')}"
    return None


def opinion_for(outcome: str) -> str:
    return _OPINION[outcome]


def credibility(confidence: Any) -> int:
    """Admiralty information credibility (1–6) from a STIX confidence (Appendix A)."""
    if not isinstance(confidence, int) or isinstance(confidence, bool) or not 0 <= confidence <= 100:
        return 6
    return 1 if confidence >= 80 else 2 if confidence >= 60 else 3 if confidence >= 40 else 4 if confidence >= 20 else 5


# -- requests for information ---------------------------------------------------------------------------------


#: the properties a request may have (custom ``x_`` ones aside, which are accepted and never released)
_REQUEST_KEYS = frozenset(
    {
        "type",
        "spec_version",
        "id",
        "created",
        "modified",
        "extensions",
        "object_marking_refs",
        "question",
        "expires",
        "priority",
        "area",
        "window_start",
        "window_end",
        "object_types",
        "lang",
        "labels",
        "confidence",
        "created_by_ref",
        "revoked",
        "external_references",
        "granular_markings",
    }
)


def check_request(obj: Mapping[str, Any], known_types: frozenset[str]) -> list[str]:
    """What is wrong with a request for information (empty when it is well formed)."""
    problems: list[str] = []
    exts = obj.get("extensions")
    if not isinstance(exts, dict) or not isinstance(exts.get(REQUEST_EXT), dict):
        problems.append(f"a request must carry the extension {REQUEST_EXT} (extension_type new-sdo)")
    elif exts[REQUEST_EXT].get("extension_type") != "new-sdo":
        problems.append("the request extension's extension_type must be new-sdo")
    if not isinstance(obj.get("question"), str) or not obj["question"].strip():
        problems.append("question: a non-empty string is required")
    if obj.get("priority") not in PRIORITIES:
        problems.append(f"priority must be one of {', '.join(PRIORITIES)}")
    times: dict[str, int] = {}
    for key in ("expires", "window_start", "window_end"):
        if key not in obj:
            if key == "expires":
                problems.append("expires: a timestamp is required")
            continue
        try:
            times[key] = parse_us(str(obj[key]))
        except (ValueError, BadRequest):
            problems.append(f"{key}: not a STIX timestamp")
    if "window_start" in times and "window_end" in times and times["window_end"] < times["window_start"]:
        problems.append("window_end is before window_start")
    if "area" in obj and request_area(obj) is None:
        problems.append("area: four numbers, min longitude, min latitude, max longitude, max latitude")
    if "object_types" in obj:
        types = obj["object_types"]
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            problems.append("object_types: a non-empty list of STIX type names")
        else:
            unknown = sorted(set(types) - known_types)
            if unknown:
                problems.append(f"object_types: not released by the exchange: {', '.join(unknown)}")
    extra = sorted(k for k in obj if k not in _REQUEST_KEYS and not k.startswith("x_"))  # custom ones are dropped
    if extra:
        problems.append(f"properties not defined for a request: {', '.join(extra)}")
    return problems


def request_area(obj: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The request's area as (min lon, min lat, max lon, max lat), or None (absent or malformed)."""
    area = obj.get("area")
    if not isinstance(area, list) or len(area) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in area):
        return None
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in area)
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        return None
    return (min_lon, min_lat, max_lon, max_lat)


def request_types(obj: Mapping[str, Any]) -> frozenset[str] | None:
    types = obj.get("object_types")
    return frozenset(types) if isinstance(types, list) else None


def boxes_meet(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two lon/lat boxes share a point (either may cross the antimeridian)."""
    if a[1] > b[3] or b[1] > a[3]:
        return False

    def spans(box: Sequence[float]) -> list[tuple[float, float]]:
        return [(box[0], box[2])] if box[0] <= box[2] else [(box[0], 180.0), (-180.0, box[2])]

    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in spans(a) for lo2, hi2 in spans(b))


# -- track records and proposed grades ------------------------------------------------------------------------

#: fewer graded outcomes than this, and the proposal stays F (cannot be judged)
MIN_OUTCOMES = 5
#: the lower 10% bound of the hit rate needed for each grade
_THRESHOLDS = (("A", 0.80), ("B", 0.60), ("C", 0.40), ("D", 0.20))


@dataclass(frozen=True)
class TrackRecord:
    """A provider's outcomes, and what they say about its reliability.

    The hit rate gets a uniform Beta(1, 1) prior; confirmed hits count for, not-found and false positives
    against; acted-unconfirmed and stale say nothing about reliability and are only counted.
    """

    counts: Mapping[str, int]

    @property
    def hits(self) -> int:
        return self.counts.get("confirmed-hit", 0)

    @property
    def misses(self) -> int:
        return self.counts.get("not-found", 0) + self.counts.get("false-positive", 0)

    @property
    def estimate(self) -> float:
        """Posterior mean of the hit rate."""
        return (1 + self.hits) / (2 + self.hits + self.misses)

    def interval(self, mass: float = 0.8) -> tuple[float, float]:
        """The central credible interval holding ``mass`` of the posterior."""
        tail = (1 - mass) / 2
        a, b = 1 + self.hits, 1 + self.misses
        return beta_quantile(tail, a, b), beta_quantile(1 - tail, a, b)

    @property
    def proposed(self) -> str:
        if self.hits + self.misses < MIN_OUTCOMES:
            return "F"
        low = self.interval()[0]
        return next((g for g, t in _THRESHOLDS if low >= t), "E")


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def beta_quantile(p: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = p, by bisection (to 1e-9)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
