"""The use cases of the exchange, wiring store, policy, sanitizer and audit. No HTTP here.

The pipeline: accept (validate, store, audit) → decide (agreements) → sanitize (per reader) → release
(now, or held until the agreement's delay has passed) → feedback back the same way. Everything a
submission causes is written in the one transaction that is committed before it is acknowledged.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import hmac
import json
import math
import random
import secrets
import struct
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cutout.audit import audit_row
from cutout.errors import (
    AuthError,
    BadRequest,
    BrokerExists,
    Conflict,
    Forbidden,
    InvalidContent,
    NotFound,
    NotInitialised,
    Problem,
    StoreUnavailable,
)
from cutout.extensions import (
    GRADES,
    REQUEST_TYPE,
    TrackRecord,
    boxes_meet,
    check_outcome,
    check_request,
    outcome_of,
    request_area,
    request_types,
)
from cutout.keys import Keys
from cutout.model.offload import Ahead
from cutout.model.timestamps import floor_us, format_ms, format_us, now_us, parse_us
from cutout.model.tlp import TLP2_IDS, object_tlp, parse_tlp, tlp_name
from cutout.policy import Agreement, check_release, coordinates, decide, parse_area
from cutout.sanitize.ids import keyed_id
from cutout.sanitize.overrides import OPTIONAL_TYPES, OPTIONS, check_allow
from cutout.sanitize.profiles import PROFILES
from cutout.sanitize.recipe import Recipe
from cutout.sanitize.redact import Redactor, check_term
from cutout.settings import Settings
from cutout.store import Store, Tx
from cutout.store.schema import SCHEMA_VERSION
from cutout.store.sql import NewObject, PageQuery, id_hash, id_hash_once

if TYPE_CHECKING:
    from cutout.model.offload import CheckProcess, DeferredChecks
    from cutout.model.validate import Validator

__all__ = ["Collection", "Exchange", "Page", "Party"]

FEEDBACK_TYPES = frozenset({"sighting", "opinion", "note"})
RELEASED_TYPES = frozenset(t for t, p in PROFILES.items() if p.released)
#: what any agreement may release: the strict profile's types and those its sanitizing options add
RELEASABLE_TYPES = RELEASED_TYPES | OPTIONAL_TYPES
MEDIA_STIX = "application/stix+json;version=2.1"
_NAME_FORBIDDEN = set(':/\\"\n\r\t')
#: an envelope of at least this many objects is validated, and a provider's copies made, by the checking
#: process (when it runs): at 8 objects per envelope that took 200-212 µs per object in process against
#: 226-244 in line, at 4 about the same as in line (docs/benchmarks.md, "The twelfth round")
CHECKS_AFTER = 8
#: at most this many recipes (agreements' distinct sanitizing options) an envelope's copies are made ahead for
AHEAD_RECIPES = 4


@dataclass(frozen=True)
class Party:
    id: int
    name: str
    provider: bool
    consumer: bool


@dataclass(frozen=True)
class Collection:
    id: int
    uuid: str
    party_id: int
    kind: str  # inbox | outbox

    def describe(self) -> dict[str, Any]:
        """The TAXII collection resource (§5.2)."""
        outbox = self.kind == "outbox"
        return {
            "id": self.uuid,
            "title": self.kind,
            "description": (
                "What you send to the exchange: intelligence, or feedback on what you received."
                if outbox
                else "What the exchange delivered to you."
            ),
            "can_read": True,
            "can_write": outbox,
            "media_types": [MEDIA_STIX],
        }


@dataclass(frozen=True)
class Page:
    """One page of a collection: stored JSON bodies plus what the envelope and headers need."""

    rows: list[Any]
    more: bool
    next: str | None
    #: the position searched after (µs; -1 for the start): an empty page's date-added headers repeat it
    after: int = -1
    #: whether the one object asked for exists in the collection at all (object and versions endpoints)
    exists: bool = True

    @property
    def first_added(self) -> str:
        return format_us(self.rows[0].date_added if self.rows else max(self.after, 0))

    @property
    def last_added(self) -> str:
        return format_us(self.rows[-1].date_added if self.rows else max(self.after, 0))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _stored(obj: Mapping[str, Any], origin: int | None = None) -> NewObject:
    """An object as a collection row: its version (modified, else created, else none) and its exact JSON bytes."""
    return _row(obj, *_version_of(obj), origin, id_hash(obj["id"]))


def _stored_copy(out: Mapping[str, Any], origin: int, created: int, modified: int) -> NewObject:
    """``_stored`` of a copy the sanitizer just made with these created / modified: its version is the one
    it was given (to the millisecond, as ``format_ms`` wrote it), not parsed back from the text. Its id's
    hash is worked out once, outside ``id_hash``'s cache (``id_hash_once``): the copy's row and its
    bookkeeping (``out_hash``) take it from here."""
    hashed = id_hash_once(out["id"])
    if "modified" in out:
        return _row(out, out["modified"], modified - modified % 1000, origin, hashed)
    if "created" in out:
        return _row(out, out["created"], created - created % 1000, origin, hashed)
    return _row(out, "", 0, origin, hashed)


def _row(obj: Mapping[str, Any], version: str, version_us: int, origin: int | None, hashed: int) -> NewObject:
    return NewObject(
        stix_id=obj["id"],
        type=obj["type"],
        version=version,
        version_us=version_us,
        spec_version=str(obj.get("spec_version", "2.1")),
        body=orjson.dumps(obj),
        origin=origin,
        id_hash=hashed,
    )


class _Source(NamedTuple):
    """What a release needs of a stored object's row besides its parsed body."""

    pk: int
    version: str
    version_us: int


def _version_of(obj: Mapping[str, Any]) -> tuple[str, int]:
    for key in ("modified", "created"):
        value = obj.get(key)
        if isinstance(value, str):
            return value, parse_us(value)
    return "", 0


class _Facts:
    """What scheduling and releasing read of each of a submission's own objects, worked out once and before
    the write lock, since it depends on the object alone: the ids its references hold (``_all_refs``) and its
    TLP level (``object_tlp``). Keyed by ``id()``: the submission keeps its objects until it ends, and an
    object not among them (an older one read back for a release) is worked out when asked for, as is one
    that could not be worked out ahead (not valid STIX, most likely: its validation, in this process or the
    checking process, then refuses it, and nothing here may raise first)."""

    __slots__ = ("_refs", "_tlp", "_unmarked")

    def __init__(self, objects: Iterable[Any], unmarked: int) -> None:
        self._unmarked = unmarked
        self._refs: dict[int, tuple[str, ...]] = {}
        self._tlp: dict[int, int] = {}
        for obj in objects:
            try:
                refs, tlp = tuple(_all_refs(obj)), object_tlp(obj, unmarked)
            except Exception:  # noqa: S112  (worked out when asked for, where it raises as it always did)
                continue
            self._refs[id(obj)] = refs
            self._tlp[id(obj)] = tlp

    def refs(self, obj: Mapping[str, Any]) -> tuple[str, ...]:
        found = self._refs.get(id(obj))
        return found if found is not None else tuple(_all_refs(obj))

    def tlp(self, obj: Mapping[str, Any]) -> int:
        found = self._tlp.get(id(obj))
        return found if found is not None else object_tlp(obj, self._unmarked)


