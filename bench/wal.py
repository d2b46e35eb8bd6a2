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
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.workload import Workload, chunks
from cutout.service import Exchange
from cutout.settings import SQLITE_PAGE_SIZE, load_settings


def run(
    objects: int, per: int, consumers: int, report_every: int, page_size: int = SQLITE_PAGE_SIZE
) -> list[tuple[int, int]]:
    """(objects held after the envelope, WAL bytes of its commit) for each envelope."""
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
            out: list[tuple[int, int]] = []
            held = 0
            for chunk in chunks(Workload().objects(objects), per):
                side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                t = time.perf_counter()
                ex.submit(party, outbox.uuid, chunk)
                took = time.perf_counter() - t
                held += len(chunk)
                out.append((held, wal.stat().st_size))
                if held % report_every == 0:
                    print(f"{held:>8,} objects: {out[-1][1] / 1e6:6.1f} MB of WAL, {took:5.2f} s", flush=True)
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
    a = p.parse_args()
    run(a.objects, a.per, a.consumers, a.every, a.page_size)


if __name__ == "__main__":
    main()
