"""How cutout runs on uvicorn: one configuration for ``cutout serve`` and everything that mimics it.

uvicorn's C HTTP parser (httptools) and event loop (uvloop) are dependencies; where either cannot be
imported (uvloop has no Windows build) uvicorn picks its own ("auto").
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import uvicorn

__all__ = ["server_config", "speedups"]


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
