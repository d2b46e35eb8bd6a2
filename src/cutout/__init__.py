"""cutout: an intelligence exchange between parties who must share but must not deal with each other directly.

Public names: the service (``Exchange``), its settings, the ASGI app factory, and the error tree.
"""

from cutout.errors import (
    AuthError,
    BadRequest,
    BrokerExists,
    ConfigError,
    Conflict,
    CutoutError,
    Forbidden,
    InvalidContent,
    NotAcceptable,
    NotFound,
    NotInitialised,
    Problem,
    StoreUnavailable,
    TooLarge,
    UnsupportedMediaType,
)
from cutout.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
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


def __getattr__(name: str) -> object:
    # The service and the app pull in the database and HTTP stacks: import them on first use only.
    if name == "Exchange":
        from cutout.service import Exchange

        return Exchange
    if name == "create_app":
        from cutout.api import create_app

        return create_app
    raise AttributeError(f"module 'cutout' has no attribute {name!r}")
