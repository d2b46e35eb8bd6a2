"""Per-agreement sanitizing overrides: the only ways an agreement may let more through than the strict profile.

The operator names options from this catalogue (``cutout agreement options`` lists them with their risks);
an agreement can only *add* what an option lists, never anything else: a name that is not in the catalogue
is refused, and what no option lists (identities, marking and extension definitions, custom properties,
extensions, credentials, signatures, granular markings, the provider's own timestamps) can never be allowed.
Each option's added properties still get their treatment: free text is redacted, references are rewritten
to the reader's ids or dropped, and the copy must still be valid STIX.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cutout.sanitize.profiles import PROFILES, T, TypeProfile

__all__ = ["ENGINE_OPTIONS", "OPTIONAL_TYPES", "OPTIONS", "Option", "check_allow", "profiles_for"]


@dataclass(frozen=True)
class Option:
    """One thing an agreement may allow on top of the strict profile."""

    name: str
    #: object type → the properties this option adds, with their treatment
    adds: Mapping[str, Mapping[str, T]]
    #: types this option releases (not released by the strict profile)
    releases: frozenset[str]
    #: what a consumer could learn about the provider when this is allowed
    risk: str
    #: options of which at least one must be allowed too for this one to have any effect
    needs_one_of: frozenset[str] = frozenset()


def _option(
    name: str,
    adds: Mapping[str, Mapping[str, T]],
    risk: str,
    releases: Iterable[str] = (),
    needs_one_of: Iterable[str] = (),
) -> Option:
    return Option(
        name=name,
        adds=MappingProxyType({t: MappingProxyType(dict(p)) for t, p in adds.items()}),
        releases=frozenset(releases),
        risk=risk,
        needs_one_of=frozenset(needs_one_of),
    )


_CATALOGUE = (
    _option(
        "labels",
        {},
        "labels outside the exchange's label vocabulary are released (each redacted like free text): producer "
        "prefixes and house terms in labels can point to the provider",
    ),
    _option(
        "lang",
        {},
        "the language of the text is released, normalised to its primary subtag (en-GB becomes en): it narrows "
        "the provider down to the users of that language",
    ),
    _option(
        "language-content",
        {"language-content": {"object_ref": T.REF, "contents": T.CONTENTS}},
        "translations of released objects are released (the object_ref rewritten to the reader's id, only "
        "translations of properties that are themselves free text, each redacted, language tags normalised, "
        "object_modified dropped): the set of languages shows where the provider works",
        releases=("language-content",),
    ),
    _option(
        "artifact",
        {"artifact": {"payload_bin": T.KEEP}},
        "artifacts are released with their payload (with mime_type and hashes): documents and samples carry "
        "metadata of whoever collected them (authors, paths, printers, times) that the exchange cannot remove",
        releases=("artifact",),
    ),
    _option(
        "artifact.url",
        {"artifact": {"url": T.KEEP}},
        "artifacts are released with their url (withheld when it names the provider's registered terms or "
        "address ranges): a url usually points to the provider's own storage",
        releases=("artifact",),
    ),
    _option(
        "artifact.decryption_key",
        {"artifact": {"encryption_algorithm": T.KEEP, "decryption_key": T.KEEP}},
        "the key and algorithm of an encrypted artifact are released: keys are often the provider's house password",
        needs_one_of=("artifact", "artifact.url"),
    ),
    _option(
        "location.street_address",
        {"location": {"street_address": T.TEXT}},
        "street addresses are released (redacted): usually the premises of a victim or of the provider",
    ),
    _option(
        "location.postal_code",
        {"location": {"postal_code": T.KEEP}},
        "postal codes are released: they narrow a location to a few buildings",
    ),
    _option(
        "authors",
        {"note": {"authors": T.TEXT_LIST}, "opinion": {"authors": T.TEXT_LIST}},
        "the authors of notes and opinions are released (redacted): analysts' names identify their employer "
        "unless they are the provider's registered terms",
    ),
    _option(
        "email-message.recipients",
        {"email-message": {"to_refs": T.REFS, "cc_refs": T.REFS, "bcc_refs": T.REFS}},
        "the recipients of reported e-mail are released (as released email-addr objects only): they are the "
        "reporter's own staff",
    ),
    _option(
        "email-message.received_lines",
        {"email-message": {"received_lines": T.TEXT_LIST}},
        "the Received lines of reported e-mail are released (redacted): they trace the mail path into the "
        "reporter's network",
    ),
)

#: the catalogue: option name → option (read only)
OPTIONS: Mapping[str, Option] = MappingProxyType({o.name: o for o in _CATALOGUE})
#: options the engine applies to every type rather than through a profile
ENGINE_OPTIONS = frozenset({"labels", "lang"})
#: types only an option releases
OPTIONAL_TYPES = frozenset(t for o in _CATALOGUE for t in o.releases)


def check_allow(names: Iterable[str]) -> frozenset[str]:
    """The options as a set; ValueError naming what is unknown or has no effect."""
    allow = frozenset(n.strip() for n in names if n.strip())
    unknown = sorted(allow - OPTIONS.keys())
    if unknown:
        raise ValueError(
            f"unknown sanitizing option(s): {', '.join(unknown)}; an agreement can only allow one of: "
            f"{', '.join(OPTIONS)} (see `cutout agreement options`)"
        )
    for name in sorted(allow):
        needs = OPTIONS[name].needs_one_of
        if needs and not needs & allow:
            raise ValueError(f"{name} has no effect without one of: {', '.join(sorted(needs))}")
    return allow


@functools.lru_cache(maxsize=256)
def profiles_for(allow: frozenset[str]) -> Mapping[str, TypeProfile]:
    """The strict profiles with the allowed options added (the strict profiles themselves when none)."""
    if not allow:
        return PROFILES
    profiles = dict(PROFILES)
    for name in sorted(allow):
        option = OPTIONS[name]
        for type_, props in option.adds.items():
            base = profiles[type_]
            added = {**base.properties, **props}
            denied = {k: v for k, v in base.extra.items() if k not in props}
            profiles[type_] = dataclasses.replace(
                base, properties=MappingProxyType(added), extra=MappingProxyType(denied)
            )
        for type_ in option.releases:
            profiles[type_] = dataclasses.replace(profiles[type_], released=True)
    return MappingProxyType(profiles)
