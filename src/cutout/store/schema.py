"""The tables. Timestamps are integer microseconds since the epoch (UTC); STIX bodies are stored as the
exact JSON bytes that are served, so reads never re-serialise."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

SCHEMA_VERSION = "1"

metadata = MetaData()


def _in_two_levels(name: str, *columns: Column[Any], where: str = "") -> None:
    """An ids index as its two levels (migration 0009; ``objects`` says why): ``name`` the large one (``NOT
    fresh``), ``name`` + ``_fresh`` the small one, each partial on ``where`` too where given."""
    for suffix, level in (("", "NOT fresh"), ("_fresh", "fresh")):
        condition = text(f"{where} AND {level}" if where else level)
        Index(name + suffix, *columns, sqlite_where=condition, postgresql_where=condition)


meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

parties = Table(
    "parties",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("provider", Boolean, nullable=False),
    Column("consumer", Boolean, nullable=False),
    Column("token_hash", String(64), unique=True),
    Column("created", BigInteger, nullable=False),
    Column("revoked", BigInteger),
    # terms to redact from this party's free text when it reaches others (JSON list of strings)
    Column("terms", Text, nullable=False, default="[]"),
    # providers: the source reliability (Admiralty A-F) the operator gives it; F until known
    Column("grade", String(1), nullable=False, default="F", server_default="F"),
)
# the grade crowd (Tx.providers_holding): a release asks whether a few active providers hold its sender's grade,
# and stops counting there, instead of counting every party's grade. Partial: the active providers only (the
# query names the same condition), and no other query can take it for a scan of every party
Index(
    "ix_parties_grade",
    parties.c.grade,
    sqlite_where=text("provider AND revoked IS NULL"),
    postgresql_where=text("provider AND revoked IS NULL"),
)

collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("party_id", Integer, nullable=False),
    Column("kind", String(8), nullable=False),  # inbox | outbox
    Column("last_added", BigInteger, nullable=False, default=0),
    UniqueConstraint("party_id", "kind"),
)

agreements = Table(
    "agreements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider_id", Integer, nullable=False),
    Column("consumer_id", Integer, nullable=False),
    Column("types", Text),  # JSON list, or NULL for every released type
    Column("tlp_max", Integer, nullable=False),
    Column("area", Text),  # JSON [minlon, minlat, maxlon, maxlat], or NULL
    # none | fixed | exponential | pool; delay is the fixed delay, or the mean of the exponential one
    Column("release", String(16), nullable=False, default="fixed"),
    Column("delay", Integer, nullable=False, default=0),
    Column("pool_k", Integer, nullable=False, default=0),  # pool: distinct providers needed
    Column("epoch", Integer, nullable=False, default=0),  # pool: seconds between release epochs
    # hold objects whose free text had to be redacted for the operator's review
    Column("review", Boolean, nullable=False, default=False),
    Column("created", BigInteger, nullable=False),
    Column("ended", BigInteger),
    # JSON list of sanitizing options (cutout.sanitize.overrides) allowed on top of the strict profile, or NULL
    Column("allow", Text),
)
# a submission reads its provider's active agreements, a request or feedback its consumer's: by index, not by
# a scan of every agreement of the exchange
Index("ix_agreements_provider", agreements.c.provider_id)
Index("ix_agreements_consumer", agreements.c.consumer_id)

objects = Table(
    "objects",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("coll", Integer, nullable=False),
    Column("stix_id", String(120), nullable=False),
    # a signed 64-bit BLAKE2b of stix_id (cutout.store.sql.id_hash): objects are looked up by id through it,
    # since an index of the long random ids dirtied a page of the WAL for almost every object added
    Column("id_hash", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("version", String(40), nullable=False),  # as served in manifests
    Column("version_us", BigInteger, nullable=False),  # the same, comparable
    Column("spec_version", String(8), nullable=False),
    Column("date_added", BigInteger, nullable=False),
    Column("latest", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("origin", BigInteger),  # for delivered copies: pk of the object they were made from
    # in an inbox: the audit entry that delivered this version (the receipt its reader may ask for)
    Column("audit_seq", BigInteger),
    # in the small index of the rows added lately (ix_objects_id_fresh), not yet merged into ix_objects_id
    Column("fresh", Boolean, nullable=False, server_default=false()),
)
Index("ix_objects_coll_added", objects.c.coll, objects.c.date_added, unique=True)
# Objects are found by id through two indexes of (coll, id_hash), as a log-structured merge tree keeps two
# levels (migration 0009): the rows added lately in a small one, the rest in a large one. An id's hash is
# random, so each entry of an envelope lands on a leaf of its own of an index of the whole collection, and
# the commit writes each leaf it changed (16 KiB pages then): at 100,000 objects a 100-object envelope wrote
# 5.2 MB.
# The small index has a few dozen leaves, and Tx.merge_fresh moves its entries into the large one in
# batches of thousands, which share the large one's leaves. A read asks both (cutout.store.sql._in_both). On
# SQLite only, once the table holds sql.FRESH_FROM rows: PostgreSQL's WAL logs an index entry, not its page,
# and its update would write a new version of the row (rows are stored merged there).
# Not unique (two ids may share a hash): Tx.add_objects keeps (coll, stix_id, version_us) unique, under the
# writer lock. No date_added (migration 0008): an id's few versions are sorted when read.
_in_two_levels("ix_objects_id", objects.c.coll, objects.c.id_hash)

# The types (and spec versions) each collection has held, and the date_added of the first object of each
# (migration 0011): a filter by type or spec version (``match[type]``, ``match[spec_version]``) reads the
# collection from there on, and not at all for one it never held. Without it such a request read the whole
# collection through ix_objects_coll_added, whatever it found: 316 ms for an absent type at 1,000,000 objects
# (docs/benchmarks.md, "The twenty-fifth round"). Only ever added to (Tx.add_objects, once per new type, spec
# version and collection), never changed: a deletion leaves a bound that is only wider than it could be. An
# index by type would have served the rarest types too, at a write per object.
collection_types = Table(
    "collection_types",
    metadata,
    Column("coll", Integer, primary_key=True, autoincrement=False),
    Column("type", String(64), primary_key=True),
    Column("spec_version", String(8), primary_key=True),
    Column("first_added", BigInteger, nullable=False),
)

# What each recipient has been given (or is due to be given) of each sender's objects: the keyed id and
# the version history of the recipient's copy. Feedback routes back through this table.
# One row per (recipient, sender, orig_id), kept so by Tx.plan_copies under the writer lock: the index is
# on a hash of orig_id (cutout.store.sql.id_hash; two ids may share it), smaller than one on the ids.
copies = Table(
    "copies",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("recipient_id", Integer, nullable=False),
    Column("sender_id", Integer, nullable=False),
    Column("orig_id", String(120), nullable=False),
    Column("orig_hash", BigInteger, nullable=False),
    Column("out_id", String(120)),  # NULL while held: not yet released
    Column("created_out", BigInteger),
    Column("modified_out", BigInteger),
    Column("origin_version_us", BigInteger),
    # id_hash(out_id), set with it: copies are looked up by the reader's id through it (ix_copies_out), an
    # index a third the size of one on the ids, whose random keys a large release spreads over every page
    Column("out_hash", BigInteger),
    # in the small indexes of the rows added lately, as objects.fresh (migration 0009)
    Column("fresh", Boolean, nullable=False, server_default=false()),
)
# each in two levels, as ix_objects_id
_in_two_levels("ix_copies_orig", copies.c.recipient_id, copies.c.sender_id, copies.c.orig_hash)
# held copies (out_hash NULL) are never looked up by the reader's id: leaving them out means a release adds
# the entry instead of moving it. Not unique (two ids may share a hash).
_in_two_levels("ix_copies_out", copies.c.recipient_id, copies.c.out_hash, where="out_hash IS NOT NULL")

releases = Table(
    "releases",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("due", BigInteger, nullable=False),
    Column("recipient_id", Integer, nullable=False),
    Column("sender_id", Integer, nullable=False),
    Column("source_pk", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),  # intel | feedback
    Column("pool_k", Integer, nullable=False, default=0),  # > 0: pooled, released only with k providers
    Column("epoch", Integer, nullable=False, default=0),
    Column("review", Boolean, nullable=False, default=False),
    Column("agreement_id", Integer),  # intel: the agreement that decided it (its sanitizing options apply)
)
Index("ix_releases_due", releases.c.due)

# what consumers reported back about each provider's objects: one outcome per (consumer, object), the latest
outcomes = Table(
    "outcomes",
    metadata,
    Column("provider_id", Integer, primary_key=True),
    Column("consumer_id", Integer, primary_key=True),
    Column("orig_id", String(120), primary_key=True),  # the provider's own id of the object
    Column("outcome", String(24), nullable=False),
    Column("at", BigInteger, nullable=False),
)

# objects held for the operator's review (an agreement with review on, and free text that had to be redacted)
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("recipient_id", Integer, nullable=False),
    Column("sender_id", Integer, nullable=False),
    Column("source_pk", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("preview", LargeBinary, nullable=False),  # the redacted copy as it would be released
)

statuses = Table(
    "statuses",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("party_id", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("audit_seq", BigInteger),  # the acceptance's audit entry (the receipt the submitter may ask for)
)

audit = Table(
    "audit",
    metadata,
    # seq is the leaf's 1-based position in the Merkle tree: assigned by the store, never with a gap
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("salt", LargeBinary),  # NULL once retention destroyed it (the commitment stays)
    Column("commitment", LargeBinary, nullable=False),
    Column("event", LargeBinary),  # NULL once retention destroyed it
)

# The Merkle tree's perfect subtrees of at least 256 leaves (cutout.audit.merkle.TILE_LEVEL), each stored once
# by the transaction whose entries complete it (migration 0010): a receipt's inclusion proof reads a few of them
# and the leaves of at most two tiles of 256, instead of every entry of the log (cutout.service.Exchange.prove).
# Derived from the entries' commitments, which retention keeps: `cutout audit verify` recomputes and compares them.
audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

# A party may ask a receipt for the audit entries of its own acceptances (statuses.audit_seq, by status id)
# and deliveries (objects.audit_seq in its inbox, by object id): no table of references beside them.

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),  # the C2SP signed note
)
