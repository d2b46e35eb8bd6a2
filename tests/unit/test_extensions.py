"""The exchange's own vocabulary: outcomes, grades and their statistics, requests for information."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cutout.extensions import (
    DEFINITIONS,
    OUTCOME_EXT,
    OUTCOMES,
    REQUEST_EXT,
    REQUEST_TYPE,
    TrackRecord,
    beta_cdf,
    beta_quantile,
    boxes_meet,
    check_outcome,
    check_request,
    credibility,
    opinion_for,
    outcome_of,
)
from cutout.model.validate import default_validator


def test_the_definitions_are_valid_stix_with_fixed_ids() -> None:
    v = default_validator()
    assert [v.check(d) for d in DEFINITIONS] == [[], [], []]
    assert len({d["id"] for d in DEFINITIONS}) == 3
    assert len({d["created_by_ref"] for d in DEFINITIONS}) == 1


@pytest.mark.parametrize(
    ("a", "b", "x", "expected"),
    [
        (3.0, 1.0, 0.5, 0.5**3),  # I_x(a, 1) = x^a
        (1.0, 4.0, 0.3, 1 - 0.7**4),  # I_x(1, b) = 1 - (1 - x)^b
        (2.0, 2.0, 0.25, 3 * 0.25**2 - 2 * 0.25**3),  # I_x(2, 2) = 3x^2 - 2x^3
        (1.0, 1.0, 0.42, 0.42),
    ],
)
def test_beta_cdf_closed_forms(a: float, b: float, x: float, expected: float) -> None:
    assert beta_cdf(x, a, b) == pytest.approx(expected, abs=1e-10)


@given(st.integers(1, 60), st.integers(1, 60), st.floats(0.01, 0.99))
def test_beta_quantile_inverts_the_cdf(a: int, b: int, p: float) -> None:
    x = beta_quantile(p, a, b)
    assert beta_cdf(x, a, b) == pytest.approx(p, abs=1e-7)


def test_beta_quantile_closed_form() -> None:
    # Beta(a, 1): the p-quantile is p^(1/a)
    assert beta_quantile(0.1, 6, 1) == pytest.approx(0.1 ** (1 / 6), abs=1e-8)


@pytest.mark.parametrize(
    ("counts", "proposed"),
    [
        ({}, "F"),
        ({"confirmed-hit": 4}, "F"),  # too few to judge
        ({"acted-unconfirmed": 30, "stale": 30}, "F"),  # these say nothing about reliability
        ({"confirmed-hit": 5}, "B"),
        ({"confirmed-hit": 20}, "A"),
        ({"confirmed-hit": 20, "false-positive": 2}, "B"),
        ({"confirmed-hit": 30, "not-found": 20}, "C"),
        ({"confirmed-hit": 10, "not-found": 10}, "D"),  # a coin's record: the lower bound decides
        ({"confirmed-hit": 3, "not-found": 7}, "E"),
        ({"false-positive": 10}, "E"),
    ],
)
def test_proposed_grades(counts: dict[str, int], proposed: str) -> None:
    assert TrackRecord(counts).proposed == proposed


@given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 50))
def test_more_hits_never_lower_the_proposal(hits: int, misses: int, extra: int) -> None:
    order = "ABCDEF"
    base = TrackRecord({"confirmed-hit": hits, "not-found": misses})
    more = TrackRecord({"confirmed-hit": hits + extra, "not-found": misses})
    if base.proposed != "F":
        assert order.index(more.proposed) <= order.index(base.proposed)
    low, high = base.interval()
    assert 0 <= low <= base.estimate <= high <= 1
    assert math.isclose(base.estimate, (1 + hits) / (2 + hits + misses))


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_outcomes_round_trip_through_opinions(outcome: str) -> None:
    plain = {"type": "opinion", "opinion": opinion_for(outcome)}
    assert outcome_of(plain) == outcome
    ext = {**plain, "extensions": {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": outcome}}}
    assert outcome_of(ext) == outcome and check_outcome(ext) is None


def test_outcome_rules() -> None:
    assert outcome_of({"type": "sighting"}) == "confirmed-hit"
    assert outcome_of({"type": "note"}) is None
    wrong = {
        "type": "opinion",
        "opinion": "agree",
        "extensions": {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": "false-positive"}},
    }
    assert check_outcome(wrong) == "outcome false-positive goes with opinion strongly-disagree, not agree"
    unknown = {**wrong, "extensions": {OUTCOME_EXT: {"outcome": "great"}}}
    assert "must be one of confirmed-hit" in str(check_outcome(unknown))
    on_note = {"type": "note", "extensions": {OUTCOME_EXT: {"outcome": "stale"}}}
    assert check_outcome(on_note) == "an outcome goes on an opinion or a sighting"


@pytest.mark.parametrize(
    ("confidence", "grade"), [(95, 1), (80, 1), (79, 2), (50, 3), (20, 4), (0, 5), (None, 6), (True, 6), (101, 6)]
)
def test_credibility_follows_appendix_a(confidence: Any, grade: int) -> None:
    assert credibility(confidence) == grade


def _request(**extra: Any) -> dict[str, Any]:
    return {
        "type": REQUEST_TYPE,
        "spec_version": "2.1",
        "id": f"{REQUEST_TYPE}--11111111-1111-4111-8111-111111111111",
        "created": "2026-11-26T09:00:00.000Z",
        "modified": "2026-11-26T09:00:00.000Z",
        "question": "Where?",
        "priority": "high",
        "expires": "2026-12-01T00:00:00.000Z",
        "extensions": {REQUEST_EXT: {"extension_type": "new-sdo"}},
        **extra,
    }


def test_a_well_formed_request() -> None:
    req = _request(area=[30, 44, 36, 48], window_start="2026-11-20T00:00:00Z", object_types=["sighting"], x_own=1)
    assert check_request(req, frozenset({"sighting"})) == []
    assert default_validator().check(req) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"question": " "}, "question: a non-empty string is required"),
        ({"priority": "urgent"}, "priority must be one of low, medium, high, critical"),
        ({"expires": None}, "expires: a timestamp is required"),
        ({"expires": "tomorrow"}, "expires: not a STIX timestamp"),
        ({"area": [1, 2, 3]}, "area: four numbers"),
        ({"area": [0, 50, 1, 40]}, "area: four numbers"),
        ({"object_types": ["identity"]}, "object_types: not released by the exchange: identity"),
        ({"object_types": []}, "object_types: a non-empty list"),
        (
            {"window_start": "2026-11-27T00:00:00Z", "window_end": "2026-11-26T00:00:00Z"},
            "window_end is before window_start",
        ),
        ({"extensions": {}}, f"a request must carry the extension {REQUEST_EXT}"),
        ({"requester": "me"}, "properties not defined for a request: requester"),
    ],
)
def test_malformed_requests_say_what_is_wrong(change: dict[str, Any], problem: str) -> None:
    req = _request(**change)
    if change.get("expires", "") is None:
        del req["expires"]
    problems = check_request(req, frozenset({"sighting"}))
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("a", "b", "meet"),
    [
        ((0, 0, 10, 10), (5, 5, 20, 20), True),
        ((0, 0, 10, 10), (11, 0, 20, 10), False),
        ((0, 0, 10, 10), (0, 11, 10, 20), False),
        ((170, 0, -170, 10), (175, 5, 178, 6), True),  # across the antimeridian
        ((170, 0, -170, 10), (-175, 5, -172, 6), True),
        ((170, 0, -170, 10), (0, 5, 10, 6), False),
    ],
)
def test_boxes_meet(a: tuple[float, ...], b: tuple[float, ...], meet: bool) -> None:
    assert boxes_meet(a, b) is meet and boxes_meet(b, a) is meet