class Exchange:
    """The broker's use cases. One instance per process; thread-safe (all state is in the store)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        keys: Keys,
        validator: Validator | None = None,
        *,
        clock: Callable[[], int] = now_us,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        #: microseconds since the epoch; tests pass a controllable clock
        self.clock = clock
        #: draws exponential delays; a system (unpredictable) generator unless a test seeds one
        self.rng = rng or random.SystemRandom()
        self.store = store
        self.keys = keys
        self._validator = validator
        #: the child process that validates a large envelope's copies on the second core (``start_checks``)
        self._checks: CheckProcess | None = None
        self._aead = AESGCM(keys.cursor_key)
        #: collections by uuid: a collection never changes its id, owner or kind, nor goes away
        self._collections: dict[str, Collection] = {}
        with store.read() as tx:
            identity = tx.get_meta("identity")
        if identity is None:
            raise NotInitialised(f"no broker in {settings.data_dir}; run 'cutout init' first")
        self.identity: dict[str, Any] = json.loads(identity)

    @property
    def validator(self) -> Validator:
        """Built on first use: operator commands that never validate need not load the schemas."""
        if self._validator is None:
            from cutout.model.validate import default_validator

            self._validator = default_validator()
        return self._validator

    def warm_up(self) -> None:
        """Load the validator and vocabularies now, so the first submission is not the one that pays.

        Everything loaded so far lives as long as the process: ``gc.freeze()`` keeps the cyclic garbage
        collector from walking it again at every full collection (GC fell from about 12% to 5% of an
        ingest's CPU time). A larger young generation (10,000) took GC to 2%, but a server that had taken
        100,000 objects then held 24 MB more: memory must stay bounded by the batch, so the thresholds
        stay Python's.
        """
        from cutout.sanitize.vocab import vocabularies

        vocabularies()
        _ = self.validator
        gc.collect()
        gc.freeze()

    # -- set-up -------------------------------------------------------------------------------------------
    @staticmethod
    def init(settings: Settings, name: str) -> dict[str, Any]:
        """Create a broker: database, STIX identity and secret keys. Refuses to overwrite one."""
        data = settings.data_dir
        if (data / "keys.json").exists():
            raise BrokerExists(f"a broker already exists in {data}")
        if not name.strip():
            raise BadRequest("the broker's name must not be empty")
        data.mkdir(parents=True, exist_ok=True)
        store = Store.for_settings(settings)
        try:
            if store.is_initialised():
                raise BrokerExists(f"the database {settings.db_url} already holds a broker")
            from cutout.store.migrate import upgrade

            upgrade(store)
            now = now_us()
            identity = {
                "type": "identity",
                "spec_version": "2.1",
                "id": f"identity--{uuid.uuid4()}",
                "created": format_ms(floor_us(now, 86_400)),
                "modified": format_ms(floor_us(now, 86_400)),
                "name": name.strip(),
                "identity_class": "organization",
            }
            with store.write() as tx:
                tx.set_meta("schema_version", SCHEMA_VERSION)
                tx.set_meta("identity", json.dumps(identity))
                tx.append_audit([audit_row("init", {"identity": identity["id"]}, now)])
            Keys.generate().save(data)
        finally:
            store.close()
        return identity

    @classmethod
    def open(cls, settings: Settings) -> Exchange:
        keys = Keys.load(settings.data_dir)
        store = Store.for_settings(settings)
        if not store.is_initialised():
            store.close()
            raise NotInitialised(f"no broker database at {settings.db_url}; run 'cutout init' first")
        from cutout.store.migrate import current_revision, head_revision

        if current_revision(store) != head_revision():
            store.close()
            raise NotInitialised(
                f"the database {settings.db_url} is at schema {current_revision(store)}, this cutout needs "
                f"{head_revision()}: run 'cutout db upgrade' first"
            )
        return cls(settings, store, keys)

    def start_checks(self, wait: bool = True) -> None:
        """Start the process that validates the copies of large envelopes on another core, if the settings
        ask for it (``check_process``); ``cutout serve`` does (the app it runs opens the exchange). Until it
        is up (``wait=False``: it starts on a thread of its own), and without it, every copy is validated in
        line."""
        if self.settings.check_process and self._checks is None:
            from cutout.model.offload import CheckProcess

            self._checks = CheckProcess()
            if wait:
                self._checks.start()
            else:
                self._checks.start_soon()

    @property
    def check_process_pid(self) -> int | None:
        """The checking process's pid while it runs (None without one): to find it among the server's processes."""
        return self._checks.pid if self._checks is not None else None

    def close(self) -> None:
        if self._checks is not None:
            self._checks.close()
        self.store.close()

    # -- parties ------------------------------------------------------------------------------------------
    def add_party(self, name: str, provider: bool, consumer: bool) -> tuple[dict[str, Any], str]:
        """Register a party; returns its description and its API token (shown once, only a hash is kept)."""
        name = name.strip()
        if not name or len(name) > 200 or any(c in _NAME_FORBIDDEN for c in name):
            raise BadRequest('a party name is 1-200 characters without : / \\ " or line breaks')
        if not (provider or consumer):
            raise BadRequest("a party must be a provider, a consumer, or both (--provider / --consumer)")
        token = "ct_" + secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.write() as tx:
            if tx.party_by_name(name) is not None:
                raise Conflict(f"a party named {name!r} already exists")
            pid = tx.add_party(name, provider, consumer, _token_hash(token), now)
            tx.add_collection(str(uuid.uuid4()), pid, "inbox")
            tx.add_collection(str(uuid.uuid4()), pid, "outbox")
            tx.append_audit([audit_row("party-add", {"party": pid, "provider": provider, "consumer": consumer}, now)])
            row = tx.party_by_id(pid)
        return self._describe_party(row), token

    def list_parties(self) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [self._describe_party(r) for r in tx.parties()]

    def revoke_party(self, name: str) -> dict[str, Any]:
        now = self.clock()
        with self.store.write() as tx:
            row = self._party_row(tx, name)
            if row.revoked is not None:
                raise Conflict(f"party {name!r} is already revoked")
            tx.update_party(row.id, revoked=now, token_hash=None)
            tx.append_audit([audit_row("party-revoke", {"party": row.id}, now)])
            return self._describe_party(tx.party_by_id(row.id))

    def rotate_party(self, name: str) -> tuple[dict[str, Any], str]:
        token = "ct_" + secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.write() as tx:
            row = self._party_row(tx, name)
            if row.revoked is not None:
                raise Conflict(f"party {name!r} is revoked; add it again under a new name")
            tx.update_party(row.id, token_hash=_token_hash(token))
            tx.append_audit([audit_row("party-rotate", {"party": row.id}, now)])
            return self._describe_party(tx.party_by_id(row.id)), token

    def party_terms(self, name: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
        """A party's redaction terms (names, aliases, codenames, domains, addresses, CIDR ranges), after the
        change. The names of the identities it signs its objects with are added as they are seen."""
        try:
            added = {check_term(t) for t in add}
            removed = {check_term(t) for t in remove}
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        now = self.clock()
        with self.store.write() as tx:
            row = self._party_row(tx, name)
            terms = (set(json.loads(row.terms)) | added) - removed
            if added or removed:
                tx.update_party(row.id, terms=json.dumps(sorted(terms)))
                event = {"party": row.id, "added": len(added), "removed": len(removed)}
                tx.append_audit([audit_row("party-terms", event, now)])
        return sorted(terms)

    @staticmethod
    def _party_row(tx: Tx, name: str) -> Any:
        row = tx.party_by_name(name)
        if row is None:
            raise NotFound(f"no party named {name!r}")
        return row

    @staticmethod
    def _describe_party(row: Any) -> dict[str, Any]:
        roles = [r for r, on in (("provider", row.provider), ("consumer", row.consumer)) if on]
        return {
            "name": row.name,
            "roles": roles,
            "created": format_ms(row.created),
            "revoked": None if row.revoked is None else format_ms(row.revoked),
        }

    # -- agreements ---------------------------------------------------------------------------------------
    def add_agreement(
        self,
        provider: str,
        consumer: str,
        types: Sequence[str] | None = None,
        tlp_max: str = "amber",
        area: str | None = None,
        delay: int = 0,
        release: str | None = None,
        pool_k: int = 0,
        epoch: int = 0,
        review: bool = False,
        allow: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Let objects flow from a provider to a consumer: of these types, up to this TLP, in this area.

        ``release`` times it: ``none`` (at once), ``fixed`` (``delay`` seconds), ``exponential`` (a random delay
        of mean ``delay``), ``pool`` (at epochs, only once items of ``pool_k`` providers are waiting). Without
        it, a delay means ``fixed`` and no delay ``none``. With ``review``, an object whose free text had to be
        redacted is held for the operator (``cutout review``) instead of being released redacted. ``allow``
        names sanitizing options (``cutout.sanitize.overrides.OPTIONS``) that let more through than the strict
        profile; nothing else can be allowed.
        """
        try:
            allowed = check_allow(allow)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        optional = {t for name in allowed for t in OPTIONS[name].releases}
        if types is not None:
            types = sorted({t.strip() for t in types if t.strip()})
            unknown = [t for t in types if t not in PROFILES]
            if unknown:
                raise BadRequest(f"unknown STIX type(s): {', '.join(unknown)}")
            never = [t for t in types if t not in RELEASABLE_TYPES]
            if never:
                raise BadRequest(f"never released by the exchange: {', '.join(never)}")
            gated = [t for t in types if t in OPTIONAL_TYPES and t not in optional]
            if gated:
                hint = ", ".join(f"{t} (--allow {_releasing_option(t)})" for t in gated)
                raise BadRequest(f"released only when the agreement allows it: {hint}")
            if not types:
                raise BadRequest("--types lists no type")
        try:
            level = parse_tlp(tlp_max)
            box = None if area is None else parse_area(area)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        release = release or ("fixed" if delay else "none")
        try:
            check_release(release, delay, pool_k, epoch)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        now = self.clock()
        with self.store.write() as tx:
            prow, crow = self._party_row(tx, provider), self._party_row(tx, consumer)
            if not prow.provider or prow.revoked is not None:
                raise BadRequest(f"{provider!r} is not an active provider")
            if not crow.consumer or crow.revoked is not None:
                raise BadRequest(f"{consumer!r} is not an active consumer")
            if prow.id == crow.id:
                raise BadRequest("a party cannot have an agreement with itself")
            aid = tx.add_agreement(
                prow.id, crow.id, types, level, box, delay, now, release, pool_k, epoch, review, sorted(allowed)
            )
            tx.append_audit([audit_row("agreement-add", {"agreement": aid}, now)])
            return self._describe_agreement(tx, tx.agreement(aid))

    def list_agreements(self, include_ended: bool = False) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            names = {p.id: p.name for p in tx.parties()}  # once for the list, not once per agreement
            return [self._describe_agreement(tx, r, names) for r in tx.agreements(include_ended)]

    def end_agreement(self, agreement_id: int) -> dict[str, Any]:
        now = self.clock()
        with self.store.write() as tx:
            row = tx.agreement(agreement_id)
            if row is None:
                raise NotFound(f"no agreement {agreement_id}")
            if row.ended is not None:
                raise Conflict(f"agreement {agreement_id} has already ended")
            tx.end_agreement(agreement_id, now)
            tx.append_audit([audit_row("agreement-end", {"agreement": agreement_id}, now)])
            return self._describe_agreement(tx, tx.agreement(agreement_id))

    @staticmethod
    def _describe_agreement(tx: Tx, row: Any, names: Mapping[int, str] | None = None) -> dict[str, Any]:
        """An agreement as the operator sees it; ``names``: every party's name by id, when the caller has them."""
        a = Agreement.from_row(row)
        if names is None:
            names = {pid: tx.party_by_id(pid).name for pid in (a.provider_id, a.consumer_id)}
        return {
            "id": a.id,
            "from": names.get(a.provider_id),
            "to": names.get(a.consumer_id),
            "types": None if a.types is None else sorted(a.types),
            "tlp_max": tlp_name(a.tlp_max),
            "area": None if a.area is None else list(a.area),
            "release": a.release,
            "delay": a.delay,
            "pool_k": a.pool_k,
            "epoch": a.epoch,
            "review": a.review,
            "allow": sorted(a.allow),
            "created": format_ms(row.created),
            "ended": None if row.ended is None else format_ms(row.ended),
        }

    def ping(self) -> None:
        """Reach the store (a read); StoreUnavailable when it cannot be reached."""
        with self.store.read() as tx:
            tx.get_meta("identity")

    @property
    def can_refuse_to_wait(self) -> bool:
        """Whether calls can be made under :meth:`no_wait` (SQLite: the store waits for nothing but the disk
        and its own locks; PostgreSQL's every statement waits on the network)."""
        return self.store.is_sqlite

    def no_wait(self) -> AbstractContextManager[None]:
        """A block in which this thread's calls never wait for a lock: WouldWait instead, and then the call
        has changed nothing durable and may be made again (``Store.no_wait``)."""
        return self.store.no_wait()

    # -- authentication and collections -------------------------------------------------------------------
    def authenticate(self, name: str | None, token: str) -> Party:
        """The party holding ``token`` (and, with HTTP Basic, named ``name``); AuthError otherwise."""
        row = self.store.party_by_token(_token_hash(token)) if token else None
        if row is None or row.revoked is not None or (name is not None and not hmac.compare_digest(name, row.name)):
            raise AuthError("unknown or revoked credentials")
        return Party(id=row.id, name=row.name, provider=bool(row.provider), consumer=bool(row.consumer))

    def collections(self, party: Party) -> list[Collection]:
        with self.store.read() as tx:
            return [Collection(r.id, r.uuid, r.party_id, r.kind) for r in tx.collections_of(party.id)]

    def collection(self, party: Party, coll_uuid: str) -> Collection:
        """One of the caller's own collections; any other id is simply not found."""
        coll = self._collections.get(coll_uuid)
        if coll is None:
            with self.store.read() as tx:
                row = tx.collection_by_uuid(coll_uuid)
            if row is None:
                raise NotFound("no such collection")
            coll = self._collections[coll_uuid] = Collection(row.id, row.uuid, row.party_id, row.kind)
        if coll.party_id != party.id:
            raise NotFound("no such collection")
        return coll

    # -- accept ---------------------------------------------------------------------------------------------
    def submit(self, party: Party, coll_uuid: str, objects: Sequence[Any]) -> dict[str, Any]:
        """Accept an envelope into the party's outbox; all or nothing. Returns the TAXII status (§4.3)."""
        coll = self.collection(party, coll_uuid)
        if coll.kind != "outbox":
            raise Forbidden("your inbox is read-only; post to your outbox")
        if not objects:
            raise InvalidContent("the envelope holds no objects")
        now = self.clock()
        status_id = str(uuid.uuid4())
        checks = None
        if self._checks is not None and len(objects) >= CHECKS_AFTER:
            # while another submission uses the child it holds the write lock or is about to take it, and gives
            # the child back before it commits: this one would wait that long for the lock all the same, and
            # validating in process meanwhile would take the serving process's time from that submission. So it
            # waits for the child as it would for a lock (``lock_timeout``, then it validates in process); a
            # call that may not wait (on the event loop) does not.
            wait = self.settings.lock_timeout if self.store.may_wait() else 0.0
            checks = self._checks.deferred(wait=wait)
        if checks is not None:
            # the checking process validates the envelope's objects, then its copies, while the transaction runs
            try:
                checks.check_many(objects, self._ahead(party, now), self.validator)
                return self._accept(party, objects, now, status_id, checks)
            except StoreUnavailable:
                raise  # the objects' validity is moot: the client resends (WouldWait: the app, on a thread)
            except Exception:  # done again below, where whatever it was is raised in its own words
                if checks.verified:
                    raise  # every verdict was in: the commit itself failed, and may have happened
                # an object or a copy was invalid, the child failed, or the transaction failed on an object not
                # yet known to be valid: it was all rolled back, and is done again, validating in process first
            finally:
                checks.close()
        problems = self.validator.check_all(objects)
        if problems:
            raise InvalidContent(
                f"{len(problems)} of {len(objects)} objects are not valid STIX 2.1; nothing was stored",
                tuple(problems),
            )
        return self._accept(party, objects, now, status_id, None)

    def _ahead(self, party: Party, now: int) -> Ahead | None:
        """What the checking process needs to make a provider's envelope's copies ahead of its transaction: the
        recipes its agreements that release at once would use as the exchange stands now (read without the
        write lock). The transaction uses a copy made ahead only where the recipe it finds then is equal
        (``DeferredChecks.prebuilt``); where anything changed in between, it makes the copy itself."""
        if not party.provider:
            return None
        with self.store.read() as tx:
            allows = list(
                dict.fromkeys(
                    Agreement.from_row(r).allow for r in tx.active_agreements_from(party.id) if int(r.delay) == 0
                )
            )
            if not allows:
                return None
            sender = tx.party_by_id(party.id)
            grade = self._visible_grade(tx, sender)
        terms = Redactor.terms_of(sender.name, json.loads(sender.terms))
        recipes = [self._recipe("intel", allow, terms, grade) for allow in allows[:AHEAD_RECIPES]]
        return Ahead(recipes, floor_us(now, self.settings.release_granularity), self.settings.unmarked_level)

    def _accept(
        self, party: Party, objects: Sequence[Any], now: int, status_id: str, checks: DeferredChecks | None
    ) -> dict[str, Any]:
        """``submit``'s transaction. With ``checks``, the checking process has the objects (``check_many``) and
        is given each copy released at once; if it finds one invalid, or fails, this raises before the commit
        (all is rolled back) and ``submit`` does it again validating in process."""
        new = [_stored(obj) for obj in objects]  # before the write lock: it depends on the objects alone
        facts = _Facts(objects, self.settings.unmarked_level)  # so does this
        with self.store.write() as tx:
            kinds = self._classify(tx, party, objects)
            outbox = tx.collection(party.id, "outbox")
            pks = tx.add_objects(outbox, new, now)
            fresh = [
                (pk, obj, kinds[i]) for i, (pk, obj) in enumerate(zip(pks, objects, strict=True)) if pk is not None
            ]
            new_fresh = [n for n, pk in zip(new, pks, strict=True) if pk is not None]
            self._learn_terms(tx, party, objects)
            held = self._schedule(tx, party, fresh, now, facts)
            (accepted,) = tx.append_audit(
                [
                    audit_row(
                        "accept",
                        {
                            "party": party.id,
                            "status": status_id,
                            "objects": [[n.stix_id, n.version] for n in new],
                            "stored": sum(1 for pk in pks if pk is not None),
                        },
                        now,
                    )
                ]
            )
            due_now = [h for h in held if h["due"] <= now]
            later = [h for h in held if h["due"] > now]
            tx.hold(later)
            if due_now:
                stored = {
                    pk: (_Source(pk, n.version, n.version_us), obj)
                    for (pk, obj, _), n in zip(fresh, new_fresh, strict=True)
                }
                self._release(tx, due_now, now, stored=stored, checks=checks, facts=facts)
            unversioned = tx.unversioned_added(outbox.id, (n.stix_id for n in new if not n.version))
            status = {
                "id": status_id,
                "status": "complete",
                "request_timestamp": format_us(now),
                "total_count": len(objects),
                "success_count": len(objects),
                "successes": [
                    {"id": n.stix_id, "version": n.version or format_us(unversioned[n.stix_id])} for n in new
                ],
                "failure_count": 0,
                "pending_count": 0,
            }  # empty failures/pendings lists are omitted (TAXII §2: no empty lists)
            tx.add_status(status_id, party.id, now, orjson.dumps(status), audit_seq=accepted)
            if checks is not None:
                checks.require_valid()  # after it, an error is the commit's own: not to be done again
        return status

    def _classify(self, tx: Tx, party: Party, objects: Sequence[Mapping[str, Any]]) -> list[str]:
        """'intel' or 'feedback' for each object; InvalidContent if the party may not send one of them."""
        refs_of: dict[int, list[str]] = {}
        if party.consumer:
            for i, obj in enumerate(objects):
                if obj["type"] in FEEDBACK_TYPES:
                    refs_of[i] = _feedback_refs(obj)
        known = {r.out_id for r in tx.copies_by_out(party.id, {r for refs in refs_of.values() for r in refs})}
        kinds: list[str] = []
        problems: list[Problem] = []
        now = self.clock()
        for i, obj in enumerate(objects):
            if obj["type"] == REQUEST_TYPE:
                kinds.append("rfi")
                if not party.consumer:
                    problems.append(Problem(i, obj["id"], "only a consumer sends requests for information"))
                    continue
                wrong = check_request(obj, RELEASED_TYPES)
                if not wrong and parse_us(obj["expires"]) <= now:
                    wrong = ["expires is in the past: the request would never be routed"]
                problems.extend(Problem(i, obj["id"], w) for w in wrong)
                continue
            refs = refs_of.get(i)
            hits = [r for r in refs if r in known] if refs else []
            if refs and hits and len(hits) == len(refs):
                kinds.append("feedback")
                wrong_outcome = check_outcome(obj)
                if wrong_outcome:
                    problems.append(Problem(i, obj["id"], wrong_outcome))
                continue
            if hits:
                missing = ", ".join(r for r in refs or () if r not in known)
                problems.append(Problem(i, obj["id"], f"feedback names objects that are not in your inbox: {missing}"))
            elif party.provider:
                kinds.append("intel")
                continue
            elif obj["type"] in FEEDBACK_TYPES:
                problems.append(
                    Problem(i, obj["id"], "feedback must name objects in your inbox; this names none of them")
                )
            else:
                problems.append(
                    Problem(
                        i,
                        obj["id"],
                        f"a consumer may send only feedback (sighting, opinion or note about objects in its "
                        f"inbox) and requests for information ({REQUEST_TYPE}), not a {obj['type']}",
                    )
                )
            kinds.append("refused")
        if problems:
            raise InvalidContent(
                f"{len(problems)} of {len(objects)} objects cannot be accepted from you; nothing was stored",
                tuple(problems),
            )
        return kinds

    def _learn_terms(self, tx: Tx, party: Party, objects: Sequence[Mapping[str, Any]]) -> None:
        """The names of the identities a party signs its objects with are redacted from its free text.

        The identity may come in the same envelope or may have been sent before (it is then in the outbox).
        """
        own = {o["created_by_ref"] for o in objects if isinstance(o.get("created_by_ref"), str)}
        if not own:
            return
        identities = {o["id"]: o for o in objects if o["type"] == "identity" and o["id"] in own}
        missing = own - identities.keys()
        if missing:
            outbox = tx.collection(party.id, "outbox")
            for sid, row in tx.latest_objects(outbox.id, missing).items():
                identities[sid] = orjson.loads(row.body)
        names = {o["name"] for o in identities.values() if isinstance(o.get("name"), str)}
        if not names:
            return
        row = tx.party_by_id(party.id)
        terms = set(json.loads(row.terms))
        if not names <= terms:
            tx.update_party(party.id, terms=json.dumps(sorted(terms | names)))

    def _schedule(
        self, tx: Tx, party: Party, fresh: Sequence[tuple[int, Any, str]], now: int, facts: _Facts
    ) -> list[dict[str, Any]]:
        """Decide who gets each newly stored object, and when. Returns release rows."""
        rows: list[dict[str, Any]] = []
        planned: dict[int, set[str]] = defaultdict(set)  # recipient -> orig ids
        feedback_planned: dict[tuple[int, int], set[str]] = defaultdict(set)
        intel = [(pk, o) for pk, o, kind in fresh if kind == "intel" and o["type"] in RELEASABLE_TYPES]
        if intel:
            agreements = [Agreement.from_row(r) for r in tx.active_agreements_from(party.id)]
            if agreements:
                locations = self._locations(tx, party, [o for _, o in intel])
                tied: dict[str, list[str]] = defaultdict(list)
                for _, o in intel:
                    if o["type"] == "relationship" and o.get("relationship_type") == "located-at":
                        tied[o["source_ref"]].append(o["target_ref"])
                for pk, o in intel:
                    coords = coordinates(o, locations, tied.get(o["id"], ()))
                    for consumer_id, a in decide(agreements, o["type"], facts.tlp(o), coords).items():
                        rows.append(
                            {
                                "due": self._due(a, now),
                                "recipient_id": consumer_id,
                                "sender_id": party.id,
                                "source_pk": pk,
                                "kind": "intel",
                                "pool_k": a.pool_k if a.release == "pool" else 0,
                                "epoch": a.epoch if a.release == "pool" else 0,
                                "review": a.review,
                                "agreement_id": a.id,
                            }
                        )
                        planned[consumer_id].add(o["id"])
        if intel:
            rows.extend(self._answers(tx, party, intel, planned, now, facts))
        feedback = [(pk, o) for pk, o, kind in fresh if kind == "feedback"]
        if feedback:
            copies = tx.copies_by_out(party.id, {r for _, o in feedback for r in _feedback_refs(o)})
            senders_of: dict[str, set[int]] = defaultdict(set)
            origin_of: dict[str, tuple[int, str]] = {}
            for c in copies:
                senders_of[c.out_id].add(c.sender_id)
                origin_of[c.out_id] = (c.sender_id, c.orig_id)
            outcomes: dict[tuple[int, str], str] = {}
            for pk, o in feedback:
                outcome = outcome_of(o)
                for r in _feedback_refs(o):
                    if outcome is not None and r in origin_of and not origin_of[r][1].startswith(REQUEST_TYPE):
                        outcomes[origin_of[r]] = outcome  # the last one in the envelope wins
                providers = set().union(*(senders_of[r] for r in _feedback_refs(o)))
                for provider_id in sorted(providers):
                    rows.append(self._backward(provider_id, party.id, pk, "feedback", now))
                    feedback_planned[(provider_id, party.id)].add(o["id"])
            tx.record_outcomes(
                [
                    {"provider_id": p, "consumer_id": party.id, "orig_id": orig, "outcome": outcome, "at": now}
                    for (p, orig), outcome in sorted(outcomes.items())
                ]
            )
        for pk, o in ((pk, o) for pk, o, kind in fresh if kind == "rfi"):
            covering = self._covering(tx, party, o)
            for provider_id in covering:
                rows.append(self._backward(provider_id, party.id, pk, "rfi", now))
                feedback_planned[(provider_id, party.id)].add(o["id"])
            if not covering:
                self._no_route(tx, party, o, now)
        for recipient, ids in planned.items():
            tx.plan_copies(recipient, party.id, ids)
        for (recipient, sender), ids in feedback_planned.items():
            tx.plan_copies(recipient, sender, ids)
        return rows

    def _backward(self, recipient: int, sender: int, source_pk: int, kind: str, now: int) -> dict[str, Any]:
        """A release row for what flows back (feedback) or across to providers (requests): in a batch."""
        return {
            "due": self._batch_due(now),
            "recipient_id": recipient,
            "sender_id": sender,
            "source_pk": source_pk,
            "kind": kind,
            "pool_k": 0,
            "epoch": 0,
            "review": False,
            "agreement_id": None,
        }

    def _batch_due(self, now: int) -> int:
        """The next feedback epoch after ``feedback_delay``: everything sent back in one epoch goes together."""
        return _next_epoch(now + self.settings.feedback_delay * 1_000_000, self.settings.feedback_epoch)

    @staticmethod
    def _covering(tx: Tx, party: Party, request: Mapping[str, Any]) -> list[int]:
        """The providers whose active agreements with the requester cover a request (types and area)."""
        wanted, area = request_types(request), request_area(request)
        found: set[int] = set()
        for row in tx.active_agreements_to(party.id):
            a = Agreement.from_row(row)
            if wanted is not None:
                scope = a.types if a.types is not None else RELEASED_TYPES | a.extra_types
                if not wanted & scope:
                    continue
            if area is not None and a.area is not None and not boxes_meet(area, a.area):
                continue
            found.add(a.provider_id)
        return sorted(found)

    def _no_route(self, tx: Tx, party: Party, request: Mapping[str, Any], now: int) -> None:
        """Tell the requester, in its inbox, that its request reached no one: nothing about who exists."""
        stamp = format_ms(floor_us(now, self.settings.release_granularity))
        note = {
            "type": "note",
            "spec_version": "2.1",
            "id": keyed_id(self.keys.id_key, "note", "no-route", str(party.id), "", f"{request['id']}|{stamp}"),
            "created_by_ref": self.identity["id"],
            "created": stamp,
            "modified": stamp,
            "abstract": "no route",
            "content": "No agreement of yours covers this request for information, so the exchange has not "
            "routed it. It will not be answered; ask the operator about your agreements.",
            "object_refs": [request["id"]],
            "object_marking_refs": [TLP2_IDS[object_tlp(request, self.settings.unmarked_level)]],
        }
        event = {"to": party.id, "objects": [[note["id"], note["modified"]]], "no_route": request["id"]}
        (delivered,) = tx.append_audit([audit_row("deliver", event, now)])
        tx.add_objects(tx.collection(party.id, "inbox"), [_stored(note)], now, audit_seq=delivered)

    def _answers(
        self,
        tx: Tx,
        party: Party,
        intel: Sequence[tuple[int, Any]],
        planned: Mapping[int, set[str]],
        now: int,
        facts: _Facts,
    ) -> list[dict[str, Any]]:
        """Objects that answer a request for information (they reference the provider's copy of it) go to the
        requester, with the objects of the same envelope that they reference, under the agreement between the
        two (its TLP ceiling and timing; not its type or area scope: the requester asked)."""
        refs = {r for _, o in intel for r in facts.refs(o) if r.startswith(REQUEST_TYPE + "--")}
        if not refs:
            return []  # nothing refers to a request (the provider's copies of requests have the request's type)
        requests = {
            c.out_id: c for c in tx.copies_by_out(party.id, refs) if str(c.orig_id).startswith(REQUEST_TYPE + "--")
        }
        if not requests:
            return []
        by_id = {o["id"]: (pk, o) for pk, o in intel}
        rows: list[dict[str, Any]] = []
        agreements = [Agreement.from_row(r) for r in tx.active_agreements_from(party.id)]
        sent: set[tuple[int, int]] = set()
        for pk, o in intel:
            for ref in facts.refs(o):
                c = requests.get(ref)
                if c is None or not self._request_open(tx, c.sender_id, c.orig_id, now):
                    continue
                answer = [(pk, o)] + [by_id[r] for r in facts.refs(o) if r in by_id and r != o["id"]]
                for apk, ao in answer:
                    chosen = _answering(agreements, c.sender_id, facts.tlp(ao))
                    if chosen is None or ao["id"] in planned.get(c.sender_id, ()) or (c.sender_id, apk) in sent:
                        continue
                    sent.add((c.sender_id, apk))
                    rows.append(
                        {
                            "due": self._due(chosen, now),
                            "recipient_id": c.sender_id,
                            "sender_id": party.id,
                            "source_pk": apk,
                            "kind": "answer",
                            "pool_k": chosen.pool_k if chosen.release == "pool" else 0,
                            "epoch": chosen.epoch if chosen.release == "pool" else 0,
                            "review": chosen.review,
                            "agreement_id": chosen.id,
                        }
                    )
        by_recipient: dict[int, set[str]] = defaultdict(set)
        for r in rows:
            by_recipient[r["recipient_id"]].add(next(o["id"] for pk, o in intel if pk == r["source_pk"]))
        for recipient, ids in by_recipient.items():
            tx.plan_copies(recipient, party.id, ids)
        return rows

    @staticmethod
    def _request_open(tx: Tx, requester: int, request_id: str, now: int) -> bool:
        """Whether a requester's request is still open (not expired, not revoked)."""
        outbox = tx.collection(requester, "outbox")
        row = tx.latest_objects(outbox.id, [request_id]).get(request_id)
        if row is None:
            return False
        req = orjson.loads(row.body)
        return req.get("revoked") is not True and parse_us(req["expires"]) > now

    def _due(self, a: Agreement, now: int) -> int:
        """When an item released under ``a`` falls due."""
        if a.release == "fixed":
            return now + a.delay * 1_000_000
        if a.release == "exponential":
            return now + math.ceil(self.rng.expovariate(1.0 / a.delay) * 1_000_000)
        if a.release == "pool":
            return _next_epoch(now, a.epoch)
        return now

    @staticmethod
    def _locations(tx: Tx, party: Party, objs: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """Locations the objects may be tied to: from the same envelope, else from the provider's outbox."""
        found: dict[str, Mapping[str, Any]] = {o["id"]: o for o in objs if o["type"] == "location"}
        wanted: set[str] = set()
        for o in objs:
            candidates = list(o.get("where_sighted_refs") or ())
            if o["type"] == "relationship" and o.get("relationship_type") == "located-at":
                candidates.append(o["target_ref"])
            wanted.update(r for r in candidates if isinstance(r, str) and r.startswith("location--"))
        missing = wanted - found.keys()
        if missing:
            outbox = tx.collection(party.id, "outbox")
            for sid, row in tx.latest_objects(outbox.id, missing).items():
                found[sid] = orjson.loads(row.body)
        return found

    # -- release --------------------------------------------------------------------------------------------
    def release_due(self, now: int | None = None, limit: int = 1000) -> int:
        """Release held items whose time has come; returns how many were processed."""
        now = self.clock() if now is None else now
        with self.store.read() as tx:
            first = tx.next_due()
        if first is None or first > now:
            return 0  # nothing due: do not take the write lock
        with self.store.write() as tx:
            due = tx.due(now, limit)
            if not due:
                return 0
            if len(due) == limit:
                # never cut a batch: everything due at the last instant goes in this run too (a feedback
                # batch split across runs would show, by the split, which items were sent first)
                due += tx.due_at(due[-1].due, after_pk=due[-1].pk)
            due = self._pool_gate(tx, due, now)
            items = [
                {
                    "due": r.due,
                    "recipient_id": r.recipient_id,
                    "sender_id": r.sender_id,
                    "source_pk": r.source_pk,
                    "kind": r.kind,
                    "review": bool(r.review),
                    "agreement_id": r.agreement_id,
                }
                for r in due
            ]
            self._release(tx, items, now, recheck=True)
            tx.drop_releases(r.pk for r in due)
        return len(due)

    @staticmethod
    def _pool_gate(tx: Tx, due: Sequence[Any], now: int) -> list[Any]:
        """Pooled items go only when items of at least k distinct providers go to their reader together; the
        others are put off to their next epoch. Returns the items to release now.

        A reader's pool is decided on all its due pooled items, not on the batch in hand (a batch cut by the
        limit could otherwise release one provider's items alone and leave the others short), and the items
        that go satisfy their k among themselves, all in this one transaction."""
        go = [r for r in due if r.pool_k <= 0]
        later: dict[int, list[int]] = defaultdict(list)
        for recipient in dict.fromkeys(r.recipient_id for r in due if r.pool_k > 0):
            waiting = tx.pooled_due(recipient, now)
            pool = waiting
            while True:  # drop the items whose k the rest cannot meet, until what is left meets every k
                senders = len({r.sender_id for r in pool})
                keep = [r for r in pool if r.pool_k <= senders]
                if len(keep) == len(pool):
                    break
                pool = keep
            taken = {r.pk for r in pool}
            go.extend(pool)
            for r in waiting:
                if r.pk not in taken:
                    later[_next_epoch(now, r.epoch)].append(r.pk)
        for when, pks in later.items():
            tx.postpone(pks, when)
        return go

    def _release(
        self,
        tx: Tx,
        items: Sequence[Mapping[str, Any]],
        now: int,
        recheck: bool = False,
        stored: Mapping[int, tuple[_Source, dict[str, Any]]] | None = None,
        checks: DeferredChecks | None = None,
        facts: _Facts | None = None,
    ) -> None:
        """Release items now. With ``recheck`` (held items), each intel item is decided again against the
        agreements active now, and goes under the sanitizing options of the agreement that decides it now.
        ``stored``: sources this transaction has just stored, by pk, with their parsed objects (a release in
        the submission that stored them need not read them back), and ``facts`` what was worked out of them
        before the transaction. ``checks``: what validates the copies (the exchange's validator unless
        given)."""
        stored = stored or {}
        facts = facts if facts is not None else _Facts((), self.settings.unmarked_level)
        sources: dict[int, Any] = {pk: stored[pk][0] for pk in {i["source_pk"] for i in items} if pk in stored}
        parsed = {pk: stored[pk][1] for pk in sources}
        missing = [i["source_pk"] for i in items if i["source_pk"] not in sources]
        if missing:
            more = tx.objects_by_pk(missing)
            sources.update(more)
            parsed.update((pk, orjson.loads(row.body)) for pk, row in more.items())  # once, however many readers
        options: dict[int, frozenset[str]] = {}  # agreement id -> its sanitizing options
        active: dict[tuple[int, int], list[Agreement]] = {}  # (sender, recipient) -> agreements active now
        groups: dict[tuple[int, int, str, bool, frozenset[str]], list[Any]] = defaultdict(list)
        for item in items:
            src = sources.get(item["source_pk"])
            if src is None:
                continue
            recipient, sender, kind = item["recipient_id"], item["sender_id"], item["kind"]
            allow: frozenset[str] = frozenset()
            if kind in ("intel", "answer") and recheck:
                pair = (sender, recipient)
                if pair not in active:
                    rows = tx.active_agreements_from(sender)
                    active[pair] = [Agreement.from_row(r) for r in rows if r.consumer_id == recipient]
                o = parsed[src.pk]
                if kind == "answer":
                    answering = _answering(active[pair], recipient, facts.tlp(o))
                    if answering is None:
                        continue  # the agreement ended while the item was held (fail closed)
                    allow = answering.allow
                else:
                    chosen = decide(active[pair], o["type"], facts.tlp(o), coordinates(o, {}))
                    if recipient not in chosen:
                        continue  # the agreement ended while the item was held (fail closed)
                    allow = chosen[recipient].allow
            elif kind in ("intel", "answer") and item.get("agreement_id") is not None:
                aid = int(item["agreement_id"])
                if aid not in options:
                    row = tx.agreement(aid)
                    options[aid] = Agreement.from_row(row).allow if row is not None else frozenset()
                allow = options[aid]
            groups[(recipient, sender, kind, bool(item.get("review")), allow)].append(src)
        redactors: dict[int, Redactor] = {}  # one per sender for the whole run: its memo serves every reader
        senders: dict[int, Any] = {}
        # the grade consumers may see of each sender (only intel carries it), decided once per sender and run
        grades: dict[int, str | None] = {}
        # copies made once for all readers of an object (Sanitizer.sanitize); a run with one group has one
        # reader, for whom the shared copy would be made and then copied again for nothing
        shared: dict[Any, Any] | None = {} if len(groups) > 1 else None
        delivered: dict[int, list[NewObject]] = defaultdict(list)
        for (recipient, sender, kind, review, allow), rows in groups.items():
            objs = [parsed[r.pk] for r in rows]
            if sender not in redactors:
                sender_row = senders[sender] = tx.party_by_id(sender)
                redactors[sender] = Redactor(Redactor.terms_of(sender_row.name, json.loads(sender_row.terms)))
            grade = None
            if kind in ("intel", "answer"):
                if sender not in grades:
                    grades[sender] = self._visible_grade(tx, senders[sender])
                grade = grades[sender]
            delivered[recipient] += self._release_group(
                tx,
                recipient,
                sender,
                kind,
                rows,
                objs,
                now,
                review,
                redactors[sender],
                allow,
                grade,
                shared=shared,
                checks=checks,
                facts=facts,
            )
        for recipient, new in delivered.items():
            # one insert and one delivery event per reader, in its id order: a group per sender, inserted or
            # logged one after the other, would show (by where the id order breaks, or by which ids share the
            # event a receipt proves) which items of a batch came from one sender
            if not new:
                continue
            new.sort(key=lambda n: n.stix_id)
            pairs = list(dict.fromkeys((n.stix_id, n.version) for n in new))
            event = {"to": recipient, "objects": [list(p) for p in pairs]}
            # the event first, so each delivered row carries its seq: the receipt its reader may ask for
            (seq,) = tx.append_audit([audit_row("deliver", event, now)])
            tx.add_objects(tx.collection(recipient, "inbox"), new, now, returning=False, audit_seq=seq)

    def _release_group(
        self,
        tx: Tx,
        recipient: int,
        sender: int,
        kind: str,
        rows: Sequence[Any],
        objs: Sequence[dict[str, Any]],
        now: int,
        review: bool,
        redactor: Redactor,
        allow: frozenset[str] = frozenset(),
        grade: str | None = None,
        *,
        shared: dict[Any, Any] | None = None,
        checks: DeferredChecks | None = None,
        facts: _Facts,
    ) -> list[NewObject]:
        """Release one group: one reader, one sender, one kind (intel, answer, feedback, rfi), one set of
        options. ``grade``: the sender's source reliability, if consumers may see it. Returns the reader's
        copies; the caller stores them, with those of the other groups, in the reader's inbox."""
        feedback = kind == "feedback"
        recipe = self._recipe(kind, allow, redactor.terms, grade)
        sanitizer = recipe.sanitizer(checks if checks is not None else self.validator, redactor)
        profiles = sanitizer.profiles
        prebuilt = checks.prebuilt(recipe) if checks is not None else None
        key = self.keys.id_key
        id_kind = "intel" if kind == "answer" else kind  # an answer keeps the id the object has as intel

        def keyed(obj_type: str, orig: str) -> str:
            return keyed_id(key, obj_type, id_kind, str(recipient), str(sender), orig)

        memo = shared if shared is not None else {}

        def refs_of(o: Mapping[str, Any]) -> tuple[str, ...]:  # once per object and run, whoever reads it
            found = memo.get(("refs", id(o)))
            if found is None:
                found = memo[("refs", id(o))] = facts.refs(o)
            return found

        # what each reference may become for this recipient
        refs = {r for o in objs for r in refs_of(o)}
        batch: dict[str, str] = {}
        if feedback:
            mapping = {c.out_id: c.orig_id for c in tx.copies_by_out(sender, refs) if c.sender_id == recipient}

            def resolve(ref: str) -> str | None:
                return mapping.get(ref)
        else:
            known = tx.copies(recipient, sender, refs | {o["id"] for o in objs})
            # the sender's copies of the reader's own requests: an answer names the reader's original
            asking = [r for r in refs if r.startswith(REQUEST_TYPE + "--")]  # usually none: no query then
            asked = {
                c.out_id: c.orig_id
                for c in (tx.copies_by_out(sender, asking) if asking else ())
                if c.sender_id == recipient
                and str(c.orig_id).startswith(REQUEST_TYPE + "--")
                and self._request_open(tx, recipient, str(c.orig_id), now)
            }

            def resolve(ref: str) -> str | None:
                if ref in batch:
                    return batch[ref]
                if ref in asked:
                    return str(asked[ref])
                c = known.get(ref)
                if c is None:
                    return None
                if c.out_id is not None:
                    return str(c.out_id)
                obj_type = ref.partition("--")[0]
                profile = profiles.get(obj_type)
                if profile is None or not profile.released or profile.category == "sco":
                    return None  # an SCO's id is known only once it is released
                return keyed(obj_type, ref)

        ids = {o["id"] for o in objs}
        copies = tx.copies(recipient, sender, ids) if feedback else {i: known[i] for i in ids if i in known}
        stamp = floor_us(now, self.settings.release_granularity)
        # SCOs first (their ids come from their content), those without references first of all
        order = sorted(
            range(len(objs)),
            key=lambda i: (_category(objs[i]["type"]) != "sco", bool(refs_of(objs[i]))),
        )
        new: list[NewObject] = []
        records: list[dict[str, Any]] = []
        withheld: list[list[str]] = []
        released: list[list[str]] = []
        held: list[dict[str, Any]] = []
        newest: dict[str, int] = {}
        for obj, src in zip(objs, rows, strict=True):
            newest[obj["id"]] = max(newest.get(obj["id"], src.version_us), src.version_us)
        for i in order:
            obj, src = objs[i], rows[i]
            if src.version_us < newest[obj["id"]]:
                continue  # several versions due at once: the reader gets the newest only
            prev = copies.get(obj["id"])
            if prev is not None and prev.origin_version_us is not None and prev.origin_version_us >= src.version_us:
                continue  # an older or equal version than one already released
            created = prev.created_out if prev is not None and prev.created_out is not None else stamp
            modified = stamp
            if prev is not None and prev.modified_out is not None and modified <= prev.modified_out:
                modified = prev.modified_out + 1000
            created = min(created, modified)
            if kind == "rfi" and parse_us(str(obj.get("expires"))) <= now:
                withheld.append([obj["id"], "the request expired before it was routed"])
                continue
            redactor.count = 0
            tlp = memo.get(("tlp", id(obj)))
            if tlp is None:
                tlp = memo[("tlp", id(obj))] = facts.tlp(obj)
            out, reason = sanitizer.sanitize(
                obj,
                keyed=keyed(obj["type"], obj["id"]),
                created_us=created,
                modified_us=modified,
                tlp=tlp,
                resolve=resolve,
                shared=shared,
                prebuilt=prebuilt,
            )
            if out is None:
                withheld.append([obj["id"], reason])
                continue
            if review and redactor.count:
                held.append(
                    {
                        "at": now,
                        "recipient_id": recipient,
                        "sender_id": sender,
                        "source_pk": src.pk,
                        "kind": kind,
                        "preview": orjson.dumps(out),
                    }
                )
                continue
            if not feedback:
                batch[obj["id"]] = out["id"]
            new.append(_stored_copy(out, src.pk, created, modified))
            records.append(
                {
                    "recipient_id": recipient,
                    "sender_id": sender,
                    "orig_id": obj["id"],
                    "out_id": out["id"],
                    "out_hash": new[-1].id_hash,
                    "created_out": created if "created" in out else None,
                    "modified_out": modified if "modified" in out else None,
                    "origin_version_us": src.version_us,
                }
            )
            released.append([obj["id"], src.version, out["id"], new[-1].version])
        tx.record_copies(records)
        tx.add_reviews(held)
        event = {
            "from": sender,
            "to": recipient,
            "kind": kind,
            "released": released,
            "withheld": withheld,
            "held_for_review": [h["source_pk"] for h in held],
        }
        tx.append_audit([audit_row("release", event, now)])
        # the reader's receipts ("deliver": its own ids only, nothing of the sender) are logged by the caller
        return new

    def _recipe(self, kind: str, allow: Iterable[str], terms: Iterable[str], grade: str | None) -> Recipe:
        """What a copy of a ``kind`` item from a sender with these ``terms`` and visible ``grade`` is made by,
        under an agreement allowing ``allow``."""
        return Recipe.of(
            broker_identity=self.identity["id"],
            time_granularity=self.settings.time_granularity,
            kind=kind,
            allow=allow,
            terms=terms,
            grade=grade,
            labels=self.settings.labels,
        )

    # -- grades ---------------------------------------------------------------------------------------------
    def _visible_grade(self, tx: Tx, sender: Any) -> str | None:
        """The source reliability consumers may see of a provider, under the exchange's grade policy:
        ``always``, ``never``, or ``shared`` (only while at least ``grade_crowd`` active providers hold it)."""
        policy = self.settings.grade_visibility
        if policy == "never" or not sender.provider or sender.revoked is not None:
            return None
        crowd = self.settings.grade_crowd
        if policy == "always" or tx.providers_holding(str(sender.grade), crowd) >= crowd:
            return str(sender.grade)
        return None

    def grades(self) -> list[dict[str, Any]]:
        """Every provider's grade, its track record from outcomes, and the grade the record proposes."""
        with self.store.read() as tx:
            counts = tx.outcome_counts()
            out = []
            for p in tx.parties():
                if not p.provider:
                    continue
                record = TrackRecord(counts.get(int(p.id), {}))
                low, high = record.interval()
                out.append(
                    {
                        "party": p.name,
                        "grade": p.grade,
                        "proposed": record.proposed,
                        "outcomes": dict(sorted(record.counts.items())),
                        "hits": record.hits,
                        "misses": record.misses,
                        "hit_rate": round(record.estimate, 3),
                        "interval_80": [round(low, 3), round(high, 3)],
                        "revoked": p.revoked is not None,
                    }
                )
            return out

    def set_grade(self, name: str, grade: str | None = None) -> dict[str, Any]:
        """Give a provider a source reliability grade (A–F); without ``grade``, adopt the proposed one."""
        if grade is not None and grade.upper() not in GRADES:
            raise BadRequest(f"a grade is one of {', '.join(GRADES)}, not {grade!r}")
        now = self.clock()
        with self.store.write() as tx:
            row = self._party_row(tx, name)
            if not row.provider:
                raise BadRequest(f"{name!r} is not a provider: only providers are graded")
            if grade is None:
                grade = TrackRecord(tx.outcome_counts().get(int(row.id), {})).proposed
            grade = grade.upper()
            tx.update_party(row.id, grade=grade)
            tx.append_audit([audit_row("grade", {"party": row.id, "from": row.grade, "to": grade}, now)])
        return next(g for g in self.grades() if g["party"] == name)

    # -- review ---------------------------------------------------------------------------------------------
    def list_reviews(self) -> list[dict[str, Any]]:
        """Objects held for the operator: who to whom, and the redacted copy as it would be released."""
        with self.store.read() as tx:
            names = {p.id: p.name for p in tx.parties()}
            return [
                {
                    "id": r.id,
                    "held": format_ms(r.at),
                    "from": names.get(r.sender_id),
                    "to": names.get(r.recipient_id),
                    "kind": r.kind,
                    "preview": orjson.loads(r.preview),
                }
                for r in tx.reviews()
            ]

    def decide_review(self, review_id: int, release: bool) -> dict[str, Any]:
        """Release the held object (redacted, as previewed, but stamped now) or reject it for good."""
        now = self.clock()
        with self.store.write() as tx:
            row = tx.review(review_id)
            if row is None:
                raise NotFound(f"no held object {review_id}")
            tx.drop_review(review_id)
            if release:
                item = {
                    "recipient_id": row.recipient_id,
                    "sender_id": row.sender_id,
                    "source_pk": row.source_pk,
                    "kind": row.kind,
                    "review": False,
                }
                self._release(tx, [item], now, recheck=True)
            event = {"review": review_id, "released": release}
            tx.append_audit([audit_row("review", event, now)])
        return {"id": review_id, "released": release}

    # -- withdrawal -----------------------------------------------------------------------------------------
    def delete_object(self, party: Party, coll_uuid: str, stix_id: str, q: PageQuery) -> int:
        """§5.7: a sender withdraws (versions of) an object from its outbox.

        When no version remains, every reader's copy is revoked as a new version of that copy (an SCO copy,
        which cannot be revoked, stays), and anything still held for release is not released.
        """
        coll = self.collection(party, coll_uuid)
        if coll.kind != "outbox":
            raise Forbidden("your inbox is read-only; only what you sent can be withdrawn")
        now = self.clock()
        with self.store.write() as tx:
            deleted = tx.delete_versions(coll.id, stix_id, q)
            if not deleted:
                raise NotFound("no such object")
            revoked: list[list[Any]] = []
            if not tx.latest_objects(coll.id, [stix_id]):
                stamp = floor_us(now, self.settings.release_granularity)
                records = []
                for c in tx.copies_of(party.id, stix_id):
                    if c.out_id is None or c.modified_out is None:
                        continue  # still held (and now never released), or an SCO
                    inbox = tx.collection(c.recipient_id, "inbox")
                    current = tx.latest_objects(inbox.id, [c.out_id]).get(c.out_id)
                    if current is None:
                        continue
                    body = orjson.loads(current.body)
                    if body.get("revoked") is True:
                        continue
                    modified = max(stamp, c.modified_out + 1000)
                    body["revoked"] = True
                    body["modified"] = format_ms(modified)
                    tx.add_objects(
                        inbox,
                        [
                            _stored(body, origin=current.origin),
                        ],
                        now,
                    )
                    records.append(
                        {
                            "recipient_id": c.recipient_id,
                            "sender_id": party.id,
                            "orig_id": stix_id,
                            "out_id": c.out_id,
                            "created_out": c.created_out,
                            "modified_out": modified,
                            "origin_version_us": c.origin_version_us,
                        }
                    )
                    revoked.append([c.recipient_id, c.out_id, body["modified"]])
                tx.record_copies(records)
            event = {"party": party.id, "object": stix_id, "versions": deleted, "revoked": revoked}
            tx.append_audit([audit_row("withdraw", event, now)])
        return deleted

    # -- reading --------------------------------------------------------------------------------------------
    def page(self, party: Party, coll_uuid: str, q: PageQuery, token: str | None, stix_id: str | None = None) -> Page:
        """One page of a collection the party owns (§5.4 objects, §5.6 object, §5.3 manifest)."""
        coll = self.collection(party, coll_uuid)
        if token:
            q = PageQuery(
                after=max(q.after, self._open_cursor(party, coll, token)),
                ids=q.ids,
                types=q.types,
                versions=q.versions,
                spec_versions=q.spec_versions,
                limit=q.limit,
            )
        with self.store.read() as tx:
            rows = tx.page(coll.id, q, stix_id)
            exists = bool(rows) or stix_id is None or tx.has_object(coll.id, stix_id)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        token_out = self._seal_cursor(party, coll, rows[-1].date_added) if more else None
        return Page(rows=rows, more=more, next=token_out, after=q.after, exists=exists)

    def status(self, party: Party, status_id: str) -> bytes:
        with self.store.read() as tx:
            body = tx.status(status_id, party.id)
        if body is None:
            raise NotFound("no such status")
        return body

    def _seal_cursor(self, party: Party, coll: Collection, position: int) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, struct.pack(">qq", coll.id, position), _cursor_aad(party))
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def _open_cursor(self, party: Party, coll: Collection, token: str) -> int:
        """The position a token stands for; -1 for a token of another of the party's own collections.

        A token that is not the exchange's, or is another party's, is a 400. A token of another of the
        party's collections is ignored (OpenCTI keeps re-sending an old token beside a new added_after).
        """
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], _cursor_aad(party))
            coll_id, position = struct.unpack(">qq", plain)
        except (InvalidTag, ValueError, binascii.Error, struct.error) as exc:
            raise BadRequest("the 'next' token is not valid for this collection") from exc
        return int(position) if coll_id == coll.id else -1

    # -- the audit log --------------------------------------------------------------------------------------
    @property
    def audit_origin(self) -> str:
        """The log's origin line and signing key name: one per broker."""
        return "cutout-" + str(self.identity["id"]).partition("--")[2]

    def audit_key(self) -> str:
        """The verifier key a party needs to check checkpoints and receipts offline."""
        from cutout.audit.checkpoint import public_key_of, verifier_key

        return verifier_key(self.audit_origin, public_key_of(self.keys.signing_key))

    def checkpoint(self) -> dict[str, Any]:
        """Sign the log's current root (a C2SP tlog-checkpoint); reuse the latest if nothing was added since."""
        from cutout.audit.checkpoint import sign_checkpoint

        now = self.clock()
        with self.store.write() as tx:
            tree = tx.audit_range()
            latest = tx.latest_checkpoint()
            if latest is not None and latest.size == tree.size:
                return {"size": latest.size, "note": latest.note}
            note = sign_checkpoint(self.audit_origin, tree.size, tree.root(), self.keys.signing_key, self.audit_origin)
            tx.add_checkpoint(tree.size, tree.root(), note, now)
        return {"size": tree.size, "note": note}

    def checkpoint_if_due(self) -> bool:
        """Make a checkpoint when ``audit_checkpoint_interval`` has passed since the last and the log grew."""
        with self.store.read() as tx:
            latest = tx.latest_checkpoint()
            size = tx.audit_range().size
        interval = self.settings.audit_checkpoint_interval * 1_000_000
        if interval <= 0 or (latest is not None and (latest.size == size or self.clock() - latest.at < interval)):
            return False
        self.checkpoint()
        return True

    def verify_audit(self) -> Any:
        """Recompute every commitment and the whole tree; check every checkpoint and each against the next."""
        from cutout.audit.verify import LogEntry, verify_log

        with self.store.read() as tx:
            # the checkpoints first: each signs only entries committed before it, and the log only grows, so the
            # entries read next hold all they sign. PostgreSQL's read gives each statement a snapshot of its own
            # (read committed): read the other way round, a checkpoint signed in between would cover entries
            # the first read did not see, and the log would be reported short
            checkpoints = [_StoredCheckpoint(c.size, bytes(c.root), c.note) for c in tx.checkpoints()]
            # read a chunk at a time as the verifier goes (``Tx.audit_log``): it keeps each entry's leaf hash
            # only, and a whole log's events would grow with the exchange
            entries = (
                LogEntry(
                    r.seq,
                    None if r.salt is None else bytes(r.salt),
                    None if r.event is None else bytes(r.event),
                    bytes(r.commitment),
                )
                for r in tx.audit_log()
            )
            # the stored subtrees last (a generator: read once every entry has been): each is written with the
            # entries that complete it, so all those within the log as read are there
            return verify_log(entries, checkpoints, self.audit_key(), origin=self.audit_origin, nodes=tx.audit_nodes())

    def prove(self, seq: int | None = None, status_id: str | None = None) -> str:
        """A receipt for one audit event (by seq, or the acceptance of a status): verifiable offline."""
        from cutout.audit.receipt import make_receipt

        if seq is None:
            if status_id is None:
                raise BadRequest("name an audit entry (its seq) or a status id")
            seq = self._seq_of_status(status_id)
        with self.store.read() as tx:
            row = tx.audit_row(seq)
            latest = tx.latest_checkpoint()
        if row is None:
            raise NotFound(f"no audit entry {seq}")
        if row.salt is None or row.event is None:
            raise NotFound(f"audit entry {seq} is past retention: its salt was destroyed, it can no longer be proven")
        if latest is None or latest.size < seq:
            self.checkpoint()
            with self.store.read() as tx:
                latest = tx.latest_checkpoint()
        assert latest is not None
        with self.store.read() as tx:
            proof = tx.audit_proof(seq - 1, latest.size)
        return make_receipt(
            event=bytes(row.event),
            salt=bytes(row.salt),
            leaf_index=seq - 1,
            inclusion_proof=proof,
            checkpoint=latest.note,
        )

    def _seq_of_status(self, status_id: str) -> int:
        """The acceptance's entry, kept on its status (a search of the log for it read the whole log)."""
        with self.store.read() as tx:
            seq = tx.status_audit_seq(status_id)
        if seq is None:
            raise NotFound("no acceptance with that status id")
        return seq

    def receipt_for(self, party: Party, ref: str) -> str:
        """A party's own receipt: for the acceptance of one of its statuses, or the delivery of an object in
        its inbox (the latest version delivered). Anything else is simply not found."""
        with self.store.read() as tx:
            seq = tx.audit_seq_of(party.id, ref)
        if seq is None:
            raise NotFound("no receipt for that id")
        return self.prove(seq)

    def forget_old(self) -> int:
        """Retention: destroy salts and events older than ``audit_retention_days`` (0 keeps them for ever)."""
        days = self.settings.audit_retention_days
        if days <= 0:
            return 0
        with self.store.write() as tx:
            return tx.forget_audit_before(self.clock() - days * 86_400 * 1_000_000)

    # -- operator views -------------------------------------------------------------------------------------
    def audit_rows(self) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [
                {
                    "seq": r.seq,
                    "kind": r.kind,
                    "commitment": bytes(r.commitment).hex(),
                    "event": orjson.loads(r.event),
                }
                for r in tx.audit_rows()
            ]


