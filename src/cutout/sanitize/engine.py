"""The sanitizer: from a stored object to the copy one reader may see. Default deny.

Only what a profile lists survives, after its treatment; the common properties are rebuilt here (see
``cutout.sanitize.profiles``). The result is checked with the STIX validator before it may be released:
a copy that would be invalid is not released at all (fail closed).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Protocol

from cutout.extensions import REQUEST_TYPE
from cutout.model.timestamps import ceil_us, floor_us, format_ms, parse_us
from cutout.model.tlp import TLP2_IDS
from cutout.sanitize.ids import sco_id
from cutout.sanitize.profiles import PROFILES, T, TypeProfile
from cutout.sanitize.redact import Redactor
from cutout.sanitize.vocab import KILL_CHAIN_PHASES, restrict

__all__ = [
    "FEEDBACK_PROFILES",
    "PUBLIC_KILL_CHAINS",
    "PUBLIC_REGISTRIES",
    "REQUEST_PROFILES",
    "Checks",
    "Prebuilt",
    "Sanitizer",
    "Template",
    "bucket_count",
    "quantise_confidence",
]


#: a shared copy as :meth:`Sanitizer._template` returns it: the copy (None if withheld), the redactions made,
#: its reference properties (name, is a list), and each stand-in's original id
Template = tuple[dict[str, Any] | None, int, list[tuple[str, bool]], dict[str, str]]
#: ``prebuilt(obj, created_us, modified_us, tlp)``: the shared copy of ``obj`` made elsewhere, or None
Prebuilt = Callable[[Mapping[str, Any], int, int, int], Template | None]


class Checks(Protocol):
    """What the sanitizer needs of a validator: everything wrong with one object, ``[]`` when it is valid
    (:class:`cutout.model.validate.Validator`, or :class:`cutout.model.offload.DeferredChecks`)."""

    def check(self, obj: object) -> list[str]: ...


#: external_references kept only from these public registries, only as source_name + external_id, and only
#: when the id has the registry's own form (so nothing else can be smuggled in it)
_REGISTRY_IDS = {
    "cve": re.compile(r"CVE-\d{4}-\d{4,7}"),
    "capec": re.compile(r"CAPEC-\d{1,6}"),
    "cwe": re.compile(r"CWE-\d{1,6}"),
    "mitre-attack": re.compile(r"(?:T\d{4}(?:\.\d{3})?|TA\d{4}|[SGMC]\d{4}|DS\d{4})"),
    "mitre-mobile-attack": re.compile(r"(?:T\d{4}(?:\.\d{3})?|TA\d{4}|[SGMC]\d{4})"),
    "mitre-ics-attack": re.compile(r"(?:T\d{4}(?:\.\d{3})?|TA\d{4}|[SGMC]\d{4})"),
}
PUBLIC_REGISTRIES = frozenset(_REGISTRY_IDS)
PUBLIC_KILL_CHAINS = frozenset(KILL_CHAIN_PHASES)

#: what of a consumer's feedback may reach a provider: no where_sighted_refs, observed_data_refs or authors
FEEDBACK_PROFILES: Mapping[str, TypeProfile] = {
    "sighting": TypeProfile(
        type="sighting",
        category="sro",
        properties={
            "sighting_of_ref": T.REF,
            "first_seen": T.START,
            "last_seen": T.END,
            "count": T.KEEP,
            "summary": T.KEEP,
            "description": T.TEXT,
        },
        required=frozenset({"sighting_of_ref"}),
    ),
    "opinion": TypeProfile(
        type="opinion",
        category="sdo",
        properties={"opinion": T.KEEP, "explanation": T.TEXT, "object_refs": T.REFS},
        required=frozenset({"opinion", "object_refs"}),
    ),
    "note": TypeProfile(
        type="note",
        category="sdo",
        properties={"abstract": T.TEXT, "content": T.TEXT, "object_refs": T.REFS},
        required=frozenset({"content", "object_refs"}),
    ),
}

#: what of a consumer's request for information may reach a provider (the exchange adds its extension)
REQUEST_PROFILES: Mapping[str, TypeProfile] = {
    REQUEST_TYPE: TypeProfile(
        type=REQUEST_TYPE,
        category="sdo",
        properties={
            "question": T.TEXT,
            "priority": T.KEEP,
            "area": T.KEEP,
            "window_start": T.START,
            "window_end": T.END,
            "expires": T.END,
            "object_types": T.KEEP,
        },
        required=frozenset({"question", "priority", "expires"}),
    )
}

#: identifiers that, if they name the sender, make the whole object the sender's own asset: withheld (for an
#: SCO, these properties; for an indicator, its pattern)
_SCO_IDENTIFIERS = ("value", "name", "path", "key", "subject", "issuer", "user_id", "account_login", "url")

#: a language tag's primary subtag (RFC 5646): all that ``lang`` keeps when an agreement allows it
_PRIMARY_LANGUAGE = re.compile(r"([A-Za-z]{2,3})(?:-[A-Za-z0-9]{1,8})*")

#: per type, the properties a language-content translation may carry: the type's free-text properties only
_TRANSLATABLE: Mapping[str, frozenset[str]] = {
    t: frozenset(n for n, tr in p.properties.items() if tr in (T.TEXT, T.TEXT_LIST)) for t, p in PROFILES.items()
}

_COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def quantise_confidence(value: int) -> int:
    """Map 0-100 to the Admiralty credibility values of STIX Appendix A (10, 30, 50, 70, 90)."""
    return 90 if value >= 80 else 70 if value >= 60 else 50 if value >= 40 else 30 if value >= 20 else 10


def fold_label(label: str) -> str:
    """How labels are compared with the exchange's vocabulary: NFKC, case folded, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def label_vocabulary(labels: Iterable[str]) -> dict[str, str]:
    """The exchange's label vocabulary as folded form → the label released."""
    return {fold_label(lab): lab.strip() for lab in labels if lab.strip()}


