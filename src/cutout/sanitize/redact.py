"""Redaction of free text: a party's terms, and contact details, are replaced by ``[REDACTED]``.

Text is NFKC-normalised first and terms are matched case-insensitively at word boundaries, so
full-width or differently cased spellings of a name are caught too. E-mail addresses and international
phone numbers are always redacted: in free text they are a reporter's contact details far more often than
indicators (indicators belong in patterns and SCOs, which are not free text).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"

_CONTACTS = (
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",  # e-mail
    r"\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}\d",  # international phone number
)


class Redactor:
    """Replaces a fixed set of terms; built once per batch, applied to every free-text field."""

    def __init__(self, terms: Iterable[str]) -> None:
        cleaned = sorted(
            {unicodedata.normalize("NFKC", t).strip() for t in terms if t and t.strip()},
            key=len,
            reverse=True,
        )
        # any run of white space in a term matches any run of white space in the text
        alternatives = [*_CONTACTS, *(r"\s+".join(re.escape(w) for w in t.split()) for t in cleaned)]
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)

    def __call__(self, text: str) -> str:
        norm = unicodedata.normalize("NFKC", text)
        return self._pattern.sub(REDACTED, norm)
