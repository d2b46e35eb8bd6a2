"""Every setting, CLI command and error code is documented (the datasette habit)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click

import cutout
from cutout import errors
from cutout.cli.main import main
from cutout.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _commands(group: click.Group, prefix: str = "cutout") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, f"{prefix} {name}"))
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for field in dataclasses.fields(Settings):
        if field.name != "data_dir":
            assert f"`{field.name}`" in text, field.name


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    for command in _commands(main):
        assert f"`{command}" in text, command


def test_every_error_code_is_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.CutoutError) and cls is not errors.CutoutError
    }
    for code in codes:
        assert re.search(rf"`{re.escape(code)}`", text), code


def test_public_names_are_pinned() -> None:
    assert sorted(cutout.__all__) == sorted(
        [
            "AuthError",
            "BadRequest",
            "BrokerExists",
            "ConfigError",
            "Conflict",
            "CutoutError",
            "Exchange",
            "Forbidden",
            "InvalidContent",
            "NotAcceptable",
            "NotFound",
            "NotInitialised",
            "Problem",
            "Settings",
            "StoreUnavailable",
            "TooLarge",
            "UnsupportedMediaType",
            "__version__",
            "create_app",
            "load_settings",
        ]
    )
    for name in cutout.__all__:
        assert getattr(cutout, name) is not None
