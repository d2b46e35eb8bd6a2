from __future__ import annotations

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
