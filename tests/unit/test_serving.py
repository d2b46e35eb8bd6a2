"""uvicorn runs cutout with httptools and uvloop when they can be imported, and with its own choice otherwise."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from cutout.api import serving


def test_the_fast_parser_and_loop_when_installed() -> None:
    config = serving.server_config(object(), "127.0.0.1", 8700)
    assert config.http == "httptools"
    assert config.loop == ("auto" if sys.platform == "win32" else "uvloop")
    assert config.lifespan == "on" and not config.access_log and not config.server_header and not config.reload


def test_uvicorns_choice_when_they_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in ("httptools", "uvloop") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    config = serving.server_config(object(), "127.0.0.1", 8700, lifespan="off")
    assert (config.http, config.loop, config.lifespan) == ("auto", "auto", "off")


# a child process: 30 MB in 1,000-byte blocks, freed; prints how much of it went back to the kernel. It first
# sets glibc's documented default threshold (128 KB): glibc raises it by itself after freeing a large block,
# which some runs' start-up does and others' does not, so without this the default case would be a draw
_HEAP_CHILD = """
import ctypes, sys
from cutout.api import serving
ctypes.CDLL(None).mallopt(-1, 128 * 1024)
kept = serving.keep_freed_heap() if sys.argv[1] == "keep" else False
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
blocks = [bytes(1000) + bytes([i % 256]) for i in range(30_000)]
full = rss()
del blocks
print(int(kept), full - rss())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator: Linux only")
@pytest.mark.parametrize("mode", ["keep", "default"])
def test_freed_heap_is_kept_for_the_next_batch_only_when_asked(mode: str) -> None:
    import platform
    import subprocess

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the C library is not glibc")
    out = subprocess.run([sys.executable, "-c", _HEAP_CHILD, mode], capture_output=True, text=True, check=True)
    kept, returned = map(int, out.stdout.split())
    if mode == "keep":
        assert kept == 1
        assert returned < 4 << 20, f"{returned} bytes went back to the kernel"
    else:
        assert returned > 20 << 20, f"only {returned} bytes went back: the test no longer shows the difference"


# a child process: eight threads allocate at once (each new thread that allocates gets an arena of its own, up to
# glibc's limit), then glibc's malloc_stats prints one "Arena N:" block per arena on stderr
_ARENA_CHILD = """
import ctypes, sys, threading
from cutout.api import serving
limited = serving.few_arenas() if sys.argv[1] == "few" else False
go = threading.Barrier(8)
def work():
    go.wait()
    for _ in range(100):
        blocks = [bytearray(2000) for _ in range(50)]
        del blocks
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()
print(int(limited))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator: Linux only")
@pytest.mark.parametrize("mode", ["few", "default"])
def test_threads_share_few_arenas_only_when_asked(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import platform
    import subprocess

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the C library is not glibc")
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    out = subprocess.run([sys.executable, "-c", _ARENA_CHILD, mode], capture_output=True, text=True, check=True)
    arenas = sum(line.startswith("Arena ") for line in out.stderr.splitlines())
    if mode == "few":
        assert out.stdout.split() == ["1"]
        assert arenas <= serving.ARENAS == 2
    else:
        assert arenas > 4, f"{arenas} arenas: the test no longer shows the difference"


def test_an_operators_arena_limit_is_left_to_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert serving.few_arenas() is False


def test_workers_run_at_most_their_number_at_once_and_start_again_after_closing() -> None:
    import asyncio
    import threading

    from cutout.api.app import Workers

    async def main() -> None:
        workers = Workers(2)
        lock, go = threading.Lock(), threading.Event()
        running, most = 0, 0

        def call(n: int) -> int:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            go.wait(10)
            with lock:
                running -= 1
            return n

        calls = [asyncio.ensure_future(workers.run(call, n)) for n in range(5)]
        for _ in range(10_000):  # until two have started (a pool of one would never get there)
            if running >= 2:
                break
            await asyncio.sleep(0.001)
        assert running == 2
        assert most == 2  # the other three wait for a thread
        go.set()
        assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]
        assert most == 2
        workers.close()
        assert await workers.run(call, 7) == 7  # a new lifespan after the last one ended
        workers.close()

    asyncio.run(main())


def test_serve_hands_the_interpreter_over_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cutout serve`` shortens the GIL's switch interval before uvicorn starts (see
    ``serving.hand_over_often``): with Python's 5 ms a poll answered during a large submission waits up to
    that long each of the dozen times it needs the interpreter back."""
    import uvicorn
    from click.testing import CliRunner

    from cutout.cli.main import main

    for key in ("CUTOUT_DATA", "CUTOUT_DATABASE_URL", "CUTOUT_HOST", "CUTOUT_PORT"):
        monkeypatch.delenv(key, raising=False)
    seen: dict[str, Any] = {}

    def run(self: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
        seen["interval"] = sys.getswitchinterval()
        seen["loop"] = self.config.loop

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(serving, "keep_freed_heap", lambda: seen.setdefault("heap", True))
    monkeypatch.setattr(serving, "few_arenas", lambda: seen.setdefault("arenas", True))
    data = str(tmp_path / "broker")
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--data", data, "--name", "Serve Test"]).exit_code == 0
    before = sys.getswitchinterval()
    assert before == pytest.approx(0.005)  # Python's default: the test would show nothing otherwise
    try:
        result = runner.invoke(main, ["serve", "--data", data, "--port", "8799"])
    finally:
        sys.setswitchinterval(before)
    assert result.exit_code == 0, result.output
    assert seen["interval"] == pytest.approx(serving.SWITCH_INTERVAL)
    assert serving.SWITCH_INTERVAL <= 0.001
    assert seen["heap"] is True and seen["arenas"] is True and seen["loop"] in ("uvloop", "auto")
