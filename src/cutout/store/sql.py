"""The store: SQLAlchemy Core over SQLite (WAL, one writer, ``BEGIN IMMEDIATE``) or PostgreSQL.

All SQL lives here. The service opens a transaction (``store.write()`` or ``store.read()``) and calls the
``Tx`` methods; a write transaction is committed before anything is acknowledged to a client.

Several nodes may share one PostgreSQL. Write transactions take one transaction-scoped advisory lock first,
PostgreSQL's counterpart of SQLite's ``BEGIN IMMEDIATE``: one writer at a time, readers in parallel. Every
write appends to the audit log, whose gap-free sequence and Merkle range serialise writers anyway; taking the
lock first instead of midway means no two writers ever hold locks the other wants (no deadlock between a
submission and a release writing to the same inboxes), a release run or pool decision is never made on rows
another node is changing, and a ``date_added`` becomes visible only after every smaller one of its
collection is committed. A database that cannot be reached, or a lock not granted in time, is
``StoreUnavailable``: the request may or may not have been committed (a connection can drop during COMMIT),
and resending it is safe, since a duplicate (same id and version) is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry

from cutout.audit.merkle import CompactRange, leaf_hash
from cutout.errors import ConfigError, StoreUnavailable
from cutout.store import schema as s

__all__ = ["NewObject", "PageQuery", "Store", "Tx"]


@dataclass(frozen=True)
class NewObject:
    """One object to add to a collection."""

    stix_id: str
    type: str
    version: str
    version_us: int
    spec_version: str
    body: bytes
    origin: int | None = None


@dataclass(frozen=True)
class PageQuery:
    """The filters of a TAXII objects / manifest / versions request, already parsed."""

    after: int = -1  # date_added strictly after this (µs); -1 for no bound
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = ("last",)  # "last", "first", "all", or µs timestamps as strings
    spec_versions: tuple[str, ...] = ()
    limit: int = 1000


#: the key of the advisory lock every write transaction takes on PostgreSQL ("cutout" in ASCII); advisory
#: locks are per database, so brokers in other databases of the same server do not contend
WRITE_LOCK = 0x6375746F7574
#: on PostgreSQL: give up waiting for a lock after this long (the client hears store-unavailable and resends),
#: and end a session left idle inside a transaction (a node cut off mid-request) so its locks are freed
_PG_OPTIONS = "-c lock_timeout=30s -c idle_in_transaction_session_timeout=60s"


def _sqlite_pragmas(synchronous: str) -> Any:
    def on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return on_connect


class Store:
    """A handle on the database; cheap to share between threads."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        try:
            if self.is_sqlite:
                self.engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=8
                )
                event.listen(self.engine, "connect", _sqlite_pragmas(sqlite_synchronous.upper()))

                @event.listens_for(self.engine, "begin")
                def _begin(conn: Connection) -> None:
                    mode = "IMMEDIATE" if conn.get_execution_options().get("cutout_write") else "DEFERRED"
                    conn.exec_driver_sql(f"BEGIN {mode}")
            else:
                # pre-ping: after PostgreSQL restarts, a pooled connection is found dead on checkout and
                # replaced, instead of failing the request that drew it
                self.engine = create_engine(
                    url.replace("postgresql://", "postgresql+psycopg://", 1),
                    pool_size=8,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": 10, "options": _PG_OPTIONS},
                )
        except Exception as exc:  # driver missing, malformed URL
            raise ConfigError(f"cannot open database {url!r}: {exc}") from exc

    def is_initialised(self) -> bool:
        """Whether the database holds a broker; ConfigError if it cannot be reached at all."""
        try:
            if not inspect(self.engine).has_table("meta"):
                return False
            with self.read() as tx:
                return tx.get_meta("schema_version") is not None
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the database: {exc.orig}") from exc
        except StoreUnavailable as exc:
            raise ConfigError(f"cannot reach the database: {exc.__cause__}") from exc

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction, committed on leaving the block; one at a time per database."""
        with self._reachable(), self.engine.connect() as conn:
            conn.execution_options(cutout_write=True)
            with conn.begin():
                if not self.is_sqlite:
                    conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
                yield Tx(conn, self.is_sqlite)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._reachable(), self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.is_sqlite)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn the database being out of reach (down, restarting, a lock not granted in time, the pool
        exhausted) into StoreUnavailable; the driver's text stays in the exception chain, for the log only."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            if self.is_sqlite and not _sqlite_busy(exc):
                raise  # a broken SQLite file or schema is a fault, not a wait
            raise StoreUnavailable("the exchange's database is unavailable; try again (resending is safe)") from exc
        except PoolTimeout as exc:
            raise StoreUnavailable("the exchange is overloaded; try again (resending is safe)") from exc

    def close(self) -> None:
        self.engine.dispose()


class Tx:
    """One transaction's worth of store operations."""

    def __init__(self, conn: Connection, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return self.conn.execute(select(s.meta.c.value).where(s.meta.c.key == key)).scalar_one_or_none()

    def set_meta(self, key: str, value: str) -> None:
        if self.get_meta(key) is None:
            self.conn.execute(insert(s.meta).values(key=key, value=value))
        else:
            self.conn.execute(update(s.meta).where(s.meta.c.key == key).values(value=value))

    # -- parties --------------------------------------------------------------------------------------
    def add_party(self, name: str, provider: bool, consumer: bool, token_hash: str, now: int) -> int:
        res = self.conn.execute(
            insert(s.parties).values(
                name=name,
                provider=provider,
                consumer=consumer,
                token_hash=token_hash,
                created=now,
                terms="[]",
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def party_by_name(self, name: str) -> Row[Any] | None:
        return self.conn.execute(select(s.parties).where(s.parties.c.name == name)).first()

    def party_by_id(self, party_id: int) -> Row[Any]:
        row = self.conn.execute(select(s.parties).where(s.parties.c.id == party_id)).first()
        assert row is not None, party_id
        return row

    def party_by_token(self, token_hash: str) -> Row[Any] | None:
        return self.conn.execute(select(s.parties).where(s.parties.c.token_hash == token_hash)).first()

    def parties(self) -> list[Row[Any]]:
        return list(self.conn.execute(select(s.parties).order_by(s.parties.c.id)))

    def update_party(self, party_id: int, **values: Any) -> None:
        self.conn.execute(update(s.parties).where(s.parties.c.id == party_id).values(**values))

    # -- collections ----------------------------------------------------------------------------------
    def add_collection(self, uuid: str, party_id: int, kind: str) -> int:
        res = self.conn.execute(insert(s.collections).values(uuid=uuid, party_id=party_id, kind=kind, last_added=0))
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def collections_of(self, party_id: int) -> list[Row[Any]]:
        return list(
            self.conn.execute(
                select(s.collections).where(s.collections.c.party_id == party_id).order_by(s.collections.c.kind)
            )
        )

    def collection(self, party_id: int, kind: str) -> Row[Any]:
        row = self.conn.execute(
            select(s.collections).where(s.collections.c.party_id == party_id, s.collections.c.kind == kind)
        ).first()
        assert row is not None, (party_id, kind)
        return row

    def collection_by_uuid(self, uuid: str) -> Row[Any] | None:
        return self.conn.execute(select(s.collections).where(s.collections.c.uuid == uuid)).first()

    # -- agreements -----------------------------------------------------------------------------------
    def add_agreement(
        self,
        provider_id: int,
        consumer_id: int,
        types: Sequence[str] | None,
        tlp_max: int,
        area: Sequence[float] | None,
        delay: int,
        now: int,
        release: str = "fixed",
        pool_k: int = 0,
        epoch: int = 0,
        review: bool = False,
        allow: Sequence[str] = (),
    ) -> int:
        res = self.conn.execute(
            insert(s.agreements).values(
                provider_id=provider_id,
                consumer_id=consumer_id,
                types=None if types is None else json.dumps(sorted(types)),
                tlp_max=tlp_max,
                area=None if area is None else json.dumps(list(area)),
                delay=delay,
                release=release,
                pool_k=pool_k,
                epoch=epoch,
                review=review,
                created=now,
                allow=json.dumps(sorted(allow)) if allow else None,
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def agreements(self, include_ended: bool = False) -> list[Row[Any]]:
        q = select(s.agreements).order_by(s.agreements.c.id)
        if not include_ended:
            q = q.where(s.agreements.c.ended.is_(None))
        return list(self.conn.execute(q))

    def agreement(self, agreement_id: int) -> Row[Any] | None:
        return self.conn.execute(select(s.agreements).where(s.agreements.c.id == agreement_id)).first()

    def active_agreements_from(self, provider_id: int) -> list[Row[Any]]:
        """Active agreements of a provider whose consumer has not been revoked."""
        q = (
            select(s.agreements)
            .join(s.parties, s.parties.c.id == s.agreements.c.consumer_id)
            .where(
                s.agreements.c.provider_id == provider_id,
                s.agreements.c.ended.is_(None),
                s.parties.c.revoked.is_(None),
                s.parties.c.consumer.is_(True),
            )
        )
        return list(self.conn.execute(q))

    def active_agreements_to(self, consumer_id: int) -> list[Row[Any]]:
        """Active agreements towards a consumer whose provider has not been revoked."""
        q = (
            select(s.agreements)
            .join(s.parties, s.parties.c.id == s.agreements.c.provider_id)
            .where(
                s.agreements.c.consumer_id == consumer_id,
                s.agreements.c.ended.is_(None),
                s.parties.c.revoked.is_(None),
                s.parties.c.provider.is_(True),
            )
        )
        return list(self.conn.execute(q))

    def end_agreement(self, agreement_id: int, now: int) -> None:
        self.conn.execute(update(s.agreements).where(s.agreements.c.id == agreement_id).values(ended=now))

    # -- objects --------------------------------------------------------------------------------------
    def add_objects(self, coll: Row[Any], new: Sequence[NewObject], now: int) -> list[int | None]:
        """Add objects to a collection; exact duplicates (same id and version) are skipped.

        Returns, for each input, the pk of the stored row, or None for a duplicate. ``date_added`` is
        unique and strictly increasing per collection.
        """
        if not new:
            return []
        # lock the collection row (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers) and read
        # its last date_added afresh: date_added must be unique and strictly increasing
        q = select(s.collections.c.last_added).where(s.collections.c.id == coll.id)
        if not self.is_sqlite:
            q = q.with_for_update()
        last_added = max(int(self.conn.execute(q).scalar_one()), 0)
        ids = list({n.stix_id for n in new})
        existing: dict[tuple[str, int], int] = {}
        latest: dict[str, tuple[int, int]] = {}  # stix_id -> (version_us, pk)
        for chunk in _chunks(ids, 500):
            for row in self.conn.execute(
                select(s.objects.c.pk, s.objects.c.stix_id, s.objects.c.version_us, s.objects.c.latest).where(
                    s.objects.c.coll == coll.id, s.objects.c.stix_id.in_(chunk)
                )
            ):
                existing[(row.stix_id, row.version_us)] = row.pk
                if row.latest:
                    latest[row.stix_id] = (row.version_us, row.pk)
        added = max(now, last_added + 1)
        rows: list[dict[str, Any]] = []
        result: list[int | None] = []
        demote: set[int] = set()
        new_latest: dict[str, int] = {}  # stix_id -> index in rows
        for n in new:
            key = (n.stix_id, n.version_us)
            if key in existing:
                result.append(None)
                continue
            existing[key] = -1
            is_latest = n.stix_id not in latest or n.version_us > latest[n.stix_id][0]
            if is_latest:
                prev = latest.get(n.stix_id)
                if prev is not None:
                    if prev[1] >= 0:
                        demote.add(prev[1])
                    else:
                        rows[new_latest[n.stix_id]]["latest"] = False
                latest[n.stix_id] = (n.version_us, -1)
                new_latest[n.stix_id] = len(rows)
            rows.append(
                {
                    "coll": coll.id,
                    "stix_id": n.stix_id,
                    "type": n.type,
                    "version": n.version,
                    "version_us": n.version_us,
                    "spec_version": n.spec_version,
                    "date_added": added,
                    "latest": is_latest,
                    "body": n.body,
                    "origin": n.origin,
                }
            )
            result.append(-1)
            added += 1
        if demote:
            self.conn.execute(update(s.objects).where(s.objects.c.pk.in_(sorted(demote))).values(latest=False))
        if rows:
            self.conn.execute(insert(s.objects), rows)
            self.conn.execute(update(s.collections).where(s.collections.c.id == coll.id).values(last_added=added - 1))
            first = added - len(rows)
            pks = {
                r.date_added: r.pk
                for r in self.conn.execute(
                    select(s.objects.c.pk, s.objects.c.date_added).where(
                        s.objects.c.coll == coll.id, s.objects.c.date_added >= first
                    )
                )
            }
            it = iter(pks[first + i] for i in range(len(rows)))
            result = [None if r is None else next(it) for r in result]
        return result

    def page(self, coll_id: int, q: PageQuery, stix_id: str | None = None) -> list[Row[Any]]:
        """Up to ``q.limit + 1`` rows of a collection matching the filters, in date_added order."""
        o = s.objects
        conds: list[Any] = [o.c.coll == coll_id]
        if q.after >= 0:
            conds.append(o.c.date_added > q.after)
        if stix_id is not None:
            conds.append(o.c.stix_id == stix_id)
        elif q.ids:
            conds.append(o.c.stix_id.in_(q.ids))
        if q.types:
            conds.append(o.c.type.in_(q.types))
        if q.spec_versions:
            conds.append(o.c.spec_version.in_(q.spec_versions))
        if "all" not in q.versions:
            alts: list[Any] = []
            stamps = [int(v) for v in q.versions if v not in ("last", "first")]
            if "last" in q.versions:
                alts.append(o.c.latest.is_(True))
            if "first" in q.versions:
                o2 = o.alias("o2")
                first = (
                    select(func.min(o2.c.version_us))
                    .where(o2.c.coll == o.c.coll, o2.c.stix_id == o.c.stix_id)
                    .scalar_subquery()
                )
                alts.append(o.c.version_us == first)
            if stamps:
                # an object without created/modified (an SCO) has its date_added as its version (§3.4.2)
                alts.append(o.c.version_us.in_(stamps))
                alts.append(and_(o.c.version == "", o.c.date_added.in_(stamps)))
            conds.append(or_(*alts))
        query = (
            select(o.c.stix_id, o.c.version, o.c.date_added, o.c.body, o.c.spec_version)
            .where(and_(*conds))
            .order_by(o.c.date_added)
            .limit(q.limit + 1)
        )
        return list(self.conn.execute(query))

    def unversioned_added(self, coll_id: int, stix_ids: Iterable[str]) -> dict[str, int]:
        """date_added of the objects without created/modified (SCOs): that is their version (§3.4.2)."""
        o = s.objects
        out: dict[str, int] = {}
        for chunk in _chunks(sorted(set(stix_ids)), 500):
            for row in self.conn.execute(
                select(o.c.stix_id, o.c.date_added).where(
                    o.c.coll == coll_id, o.c.stix_id.in_(chunk), o.c.version == ""
                )
            ):
                out[row.stix_id] = row.date_added
        return out

    def has_object(self, coll_id: int, stix_id: str) -> bool:
        o = s.objects
        q = select(o.c.pk).where(o.c.coll == coll_id, o.c.stix_id == stix_id).limit(1)
        return self.conn.execute(q).first() is not None

    def objects_by_pk(self, pks: Iterable[int]) -> dict[int, Row[Any]]:
        out: dict[int, Row[Any]] = {}
        for chunk in _chunks(sorted(set(pks)), 500):
            for row in self.conn.execute(select(s.objects).where(s.objects.c.pk.in_(chunk))):
                out[row.pk] = row
        return out

    def latest_objects(self, coll_id: int, stix_ids: Iterable[str]) -> dict[str, Row[Any]]:
        out: dict[str, Row[Any]] = {}
        for chunk in _chunks(sorted(set(stix_ids)), 500):
            for row in self.conn.execute(
                select(s.objects).where(
                    s.objects.c.coll == coll_id, s.objects.c.stix_id.in_(chunk), s.objects.c.latest.is_(True)
                )
            ):
                out[row.stix_id] = row
        return out

    def delete_versions(self, coll_id: int, stix_id: str, q: PageQuery) -> int:
        """Delete the versions of one object that match the version filters; returns how many went.

        The newest remaining version (if any) becomes the latest again.
        """
        rows = self.page(coll_id, PageQuery(versions=q.versions, spec_versions=q.spec_versions, limit=1 << 30), stix_id)
        if not rows:
            return 0
        o = s.objects
        versions = [
            r.version_us
            for r in self.conn.execute(
                select(o.c.version_us).where(
                    o.c.coll == coll_id, o.c.stix_id == stix_id, o.c.date_added.in_([r.date_added for r in rows])
                )
            )
        ]
        self.conn.execute(delete(o).where(o.c.coll == coll_id, o.c.stix_id == stix_id, o.c.version_us.in_(versions)))
        newest = self.conn.execute(
            select(func.max(o.c.version_us)).where(o.c.coll == coll_id, o.c.stix_id == stix_id)
        ).scalar_one_or_none()
        if newest is not None:
            self.conn.execute(
                update(o)
                .where(o.c.coll == coll_id, o.c.stix_id == stix_id, o.c.version_us == newest)
                .values(latest=True)
            )
        return len(rows)

    def copies_of(self, sender_id: int, orig_id: str) -> list[Row[Any]]:
        """Every recipient's copy of one sender's object."""
        c = s.copies
        return list(self.conn.execute(select(c).where(c.c.sender_id == sender_id, c.c.orig_id == orig_id)))

    # -- copies ---------------------------------------------------------------------------------------
    def copies(self, recipient_id: int, sender_id: int, orig_ids: Iterable[str]) -> dict[str, Row[Any]]:
        out: dict[str, Row[Any]] = {}
        c = s.copies
        for chunk in _chunks(sorted(set(orig_ids)), 500):
            for row in self.conn.execute(
                select(c).where(c.c.recipient_id == recipient_id, c.c.sender_id == sender_id, c.c.orig_id.in_(chunk))
            ):
                out[row.orig_id] = row
        return out

    def copies_by_out(self, recipient_id: int, out_ids: Iterable[str]) -> list[Row[Any]]:
        c = s.copies
        rows: list[Row[Any]] = []
        for chunk in _chunks(sorted(set(out_ids)), 500):
            rows.extend(self.conn.execute(select(c).where(c.c.recipient_id == recipient_id, c.c.out_id.in_(chunk))))
        return rows

    def plan_copies(self, recipient_id: int, sender_id: int, orig_ids: Iterable[str]) -> None:
        """Record that objects are due to a recipient (so references to them are kept)."""
        wanted = set(orig_ids)
        have = self.copies(recipient_id, sender_id, wanted)
        rows = [
            {"recipient_id": recipient_id, "sender_id": sender_id, "orig_id": o}
            for o in sorted(wanted)
            if o not in have
        ]
        if rows:
            self.conn.execute(insert(s.copies), rows)

    def record_copies(self, rows: Sequence[dict[str, Any]]) -> None:
        """Set out_id / created_out / modified_out / origin_version_us of planned copies (one executemany)."""
        if not rows:
            return
        c = s.copies
        stmt = (
            update(c)
            .where(
                c.c.recipient_id == bindparam("k_recipient"),
                c.c.sender_id == bindparam("k_sender"),
                c.c.orig_id == bindparam("k_orig"),
            )
            .values(
                out_id=bindparam("v_out"),
                created_out=bindparam("v_created"),
                modified_out=bindparam("v_modified"),
                origin_version_us=bindparam("v_origin"),
            )
        )
        self.conn.execute(
            stmt,
            [
                {
                    "k_recipient": r["recipient_id"],
                    "k_sender": r["sender_id"],
                    "k_orig": r["orig_id"],
                    "v_out": r["out_id"],
                    "v_created": r["created_out"],
                    "v_modified": r["modified_out"],
                    "v_origin": r["origin_version_us"],
                }
                for r in rows
            ],
        )

    # -- releases -------------------------------------------------------------------------------------
    def hold(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(s.releases), list(rows))

    def due(self, now: int, limit: int) -> list[Row[Any]]:
        q = select(s.releases).where(s.releases.c.due <= now).order_by(s.releases.c.due, s.releases.c.pk).limit(limit)
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return list(self.conn.execute(q))

    def due_at(self, when: int, after_pk: int) -> list[Row[Any]]:
        """The rest of the items due at exactly ``when`` (those after ``after_pk``), however many."""
        r = s.releases
        q = select(r).where(r.c.due == when, r.c.pk > after_pk).order_by(r.c.pk)
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return list(self.conn.execute(q))

    def next_due(self) -> int | None:
        return self.conn.execute(select(func.min(s.releases.c.due))).scalar_one_or_none()

    def pooled_due(self, recipient_id: int, now: int) -> list[Row[Any]]:
        """Every pooled item due for a recipient, however many (a pool is decided and released whole)."""
        r = s.releases
        q = select(r).where(r.c.recipient_id == recipient_id, r.c.pool_k > 0, r.c.due <= now).order_by(r.c.pk)
        return list(self.conn.execute(q))

    def postpone(self, pks: Iterable[int], due: int) -> None:
        for chunk in _chunks(sorted(set(pks)), 500):
            self.conn.execute(update(s.releases).where(s.releases.c.pk.in_(chunk)).values(due=due))

    def drop_releases(self, pks: Iterable[int]) -> None:
        for chunk in _chunks(sorted(set(pks)), 500):
            self.conn.execute(delete(s.releases).where(s.releases.c.pk.in_(chunk)))

    # -- outcomes ---------------------------------------------------------------------------------------
    def record_outcomes(self, rows: Sequence[dict[str, Any]]) -> None:
        """Keep each consumer's latest outcome per provider object (rows: provider_id, consumer_id, orig_id,
        outcome, at)."""
        o = s.outcomes
        for r in rows:
            self.conn.execute(
                delete(o).where(
                    o.c.provider_id == r["provider_id"],
                    o.c.consumer_id == r["consumer_id"],
                    o.c.orig_id == r["orig_id"],
                )
            )
        if rows:
            self.conn.execute(insert(o), list(rows))

    def outcome_counts(self) -> dict[int, dict[str, int]]:
        """provider id → outcome → how many objects have it."""
        o = s.outcomes
        out: dict[int, dict[str, int]] = {}
        for r in self.conn.execute(
            select(o.c.provider_id, o.c.outcome, func.count()).group_by(o.c.provider_id, o.c.outcome)
        ):
            out.setdefault(int(r[0]), {})[str(r[1])] = int(r[2])
        return out

    # -- reviews ----------------------------------------------------------------------------------------
    def add_reviews(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(s.reviews), list(rows))

    def reviews(self) -> list[Row[Any]]:
        return list(self.conn.execute(select(s.reviews).order_by(s.reviews.c.id)))

    def review(self, review_id: int) -> Row[Any] | None:
        return self.conn.execute(select(s.reviews).where(s.reviews.c.id == review_id)).first()

    def drop_review(self, review_id: int) -> None:
        self.conn.execute(delete(s.reviews).where(s.reviews.c.id == review_id))

    # -- statuses -------------------------------------------------------------------------------------
    def add_status(self, uuid: str, party_id: int, now: int, body: bytes) -> None:
        self.conn.execute(insert(s.statuses).values(uuid=uuid, party_id=party_id, created=now, body=body))

    def status(self, uuid: str, party_id: int) -> bytes | None:
        row = self.conn.execute(
            select(s.statuses.c.body).where(s.statuses.c.uuid == uuid, s.statuses.c.party_id == party_id)
        ).first()
        return None if row is None else bytes(row.body)

    # -- audit ----------------------------------------------------------------------------------------
    def append_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append events to the log: contiguous seq numbers, and the Merkle tree's compact range kept in step.

        The range row is locked for the transaction (PostgreSQL; SQLite's writer lock does it already), so
        concurrent writers append one after the other.
        """
        if not rows:
            return
        q = select(s.meta.c.value).where(s.meta.c.key == "audit_range")
        if not self.is_sqlite:
            q = q.with_for_update()
        state = self.conn.execute(q).scalar_one_or_none()
        tree = _load_range(state)
        start = tree.size
        tree.extend([leaf_hash(r["commitment"]) for r in rows])
        refs = [
            {"party_id": party, "ref": ref, "seq": start + i + 1}
            for i, r in enumerate(rows)
            for party, ref in r.get("refs", ())
        ]
        entries = [{k: v for k, v in r.items() if k != "refs"} | {"seq": start + i + 1} for i, r in enumerate(rows)]
        self.conn.execute(insert(s.audit), entries)
        if refs:
            self.conn.execute(insert(s.audit_refs), refs)
        packed = f"{tree.size}:{tree.to_bytes().hex()}"
        if state is None:
            self.conn.execute(insert(s.meta).values(key="audit_range", value=packed))
        else:
            self.conn.execute(update(s.meta).where(s.meta.c.key == "audit_range").values(value=packed))

    def audit_seq_of(self, party_id: int, ref: str) -> int | None:
        """The latest audit entry a party may have a receipt for under ``ref`` (a status or object id)."""
        r = s.audit_refs
        q = select(func.max(r.c.seq)).where(r.c.party_id == party_id, r.c.ref == ref)
        found = self.conn.execute(q).scalar_one_or_none()
        return None if found is None else int(found)

    def audit_range(self) -> CompactRange:
        return _load_range(self.get_meta("audit_range"))

    def audit_rows(self, up_to: int | None = None) -> list[Row[Any]]:
        q = select(s.audit).order_by(s.audit.c.seq)
        if up_to is not None:
            q = q.where(s.audit.c.seq <= up_to)
        return list(self.conn.execute(q))

    def audit_row(self, seq: int) -> Row[Any] | None:
        return self.conn.execute(select(s.audit).where(s.audit.c.seq == seq)).first()

    def audit_commitments(self, up_to: int) -> list[bytes]:
        q = select(s.audit.c.commitment).where(s.audit.c.seq <= up_to).order_by(s.audit.c.seq)
        return [bytes(c) for c in self.conn.execute(q).scalars()]

    def add_checkpoint(self, size: int, root: bytes, note: str, now: int) -> None:
        self.conn.execute(insert(s.audit_checkpoints).values(size=size, root=root, note=note, at=now))

    def checkpoints(self) -> list[Row[Any]]:
        return list(self.conn.execute(select(s.audit_checkpoints).order_by(s.audit_checkpoints.c.size)))

    def latest_checkpoint(self) -> Row[Any] | None:
        q = select(s.audit_checkpoints).order_by(s.audit_checkpoints.c.size.desc()).limit(1)
        return self.conn.execute(q).first()

    def forget_audit_before(self, before: int) -> int:
        """Retention: destroy the salt and event of entries older than ``before``; commitments stay."""
        a = s.audit
        res = self.conn.execute(update(a).where(a.c.at < before, a.c.salt.is_not(None)).values(salt=None, event=None))
        return int(res.rowcount or 0)


def _sqlite_busy(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "busy" in text


def _load_range(state: str | None) -> CompactRange:
    if not state:
        return CompactRange()
    size, _, packed = state.partition(":")
    return CompactRange.from_bytes(int(size), bytes.fromhex(packed))


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
