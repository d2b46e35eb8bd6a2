"""Start a real ``cutout serve`` in a subprocess on a free loopback port (for the demo and the tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["RunningServer", "free_port", "start_server", "stop_process"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Ask a process to stop (SIGTERM); kill it if it has not within ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(
    data_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 30.0, log: Path | None = None
) -> RunningServer:
    """Run ``python -m cutout serve --data DIR`` and wait until it answers; its output goes to ``log``
    (``DIR/serve.log`` by default: several nodes of one broker need one each)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env.update(extra_env or {})
    log = log or data_dir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cutout", "serve", "--data", str(data_dir), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cutout serve exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/taxii2/", timeout=1.0).status_code == 401:
                return RunningServer(proc, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"cutout serve did not answer within {timeout} s: {log.read_text(errors='replace')}")
