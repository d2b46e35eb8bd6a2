from __future__ import annotations

import pytest

from cutout.policy import Agreement, coordinates, decide, in_area, parse_area


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
