"""The workload: STIX 2.1 objects of about 1.1 KB, made once per run and sent to both servers.

Per block of ten objects: four indicators, two locations, two threat-actors and two sightings. Each sighting
is of an indicator or a threat-actor of its own block and names a location of its own block as where it was
sighted, so an envelope that holds whole blocks never refers forwards. The objects are plain dicts shaped
like the ``stix2`` library's output (``check_with_stix2`` parses a sample with ``stix2`` to prove it); making
100,000 of them with ``stix2`` itself would take longer than the rest of the run.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TARGET_SIZE = 1100  # bytes of one object serialised compactly, on average
BLOCK = 10

_WORDS = (
    "actor",
    "campaign",
    "infrastructure",
    "beacon",
    "loader",
    "staging",
    "domain",
    "certificate",
    "credential",
    "phishing",
    "lure",
    "payload",
    "exfiltration",
    "persistence",
    "lateral",
    "movement",
    "reconnaissance",
    "scanner",
    "botnet",
    "proxy",
    "relay",
    "tunnel",
    "implant",
    "dropper",
    "spearphishing",
    "watering",
    "hole",
    "vulnerability",
    "exploit",
    "patch",
    "advisory",
    "telemetry",
    "endpoint",
    "sensor",
    "firewall",
    "gateway",
)
_COUNTRIES = ("DE", "FR", "NL", "BE", "PL", "IT", "ES", "SE", "FI", "AT", "CZ", "PT", "DK", "IE", "GR")
_PHASES = ("reconnaissance", "initial-access", "execution", "persistence", "command-and-control", "exfiltration")


class Workload:
    """Deterministic STIX 2.1 objects (seeded), made on demand and kept for the whole run."""

    def __init__(self, seed: int = 20260102) -> None:
        self._rng = random.Random(seed)
        self._objects: list[dict[str, Any]] = []
        self._singles: list[dict[str, Any]] = []

    # -- public -----------------------------------------------------------------------------------------
    def objects(self, n: int) -> list[dict[str, Any]]:
        """The first ``n`` objects of the run (``n`` a multiple of 10); the same list every call."""
        if n % BLOCK:
            raise ValueError("ask for whole blocks of ten objects")
        while len(self._objects) < n:
            self._objects.extend(self._block(len(self._objects)))
        return self._objects[:n]

    def singles(self, n: int) -> list[dict[str, Any]]:
        """``n`` further indicators, apart from ``objects``: one per POST in the latency measurement."""
        while len(self._singles) < n:
            self._singles.append(self._indicator(1_000_000 + len(self._singles)))
        return self._singles[:n]

    # -- making objects ---------------------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _ts(self, n: int) -> str:
        day, rest = divmod(n, 86_400)
        h, rest = divmod(rest, 3600)
        m, s = divmod(rest, 60)
        return f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{h:02d}:{m:02d}:{s:02d}.{n % 1000:03d}Z"

    def _text(self, words: int) -> str:
        pick = self._rng.choice
        return " ".join(pick(_WORDS) for _ in range(words)).capitalize() + "."

    def _pad(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Lengthen the description so the object is about ``TARGET_SIZE`` bytes (±5%)."""
        want = TARGET_SIZE + self._rng.randint(-55, 55)
        size = len(orjson.dumps(obj))
        words: list[str] = []
        while size < want:
            word = self._rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        obj["description"] = (obj.get("description", "") + " " + " ".join(words)).strip()
        return obj

    def _common(self, kind: str, n: int) -> dict[str, Any]:
        ts = self._ts(n)
        return {
            "type": kind,
            "spec_version": "2.1",
            "id": f"{kind}--{self._uuid()}",
            "created": ts,
            "modified": ts,
        }

    def _indicator(self, n: int) -> dict[str, Any]:
        obj = self._common("indicator", n)
        r = self._rng.getrandbits(32)
        obj.update(
            name=f"C2 address {n}",
            description=self._text(12),
            indicator_types=["malicious-activity"],
            pattern=f"[ipv4-addr:value = '{r >> 24 & 255}.{r >> 16 & 255}.{r >> 8 & 255}.{r & 255}']",
            pattern_type="stix",
            pattern_version="2.1",
            valid_from=obj["created"],
            kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": self._rng.choice(_PHASES)}],
            labels=["bench", "c2"],
            confidence=self._rng.randint(10, 100),
            object_marking_refs=[TLP_GREEN],
        )
        return self._pad(obj)

    def _location(self, n: int) -> dict[str, Any]:
        obj = self._common("location", n)
        obj.update(
            name=f"Site {n}",
            description=self._text(10),
            latitude=round(self._rng.uniform(35.0, 70.0), 4),
            longitude=round(self._rng.uniform(-10.0, 30.0), 4),
            region="northern-europe",
            country=self._rng.choice(_COUNTRIES),
            city=f"City {n % 997}",
            object_marking_refs=[TLP_GREEN],
        )
        return self._pad(obj)

    def _threat_actor(self, n: int) -> dict[str, Any]:
        obj = self._common("threat-actor", n)
        obj.update(
            name=f"Actor {n}",
            description=self._text(12),
            threat_actor_types=["crime-syndicate"],
            aliases=[f"Group {n}", f"TA-{n:06d}"],
            first_seen=obj["created"],
            roles=["agent"],
            goals=[self._text(4)],
            sophistication="advanced",
            resource_level="organization",
            primary_motivation="personal-gain",
            object_marking_refs=[TLP_GREEN],
        )
        return self._pad(obj)

    def _sighting(self, n: int, of: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
        obj = self._common("sighting", n)
        obj.update(
            description=self._text(12),
            first_seen=obj["created"],
            last_seen=obj["created"],
            count=self._rng.randint(1, 50),
            sighting_of_ref=of["id"],
            where_sighted_refs=[where["id"]],
            object_marking_refs=[TLP_GREEN],
        )
        return self._pad(obj)

    def _block(self, start: int) -> list[dict[str, Any]]:
        n = iter(range(start, start + BLOCK))
        indicators = [self._indicator(next(n)) for _ in range(4)]
        locations = [self._location(next(n)) for _ in range(2)]
        actors = [self._threat_actor(next(n)) for _ in range(2)]
        sightings = [
            self._sighting(next(n), self._rng.choice(indicators), locations[0]),
            self._sighting(next(n), self._rng.choice(actors), locations[1]),
        ]
        return [*indicators, *locations, *actors, *sightings]


def envelopes(objects: Sequence[dict[str, Any]], per: int) -> list[bytes]:
    """The objects as serialised TAXII envelopes of ``per`` objects (made before any clock starts)."""
    return [orjson.dumps({"objects": list(objects[i : i + per])}) for i in range(0, len(objects), per)]


def chunks(objects: Sequence[dict[str, Any]], per: int) -> Iterator[Sequence[dict[str, Any]]]:
    for i in range(0, len(objects), per):
        yield objects[i : i + per]


def check_with_stix2(objects: Sequence[dict[str, Any]], sample: int = 200) -> int:
    """Parse a sample (every type) with the ``stix2`` library, strictly; returns how many were parsed."""
    import stix2

    step = max(1, len(objects) // sample)
    picked = list(objects[:BLOCK]) + list(objects[::step])
    for obj in picked:
        stix2.parse(obj, allow_custom=False, version="2.1")
    return len(picked)


def mean_size(objects: Sequence[dict[str, Any]]) -> float:
    return sum(len(orjson.dumps(o)) for o in objects) / max(1, len(objects))