def normalise_lang(value: Any) -> str | None:
    """A language tag reduced to its lower-case primary subtag, or None when it is not a language tag."""
    if not isinstance(value, str):
        return None
    m = _PRIMARY_LANGUAGE.fullmatch(value.strip())
    return m.group(1).lower() if m else None


def bucket_count(value: int) -> int:
    """Round a count down to a coarse bucket, so a reader's scale does not show."""
    out = 0
    for b in _COUNT_BUCKETS:
        if value >= b:
            out = b
    return out


class Sanitizer:
    """Builds released copies for one batch; stateless apart from its configuration."""

    def __init__(
        self,
        *,
        broker_identity: str,
        time_granularity: int,
        validator: Checks,
        redactor: Redactor,
        profiles: Mapping[str, TypeProfile] = PROFILES,
        bucket_counts: bool = False,
        labels: Mapping[str, str] | None = None,
        free_labels: bool = False,
        lang: bool = False,
        extend: Callable[[Mapping[str, Any], dict[str, Any]], None] | None = None,
        variant: Hashable = None,
    ) -> None:
        """``profiles``: the strict ones, or those of ``cutout.sanitize.overrides.profiles_for``; ``labels``: the
        exchange's vocabulary (``label_vocabulary``), the only labels released unless ``free_labels`` (then
        every label goes, redacted); ``lang``: release ``lang`` reduced to its primary subtag; ``extend(source,
        copy)`` adds the exchange's own extensions to a copy before it is validated."""
        self.broker_identity = broker_identity
        self.granularity = time_granularity
        self.validator = validator
        self.redact = redactor
        self.profiles = profiles
        self.bucket_counts = bucket_counts
        self.labels = labels or {}
        self.free_labels = free_labels
        self.lang = lang
        self.extend = extend
        self.variant = variant

    def sanitize(
        self,
        obj: Mapping[str, Any],
        *,
        keyed: str,
        created_us: int,
        modified_us: int,
        tlp: int,
        resolve: Callable[[str], str | None],
        shared: dict[Any, Any] | None = None,
        prebuilt: Prebuilt | None = None,
    ) -> tuple[dict[str, Any] | None, str]:
        """The copy of ``obj`` for one reader, or ``(None, reason)`` when it may not be released.

        ``keyed`` is the reader's id for an SDO/SRO (and the fallback for an SCO without ID contributing
        properties); ``resolve`` maps a referenced original id to the reader's id, or None when the
        target is not released to that reader.

        ``shared``, a dict kept for one release run (while ``obj`` lives), lets readers of the same object
        share the work: the copy is built and validated once with stand-in ids (see :meth:`_template`),
        and each reader's copy is that one with its own ids put in. Whenever a reader's ids would change
        more than the ids' values (a reference not released to it, two references becoming one), that
        reader's copy is built from scratch instead.

        ``prebuilt(obj, created_us, modified_us, tlp)``: that shared copy made elsewhere, by a sanitizer of
        the same :class:`~cutout.sanitize.recipe.Recipe` as this one (the checking process, ahead of the
        transaction; ``DeferredChecks.prebuilt``), as :meth:`_template` returns it, or None when there is none
        for these arguments. It stands for this sanitizer's own :meth:`_template`, which is used when it has
        none; with it, even one reader's copy is made from the shared one.
        """
        raw_type = obj.get("type")
        profile = self.profiles.get(raw_type) if isinstance(raw_type, str) else None
        if (
            (shared is None and prebuilt is None)
            or profile is None
            or not profile.released
            or profile.category == "sco"
        ):
            return self._sanitize(obj, keyed, created_us, modified_us, tlp, resolve)
        key = (
            id(obj),
            id(profile),
            id(self.redact),
            self.bucket_counts,
            self.free_labels,
            self.lang,
            self.variant,
            created_us,
            modified_us,
            tlp,
        )
        template = shared.get(key) if shared is not None else None
        if template is None:
            made = prebuilt(obj, created_us, modified_us, tlp) if prebuilt is not None else None
            if made is None:
                if shared is None:  # one reader, and no copy made elsewhere: made for it alone, as it always was
                    return self._sanitize(obj, keyed, created_us, modified_us, tlp, resolve)
                before = self.redact.count
                made = self._template(obj, profile, created_us, modified_us, tlp)
                self.redact.count = before  # counted below, as for every reader
            template = (obj, profile, *made)
            if shared is not None:
                shared[key] = template
        _, _, out, redactions, refs, origin = template
        if out is None:
            return self._sanitize(obj, keyed, created_us, modified_us, tlp, resolve)
        copy = dict(out)
        copy["id"] = keyed
        for name, many in refs:
            if many:
                stand_ins = out[name]
                # each stand-in against its own reader id (paired with a set of them, in no order, the stand-ins
                # of a list of several types met ids of other types, and such copies were made from scratch)
                real = [x for x in (resolve(origin[r]) for r in stand_ins) if x is not None]
                if len(set(real)) != len(stand_ins) or not all(map(_same_type, stand_ins, real)):
                    return self._sanitize(obj, keyed, created_us, modified_us, tlp, resolve)
                copy[name] = sorted(real)
            else:
                one = resolve(origin[out[name]])
                if one is None or not _same_type(out[name], one):
                    return self._sanitize(obj, keyed, created_us, modified_us, tlp, resolve)
                copy[name] = one
        self.redact.count += redactions
        return copy, ""

    def shared_copy(self, obj: Mapping[str, Any], created_us: int, modified_us: int, tlp: int) -> Template | None:
        """The copy :meth:`sanitize` would share among the readers of ``obj`` (what ``prebuilt`` gives it), or
        None for an object it makes for each reader alone (an SCO, or a type it does not release)."""
        raw_type = obj.get("type")
        profile = self.profiles.get(raw_type) if isinstance(raw_type, str) else None
        if profile is None or not profile.released or profile.category == "sco":
            return None
        before = self.redact.count
        try:
            return self._template(obj, profile, created_us, modified_us, tlp)
        finally:
            self.redact.count = before

    def _template(
        self, obj: Mapping[str, Any], profile: TypeProfile, created_us: int, modified_us: int, tlp: int
    ) -> Template:
        """The copy every reader of an SDO/SRO shares, with stand-ins for its own id and its references.

        A stand-in is an id of the referenced object's type with a UUIDv4 of its own, so the copy is as
        valid as any reader's: the validator looks at an id's type and form, never at which UUID it is.
        Returns the copy (None if withheld), the redactions made, the reference properties it has
        (name, is a list) and each stand-in's original id.
        """
        origin: dict[str, str] = {}
        stand_in: dict[str, str] = {}

        def resolve(ref: str) -> str | None:
            found = stand_in.get(ref)
            if found is None:
                found = f"{ref.partition('--')[0]}--00000000-0000-4000-8000-{len(stand_in) + 1:012x}"
                stand_in[ref] = found
                origin[found] = ref
            return found

        before = self.redact.count
        keyed = f"{profile.type}--00000000-0000-4000-8000-000000000000"
        out, _ = self._sanitize(obj, keyed, created_us, modified_us, tlp, resolve)
        refs = [
            (name, treatment is T.REFS)
            for name, treatment in profile.properties.items()
            if treatment in (T.REF, T.REFS) and out is not None and name in out
        ]
        return out, self.redact.count - before, refs, origin

    def _sanitize(
        self,
        obj: Mapping[str, Any],
        keyed: str,
        created_us: int,
        modified_us: int,
        tlp: int,
        resolve: Callable[[str], str | None],
    ) -> tuple[dict[str, Any] | None, str]:
        raw_type = obj.get("type")
        profile = self.profiles.get(raw_type) if isinstance(raw_type, str) else None
        if profile is None or not profile.released:
            return None, f"type {raw_type!r} is not released"
        stix_type = profile.type
        for key in _SCO_IDENTIFIERS if profile.category == "sco" else ("pattern",):
            value = obj.get(key)
            if isinstance(value, str) and self.redact.identifies(value):
                return None, f"its {key} names the sender (a registered term or address range)"
        body: dict[str, Any] = {}
        for name, treatment in profile.properties.items():
            if name not in obj:
                continue
            value = self._treat(treatment, obj[name], resolve)
            if treatment is T.KEEP and value is not None:
                value = restrict(stix_type, name, value)
            if value is not None:
                body[name] = value
        if isinstance(body.get("contents"), dict):  # language-content: translations of the target's free text only
            allowed = _TRANSLATABLE.get(str(obj.get("object_ref", "")).partition("--")[0], frozenset())
            narrowed = {lang: {k: v for k, v in f.items() if k in allowed} for lang, f in body["contents"].items()}
            body["contents"] = {lang: f for lang, f in narrowed.items() if f}
            if not body["contents"]:
                del body["contents"]
        if self.bucket_counts and isinstance(body.get("count"), int):
            body["count"] = bucket_count(body["count"])
        lost = [r for r in profile.required if r not in body]
        if lost:
            return None, f"required {', '.join(sorted(lost))} not releasable"

        out: dict[str, Any] = {"type": stix_type, "spec_version": "2.1"}
        if profile.category == "sco":
            out["id"] = sco_id(profile.type, body, profile.id_contributing) or keyed
            if obj.get("defanged") is True:
                out["defanged"] = True
        else:
            out["id"] = keyed
            out["created_by_ref"] = self.broker_identity
            out["created"] = format_ms(created_us)
            out["modified"] = format_ms(modified_us)
            if obj.get("revoked") is True:
                out["revoked"] = True
            conf = obj.get("confidence")
            if isinstance(conf, int) and not isinstance(conf, bool) and 0 <= conf <= 100:
                out["confidence"] = quantise_confidence(conf)
            refs = _public_references(obj.get("external_references"))
            if refs:
                out["external_references"] = refs
            labels = self._labels(obj.get("labels"))
            if labels:
                out["labels"] = labels
            lang = normalise_lang(obj.get("lang")) if self.lang else None
            if lang is not None:
                out["lang"] = lang
        out.update(body)
        out["object_marking_refs"] = [TLP2_IDS[tlp]]
        if self.extend is not None:
            self.extend(obj, out)
        problems = self.validator.check(out)
        if problems:
            return None, "copy would not be valid STIX: " + "; ".join(problems)
        return out, ""

    def _treat(self, treatment: T, value: Any, resolve: Callable[[str], str | None]) -> Any:
        if treatment is T.KEEP:
            return value
        if treatment is T.TEXT:
            return self.redact(value) if isinstance(value, str) else None
        if treatment is T.TEXT_LIST:
            if not isinstance(value, list):
                return None
            return [self.redact(v) for v in value if isinstance(v, str)] or None
        if treatment is T.START or treatment is T.END:
            if not isinstance(value, str):
                return None
            us = parse_us(value)
            return format_ms(floor_us(us, self.granularity) if treatment is T.START else ceil_us(us, self.granularity))
        if treatment is T.REF:
            return resolve(value) if isinstance(value, str) else None
        if treatment is T.REFS:
            if not isinstance(value, list):
                return None
            resolved = {r for r in (resolve(v) for v in value if isinstance(v, str)) if r is not None}
            return sorted(resolved) or None
        if treatment is T.KILL_CHAIN:
            if not isinstance(value, list):
                return None
            kept = [
                {"kill_chain_name": p["kill_chain_name"], "phase_name": p["phase_name"]}
                for p in value
                if isinstance(p, dict)
                and p.get("phase_name") in KILL_CHAIN_PHASES.get(str(p.get("kill_chain_name")), ())
            ]
            return kept or None
        if treatment is T.CONTENTS:
            return self._contents(value)
        raise AssertionError(treatment)

    def _labels(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            return []
        out: set[str] = set()
        for label in value:
            if not isinstance(label, str):
                continue
            mapped = self.labels.get(fold_label(label))
            if mapped is None and self.free_labels:
                mapped = self.redact(label).strip() or None
            if mapped is not None:
                out.add(mapped)
        return sorted(out)

    def _contents(self, value: Any) -> dict[str, Any] | None:
        """Translations keyed by normalised language, only of free text (of the target's type: ``sanitize``
        narrows it once the target is known), redacted."""
        if not isinstance(value, dict):
            return None
        out: dict[str, dict[str, Any]] = {}
        for tag in sorted(value, key=str):
            lang, fields = normalise_lang(tag), value[tag]
            if lang is None or lang in out or not isinstance(fields, dict):
                continue
            kept: dict[str, Any] = {}
            for name, text in fields.items():
                if not any(name in props for props in _TRANSLATABLE.values()):
                    continue
                if isinstance(text, str):
                    kept[name] = self.redact(text)
                elif isinstance(text, list) and text and all(isinstance(t, str) for t in text):
                    kept[name] = [self.redact(t) for t in text]
            if kept:
                out[lang] = kept
        return out or None


def _same_type(a: Any, b: Any) -> bool:
    return isinstance(b, str) and a.partition("--")[0] == b.partition("--")[0]


def _public_references(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    out: list[dict[str, str]] = []
    for ref in value:
        if not isinstance(ref, dict):
            continue
        source, ext_id = ref.get("source_name"), ref.get("external_id")
        form = _REGISTRY_IDS.get(source) if isinstance(source, str) else None
        if form is not None and isinstance(source, str) and isinstance(ext_id, str) and form.fullmatch(ext_id):
            entry = {"source_name": source, "external_id": ext_id}
            if entry not in out:
                out.append(entry)
    return sorted(out, key=lambda e: (e["source_name"], e["external_id"]))
