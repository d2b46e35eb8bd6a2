"""Redaction of free text: a party's terms, and recognisable identifiers, are replaced by ``[REDACTED]``.

Text is NFKC-normalised and case-folded for matching, and terms are matched at word boundaries with any run
of white space standing for any other, so full-width, differently cased or differently spaced spellings of a
name are caught too. A term may be a name, alias, codename, domain, e-mail address or phone number (matched as
text) or an address range in CIDR form (``192.0.2.0/24``, ``2001:db8::/32``: any IP address inside it is
caught).

E-mail addresses, URLs, international phone numbers and IP addresses are always redacted from free text: there
they are a reporter's contact details, portal links or own infrastructure far more often than indicators, and
indicators belong in patterns and cyber observables, which are not free text and are not redacted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor", "check_term"]

REDACTED = "[REDACTED]"

_IPV4 = r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# at least three colons, or a '::' (so a time such as 22:00:15 is not an address)
_IPV6 = (
    r"(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{0,4}::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{0,4}"
)
_ALWAYS = (
    r"[a-z][a-z0-9+.-]*://[^\s<>\"']*[^\s<>\"'.,;:!?)]",  # URL (not its trailing punctuation)
    r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}",  # e-mail
    # international phone number, up to eight groups, with an optional extension
    r"\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){1,8}(?:\s*(?:x|ext\.?)\s*\d{1,6})?",
    _IPV4,
    _IPV6,
)


def check_term(term: str) -> str:
    """A term as it will be matched; ValueError if it is empty or a malformed address range."""
    cleaned = " ".join(unicodedata.normalize("NFKC", term).split())
    if len(cleaned) < 2:
        raise ValueError(f"a redaction term needs at least two characters: {term!r}")
    if ("/" in cleaned and cleaned[0].isalnum() and ":" in cleaned) or re.fullmatch(r"[\d.]+/\d+", cleaned):
        try:
            ipaddress.ip_network(cleaned, strict=False)
        except ValueError as exc:
            raise ValueError(f"not an address range: {term!r}") from exc
    return cleaned


class Redactor:
    """Replaces a fixed set of terms; built once per batch, applied to every free-text field."""

    def __init__(self, terms: Iterable[str]) -> None:
        #: the terms as given (``cutout.sanitize.recipe.Recipe.terms``)
        self.terms = tuple(terms)
        self._pattern, self._terms, self._keys, self._networks, self._addresses = _compiled(self.terms)
        self._memo: dict[str, tuple[str, int]] = {}

    @staticmethod
    def terms_of(name: str, terms: Iterable[str]) -> tuple[str, ...]:
        """What a party's free text is redacted of: its name, then its registered terms."""
        return (name, *terms)

    #: how many replacements this redactor has made (the service reads it to send objects for review)
    count = 0

    def __call__(self, text: str) -> str:
        # one object's text is redacted once, however many readers it is released to
        hit = self._memo.get(text)
        if hit is None:
            norm = unicodedata.normalize("NFKC", text)
            if self._always_may_match(norm):
                hit = self._pattern.subn(REDACTED, norm)
            elif self._terms is not None and self._terms_may_match(norm):
                # only a term can match this text: the terms' own regex finds the same matches without trying
                # the URL, e-mail, phone and address alternatives at every position (a short term, such as a
                # two-letter name, is in most text, and the whole regex then cost a third of an ingest)
                hit = self._terms.subn(REDACTED, norm)
            else:
                hit = (norm, 0)
            if len(self._memo) < 100_000:
                self._memo[text] = hit
        self.count += hit[1]
        return hit[0]

    def identifies(self, text: str) -> bool:
        """Whether an identifier (an observable's value, a pattern) names the party: one of its terms, or an
        address in one of its ranges. Such an object is the party's own asset and is withheld whole."""
        norm = unicodedata.normalize("NFKC", text)
        if self._terms is not None and self._terms_may_match(norm) and self._terms.search(norm):
            return True
        if self._networks:
            for found in self._addresses.finditer(norm):
                try:
                    address = ipaddress.ip_address(found.group(0))
                except ValueError:
                    continue
                if any(address in net for net in self._networks if net.version == address.version):
                    return True
        return False

    # The one regex above tries every alternative at every position of the text: most text has nothing to
    # redact, and these cheap tests say so first. Each is implied by a match of the alternative it stands
    # for, so text they pass over has no match (tests/unit/test_redact.py holds the outputs to the regex's).
    @staticmethod
    def _always_may_match(norm: str) -> bool:
        """Whether a URL, e-mail address, phone number or IP address may be in the text."""
        if "://" in norm or "@" in norm or "+" in norm or ":" in norm:  # URL, e-mail, phone, IPv6
            return True
        dot = norm.find(".", 1)  # IPv4: a dot after a decimal digit (\d is Unicode's Nd, as isdecimal)
        while dot != -1:
            if norm[dot - 1].isdecimal():
                return True
            dot = norm.find(".", dot + 1)
        return False

    def _terms_may_match(self, norm: str) -> bool:
        """Whether a term may match ASCII text: one of the terms' keys is in it as a word of its own (a match of
        a term begins and ends at a word boundary, and its words are apart by white space, so each word of the
        match has a non-word character or the text's edge on either side). A key found inside a longer word
        (a party called "AR" and every "warrant" and "area") would otherwise send the text through the terms'
        regex, which costs several times the test; the test looks for the bare key first, which is cheaper
        still where the key is in no word at all, as in most text."""
        if self._keys is not None and norm.isascii():
            lowered = norm.lower()
            return any(key in lowered and alone.search(lowered) is not None for key, alone in self._keys)
        return self._terms is not None and self._terms.search(norm) is not None


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=64)
def _compiled(
    terms: tuple[str, ...],
) -> tuple[
    re.Pattern[str],
    re.Pattern[str] | None,
    tuple[tuple[str, re.Pattern[str]], ...] | None,
    tuple[_Network, ...],
    re.Pattern[str],
]:
    """What a Redactor of these terms matches with, built once per distinct list of terms (a release run
    makes a Redactor per sender; its memo is the run's own, these are shared)."""
    words: set[str] = set()
    networks: list[_Network] = []
    for term in terms:
        if not term or not term.strip():
            continue
        cleaned = " ".join(unicodedata.normalize("NFKC", term).split())
        try:
            networks.append(ipaddress.ip_network(cleaned, strict=False))
            continue
        except ValueError:
            words.add(cleaned)
    ordered = [r"\s+".join(re.escape(w) for w in t.split()) for t in sorted(words, key=len, reverse=True)]
    pattern = re.compile(r"(?<!\w)(?:" + "|".join([*_ALWAYS, *ordered]) + r")(?!\w)", re.IGNORECASE)
    only_terms = re.compile(r"(?<!\w)(?:" + "|".join(ordered) + r")(?!\w)", re.IGNORECASE) if ordered else None
    addresses = re.compile(rf"(?<![\w.:])(?:{_IPV4}|{_IPV6})(?![\w:])", re.IGNORECASE)
    keys = _ascii_keys(words)
    alone = None if keys is None else tuple((key, _alone(key)) for key in keys)
    return pattern, only_terms, alone, tuple(networks), addresses


