"""``rfc3987-syntax`` loaded when it is first used instead of when ``jsonschema`` is imported.

stix2-validator asks for ``jsonschema[format-nongpl]``, which since jsonschema 4.25 includes
``rfc3987-syntax`` for the ``iri`` and ``iri-reference`` formats. jsonschema imports it with the rest of its
format checkers, and its import compiles a ``lark`` Earley parser for each of about forty grammar rules: 2 to
2.5 s of CPU on this project's machines, against 0.6 s for everything else the validator imports. Every
process that validates paid it: ``cutout serve``, its checking process (again when it is restarted), the
demo and each server the tests start. No STIX 2.1 schema uses either format (they use ``uri``,
``idn-hostname``, ``email``, ``ipv4`` and ``ipv6``), so the parsers were built and never run.

:func:`defer` puts a stand-in for the package in ``sys.modules`` before ``jsonschema`` is imported. It has the
one function jsonschema takes from it, ``is_valid_syntax``, which imports the real ``syntax_helpers`` on its
first call and calls the real function; any other name is looked up there too, so code that uses the package
gets the real thing, only later. A maintained fork (``rfc3987-syntax2``) builds its parsers lazily, but
jsonschema does not use it, so this stays until jsonschema does. Nothing changes where the package is not
installed or was imported already.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["PACKAGE", "defer"]

PACKAGE = "rfc3987_syntax"
_HELPERS = f"{PACKAGE}.syntax_helpers"


def _helpers() -> types.ModuleType:
    return importlib.import_module(_HELPERS)


def is_valid_syntax(term: str, value: str) -> bool:
    """``rfc3987_syntax.is_valid_syntax``, whose parsers are built on the first call."""
    return bool(_helpers().is_valid_syntax(term, value))


def _getattr(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_helpers(), name)


def defer() -> bool:
    """Put the stand-in in place, unless the package is missing or already imported; True if it did."""
    if PACKAGE in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.submodule_search_locations is None:
        return False
    stand_in = types.ModuleType(PACKAGE, __doc__)
    stand_in.__spec__ = spec
    stand_in.__file__ = spec.origin
    stand_in.__path__ = list(spec.submodule_search_locations)  # so its submodules are the real ones
    stand_in.__package__ = PACKAGE
    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    stand_in.__getattr__ = _getattr  # type: ignore[method-assign]
    sys.modules[PACKAGE] = stand_in
    return True
