"""The two servers under test, each in a process of its own on a free loopback port, and their memory.

cutout: a broker made with the library (``Exchange.init``, parties, agreements), served by a real
``cutout serve`` (``cutout.demo.server.start_server``) with its default settings: SQLite in WAL mode with
``synchronous=FULL``, so every acknowledged envelope is durable.

medallion 3.0.0: from ``.venv-medallion`` (``make peer``), with the memory backend and the configuration of
/work/shared/peer-baseline.md (users, ``max_page_size`` 1000, one API root, one read-write collection).
Its ``next`` tokens are kept for 600 s instead of 30 s, so that a slow paging run is measured rather than
cut short by the expiry defect.

Every server is a context manager and is also registered in ``RUNNING``, which ``stop_all`` empties: the
harness stops everything it started, however a measurement ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
from taxii2client.v21 import Collection

from cutout.demo.server import RunningServer, free_port, start_server, stop_process
from cutout.service import Exchange
from cutout.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
PEER_EXE = REPO / ".venv-medallion" / "bin" / "medallion"
TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"

RUNNING: list[Server] = []
#: the tail of the log of every cutout server that logged a traceback (kept: the server's folder is removed)
CRASH_LOGS: list[str] = []


def stop_all() -> None:
    while RUNNING:
        RUNNING[-1].stop()


def medallion_available() -> bool:
    return PEER_EXE.exists()


# -- memory ---------------------------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """The running processes ``pid`` started (cutout's checking process), from /proc: each of its threads
    lists those it started."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return found


def rss_bytes(pid: int) -> int:
    """The resident set size of a process and of the processes it started, from /proc (0 once it is gone):
    cutout's server validates copies in a child process, whose memory is the server's too."""
    return sum(_own_rss(p) for p in (pid, *children(pid)))


def _own_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process and the processes it started (still running) have used so far,
    from /proc (0 once it is gone)."""
    return sum(_own_cpu(p) for p in (pid, *children(pid)))


def _own_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command's closing parenthesis: state is field 3, so utime (14) and stime (15) are 11 and 12 here
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: set while the harness's RSS samplers may sample; cleared by ``samplers_paused``
_SAMPLING = threading.Event()
_SAMPLING.set()


@contextlib.contextmanager
def samplers_paused() -> Iterator[None]:
    """Every ``RssSampler`` of this process takes no sample inside the block: for a measurement that reports no
    memory figure and is timed on this process's CPU (the latency loop). Each sampler is a thread that wakes 50
    times a second and reads /proc while holding the GIL; with the three exchanges of the latency rows up at once,
    they cost taxii2-client 0.05-0.3 ms of CPU per sample (docs/benchmarks.md, "The twenty-fifth round")."""
    _SAMPLING.clear()
    try:
        yield
    finally:
        _SAMPLING.set()


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``mark()`` starts a new window. No sample is
    taken while ``samplers_paused``: a window should not span such a block."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self._peak = rss_bytes(pid)
        self._overall = self._peak
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not _SAMPLING.is_set():
                _SAMPLING.wait(0.5)  # paused: wakes twice a second instead of fifty times
                continue
            value = rss_bytes(self.pid)
            with self._lock:
                self._peak = max(self._peak, value)
                self._overall = max(self._overall, value)

    def mark(self) -> None:
        """Start a new window: ``peak()`` reports the largest RSS seen since."""
        with self._lock:
            self._peak = rss_bytes(self.pid)

    def peak(self) -> int:
        value = rss_bytes(self.pid)
        with self._lock:
            self._peak = max(self._peak, value)
            return self._peak

    def overall(self) -> int:
        with self._lock:
            return max(self._overall, self._peak)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# -- the servers ----------------------------------------------------------------------------------------------
@dataclass
class Party:
    name: str
    password: str


@dataclass(eq=False)
class Server:
    """What the measurements need of either server."""

    name: str
    work: Path
    proc: subprocess.Popen[bytes] | None = None
    base: str = ""
    sampler: RssSampler | None = None
    stopped: bool = False
    killed_by_budget: bool = False
    provider: Party = field(default_factory=lambda: Party("", ""))
    consumer: Party = field(default_factory=lambda: Party("", ""))
    _clients: dict[tuple[str, str], Collection] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _started(self, proc: subprocess.Popen[bytes], base: str) -> None:
        self.proc, self.base = proc, base
        self.sampler = RssSampler(proc.pid)
        RUNNING.append(self)

    def kill(self) -> None:
        """Used by a time budget: end the server now (a request in flight fails)."""
        if self.proc is not None and self.proc.poll() is None:
            self.killed_by_budget = True
            self.proc.kill()

    def stop(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self.stopped:
            return
        self.stopped = True
        if self.sampler is not None:
            self.sampler.stop()
        if self.proc is not None:
            stop_process(self.proc)
        for c in self._clients.values():
            c.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def mark(self) -> None:
        assert self.sampler is not None
        self.sampler.mark()

    def peak_rss(self) -> int:
        assert self.sampler is not None
        return self.sampler.peak()

    def cpu(self) -> float:
        """CPU seconds the server process and the processes it started have used so far (user + system)."""
        return cpu_seconds(self.pid)

    def own_cpu(self) -> float:
        """CPU seconds the server process alone has used so far: cutout's serving process without its checking
        process (the one that holds the write lock, whose time bounds what one client's envelopes can reach)."""
        return _own_cpu(self.pid)

    # what each server implements
    def writer(self, who: Party) -> Collection:
        raise NotImplementedError

    def writers(self, k: int) -> list[Collection]:
        """``k`` clients that write at once, each on a connection of its own."""
        raise NotImplementedError

    def reader(self, who: Party) -> Collection:
        raise NotImplementedError

    def writer_apart(self, who: Party) -> Collection:
        """``who``'s writer on a client of its own (its own HTTP session and connection), not the one ``writer``
        keeps: for requests made from another thread while that one is busy."""
        url = self.writer(who).url
        c = Collection(url, user=who.name, password=who.password)
        _ = c.can_read
        self._clients[(url, f"{who.name} apart {len(self._clients)}")] = c  # closed with the others
        return c

    def _collection(self, url: str, who: Party) -> Collection:
        key = (url, who.name)
        if key not in self._clients:
            c = Collection(url, user=who.name, password=who.password)
            _ = c.can_read  # taxii2-client loads the collection resource lazily: do it before any clock starts
            self._clients[key] = c
        return self._clients[key]


def _wait_until_up(proc: subprocess.Popen[bytes], base: str, log: Path, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(base + "/taxii2/", timeout=1.0).status_code == 401:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{name} did not answer within {timeout} s: {log.read_text(errors='replace')[-2000:]}")


def empty_postgres(url: str) -> None:
    """Drop and recreate the public schema of the database at ``url``: the benchmark owns that database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


class CutoutServer(Server):
    """A broker with one provider and ``consumers`` consumers, each under an agreement with delay 0.

    On SQLite by default; with ``db`` (a postgresql:// URL, emptied first) on PostgreSQL, served by ``nodes``
    ``cutout serve`` processes sharing it (the first is the one the measurements talk to, ``nodes`` lists all).
    """

    def __init__(
        self,
        consumers: int = 1,
        db: str | None = None,
        nodes: int = 1,
        members: tuple[int, int] = (0, 0),
        providers: int = 1,
    ) -> None:
        """``members``: (parties, agreements each) registered besides the bench's own: that many more parties,
        every other one a provider holding that many agreements with the others (the exchange's membership,
        which the bench's provider and consumer do not deal with). ``providers``: how many providers, each
        under an agreement with every consumer (``provider`` is the first of ``providers``)."""
        super().__init__("cutout", Path(tempfile.mkdtemp(prefix="cutout-bench-")))
        self.nodes: list[RunningServer] = []
        if db:
            empty_postgres(db)
            (self.work / "cutout.toml").write_text(f'[cutout]\ndatabase_url = "{db}"\n', "utf-8")
        # the set-up commits without waiting for the disk (it is not measured); the server runs with FULL
        settings = load_settings(self.work, {"sqlite_synchronous": "NORMAL"}, environ={})
        Exchange.init(settings, "Bench Exchange")
        ex = Exchange.open(settings)
        try:
            self.providers: list[Party] = []
            for i in range(providers):
                name = "Bench Provider" + (f" {i + 1}" if i else "")
                _, token = ex.add_party(name, provider=True, consumer=False)
                self.providers.append(Party(name, token))
            self.provider = self.providers[0]
            self.consumers: list[Party] = []
            for i in range(consumers):
                name = f"Bench Consumer {i + 1}"
                _, token = ex.add_party(name, provider=False, consumer=True)
                for p in self.providers:
                    ex.add_agreement(p.name, name, delay=0)
                self.consumers.append(Party(name, token))
            parties, each = members
            for i in range(parties):
                ex.add_party(f"Member {i}", provider=i % 2 == 0, consumer=True)
            for i in range(0, parties, 2):
                for j in range(each):
                    ex.add_agreement(f"Member {i}", f"Member {(i + 1 + 2 * j) % parties}", delay=0)
            self.consumer = self.consumers[0]
            self._colls: dict[str, dict[str, str]] = {}
            for p in (*self.providers, *self.consumers):
                party = ex.authenticate(p.name, p.password)
                self._colls[p.name] = {c.kind: c.uuid for c in ex.collections(party)}
        finally:
            ex.close()
        try:
            for i in range(nodes):
                self.nodes.append(start_server(self.work, timeout=60.0, log=self.work / f"serve{i or ''}.log"))
        except BaseException:
            for node in self.nodes:
                node.stop()
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        running = self.nodes[0]
        self.log = running.log
        self._started(running.proc, running.url)

    def url(self, who: Party, kind: str, node: int = 0) -> str:
        base = self.nodes[node].url if node else self.base
        return f"{base}/exchange/collections/{self._colls[who.name][kind]}/"

    def writer_on(self, node: int, who: Party) -> Collection:
        return self._collection(self.url(who, "outbox", node), who)

    def writer(self, who: Party) -> Collection:
        return self._collection(self.url(who, "outbox"), who)

    def writers(self, k: int) -> list[Collection]:
        """The first ``k`` providers' outboxes (the server was made with at least that many)."""
        if k > len(self.providers):
            raise ValueError(f"this server has {len(self.providers)} providers, not {k}")
        return [self.writer(p) for p in self.providers[:k]]

    def reader(self, who: Party) -> Collection:
        return self._collection(self.url(who, "inbox"), who)

    def tracebacks(self) -> str:
        for node in self.nodes:
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            if "Traceback" in text:
                return text[-3000:]
        return ""

    def stop(self) -> None:
        if not self.stopped:
            tb = self.tracebacks()
            if tb:
                CRASH_LOGS.append(f"cutout server (pid {self.pid}):\n{tb}")
            for node in self.nodes[1:]:
                node.stop()
        super().stop()


class MedallionServer(Server):
    """medallion 3.0.0, memory backend, one collection that the one user writes and reads."""

    USER = Party("bench", "bench-secret")

    def __init__(self) -> None:
        if not medallion_available():
            raise RuntimeError("medallion is not installed: run `make peer`")
        super().__init__("medallion", Path(tempfile.mkdtemp(prefix="medallion-bench-")))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        self.coll = str(uuid.uuid4())
        data: dict[str, Any] = {
            "/discovery": {"title": "medallion", "default": f"{base}/api1/", "api_roots": [f"{base}/api1/"]},
            "api1": {
                "information": {"title": "api1", "versions": [TAXII], "max_content_length": 100 * 1024 * 1024},
                "status": [],
                "collections": [
                    {
                        "id": self.coll,
                        "title": "bench",
                        "can_read": True,
                        "can_write": True,
                        "media_types": [STIX],
                        "objects": [],
                        "manifest": [],
                    }
                ],
            },
        }
        (self.work / "data.json").write_bytes(orjson.dumps(data))
        config = {
            "backend": {
                "module": "medallion.backends.memory_backend",
                "module_class": "MemoryBackend",
                "filename": str(self.work / "data.json"),
                "session_timeout": 600,
            },
            "users": {self.USER.name: self.USER.password},
            "taxii": {"max_page_size": 1000},
        }
        (self.work / "config.json").write_bytes(orjson.dumps(config))
        log = self.work / "medallion.log"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the harness's snapshot of cutout
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(PEER_EXE), "--host", "127.0.0.1", "--port", str(port), str(self.work / "config.json")],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work,
                env=env,
            )
        try:
            _wait_until_up(proc, base, log, "medallion")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self._started(proc, base)
        self.provider = self.consumer = self.USER

    def url(self) -> str:
        return f"{self.base}/api1/collections/{self.coll}/"

    def writer(self, who: Party) -> Collection:
        return self._collection(self.url(), who)

    def writers(self, k: int) -> list[Collection]:
        """``k`` clients of the one user (medallion's users are not providers: it has one collection for all)."""
        clients = [Collection(self.url(), user=self.USER.name, password=self.USER.password) for _ in range(k)]
        for c in clients:
            _ = c.can_read  # loaded before any clock starts, as ``_collection`` does
        return clients

    def reader(self, who: Party) -> Collection:
        return self._collection(self.url(), who)


class StubServer(Server):
    """``bench/stub.py``: a TAXII server that does nothing, for the floor under the latency measurement."""

    def __init__(self) -> None:
        super().__init__("stub", Path(tempfile.mkdtemp(prefix="stub-bench-")))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = self.work / "stub.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.stub", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                shutil.rmtree(self.work, ignore_errors=True)
                raise RuntimeError(f"the stub server did not start: {log.read_text(errors='replace')[-2000:]}")
            try:
                httpx.get(base + "/", timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        self._started(proc, base)
        self.provider = self.consumer = Party("stub", "stub")

    def writer(self, who: Party) -> Collection:
        return self._collection(f"{self.base}/api/collections/00000000-0000-4000-8000-000000000000/", who)

    def reader(self, who: Party) -> Collection:
        return self._collection(f"{self.base}/api/collections/00000000-0000-4000-8000-000000000000/", who)
