"""uvicorn runs cutout with httptools and uvloop when they can be imported, and with its own choice otherwise."""

from __future__ import annotations

import importlib.util
import sys
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
