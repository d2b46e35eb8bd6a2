from __future__ import annotations

import pytest

from cutout.policy import Agreement, check_release, coordinates, in_area, parse_area
from cutout.policy import decide as decide_agreements


def agreement(**kw: object) -> Agreement:
    base: dict[str, object] = {
        "id": 1,
        "provider_id": 1,
        "consumer_id": 2,
        "types": None,
        "tlp_max": 2,
        "area": None,
        "delay": 0,
    }
    base.update(kw)
    return Agreement(**base)  # type: ignore[arg-type]


def decide(agreements: list[Agreement], obj_type: str, tlp: int, coords: list[tuple[float, float]]) -> dict[int, int]:
    """Consumer -> the delay of the agreement chosen for it."""
    return {c: a.expected_delay for c, a in decide_agreements(agreements, obj_type, tlp, coords).items()}


def test_no_agreement_nothing_flows() -> None:
    assert decide([], "indicator", 0, []) == {}


def test_type_filter() -> None:
    a = agreement(types=frozenset({"indicator"}))
    assert decide([a], "indicator", 0, []) == {2: 0}
    assert decide([a], "malware", 0, []) == {}


def test_tlp_ceiling() -> None:
    a = agreement(tlp_max=1)
    assert decide([a], "indicator", 1, []) == {2: 0}
    assert decide([a], "indicator", 2, []) == {}


def test_area_only_restricts_objects_with_coordinates() -> None:
    a = agreement(area=(30.0, 44.0, 36.0, 48.0))
    assert decide([a], "indicator", 0, []) == {2: 0}
    assert decide([a], "location", 0, [(46.0, 33.0)]) == {2: 0}
    assert decide([a], "location", 0, [(50.0, 33.0)]) == {}
    # every point must lie inside
    assert decide([a], "sighting", 0, [(46.0, 33.0), (46.0, 40.0)]) == {}


def test_area_across_the_antimeridian() -> None:
    area = (170.0, -10.0, -170.0, 10.0)
    assert in_area(area, 0.0, 175.0)
    assert in_area(area, 0.0, -175.0)
    assert not in_area(area, 0.0, 0.0)


def test_shortest_delay_of_matching_agreements_wins() -> None:
    a = agreement(id=1, delay=600)
    b = agreement(id=2, delay=30)
    c = agreement(id=3, delay=0, types=frozenset({"malware"}))
    assert decide([a, b, c], "indicator", 0, []) == {2: 30}


def test_coordinates_of_sightings_and_located_at() -> None:
    loc = {"type": "location", "id": "location--1", "latitude": 1.5, "longitude": 2.5}
    locations = {"location--1": loc}
    sighting = {"type": "sighting", "where_sighted_refs": ["location--1", "identity--x"]}
    rel = {"type": "relationship", "relationship_type": "located-at", "target_ref": "location--1"}
    assert coordinates(loc, {}) == [(1.5, 2.5)]
    assert coordinates(sighting, locations) == [(1.5, 2.5)]
    assert coordinates(rel, locations) == [(1.5, 2.5)]
    assert coordinates({"type": "observed-data"}, locations, ["location--1"]) == [(1.5, 2.5)]
    assert coordinates({"type": "indicator"}, locations) == []


@pytest.mark.parametrize(
    "text",
    ["1,2,3", "a,b,c,d", "200,0,10,10", "0,50,10,40", "0,-100,10,10"],
)
def test_parse_area_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_area(text)


def test_parse_area() -> None:
    assert parse_area(" 30, 44 ,36,48") == (30.0, 44.0, 36.0, 48.0)


def test_the_soonest_release_mode_wins() -> None:
    pooled = agreement(id=1, release="pool", pool_k=3, epoch=3600)
    expo = agreement(id=2, release="exponential", delay=600)
    chosen = decide_agreements([pooled, expo], "indicator", 0, [])
    assert chosen[2].id == 2
    now = agreement(id=3, release="none")
    assert decide_agreements([pooled, expo, now], "indicator", 0, [])[2].id == 3


@pytest.mark.parametrize(
    ("release", "delay", "k", "epoch", "message"),
    [
        ("sometimes", 0, 0, 0, "release must be one of"),
        ("none", 5, 0, 0, "takes no delay"),
        ("exponential", 0, 0, 0, "mean delay"),
        ("pool", 0, 1, 60, "at least 2"),
        ("pool", 0, 3, 0, "--epoch"),
        ("fixed", 10, 3, 0, "pool' only"),
        ("fixed", -1, 0, 0, "negative"),
    ],
)
def test_check_release_refuses(release: str, delay: int, k: int, epoch: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_release(release, delay, k, epoch)


def test_check_release_accepts() -> None:
    for args in (("none", 0, 0, 0), ("fixed", 0, 0, 0), ("exponential", 60, 0, 0), ("pool", 0, 2, 60)):
        check_release(*args)
