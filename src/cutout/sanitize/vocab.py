"""Open vocabularies (§10) and public kill chains: only the spec's own values leave the broker.

A provider's custom vocabulary value (``indicator_types: ["acme-desk-7"]``) is as much a fingerprint as a
label, so values outside the spec's suggested vocabulary are dropped; where the property is required, they
are replaced by the vocabulary's neutral value when it has one. The vocabularies are those stix2-validator
ships (``stix2validator.v21.enums``), so the exchange and the validator agree on them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

__all__ = ["KILL_CHAIN_PHASES", "restrict", "vocabularies"]


@functools.cache
def vocabularies() -> Mapping[tuple[str, str], frozenset[str]]:
    """(object type or "*", property) -> the values that may leave. Loaded on first use (the validator's
    package is slow to import, and operator commands never need it)."""
    from cutout.model import iri

    iri.defer()  # see cutout.model.iri
    from stix2validator.v21 import enums

    relationship_types = frozenset(enums.COMMON_RELATIONSHIPS) | frozenset(
        rel for targets in enums.RELATIONSHIPS.values() for rel in targets
    )
    return {
        ("*", "resource_level"): frozenset(enums.ATTACK_RESOURCE_LEVEL_OV),
        ("*", "primary_motivation"): frozenset(enums.ATTACK_MOTIVATION_OV),
        ("*", "secondary_motivations"): frozenset(enums.ATTACK_MOTIVATION_OV),
        ("*", "personal_motivations"): frozenset(enums.ATTACK_MOTIVATION_OV),
        ("grouping", "context"): frozenset(enums.GROUPING_CONTEXT_OV),
        ("indicator", "indicator_types"): frozenset(enums.INDICATOR_TYPE_OV),
        ("indicator", "pattern_type"): frozenset(enums.INDICATOR_PATTERN_OV),
        ("infrastructure", "infrastructure_types"): frozenset(enums.INFRASTRUCTURE_TYPE_OV),
        ("malware", "malware_types"): frozenset(enums.MALWARE_TYPE_OV),
        ("malware", "capabilities"): frozenset(enums.MALWARE_CAPABILITIES_OV),
        ("malware", "implementation_languages"): frozenset(enums.IMPLEMENTATION_LANGUAGES_OV),
        ("malware", "architecture_execution_envs"): frozenset(enums.PROCESSOR_ARCHITECTURE_OV),
        ("malware-analysis", "result"): frozenset(enums.MALWARE_RESULT_OV),
        ("report", "report_types"): frozenset(enums.REPORT_TYPE_OV),
        ("threat-actor", "threat_actor_types"): frozenset(enums.THREAT_ACTOR_TYPE_OV),
        ("threat-actor", "roles"): frozenset(enums.THREAT_ACTOR_ROLE_OV),
        ("threat-actor", "sophistication"): frozenset(enums.THREAT_ACTOR_SOPHISTICATION_OV),
        ("tool", "tool_types"): frozenset(enums.TOOL_TYPE_OV),
        ("location", "region"): frozenset(enums.REGION_OV),
        ("user-account", "account_type"): frozenset(enums.ACCOUNT_TYPE_OV),
        ("relationship", "relationship_type"): relationship_types,
        ("*", "hashes"): frozenset(enums.HASH_ALGO_OV),
    }


#: a required property whose custom value becomes this neutral one instead of being dropped
_NEUTRAL: Mapping[tuple[str, str], str] = {
    ("grouping", "context"): "unspecified",
    ("relationship", "relationship_type"): "related-to",
}

#: the published phases of the two public kill chains that are kept
KILL_CHAIN_PHASES: Mapping[str, frozenset[str]] = {
    "mitre-attack": frozenset(
        {
            "reconnaissance",
            "resource-development",
            "initial-access",
            "execution",
            "persistence",
            "privilege-escalation",
            "defense-evasion",
            "credential-access",
            "discovery",
            "lateral-movement",
            "collection",
            "command-and-control",
            "exfiltration",
            "impact",
        }
    ),
    "lockheed-martin-cyber-kill-chain": frozenset(
        {
            "reconnaissance",
            "weaponization",
            "delivery",
            "exploitation",
            "installation",
            "command-and-control",
            "actions-on-objectives",
            "actions-on-objective",
        }
    ),
}


def restrict(obj_type: str, name: str, value: Any) -> Any:
    """The part of a KEEP value that may leave: vocabulary values only, hashes of known algorithms only.

    Returns None when nothing of it may leave.
    """
    table = vocabularies()
    if name == "hashes" and isinstance(value, dict):
        kept = {k: v for k, v in value.items() if k in table[("*", "hashes")]}
        return kept or None
    allowed = table.get((obj_type, name)) or table.get(("*", name))
    if allowed is None:
        return value
    if isinstance(value, str):
        if value in allowed:
            return value
        return _NEUTRAL.get((obj_type, name))
    if isinstance(value, list):
        kept_list = [v for v in value if isinstance(v, str) and v in allowed]
        return kept_list or None
    return None
