"""Traffic Light Protocol markings: TLP 1.0 (§7.2.1.4) and TLP 2.0 (the OASIS extension), as levels.

cutout reasons in levels (0 clear … 4 red) and always releases the TLP 2.0 marking of the level an object
was treated as, so the marking version a provider's tool uses does not show through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "LEVEL_NAMES",
    "TLP2_IDS",
    "TLP_LEVEL_BY_ID",
    "object_tlp",
    "parse_tlp",
    "tlp_name",
]

CLEAR, GREEN, AMBER, AMBER_STRICT, RED = range(5)
LEVEL_NAMES = ("clear", "green", "amber", "amber+strict", "red")
_ALIASES = {"white": CLEAR, "amber-strict": AMBER_STRICT, "amber_strict": AMBER_STRICT}

TLP1_IDS = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": CLEAR,
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": GREEN,
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": AMBER,
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": RED,
}
TLP2_IDS = (
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",  # clear
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",  # green
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",  # amber
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",  # amber+strict
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",  # red
)
TLP_LEVEL_BY_ID: Mapping[str, int] = {**TLP1_IDS, **{mid: lvl for lvl, mid in enumerate(TLP2_IDS)}}


def parse_tlp(name: str) -> int:
    """A TLP level from its name (``clear``/``white``, ``green``, ``amber``, ``amber+strict``, ``red``)."""
    key = name.strip().lower().removeprefix("tlp:")
    if key in LEVEL_NAMES:
        return LEVEL_NAMES.index(key)
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown TLP level {name!r}; use one of {', '.join(LEVEL_NAMES)}")


def tlp_name(level: int) -> str:
    return LEVEL_NAMES[level]


def _marking_ids(obj: Mapping[str, Any]) -> Iterable[Any]:
    refs = obj.get("object_marking_refs")
    if isinstance(refs, list):
        yield from refs
    granular = obj.get("granular_markings")
    if isinstance(granular, list):
        for g in granular:
            if isinstance(g, dict):
                yield g.get("marking_ref")


def object_tlp(obj: Mapping[str, Any], unmarked: int) -> int:
    """The strictest TLP level on an object (object or granular markings); ``unmarked`` if it has none."""
    level = -1
    for ref in _marking_ids(obj):
        found = TLP_LEVEL_BY_ID.get(ref) if isinstance(ref, str) else None
        if found is not None and found > level:
            level = found
    return unmarked if level < 0 else level
