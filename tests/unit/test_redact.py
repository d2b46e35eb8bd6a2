from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.sanitize.redact import REDACTED, Redactor


def test_terms_at_word_boundaries_any_case_and_width() -> None:
    r = Redactor(["Northern Watch", "NW"])
    text = "Northern Watch, NORTHERN  WATCH, Ｎｏｒｔｈｅｒｎ Watch, NW-7 but not Northern Watchers or NWX"
    out = r(text)
    assert out.count(REDACTED) == 4
    assert "Northern Watchers" in out and "NWX" in out


def test_contact_details_always_go() -> None:
    r = Redactor([])
    out = r("write to duty.officer@north.example or call +99 555 0147 today")
    assert "north.example" not in out and "0147" not in out
    assert out.count(REDACTED) == 2


def test_plain_text_untouched() -> None:
    assert (
        Redactor(["x-term"])("Convoy of six trucks at 22:00, 2026-11-20") == "Convoy of six trucks at 22:00, 2026-11-20"
    )


def test_urls_and_addresses_always_go_but_times_stay() -> None:
    out = Redactor([])("see https://portal.example/case/1, from 198.51.100.7 or 2001:db8::5 at 22:00:15.")
    assert out == "see [REDACTED], from [REDACTED] or [REDACTED] at 22:00:15."


def test_identifiers_naming_the_party() -> None:
    r = Redactor(["KESTREL", "nw.example", "192.0.2.0/24", "2001:db8::/32"])
    assert r.identifies("[ipv4-addr:value = '192.0.2.77']")
    assert r.identifies("mail.nw.example")
    assert r.identifies("2001:db8::5")
    assert r.identifies("kestrel-relay")
    assert not r.identifies("[ipv4-addr:value = '198.51.100.7']")
    assert not r.identifies("example.org")
    assert not Redactor([]).identifies("192.0.2.1")


def test_check_term() -> None:
    import pytest

    from cutout.sanitize.redact import check_term

    assert check_term(" Ｎorthern   Watch ") == "Northern Watch"
    assert check_term("10.0.0.0/8") == "10.0.0.0/8"
    for bad in ("x", "  ", "10.0.0.0/99"):
        with pytest.raises(ValueError, match=r"."):
            check_term(bad)


def test_long_phone_numbers_and_extensions_go_whole() -> None:
    r = Redactor([])
    assert r("call +33 (0)1 23 45 67 89 now") == "call [REDACTED] now"
    assert r("desk +1 202 555 0147 ext. 12, or +44 20 7946 0958") == "desk [REDACTED], or [REDACTED]"


# -- the cheap tests in front of the regex change nothing ----------------------------------------------------
_TERMS = ["Northern Watch", "NW-ops", "İstanbul Desk", "ſtation K", "Kelvin", "Ωmega Cell", "straße", "σίγμα"]
_PIECES = [
    *_TERMS,
    "northern  watch",
    "NORTHERN\tWATCH",
    "nw-OPS",
    "istanbul desk",
    "ISTANBUL DESK",
    "station k",
    "STATION K",
    "kelvin",
    "ωMEGA cell",
    "STRASSE",
    "ΣΊΓΜΑ",
    "σίγμας",
    "Ｎｏｒｔｈｅｒｎ Watch",
    "https://portal.example/x",
    "a@b.example",
    "+33 1 23 45",
    "198.51.100.7",
    "١٢.٣٤",
    "2001:db8::5",
    "22:00",
    "1.5",
    ".",
    " ",
    "\x1c",
    "x",
    "-",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=6), max_size=8),
    st.lists(st.sampled_from([*_TERMS, "10.0.0.0/8"]), max_size=4),
)
def test_prefilters_agree_with_the_regex(pieces: list[str], terms: list[str]) -> None:
    text = "".join(pieces)
    r = Redactor(terms)
    norm = unicodedata.normalize("NFKC", text)
    assert (r(text), r.count) == r._pattern.subn(REDACTED, norm)
    expected = r._terms is not None and r._terms.search(norm) is not None
    assert (r._terms is not None and r._terms_may_match(norm) and r._terms.search(norm) is not None) == expected


def test_prefilter_lets_through_every_kind_of_match() -> None:
    r = Redactor(["İstanbul Desk", "ſtation K"])
    assert r("the istanbul   desk said") == f"the {REDACTED} said"
    assert r("STATION K and Station \u212a") == f"{REDACTED} and {REDACTED}"
    assert r("at ٣.٤.٥.٦ today") == f"at {REDACTED} today"  # \d is any decimal digit, so the filter too
    assert r("call +1 202 555 0147") == f"call {REDACTED}"


def test_a_short_term_inside_other_words_does_not_reach_the_regex() -> None:
    """A party called "AR": "warrant" and "area" hold its key, but not as a word of their own, so the prefilter
    says no match without the terms' regex; where "AR" stands alone it still says maybe, and it is redacted."""
    r = Redactor(["AR", "Northern Watch"])
    for text in ("warrant for the area", "radar array", "northernmost watchtower", "ar_x and xar", "ar9"):
        assert not r._terms_may_match(text), text
        assert r(text) == text
    for text in ("AR said", "per AR.", "(ar)", "ar", "the northern  watch", "x-ar-y"):
        assert r._terms_may_match(text), text
        assert REDACTED in r(text), text
    # a key found both inside a word and alone: the alone one counts, wherever it is in the text
    assert r("warrant, area, then AR at the end") == f"warrant, area, then {REDACTED} at the end"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["ar", "AR", "war", "ar_", "_ar", "9ar", "-", " ", ".", "x", "Ar-"]), max_size=10))
def test_the_word_test_agrees_with_the_terms_regex(pieces: list[str]) -> None:
    r = Redactor(["AR"])
    text = "".join(pieces)
    assert r._terms is not None
    found = r._terms.search(text) is not None
    assert r._terms_may_match(text) == found  # for a one-word ASCII term the test is exact, not only a filter
    assert (r(text), r.count) == r._pattern.subn(REDACTED, text)