def _alone(key: str) -> re.Pattern[str]:
    """``key`` in lowercased ASCII text with no word character (``[a-z0-9_]``, ``\\w`` on such text) just
    before or after it. The pattern begins with the key itself, so the search skips to each place the key
    occurs instead of trying every position (a lookbehind in front would cost that)."""
    k = re.escape(key)
    return re.compile(rf"{k}(?<![a-z0-9_]{k})(?![a-z0-9_])")


def _ascii_keys(words: Iterable[str]) -> tuple[str, ...] | None:
    """For each term that can match ASCII text: its longest word as that ASCII text would read lowercased.

    A match of the term (case-insensitive, as ``re.IGNORECASE`` compares one character with another)
    contains that word, so ASCII text whose lowercase lacks every key matches no term. A character of a
    term that matches no ASCII character rules its term out for ASCII text; None when some character
    matches ASCII characters of two different lowercases (no key can stand for it).
    """
    keys: set[str] = set()
    for term in words:
        longest = max(term.split(), key=len)
        key: list[str] = []
        for ch in longest:
            if ch.isascii():
                key.append(ch.lower())
                continue
            found = {c.lower() for c in map(chr, range(128)) if re.fullmatch(re.escape(ch), c, re.IGNORECASE)}
            if len(found) > 1:
                return None
            if not found:
                break
            key.append(found.pop())
        else:
            keys.add("".join(key))
    return tuple(sorted(keys))
