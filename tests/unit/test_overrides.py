"""Per-agreement sanitizing options: they only add what the strict profile lists as withheld, nothing unknown."""

from __future__ import annotations

from typing import Any

import pytest

from cutout.sanitize.engine import fold_label, label_vocabulary, normalise_lang
from cutout.sanitize.overrides import ENGINE_OPTIONS, OPTIONAL_TYPES, OPTIONS, check_allow, profiles_for
from cutout.sanitize.profiles import PROFILES
from tests.unit.test_sanitize import run

#: what no agreement can ever let through
NEVER = {
    ("identity", None),
    ("marking-definition", None),
    ("extension-definition", None),
    ("user-account", "credential"),
    ("course-of-action", "action"),
    ("observed-data", "objects"),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_an_option_adds_only_what_the_strict_profile_lists_as_withheld(name: str) -> None:
    option = OPTIONS[name]
    assert option.risk, "every option says what it risks"
    if name in ENGINE_OPTIONS:
        assert not option.adds and not option.releases
        return
    assert option.adds or option.releases
    for type_, props in option.adds.items():
        base = PROFILES[type_]
        for prop in props:
            assert prop in base.extra, f"{type_}.{prop} is not a property the strict profile withholds"
            assert prop not in base.properties
            assert (type_, prop) not in NEVER and (type_, None) not in NEVER
    for type_ in option.releases:
        assert not PROFILES[type_].released and (type_, None) not in NEVER


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_option_alone_changes_only_its_own_types(name: str) -> None:
    allow = frozenset({name}) if not OPTIONS[name].needs_one_of else frozenset({name, "artifact"})
    profiles = profiles_for(check_allow(allow))
    touched = {t for n in allow for t in (*OPTIONS[n].adds, *OPTIONS[n].releases)}
    for type_, profile in profiles.items():
        if type_ not in touched:
            assert profile is PROFILES[type_]
    for type_ in PROFILES:
        if (type_, None) in NEVER:
            assert not profiles[type_].released and not profiles[type_].properties


def test_no_options_means_the_strict_profiles() -> None:
    assert profiles_for(frozenset()) is PROFILES
    assert {"artifact", "language-content"} == OPTIONAL_TYPES


def test_everything_together_still_never_releases_what_no_option_lists() -> None:
    every = profiles_for(check_allow(OPTIONS))
    for type_, prop in NEVER:
        if prop is None:
            assert not every[type_].released
        else:
            assert prop not in every[type_].properties
    assert "object_modified" not in every["language-content"].properties


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["x_acme_source"], "unknown sanitizing option"),
        (["artifact", "identity"], "unknown sanitizing option.*identity"),
        (["decryption_key"], "unknown sanitizing option"),
        (["artifact.decryption_key"], "has no effect without one of"),
    ],
)
def test_check_allow_refuses_what_it_does_not_know(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_allow(names)


def test_check_allow_accepts_the_catalogue() -> None:
    assert check_allow([" artifact ", "artifact.decryption_key", ""]) == {"artifact", "artifact.decryption_key"}


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("en", "en"), ("en-GB", "en"), ("EN-gb", "en"), ("zh-Hant-TW", "zh"), ("fil", "fil"), ("", None)],
)
def test_lang_keeps_the_primary_subtag_only(tag: str, expected: str | None) -> None:
    assert normalise_lang(tag) == expected


@pytest.mark.parametrize("tag", ["english", "e", "en_GB", "x-private", "en-", 42])
def test_lang_that_is_not_a_tag_is_dropped(tag: Any) -> None:
    assert normalise_lang(tag) is None


def test_labels_fold_for_the_vocabulary() -> None:
    vocab = label_vocabulary(["Ransomware", " C2 ", ""])
    assert vocab == {"ransomware": "Ransomware", "c2": "C2"}
    assert fold_label("ＲＡＮＳＯＭＷＡＲＥ") == "ransomware"
    assert fold_label("  command   and control ") == "command and control"


def _indicator(**extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--22222222-2222-4222-8222-222222222222",
        "created": "2026-11-26T09:00:00.000Z",
        "modified": "2026-11-26T09:00:00.000Z",
        "pattern": "[ipv4-addr:value = '198.51.100.1']",
        "pattern_type": "stix",
        "valid_from": "2026-11-26T09:00:00.000Z",
        **extra,
    }


def test_labels_outside_the_vocabulary_are_dropped_by_default() -> None:
    out, _ = run(_indicator(labels=["Ransomware", "northern-watch-tag"]), labels={"ransomware": "ransomware"})
    assert out is not None and out["labels"] == ["ransomware"]
    out, _ = run(_indicator(labels=["northern-watch-tag"]))
    assert out is not None and "labels" not in out


def test_free_labels_are_redacted() -> None:
    out, _ = run(_indicator(labels=["Northern Watch", "apt-x"]), free_labels=True)
    assert out is not None and out["labels"] == ["[REDACTED]", "apt-x"]


def test_lang_only_when_allowed() -> None:
    out, _ = run(_indicator(lang="pt-BR"))
    assert out is not None and "lang" not in out
    out, _ = run(_indicator(lang="pt-BR"), lang=True)
    assert out is not None and out["lang"] == "pt"


def test_translations_keep_only_the_targets_free_text() -> None:
    lc = {
        "type": "language-content",
        "spec_version": "2.1",
        "id": "language-content--33333333-3333-4333-8333-333333333333",
        "created": "2026-11-26T09:00:00.000Z",
        "modified": "2026-11-26T09:00:00.000Z",
        "object_ref": "indicator--22222222-2222-4222-8222-222222222222",
        "object_modified": "2026-11-26T09:00:00.000Z",
        "contents": {
            "de-AT": {"name": "Northern Watch Indikator", "pattern": "[x:y = 'z']", "x_acme": "secret"},
            "de": {"description": "second German entry collapses into the first"},
            "ru": {"kill_chain_phases": [{"kill_chain_name": "x", "phase_name": "y"}]},
        },
    }
    profiles = profiles_for(frozenset({"language-content"}))
    refs = {lc["object_ref"]: "indicator--44444444-4444-4444-8444-444444444444"}
    out, reason = run(lc, refs, profiles=profiles)
    assert out is not None, reason
    assert out["object_ref"] == "indicator--44444444-4444-4444-8444-444444444444"
    assert "object_modified" not in out
    # tags are taken in sorted order: "de" comes first, so "de-AT" (also "de") is dropped
    assert out["contents"] == {"de": {"description": "second German entry collapses into the first"}}
    del lc["contents"]["de"]  # type: ignore[attr-defined]
    out, _ = run(lc, refs, profiles=profiles)
    assert out is not None and out["contents"] == {"de": {"name": "[REDACTED] Indikator"}}
    # a translation of an object the reader does not have is not released
    out, reason = run(lc, {}, profiles=profiles)
    assert out is None and "object_ref" in reason
