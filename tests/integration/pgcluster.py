"""A private, throw-away PostgreSQL cluster that a test may stop and start at will.

The restart test needs to take PostgreSQL down under running nodes. Restarting the machine's shared server
would break whatever else is using it at that moment (other test runs, other databases), so the test makes a
cluster of its own with the installed binaries (``initdb`` in a temporary folder, a free loopback port) and
throws it away afterwards. ``PrivatePostgres.create`` raises ``Unavailable`` with the reason when that cannot
be done here (no PostgreSQL binaries, root without a ``postgres`` user to run them as).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cutout.demo.server import free_port


class Unavailable(Exception):
    """A private cluster cannot be made on this machine; the message says why."""


def _bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")


@dataclass
class PrivatePostgres:
    root: Path
    bindir: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls) -> PrivatePostgres:
        bindir = _bindir()
        as_user: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="cutout-pg-"))
        if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the postgres user
            runuser = shutil.which("runuser")
            try:
                uid = pwd.getpwnam("postgres").pw_uid
            except KeyError:
                uid = -1
            if runuser is None or uid < 0:
                shutil.rmtree(root, ignore_errors=True)
                raise Unavailable("running as root without runuser and a 'postgres' user to run PostgreSQL as")
            os.chown(root, uid, -1)
            as_user = [runuser, "-u", "postgres", "--"]
        pg = cls(root, bindir, free_port(), as_user)
        init = [str(bindir / "initdb"), "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
        done = subprocess.run([*as_user, *init], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        return pg

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _ctl(self, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off "
            "-c max_connections=100"
        )
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back every open transaction and close every session, as a restart does."""
        self._ctl("-m", mode, "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # already down
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
