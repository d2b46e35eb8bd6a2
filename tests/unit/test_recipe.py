"""A recipe: everything a copy depends on besides the object, as one value (``cutout.sanitize.recipe``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from cutout.model.timestamps import parse_us
from cutout.model.validate import default_validator
from cutout.sanitize.recipe import Recipe
from cutout.sanitize.redact import Redactor

from .test_sanitize import INDICATOR

T0 = parse_us("2026-11-26T10:00:00Z")

RECIPE = Recipe.of(
    broker_identity="identity--00000000-0000-4000-8000-000000000001",
    time_granularity=60,
    kind="intel",
    allow=("lang", "labels"),
    terms=("Northern Watch", "ASSET-7"),
    grade="B",
    labels=("phishing",),
)


def test_a_recipe_survives_the_trip_to_the_checking_process() -> None:
    again = Recipe.from_json(orjson.loads(orjson.dumps(RECIPE.to_json())))
    assert again == RECIPE
    assert hash(again) == hash(RECIPE)
    assert RECIPE.allow == ("labels", "lang")  # sorted: the same options are the same recipe


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "answer"},
        {"allow": ("labels",)},
        {"terms": ("Northern Watch",)},
        {"grade": None},
        {"labels": ()},
        {"time_granularity": 3600},
        {"broker_identity": "identity--00000000-0000-4000-8000-000000000002"},
    ],
)
def test_any_part_of_a_recipe_that_changes_makes_another_recipe(change: dict[str, Any]) -> None:
    assert dataclasses.replace(RECIPE, **change) != RECIPE


def test_equal_recipes_make_the_same_shared_copy_and_a_different_one_may_not() -> None:
    def made(recipe: Recipe) -> Any:
        return recipe.sanitizer(default_validator()).shared_copy(INDICATOR, T0, T0, 2)

    copy = made(RECIPE)
    assert copy is not None and copy[0] is not None
    assert made(Recipe.from_json(RECIPE.to_json())) == copy
    assert "Northern Watch" not in orjson.dumps(copy[0]).decode()  # the recipe's terms are redacted
    fewer_terms = made(dataclasses.replace(RECIPE, terms=("Someone Else",)))
    assert fewer_terms != copy
    no_grade = made(dataclasses.replace(RECIPE, grade=None))
    assert no_grade != copy


def test_a_sanitizer_is_built_only_with_a_redactor_of_the_recipes_terms() -> None:
    RECIPE.sanitizer(default_validator(), Redactor(RECIPE.terms))
    with pytest.raises(ValueError, match="other terms"):
        RECIPE.sanitizer(default_validator(), Redactor(["Northern Watch"]))


def test_an_object_copied_for_each_reader_alone_has_no_shared_copy() -> None:
    sanitizer = RECIPE.sanitizer(default_validator())
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"}
    assert sanitizer.shared_copy(dict(sco, value="198.51.100.7"), T0, T0, 2) is None
    assert sanitizer.shared_copy({"type": "x-unknown", "id": "x-unknown--1"}, T0, T0, 2) is None
