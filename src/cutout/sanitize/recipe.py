"""Everything a released copy depends on besides the object itself, as one value.

A copy is made by a :class:`~cutout.sanitize.engine.Sanitizer`, and what that sanitizer does is settled by
a handful of things the exchange looks up at release time: which kind of item it is, the agreement's sanitizing
options, the sender's name and registered terms, the grade consumers may see of it, the exchange's label
vocabulary, its identity and its time granularity. A :class:`Recipe` holds exactly those, and
:meth:`Recipe.sanitizer` is the one place a sanitizer is built from them. Two sanitizers built from equal
recipes make the same copy of the same object (for the same timestamps and TLP): that is what lets the checking
process (``cutout.model.offload``) make the copies of an envelope ahead of the transaction, from the recipe
the exchange expects, and the writer use them only where the recipe it actually finds is equal.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cutout.extensions import GRADE_EXT, OUTCOME_EXT, REQUEST_EXT, credibility, opinion_for, outcome_of
from cutout.sanitize.engine import FEEDBACK_PROFILES, REQUEST_PROFILES, Checks, Sanitizer, label_vocabulary
from cutout.sanitize.overrides import profiles_for
from cutout.sanitize.redact import Redactor

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """What a copy's making depends on, apart from the object, its created / modified and its TLP."""

    broker_identity: str
    time_granularity: int
    #: intel, answer, feedback or rfi
    kind: str
    #: the agreement's sanitizing options, sorted
    allow: tuple[str, ...]
    #: what is redacted: the sender's name, then its registered terms (``Redactor.terms``)
    terms: tuple[str, ...]
    #: the sender's source reliability as consumers may see it (intel and answers), else None
    grade: str | None
    #: the exchange's label vocabulary (``Settings.labels``)
    labels: tuple[str, ...]

    @classmethod
    def of(
        cls,
        *,
        broker_identity: str,
        time_granularity: int,
        kind: str,
        allow: Iterable[str],
        terms: Iterable[str],
        grade: str | None,
        labels: Iterable[str],
    ) -> Recipe:
        return cls(broker_identity, time_granularity, kind, tuple(sorted(allow)), tuple(terms), grade, tuple(labels))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recipe:
        return cls(
            broker_identity=str(data["broker_identity"]),
            time_granularity=int(data["time_granularity"]),
            kind=str(data["kind"]),
            allow=tuple(str(a) for a in data["allow"]),
            terms=tuple(str(t) for t in data["terms"]),
            grade=None if data["grade"] is None else str(data["grade"]),
            labels=tuple(str(label) for label in data["labels"]),
        )

    def sanitizer(self, validator: Checks, redactor: Redactor | None = None) -> Sanitizer:
        """The sanitizer this recipe describes. ``redactor``: one already built of :attr:`terms` (a release
        run keeps one per sender, whose memo serves every reader); a new one otherwise."""
        if redactor is None:
            redactor = Redactor(self.terms)
        elif redactor.terms != self.terms:
            raise ValueError("the redactor was built of other terms than the recipe's")
        feedback = self.kind == "feedback"
        if feedback:
            profiles = FEEDBACK_PROFILES
        elif self.kind == "rfi":
            profiles = REQUEST_PROFILES
        else:
            profiles = profiles_for(frozenset(self.allow))
        return Sanitizer(
            broker_identity=self.broker_identity,
            time_granularity=self.time_granularity,
            validator=validator,
            redactor=redactor,
            profiles=profiles,
            bucket_counts=feedback,
            labels=_vocabulary(self.labels),
            free_labels="labels" in self.allow,
            lang="lang" in self.allow,
            extend=self._extend,
            variant=(self.kind, self.grade),  # what ``extend`` adds depends on these alone (shared copies)
        )

    def _extend(self, src: Mapping[str, Any], out: dict[str, Any]) -> None:
        """The exchange's own extensions: grades on intel, outcomes on feedback, the request's type."""
        if self.kind == "rfi":
            out["extensions"] = {REQUEST_EXT: {"extension_type": "new-sdo"}}
        elif self.kind == "feedback":
            outcome = outcome_of(src)
            if outcome is not None and out["type"] in ("opinion", "sighting"):
                out["extensions"] = {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": outcome}}
                if out["type"] == "opinion":
                    out["opinion"] = opinion_for(outcome)
        elif "created_by_ref" in out:  # SDOs and SROs
            ext: dict[str, Any] = {"extension_type": "property-extension"}
            if self.grade is not None:
                ext["source_reliability"] = self.grade
            ext["information_credibility"] = credibility(out.get("confidence"))
            out["extensions"] = {GRADE_EXT: ext}


@functools.lru_cache(maxsize=16)
def _vocabulary(labels: tuple[str, ...]) -> Mapping[str, str]:
    """``label_vocabulary`` once per list of labels (a fan-out builds a sanitizer per reader)."""
    return label_vocabulary(labels)