@dataclass(frozen=True)
class _StoredCheckpoint:
    size: int
    root: bytes
    text: str


def _next_epoch(now: int, epoch_s: int) -> int:
    step = epoch_s * 1_000_000
    return (now // step + 1) * step


def _answering(agreements: Iterable[Agreement], requester: int, tlp: int) -> Agreement | None:
    """The agreement an answer to ``requester`` goes under: active, towards it, up to its TLP ceiling; the one
    that releases soonest."""
    fits = [a for a in agreements if a.consumer_id == requester and tlp <= a.tlp_max]
    return min(fits, key=lambda a: (a.expected_delay, a.id), default=None)


def _releasing_option(obj_type: str) -> str:
    """The sanitizing option that releases a type the strict profile does not."""
    return next(name for name, o in OPTIONS.items() if obj_type in o.releases)


def _cursor_aad(party: Party) -> bytes:
    return f"cutout-next\x1f{party.id}".encode()


def _category(obj_type: str) -> str:
    profile = PROFILES.get(obj_type)
    return profile.category if profile is not None else "sdo"


def _feedback_refs(obj: Mapping[str, Any]) -> list[str]:
    if obj["type"] == "sighting":
        ref = obj.get("sighting_of_ref")
        return [ref] if isinstance(ref, str) else []
    return [r for r in obj.get("object_refs") or () if isinstance(r, str)]


def _all_refs(obj: Mapping[str, Any]) -> list[str]:
    """The ids an object's top-level ``*_ref`` and ``*_refs`` properties hold."""
    found: list[str] = []
    for key, value in obj.items():
        kind = _REF_KEYS.get(key)
        if kind is None:
            kind = 1 if key.endswith("_ref") else 2 if key.endswith("_refs") else 0
            if len(_REF_KEYS) < 4096:  # property names seen; a sender cannot grow it without bound
                _REF_KEYS[key] = kind
        if kind == 1:
            if isinstance(value, str):
                found.append(value)
        elif kind == 2 and isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    return found


#: property name -> 1 for ``*_ref``, 2 for ``*_refs``, 0 for others (``_all_refs``)
_REF_KEYS: dict[str, int] = {}
