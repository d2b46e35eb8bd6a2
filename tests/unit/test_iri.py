"""``rfc3987-syntax`` is loaded on first use (``cutout.model.iri``), and jsonschema's ``iri`` formats still
give the verdicts the package gives when jsonschema imports it itself.

Each case runs in a new interpreter, since the point is what an import does to ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from cutout.model import iri

VALUES = [
    "http://example.com/a/b?c=d#e",
    "https://例え.テスト/パス",
    "urn:oasis:names:specification:docbook:dtd:xml:4.1.2",
    "mailto:someone@example.org",
    "/relative/path",
    "not an iri",
    "http://[::1]:80/",
    "http://[not-an-ip]/",
    "",
    "http://exa mple.com/",
]

# the verdicts of jsonschema's own format checker, for both iri formats, printed as JSON
VERDICTS = f"""
import json
from jsonschema import FormatChecker
checker = FormatChecker()
print(json.dumps([[checker.conforms(v, f) for f in ("iri", "iri-reference")] for v in {VALUES!r}]))
"""


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_validator_builds_no_iri_parser() -> None:
    out = _python(
        "import sys, cutout.model.validate, cutout.sanitize.vocab as v; v.vocabularies();"
        "print(sorted(m for m in sys.modules if m == 'lark' or m.startswith(('lark.', 'rfc3987_syntax.'))))"
    )
    assert out.strip() == "[]"


def test_the_iri_formats_give_the_packages_own_verdicts() -> None:
    real = json.loads(_python(VERDICTS))  # jsonschema imported first: the package as it comes
    deferred = json.loads(_python("import cutout.model\n" + VERDICTS))
    assert deferred == real
    flat = [v for pair in real for v in pair]
    assert True in flat and False in flat  # the checker ran: an absent one would pass everything


def test_other_names_are_the_real_ones_on_first_use() -> None:
    out = _python(
        "import cutout.model, rfc3987_syntax as r, rfc3987_syntax.syntax_helpers as h\n"
        "print(r.is_valid_syntax_iri is h.is_valid_syntax_iri, r.is_valid_syntax_iri('http://a/'),"
        " r.is_valid_syntax_iri('a b'), r.RFC3987_SYNTAX_PARSER_TYPE)"
    )
    assert out.split() == ["True", "True", "False", "earley"]


def test_a_package_already_imported_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = types.ModuleType(iri.PACKAGE)
    monkeypatch.setitem(sys.modules, iri.PACKAGE, real)
    assert iri.defer() is False
    assert sys.modules[iri.PACKAGE] is real


def test_nothing_is_put_in_place_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, iri.PACKAGE, raising=False)
    monkeypatch.setattr(iri.importlib.util, "find_spec", lambda name: None)
    assert iri.defer() is False
    assert iri.PACKAGE not in sys.modules
