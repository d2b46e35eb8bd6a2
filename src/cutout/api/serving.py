"""How cutout runs on uvicorn: one configuration for ``cutout serve`` and everything that mimics it.

uvicorn's C HTTP parser (httptools) and event loop (uvloop) are dependencies; where either cannot be
imported (uvloop has no Windows build) uvicorn picks its own ("auto").
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import sys
from typing import Any, Literal

import uvicorn

__all__ = [
    "ARENAS",
    "HEAP_KEPT",
    "SWITCH_INTERVAL",
    "few_arenas",
    "hand_over_often",
    "keep_freed_heap",
    "server_config",
    "speedups",
]

#: how much freed memory glibc's allocator may keep at the top of the heap instead of returning it at once
HEAP_KEPT = 64 << 20
#: how many arenas glibc's allocator may keep (its default: eight per core)
ARENAS = 2
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_ARENA_MAX = -8


def _mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt``; False where the C library is not glibc (it is left alone)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(param, value))


def keep_freed_heap(limit: int = HEAP_KEPT) -> bool:
    """Let glibc's allocator keep up to ``limit`` bytes of freed heap; True if it was set.

    A release run builds each reader's copies (about 13 MB for an envelope of 100 objects to 100 readers)
    and frees them after the commit. glibc gives the top of the heap back to the kernel once more than
    128 KB of it is free (a threshold it raises by itself after freeing a large block, which some runs'
    start-up does and others' does not), and the next envelope then takes the same memory back one zeroed
    page at a time: about one page fault per copy, 2-4 us of a fan-out's ~50 us per copy. Kept, the next
    envelope reuses it, in every run. The process's peak is what it was (the memory was in use at the
    peak); what changes is that it is not returned between batches. ``MALLOC_TRIM_THRESHOLD_`` in the
    environment does the same; a C library other than glibc is left alone.
    """
    return _mallopt(_M_TRIM_THRESHOLD, limit)


def few_arenas(arenas: int = ARENAS) -> bool:
    """Let glibc's allocator keep at most ``arenas`` arenas; True if it was set. Call it before the server's
    threads start.

    glibc gives each new thread an arena of its own, up to eight per core, and an arena keeps what its thread
    freed for the next allocation there (``keep_freed_heap``). The worker thread that happened to run a large
    envelope's work kept about 20 MB of it, and when a second worker first ran one, a second 20 MB stayed:
    the server's resident size moved by that much from run to run with the order its threads were picked in,
    not with the exchange's size (206 MB after 100,000 objects, against 185-187 MB with two arenas or one,
    and no CPU difference in ingest or fan-out; docs/benchmarks.md, the eighth round). Python's own
    allocator and the GIL already serialise most allocations, so the threads sharing two arenas rarely
    wait for each other. ``MALLOC_ARENA_MAX`` in the environment, if set, is left to decide; a C library
    other than glibc is left alone."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    return _mallopt(_M_ARENA_MAX, arenas)


#: how long a thread may hold the interpreter (the GIL) while another waits for it, in seconds (Python's own
#: default is 0.005)
SWITCH_INTERVAL = 0.0005


def hand_over_often(interval: float = SWITCH_INTERVAL) -> None:
    """Make a thread that holds the GIL hand it over after ``interval`` seconds when another thread waits.

    A large submission is one worker thread's work for a tenth of a second or more, nearly all of it Python
    holding the GIL. A poll answered meanwhile needs the GIL a dozen times (the event loop reads it, hands it
    to a worker thread, each SQLite call gives the GIL up and takes it back, the answer goes back to the
    loop and out), and with Python's default each time can wait up to 5 ms. In the benchmark's burst
    (bench/measure.py, ``during_burst``) a ten-object poll while the provider sent 1,000-object envelopes
    took 38-40 ms at p90 and 50-56 ms at p99 with 5 ms, 9-10 ms and 13-15 ms with 0.5 ms, the provider's
    rate unchanged (five alternating pairs; docs/benchmarks.md, the seventh round). A thread that nobody
    waits for is never interrupted, so a server serving one request at a time is unchanged.
    """
    sys.setswitchinterval(interval)


def speedups() -> tuple[str, str]:
    """uvicorn's ``http`` and ``loop``: httptools and uvloop when they can be imported, else uvicorn's choice."""
    http = "httptools" if importlib.util.find_spec("httptools") else "auto"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "auto"
    return http, loop


def server_config(app: Any, host: str, port: int, *, lifespan: Literal["on", "off"] = "on") -> uvicorn.Config:
    """A production uvicorn configuration: no reloader, no access log, no Server header."""
    http, loop = speedups()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        loop=loop,
        server_header=False,
        date_header=True,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
    )
