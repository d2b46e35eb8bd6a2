"""Declarative allow-lists: for every STIX 2.1 object type, the properties that may leave the broker.

Default deny: a property not listed here for its type never reaches a consumer (custom ``x_`` properties,
extensions, unknown properties, and the common properties handled by the engine itself are not listed).
The common properties (§3.2) are treated by ``cutout.sanitize.engine`` for every type:
``type``, ``spec_version`` (kept), ``id`` (re-minted), ``created``/``modified`` (release time),
``created_by_ref`` (the broker), ``revoked`` (kept), ``confidence`` (quantised), ``labels``, ``lang``,
``external_references``, ``object_marking_refs``, ``granular_markings``, ``extensions``, ``defanged``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = ["PROFILES", "T", "TypeProfile"]


class T(enum.Enum):
    """How one property is treated on the way out."""

    KEEP = "keep"  # copied as is: enums, vocabularies, numbers, booleans, patterns, hashes, plain values
    TEXT = "text"  # one free-text string: copied, then redacted
    TEXT_LIST = "text-list"  # a list of free-text strings (aliases, goals): each redacted
    START = "start"  # an operational timestamp, coarsened downwards
    END = "end"  # an operational timestamp, coarsened upwards (so ranges stay valid)
    REF = "ref"  # one reference: rewritten to the reader's id, or dropped if the target is not released
    REFS = "refs"  # a list of references: each rewritten or dropped; an empty list is dropped
    KILL_CHAIN = "kill-chain"  # kill_chain_phases: only public kill chains are kept
    CONTENTS = "contents"  # language-content contents: language → translated free text of the target, redacted


@dataclass(frozen=True)
class TypeProfile:
    """What of one object type may be released."""

    type: str
    category: Literal["sdo", "sro", "sco"]
    #: type-specific properties that may be released, with their treatment
    properties: Mapping[str, T]
    #: type-specific properties the object cannot be valid without; if one is lost, the object is not released
    required: frozenset[str] = frozenset()
    #: SCOs only: the ID contributing properties of §6 for this type, in the spec's order
    id_contributing: tuple[str, ...] = ()
    #: False: never released by the strict default profile (e.g. identities, marking definitions)
    released: bool = True
    #: why the type is not released, or why a notable property is left out
    note: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


# --- reasons for leaving a property out, shared by several profiles ---

_WHO_IS_WHO = "identifies a party (provider, victim or consumer); identities are never released"
_UNRELEASED = "the type is not released by the strict default profile (see note)"
_AUTHORS = "names of the analysts who wrote it (REFERENCE.md §1: Opinion/Note authors): identifies the provider"
_PAYLOAD = "artifact payloads and their keys are never forwarded (REFERENCE.md §1)"


def _profile(
    type_: str,
    category: Literal["sdo", "sro", "sco"],
    properties: Mapping[str, T],
    *,
    required: tuple[str, ...] = (),
    id_contributing: tuple[str, ...] = (),
    released: bool = True,
    note: str = "",
    denied: Mapping[str, str] | None = None,
) -> TypeProfile:
    """Build one read-only profile; ``denied`` (property → reason) becomes ``extra``."""
    return TypeProfile(
        type=type_,
        category=category,
        properties=MappingProxyType(dict(properties)),
        required=frozenset(required),
        id_contributing=id_contributing,
        released=released,
        note=note,
        extra=MappingProxyType(dict(denied or {})),
    )


_SDOS: tuple[TypeProfile, ...] = (
    # §4.1
    _profile(
        "attack-pattern",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "aliases": T.TEXT_LIST,
            "kill_chain_phases": T.KILL_CHAIN,
        },
        required=("name",),
    ),
    # §4.2
    _profile(
        "campaign",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "aliases": T.TEXT_LIST,
            "first_seen": T.START,
            "last_seen": T.END,
            "objective": T.TEXT,
        },
        required=("name",),
    ),
    # §4.3
    _profile(
        "course-of-action",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
        },
        required=("name",),
        denied={"action": "RESERVED by §4.3 (producers MUST NOT use it): anything in it is non-standard"},
    ),
    # §4.4 (the markdown spec marks name as required; the OASIS schema and the stix2 library do not)
    _profile(
        "grouping",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "context": T.KEEP,
            "object_refs": T.REFS,
        },
        required=("context", "object_refs"),
    ),
    # §4.5
    _profile(
        "identity",
        "sdo",
        {},
        required=("name",),
        released=False,
        note="an identity names a party: the provider, a victim or a consumer (REFERENCE.md §1); "
        "the broker's own identity is the only one consumers see",
        denied={
            "name": _WHO_IS_WHO,
            "description": _WHO_IS_WHO,
            "roles": _WHO_IS_WHO,
            "identity_class": _WHO_IS_WHO,
            "sectors": _WHO_IS_WHO,
            "contact_information": "contact names, addresses, phone numbers (REFERENCE.md §1)",
        },
    ),
    # §4.6
    _profile(
        "incident",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
        },
        required=("name",),
        denied={
            "kill_chain_phases": "not a property of incident in STIX 2.1 §4.6 (only the stix2 library "
            "accepts it): default deny",
        },
    ),
    # §4.7
    _profile(
        "indicator",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "indicator_types": T.KEEP,
            "pattern": T.KEEP,
            "pattern_type": T.KEEP,
            "pattern_version": T.KEEP,
            "valid_from": T.START,
            "valid_until": T.END,
            "kill_chain_phases": T.KILL_CHAIN,
        },
        required=("pattern", "pattern_type", "valid_from"),
    ),
    # §4.8
    _profile(
        "infrastructure",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "infrastructure_types": T.KEEP,
            "aliases": T.TEXT_LIST,
            "kill_chain_phases": T.KILL_CHAIN,
            "first_seen": T.START,
            "last_seen": T.END,
        },
        required=("name",),
    ),
    # §4.9
    _profile(
        "intrusion-set",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "aliases": T.TEXT_LIST,
            "first_seen": T.START,
            "last_seen": T.END,
            "goals": T.TEXT_LIST,
            "resource_level": T.KEEP,
            "primary_motivation": T.KEEP,
            "secondary_motivations": T.KEEP,
        },
        required=("name",),
    ),
    # §4.10 (no property is required by itself: one of region, country or latitude+longitude must be present)
    _profile(
        "location",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "latitude": T.KEEP,
            "longitude": T.KEEP,
            "precision": T.KEEP,
            "region": T.KEEP,
            "country": T.KEEP,
            "administrative_area": T.TEXT,
            "city": T.TEXT,
        },
        note="street address and postal code are left out: a targeted site is usually the victim's",
        denied={
            "street_address": "the address of one site: usually the victim's (or the provider's) premises",
            "postal_code": "narrows a location to a few buildings: usually the victim's premises",
        },
    ),
    # §4.11 (the markdown spec prints is_family as optional; STIX 2.1, its JSON schema and stix2 require it)
    _profile(
        "malware",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "malware_types": T.KEEP,
            "is_family": T.KEEP,
            "aliases": T.TEXT_LIST,
            "kill_chain_phases": T.KILL_CHAIN,
            "first_seen": T.START,
            "last_seen": T.END,
            "operating_system_refs": T.REFS,
            "architecture_execution_envs": T.KEEP,
            "implementation_languages": T.KEEP,
            "capabilities": T.KEEP,
            "sample_refs": T.REFS,
        },
        required=("is_family",),
    ),
    # §4.12
    _profile(
        "malware-analysis",
        "sdo",
        {
            "product": T.KEEP,
            "version": T.KEEP,
            "host_vm_ref": T.REF,
            "operating_system_ref": T.REF,
            "installed_software_refs": T.REFS,
            "configuration_version": T.KEEP,
            "modules": T.KEEP,
            "analysis_engine_version": T.KEEP,
            "analysis_definition_version": T.KEEP,
            "submitted": T.START,
            "analysis_started": T.START,
            "analysis_ended": T.END,
            "result_name": T.TEXT,
            "result": T.KEEP,
            "analysis_sco_refs": T.REFS,
            "sample_ref": T.REF,
        },
        required=("product",),
    ),
    # §4.13
    _profile(
        "note",
        "sdo",
        {
            "abstract": T.TEXT,
            "content": T.TEXT,
            "object_refs": T.REFS,
        },
        required=("content", "object_refs"),
        denied={"authors": _AUTHORS},
    ),
    # §4.14 (object_refs is required here: the only other way to carry observations, objects, is denied)
    _profile(
        "observed-data",
        "sdo",
        {
            "first_observed": T.START,
            "last_observed": T.END,
            "number_observed": T.KEEP,
            "object_refs": T.REFS,
        },
        required=("first_observed", "last_observed", "number_observed", "object_refs"),
        denied={
            "objects": "deprecated observable container: embedded SCOs with local keys and refs would "
            "bypass the per-object sanitisation (2.1 producers use object_refs)",
        },
    ),
    # §4.15
    _profile(
        "opinion",
        "sdo",
        {
            "explanation": T.TEXT,
            "opinion": T.KEEP,
            "object_refs": T.REFS,
        },
        required=("opinion", "object_refs"),
        denied={"authors": _AUTHORS},
    ),
    # §4.16
    _profile(
        "report",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "report_types": T.KEEP,
            "published": T.START,
            "object_refs": T.REFS,
        },
        required=("name", "published", "object_refs"),
    ),
    # §4.17
    _profile(
        "threat-actor",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "threat_actor_types": T.KEEP,
            "aliases": T.TEXT_LIST,
            "first_seen": T.START,
            "last_seen": T.END,
            "roles": T.KEEP,
            "goals": T.TEXT_LIST,
            "sophistication": T.KEEP,
            "resource_level": T.KEEP,
            "primary_motivation": T.KEEP,
            "secondary_motivations": T.KEEP,
            "personal_motivations": T.KEEP,
        },
        required=("name",),
    ),
    # §4.18
    _profile(
        "tool",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
            "tool_types": T.KEEP,
            "aliases": T.TEXT_LIST,
            "kill_chain_phases": T.KILL_CHAIN,
            "tool_version": T.KEEP,
        },
        required=("name",),
    ),
    # §4.19
    _profile(
        "vulnerability",
        "sdo",
        {
            "name": T.TEXT,
            "description": T.TEXT,
        },
        required=("name",),
    ),
)

_SROS: tuple[TypeProfile, ...] = (
    # §5.1
    _profile(
        "relationship",
        "sro",
        {
            "relationship_type": T.KEEP,
            "description": T.TEXT,
            "source_ref": T.REF,
            "target_ref": T.REF,
            "start_time": T.START,
            "stop_time": T.END,
        },
        required=("relationship_type", "source_ref", "target_ref"),
    ),
    # §5.2 (summary is a boolean, although the markdown table prints "string"); where_sighted_refs and
    # observed_data_refs are kept as refs: identities are never released, so the engine drops those refs
    _profile(
        "sighting",
        "sro",
        {
            "description": T.TEXT,
            "first_seen": T.START,
            "last_seen": T.END,
            "count": T.KEEP,
            "sighting_of_ref": T.REF,
            "observed_data_refs": T.REFS,
            "where_sighted_refs": T.REFS,
            "summary": T.KEEP,
        },
        required=("sighting_of_ref",),
    ),
)

_SCOS: tuple[TypeProfile, ...] = (
    # §6.1 (one of payload_bin or url is required: both are denied, so an artifact can never be released)
    _profile(
        "artifact",
        "sco",
        {
            "mime_type": T.KEEP,
            "hashes": T.KEEP,
        },
        id_contributing=("hashes", "payload_bin"),
        released=False,
        note="an artifact needs payload_bin or url, and both are denied (REFERENCE.md §1: document metadata, "
        "the provider's storage URL)",
        denied={
            "payload_bin": _PAYLOAD + ": the bytes carry document metadata of the provider or the victim",
            "url": "points to the provider's storage (REFERENCE.md §1)",
            "encryption_algorithm": _PAYLOAD + ": only meaningful with the payload",
            "decryption_key": _PAYLOAD + ": the provider's key",
        },
    ),
    # §6.2
    _profile(
        "autonomous-system",
        "sco",
        {
            "number": T.KEEP,
            "name": T.TEXT,
            "rir": T.KEEP,
        },
        required=("number",),
        id_contributing=("number",),
    ),
    # §6.3 (path is redacted as text: it may hold a user or host name of the victim's machine)
    _profile(
        "directory",
        "sco",
        {
            "path": T.TEXT,
            "path_enc": T.KEEP,
            "ctime": T.START,
            "mtime": T.START,
            "atime": T.START,
            "contains_refs": T.REFS,
        },
        required=("path",),
        id_contributing=("path",),
    ),
    # §6.4
    _profile(
        "domain-name",
        "sco",
        {
            "value": T.KEEP,
            "resolves_to_refs": T.REFS,
        },
        required=("value",),
        id_contributing=("value",),
    ),
    # §6.5
    _profile(
        "email-addr",
        "sco",
        {
            "value": T.KEEP,
            "display_name": T.TEXT,
            "belongs_to_ref": T.REF,
        },
        required=("value",),
        id_contributing=("value",),
    ),
    # §6.6
    _profile(
        "email-message",
        "sco",
        {
            "is_multipart": T.KEEP,
            "date": T.START,
            "content_type": T.KEEP,
            "from_ref": T.REF,
            "sender_ref": T.REF,
            "message_id": T.KEEP,
            "subject": T.TEXT,
            "body": T.TEXT,
        },
        required=("is_multipart",),
        id_contributing=("from_ref", "subject", "body"),
        note="the sender side is kept; the recipient side (to/cc/bcc, mail path, headers) is the reporter's",
        denied={
            "to_refs": "recipients of a reported message are the victim (the reporter's own staff)",
            "cc_refs": "recipients of a reported message are the victim (the reporter's own staff)",
            "bcc_refs": "recipients of a reported message are the victim (the reporter's own staff)",
            "received_lines": "the mail path into the reporter: its MX hosts, relays, internal addresses",
            "additional_header_fields": "free-form headers: the reporter's gateway stamps, spam scores, "
            "recipient addresses",
            "body_multipart": "MIME parts hold nested refs (body_raw_ref) to artifacts and free-form headers "
            "that the engine cannot rewrite",
            "raw_email_ref": "refers to an artifact with the complete raw message (headers of the reporter)",
        },
    ),
    # §6.7 (name is redacted as text; mtime and atime are point events coarsened downwards like ctime)
    _profile(
        "file",
        "sco",
        {
            "hashes": T.KEEP,
            "size": T.KEEP,
            "name": T.TEXT,
            "name_enc": T.KEEP,
            "magic_number_hex": T.KEEP,
            "mime_type": T.KEEP,
            "ctime": T.START,
            "mtime": T.START,
            "atime": T.START,
            "parent_directory_ref": T.REF,
            "contains_refs": T.REFS,
            "content_ref": T.REF,
        },
        id_contributing=("hashes", "name", "extensions", "parent_directory_ref"),
    ),
    # §6.8
    _profile(
        "ipv4-addr",
        "sco",
        {
            "value": T.KEEP,
            "resolves_to_refs": T.REFS,
            "belongs_to_refs": T.REFS,
        },
        required=("value",),
        id_contributing=("value",),
    ),
    # §6.9
    _profile(
        "ipv6-addr",
        "sco",
        {
            "value": T.KEEP,
            "resolves_to_refs": T.REFS,
            "belongs_to_refs": T.REFS,
        },
        required=("value",),
        id_contributing=("value",),
    ),
    # §6.10
    _profile(
        "mac-addr",
        "sco",
        {
            "value": T.KEEP,
        },
        required=("value",),
        id_contributing=("value",),
    ),
    # §6.11
    _profile(
        "mutex",
        "sco",
        {
            "name": T.TEXT,
        },
        required=("name",),
        id_contributing=("name",),
    ),
    # §6.12
    _profile(
        "network-traffic",
        "sco",
        {
            "start": T.START,
            "end": T.END,
            "is_active": T.KEEP,
            "src_ref": T.REF,
            "dst_ref": T.REF,
            "src_port": T.KEEP,
            "dst_port": T.KEEP,
            "protocols": T.KEEP,
            "src_byte_count": T.KEEP,
            "dst_byte_count": T.KEEP,
            "src_packets": T.KEEP,
            "dst_packets": T.KEEP,
            "src_payload_ref": T.REF,
            "dst_payload_ref": T.REF,
            "encapsulates_refs": T.REFS,
            "encapsulated_by_ref": T.REF,
        },
        required=("protocols",),
        id_contributing=(
            "start",
            "end",
            "src_ref",
            "dst_ref",
            "src_port",
            "dst_port",
            "protocols",
            "extensions",
        ),
        denied={
            "ipfix": "IPFIX record of the reporter's own sensor: exporter addresses, observation domain and "
            "template ids",
        },
    ),
    # §6.13 (no ID contributing properties: process ids are UUIDv4); cwd and command_line are redacted as text
    _profile(
        "process",
        "sco",
        {
            "is_hidden": T.KEEP,
            "pid": T.KEEP,
            "created_time": T.START,
            "cwd": T.TEXT,
            "command_line": T.TEXT,
            "opened_connection_refs": T.REFS,
            "creator_user_ref": T.REF,
            "image_ref": T.REF,
            "parent_ref": T.REF,
            "child_refs": T.REFS,
        },
        denied={
            "environment_variables": "the victim host's environment: user, computer and domain names, "
            "home and profile paths, internal servers",
        },
    ),
    # §6.14
    _profile(
        "software",
        "sco",
        {
            "name": T.TEXT,
            "cpe": T.KEEP,
            "swid": T.KEEP,
            "languages": T.KEEP,
            "vendor": T.KEEP,
            "version": T.KEEP,
        },
        required=("name",),
        id_contributing=("name", "cpe", "swid", "vendor", "version"),
    ),
    # §6.15
    _profile(
        "url",
        "sco",
        {
            "value": T.KEEP,
        },
        required=("value",),
        id_contributing=("value",),
    ),
    # §6.16
    _profile(
        "user-account",
        "sco",
        {
            "user_id": T.KEEP,
            "account_login": T.KEEP,
            "account_type": T.KEEP,
            "display_name": T.TEXT,
            "is_service_account": T.KEEP,
            "is_privileged": T.KEEP,
            "can_escalate_privs": T.KEEP,
            "is_disabled": T.KEEP,
            "account_created": T.START,
            "account_expires": T.END,
            "credential_last_changed": T.START,
            "account_first_login": T.START,
            "account_last_login": T.END,
        },
        id_contributing=("account_type", "user_id", "account_login"),
        denied={"credential": "a cleartext password or secret: never forwarded"},
    ),
    # §6.17 (key is redacted as text: HKEY_USERS paths carry the victim's SID or user name)
    _profile(
        "windows-registry-key",
        "sco",
        {
            "key": T.TEXT,
            "values": T.KEEP,
            "modified_time": T.START,
            "creator_user_ref": T.REF,
            "number_of_subkeys": T.KEEP,
        },
        id_contributing=("key", "values"),
    ),
    # §6.18
    _profile(
        "x509-certificate",
        "sco",
        {
            "is_self_signed": T.KEEP,
            "hashes": T.KEEP,
            "version": T.KEEP,
            "serial_number": T.KEEP,
            "signature_algorithm": T.KEEP,
            "issuer": T.KEEP,
            "validity_not_before": T.START,
            "validity_not_after": T.END,
            "subject": T.KEEP,
            "subject_public_key_algorithm": T.KEEP,
            "subject_public_key_modulus": T.KEEP,
            "subject_public_key_exponent": T.KEEP,
            "x509_v3_extensions": T.KEEP,
        },
        id_contributing=("hashes", "serial_number"),
    ),
)

# §7: meta objects, filed as "sdo" (they carry the SDO common properties); none of them is released.
_META: tuple[TypeProfile, ...] = (
    # §7.1
    _profile(
        "language-content",
        "sdo",
        {},
        required=("object_ref", "contents"),
        released=False,
        note="translations show the provider's locale and working languages (REFERENCE.md §1: lang and "
        "language-content objects); they would also carry unredacted copies of free text",
        denied={
            "object_ref": _UNRELEASED,
            "object_modified": _UNRELEASED + "; it is also the provider's exact modification time",
            "contents": _UNRELEASED + "; translated free text would bypass the redaction of the original",
        },
    ),
    # §7.2.1
    _profile(
        "marking-definition",
        "sdo",
        {},
        released=False,
        note="markings are re-issued by the broker: only the fixed TLP ids are kept on released objects; "
        "statement and custom markings name the provider (REFERENCE.md §1, §2)",
        denied={
            "name": _UNRELEASED,
            "definition_type": _UNRELEASED,
            "definition": _UNRELEASED + "; statements name the provider",
        },
    ),
    # §7.3
    _profile(
        "extension-definition",
        "sdo",
        {},
        required=("name", "schema", "version", "extension_types"),
        released=False,
        note="extension definitions must carry the provider's created_by_ref and point to its schema; "
        "extensions are default deny (REFERENCE.md §1)",
        denied={
            "name": _UNRELEASED,
            "description": _UNRELEASED,
            "schema": _UNRELEASED + "; the schema URL names the provider's domain",
            "version": _UNRELEASED,
            "extension_types": _UNRELEASED,
            "extension_properties": _UNRELEASED + "; custom property names carry the provider's domain",
        },
    ),
)

#: the allow-list: STIX 2.1 object type → its profile (read only)
PROFILES: Mapping[str, TypeProfile] = MappingProxyType({p.type: p for p in (*_SDOS, *_SROS, *_SCOS, *_META)})
