"""WAL bytes per envelope on SQLite: what one submission's commit writes, as the exchange grows.

Envelopes of the workload's objects go straight to ``cutout.service.Exchange`` (no server, no client), with
agreements that release at once, so each envelope is one write transaction holding the provider's rows and
every consumer's copies. Before each envelope the WAL is checkpointed and truncated from a second
connection; after it, the ``-wal`` file's size is what that commit wrote (SQLite overwrites a page already
written by the same transaction in place, and an automatic checkpoint after the commit does not shrink the
file).

    python -m bench.wal --objects 60000 --per 1000               # ingest, one consumer
    python -m bench.wal --objects 10000 --per 1000 --consumers 10  # fan-out
    python -m bench.wal --objects 60000 --per 100 --page-size 4096   # SQLite's default page size
    python -m bench.wal --objects 10100 --per 1 --every 10000 --trees  # what one-object commits dirty

With ``--trees``, each reported envelope's commit is also broken down by the table or index each of its frames
holds a page of (named through SQLite's ``dbstat`` table as the database stood before the envelope; pages
the envelope added to the file count as "(new pages)"); docs/benchmarks.md, "The sixteenth round", has
such a breakdown of one-object commits.
"""

from __future__ import annotations

import argparse
import sqlite3
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from bench.workload import Workload, chunks
from cutout.service import Exchange
from cutout.settings import SQLITE_PAGE_SIZE, load_settings

_WAL_HEADER = 32  # bytes before the first frame
_FRAME_HEADER = 24  # bytes before each frame's page; the page's number is its first four, big-endian


def pages_by_tree(db: sqlite3.Connection) -> dict[int, str]:
    """Each page of the database, by the table or index it belongs to (SQLite's ``dbstat``)."""
    return {int(pageno): str(name) for name, pageno in db.execute("SELECT name, pageno FROM dbstat")}


def frames_by_tree(wal: bytes, trees: dict[int, str]) -> Counter[str]:
    """The frames of a WAL file, counted by the table or index whose page each holds."""
    (page_size,) = struct.unpack(">I", wal[8:12])
    frame = _FRAME_HEADER + page_size
    counts: Counter[str] = Counter()
    for at in range(_WAL_HEADER, len(wal) - frame + 1, frame):
        (page,) = struct.unpack(">I", wal[at : at + 4])
        counts[trees.get(page, "(new pages)")] += 1
    return counts


class Envelope(NamedTuple):
    held: int  # objects the exchange holds after the envelope
    wal_bytes: int  # what its commit wrote to the WAL
    trees: Counter[str] | None  # its frames by table or index (``run``'s ``trees``, reported envelopes only)


def run(
    objects: int,
    per: int,
    consumers: int,
    report_every: int,
    page_size: int = SQLITE_PAGE_SIZE,
    trees: bool = False,
) -> list[Envelope]:
    """Each envelope's :class:`Envelope`."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(tmp) / "broker", {"sqlite_page_size": page_size}, environ={})
        Exchange.init(settings, "wal bench")
        ex = Exchange.open(settings)
        try:
            _, token = ex.add_party("provider", provider=True, consumer=False)
            for i in range(consumers):
                ex.add_party(f"consumer {i}", provider=False, consumer=True)
                ex.add_agreement("provider", f"consumer {i}", tlp_max="amber", release="none")
            party = ex.authenticate(None, token)
            outbox = next(c for c in ex.collections(party) if c.kind == "outbox")
            path = settings.db_url.removeprefix("sqlite:///")
            wal = Path(path + "-wal")
            side = sqlite3.connect(path)
            out: list[Envelope] = []
            held = 0
            for chunk in chunks(Workload().objects(objects), per):
                side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                reported = (held + len(chunk)) % report_every == 0
                before = pages_by_tree(side) if trees and reported else None
                t = time.perf_counter()
                ex.submit(party, outbox.uuid, chunk)
                took = time.perf_counter() - t
                held += len(chunk)
                by_tree = frames_by_tree(wal.read_bytes(), before) if before is not None else None
                out.append(Envelope(held, wal.stat().st_size, by_tree))
                if reported:
                    print(f"{held:>8,} objects: {out[-1].wal_bytes / 1e6:6.1f} MB of WAL, {took:5.2f} s", flush=True)
                    if by_tree is not None:
                        print("          " + ", ".join(f"{name} {n}" for name, n in by_tree.most_common()), flush=True)
            side.close()
            return out
        finally:
            ex.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=60_000)
    p.add_argument("--per", type=int, default=1000)
    p.add_argument("--consumers", type=int, default=1)
    p.add_argument("--every", type=int, default=10_000, help="print every this many objects")
    p.add_argument("--page-size", type=int, default=SQLITE_PAGE_SIZE, help="the database's page size")
    p.add_argument("--trees", action="store_true", help="break each reported commit down by table and index")
    a = p.parse_args()
    run(a.objects, a.per, a.consumers, a.every, a.page_size, a.trees)


if __name__ == "__main__":
    main()
