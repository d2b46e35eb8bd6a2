"""Fast STIX 2.1 object validation with the same verdict as ``stix2-validator``.

:class:`Validator` accepts exactly the objects that OASIS ``stix2-validator`` accepts with its default
options for STIX 2.1 (``validate_instance(obj, ValidationOptions(version="2.1")).is_valid``) and
refuses the rest, but is two orders of magnitude faster, so it can sit on the ingest path:

* **JSON schemas** - the official STIX 2.1 schemas shipped inside ``stix2validator`` are compiled once
  with ``jsonschema_rs`` (one validator per schema file, all files in one offline registry). The schema
  for an object is chosen the way ``stix2validator`` chooses it: the file named after the object's
  ``type`` (any file of the schema tree, as ``stix2validator`` searches the whole tree), otherwise
  ``core`` / ``cyber-observable-core`` for custom objects. Schema regular expressions are rewritten to
  keep Python ``re`` semantics (``$`` also matches before a final newline, ``\\d`` matches any Unicode
  digit), and the three ``format`` checks use the same checkers ``jsonschema`` uses.
* **MUST rules** - every check of ``stix2validator.v21.musts`` is ported: timestamp sanity, ordering of
  timestamp pairs, circular marking references, granular-marking selectors, references between
  observables, IANA media types and character sets, RFC 5646 language codes, STIX patterns (via
  ``stix2patterns``, memoised, with an exact fast path for the common simple patterns), CPE 2.3
  strings, language-content keys and UUID versions.
* **Crashes** - ``stix2validator`` raises instead of answering for some inputs, mostly in its SHOULD
  checks (which otherwise only warn). Such an object is refused, so the conditions under which any of
  its checks would raise are ported as well.

SHOULD-level warnings never make an object invalid, exactly as with ``stix2validator``'s defaults.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import stix2validator  # after cutout.model's own import, which defers rfc3987-syntax's (cutout.model.iri)
from stix2validator import validator as _stix2validator_module
from stix2validator.v21 import enums, musts

from cutout.errors import Problem

# The very objects stix2validator uses (reached through its modules, which are typed as Any here).
_CPE: Final = musts.CPE  # cpe.CPE
_Pattern: Final = musts.Pattern  # stix2patterns.v21.pattern.Pattern
_run_pattern_validator: Final = musts.pattern_validator  # stix2patterns.validator.run_validator
_HASHES_REGEX: Final[dict[str, tuple[str, str]]] = importlib.import_module(
    "stix2patterns.v21.object_validator"
).HASHES_REGEX

__all__ = ["Validator", "default_validator"]

JSON = Any

NOT_AN_OBJECT: Final = "an object must be a JSON object"
_MAX_MESSAGES: Final = 20
_VALUE_CUT: Final = 60

_SCHEMA_BASE: Final = Path(stix2validator.__file__).parent


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


class _Refused(Exception):
    """``stix2validator`` would raise on this object (so it refuses it); ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _short(value: JSON) -> str:
    """A short, human-readable rendering of a JSON value (never more than ~60 characters)."""
    if isinstance(value, str):
        text = value if len(value) <= _VALUE_CUT else value[: _VALUE_CUT - 3] + "..."
        return repr(text)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= _VALUE_CUT else text[: _VALUE_CUT - 3] + "..."
    if isinstance(value, list):
        return "an empty array" if not value else f"an array of {len(value)} item(s)"
    if isinstance(value, dict):
        return "an empty object" if not value else f"an object with {len(value)} propert(y/ies)"
    return f"a {type(value).__name__}"


def _cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_LONG_QUOTED_RE: Final = re.compile("'([^']{" + str(_VALUE_CUT + 1) + ",})'")


def _cut_quoted(text: str) -> str:
    """Shorten the input fragments a third-party message quotes, then the message itself."""
    return _cut(_LONG_QUOTED_RE.sub(lambda m: "'" + m.group(1)[: _VALUE_CUT - 3] + "...'", text), 200)


def _loc(path: Iterable[str | int]) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            key = step if len(step) <= _VALUE_CUT else step[: _VALUE_CUT - 3] + "..."
            out += f".{key}" if out else key
    return out


def _where(path: Iterable[str | int], prefix: str) -> str:
    loc = _loc(path)
    if prefix and loc:
        return f"{prefix}.{loc}" if not loc.startswith("[") else prefix + loc
    return prefix or loc


def _in_strs(value: JSON, strings: frozenset[str]) -> bool:
    """``value in some_list_of_strings`` for JSON values, but O(1) (lists never raise on ``in``)."""
    return isinstance(value, str) and value in strings


def _type_name(value: JSON) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------------
# schema compilation
# --------------------------------------------------------------------------------------------------

_PY_ESCAPES_OK: Final = frozenset("\\.-/*?+()[]{}|^$")


def _python_regex_for_rust(pattern: str) -> str:
    """Rewrite a schema regex so the Rust engine matches exactly what Python's ``re.search`` matches.

    Python's ``$`` (without MULTILINE) also matches just before a final newline and Python's ``\\d``
    matches any Unicode decimal digit; the schemas use no other construct whose meaning differs.
    """
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            nxt = pattern[i + 1]
            if nxt == "d":
                out.append(r"\p{Nd}")
            elif nxt in _PY_ESCAPES_OK or not nxt.isalnum():
                out.append(char + nxt)
            else:  # pragma: no cover - guards against future schema changes
                raise ValueError(f"unsupported regex escape \\{nxt} in schema pattern {pattern!r}")
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
            elif char in "&~-" and pattern[i + 1 : i + 2] == char:  # pragma: no cover
                raise ValueError(f"ambiguous character class in schema pattern {pattern!r}")
            elif char == "[":  # pragma: no cover
                raise ValueError(f"nested character class in schema pattern {pattern!r}")
            out.append(char)
        elif char == "[":
            in_class = True
            out.append(char)
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":  # a leading ']' is literal in Python
                out.append(r"\]")
                i += 1
        elif char == "$":
            out.append(r"\n?$")
        else:
            out.append(char)
        i += 1
    return "".join(out)


_NEEDS_PYTHON_RE: Final = re.compile(r"\(\?[=!<]|\\[1-9]")
_PYTHON_PATTERN: Final = "x-cutout-python-pattern"


class _PythonPattern:
    """``pattern`` evaluated by Python's ``re`` (for the few regexes the Rust engine cannot run)."""

    def __init__(self, parent_schema: JSON, value: str, schema_path: JSON) -> None:
        self.source = value
        self.regex = re.compile(value)

    def validate(self, instance: JSON) -> None:
        if isinstance(instance, str) and not self.regex.search(instance):
            raise ValueError(_describe_pattern(self.source))


def _rewrite_schema(node: JSON, originals: dict[str, str], formats: set[str]) -> JSON:
    if isinstance(node, list):
        return [_rewrite_schema(item, originals, formats) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, JSON] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str) and _NEEDS_PYTHON_RE.search(value):
            out[_PYTHON_PATTERN] = value
        elif key == "pattern" and isinstance(value, str):
            new = _python_regex_for_rust(value)
            originals[new] = value
            out[key] = new
        elif key == "format" and isinstance(value, str):
            formats.add(value)
            out[key] = value
        elif key == "patternProperties" and isinstance(value, dict):
            props: dict[str, JSON] = {}
            for regex, sub in value.items():
                new = _python_regex_for_rust(regex)
                originals[new] = regex
                props[new] = _rewrite_schema(sub, originals, formats)
            out[key] = props
        elif key == "$schema" and isinstance(value, str):
            out[key] = "https://json-schema.org/draft/2020-12/schema"
        else:
            out[key] = _rewrite_schema(value, originals, formats)
    return out


_EMAIL_RE: Final = re.compile(r"(^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$)")
_FORMAT_CHECKER: Final = _stix2validator_module.Draft202012Validator.FORMAT_CHECKER


def _is_email(value: str) -> bool:
    # stix2validator replaces jsonschema's e-mail check with this regex
    return _EMAIL_RE.match(value) is not None


def _format_check(name: str) -> Callable[[str], bool]:
    """The check ``jsonschema`` (as configured by stix2validator) applies for a ``format``."""
    if name == "email":
        return _is_email

    def conforms(value: str) -> bool:
        return bool(_FORMAT_CHECKER.conforms(value, name))

    return conforms


def _offline(uri: str) -> JSON:
    raise LookupError(f"schema {uri} is not bundled with stix2validator")


class _Compiled(Mapping[str, Any]):
    """Validators compiled on first use, by file name (a :class:`Validator` made with ``lazy=True``)."""

    def __init__(self, names: Iterable[str], compile_one: Callable[[str], Any]) -> None:
        self._names = frozenset(names)
        self._compile = compile_one
        self._done: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        found = self._done.get(name)
        if found is None:
            if name not in self._names:
                raise KeyError(name)
            found = self._done[name] = self._compile(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)


class _SchemaSet:
    """Compiled validators for one ``schemas-<version>`` tree of stix2validator, keyed by file name: all of
    them at once, or (``lazy``) each on first use."""

    def __init__(self, version: str, lazy: bool = False) -> None:
        base = _SCHEMA_BASE / f"schemas-{version}" / "schemas"
        self.pattern_sources: dict[str, str] = {}
        formats: set[str] = set()
        documents: dict[str, tuple[str, JSON]] = {}
        for path in sorted(base.rglob("*.json")):
            document = _rewrite_schema(json.loads(path.read_text("utf-8")), self.pattern_sources, formats)
            documents[path.stem] = (document["$id"], document)
        # stix2validator replaces the bundle's 'objects' schema (each object is validated on its own)
        bundle = documents["bundle"][1]
        bundle["properties"]["objects"] = {"objects": {"type": "array", "minItems": 1}}
        registry = jsonschema_rs.Registry([(uri, doc) for uri, doc in documents.values()], retriever=_offline)

        def compile_one(stem: str) -> Any:
            return jsonschema_rs.Draft202012Validator(
                documents[stem][1],
                registry=registry,
                retriever=_offline,
                validate_formats=True,
                formats={name: _format_check(name) for name in formats},
                pattern_options=jsonschema_rs.RegexOptions(),
                keywords={_PYTHON_PATTERN: _PythonPattern},
            )

        self.validators: Mapping[str, Any] = (
            _Compiled(documents, compile_one) if lazy else {stem: compile_one(stem) for stem in documents}
        )


# --------------------------------------------------------------------------------------------------
# schema error messages
# --------------------------------------------------------------------------------------------------

_TIMESTAMP_SRC: Final = (
    "^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\\.[0-9]+)?Z$"
)
_IDENTIFIER_SRC_PREFIX: Final = "^[a-z][a-z0-9-]+[a-z0-9]--"
_PREFIX_ONLY_RE: Final = re.compile(r"^\^([a-z0-9-]+)--$")


def _describe_pattern(source: str) -> str:
    if source == _TIMESTAMP_SRC:
        return "must be a timestamp of the form YYYY-MM-DDTHH:MM:SS[.s+]Z"
    if source.startswith("T\\d{2}:\\d{2}:\\d{2}\\.\\d{3,}"):
        return "must be a timestamp with (at least) millisecond precision, e.g. 2020-01-01T00:00:00.000Z"
    if source.startswith(_IDENTIFIER_SRC_PREFIX):
        return "must be an identifier of the form <object-type>--<UUID>"
    match = _PREFIX_ONLY_RE.match(source)
    if match:
        return f"must be an identifier starting with '{match.group(1)}--'"
    if source.startswith("^([a-z][a-z0-9]*)+(-[a-z0-9]+)*\\-?$"):
        return "must be a valid type name (lowercase ASCII letters, digits and single hyphens)"
    if source.startswith("^([A-Za-z0-9+/]{4})*"):
        return "must be base64-encoded"
    if source == "^([a-fA-F0-9]{2})+$":
        return "must be hex-encoded"
    if source.startswith("^([a-zA-Z][a-zA-Z0-9+.-]*):"):
        return "must be a URL"
    return f"does not match the required format {_cut(source, 70)!r}"


def _schema_message(error: Any, prefix: str, schemas: _SchemaSet, depth: int = 0) -> str:
    kind = error.kind
    name = type(kind).__name__
    where = _where(error.instance_path, prefix)
    subject = f"'{where}'" if where else "the object"
    value = error.instance
    details: dict[str, Any] = kind.as_dict()
    if name == "Required":
        prop = details.get("property")
        return f"{subject}: required property {_short(prop)} is missing"
    if name == "AdditionalProperties":
        names = ", ".join(_short(p) for p in list(details.get("unexpected", []))[:5])
        if not where:
            return (
                f"property {names} is not allowed: custom property names must be 3-250 lowercase ASCII "
                "letters, digits or underscores"
            )
        return f"{subject}: property {names} is not allowed here"
    if name == "Type":
        wanted = details.get("types") or details.get("type") or "another type"
        if isinstance(wanted, list):
            wanted = " or ".join(str(w) for w in wanted)
        return f"{subject} must be of type {wanted}, not {_type_name(value)}"
    if name == "Pattern":
        source = schemas.pattern_sources.get(str(details.get("pattern")), str(details.get("pattern")))
        return f"{subject} {_short(value)} {_describe_pattern(source)}"
    if name in ("MinItems", "MinProperties"):
        return f"{subject} must not be empty"
    if name == "MinLength":
        return f"{subject} must be at least {details.get('limit')} characters long"
    if name == "MaxLength":
        return f"{subject} must be at most {details.get('limit')} characters long"
    if name == "Minimum":
        return f"{subject} must be at least {details.get('limit')}, not {_short(value)}"
    if name == "Maximum":
        return f"{subject} must be at most {details.get('limit')}, not {_short(value)}"
    if name == "Enum":
        options = ", ".join(_short(o) for o in list(details.get("options", []))[:8])
        return f"{subject} must be one of {options}, not {_short(value)}"
    if name == "Constant":
        return f"{subject} must be {_short(details.get('expected_value'))}, not {_short(value)}"
    if name == "Format":
        return f"{subject} {_short(value)} is not a valid {details.get('format')}"
    if name == "Not":
        schema = details.get("schema")
        if isinstance(schema, dict) and "anyOf" in schema and not where:
            return "the object uses a reserved property ('severity', 'action', 'username' or 'phone_numbers')"
        return f"{subject} has a value that is not allowed here ({_short(value)})"
    if name in ("AnyOf", "OneOfNotValid"):
        if value is None:
            return f"{subject} must not be null"
        if value == [] or value == {}:
            return f"{subject} must not be empty"
        context = details.get("context") or []
        branches = [branch for branch in context if branch]
        if branches and depth < 3:
            best = min(branches, key=len)
            closest = _schema_message(best[0], prefix, schemas, depth + 1)
            return f"{subject} does not match any of the allowed forms (closest: {closest})"
        return f"{subject} does not match any of the allowed forms"
    if name == "OneOfMultipleValid":
        return f"{subject} matches more than one of the mutually exclusive forms"
    if name == "FalseSchema":
        return f"{subject} is not allowed"
    if name == "Custom":  # _PythonPattern
        return f"{subject} {_short(value)} {_cut(str(details.get('message') or error.message), 100)}"
    if name == "PropertyNames":
        inner = details.get("error")
        offending = f" ({_short(inner.instance)})" if inner is not None else ""
        return f"{subject} has a property name that is not allowed{offending}"
    if name == "Contains":
        return f"{subject} does not contain a required value"
    rule = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
    return f"{subject} {_short(value)} breaks the schema's {rule} rule"


# --------------------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------------------

_TIMESTAMP_RE: Final = musts.TIMESTAMP_FORMAT_RE


def _calendar_error(text: str) -> str | None:
    """Why dateutil would refuse a string matching the timestamp regex (None if it would not)."""
    try:
        datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]))
    except ValueError as exc:
        return str(exc)
    return None


def _strptime(text: str) -> datetime | None:
    """``stix2validator.v21.musts.datetime_from_str`` for a string matching the timestamp regex."""
    if not text.endswith("Z"):  # a final newline: strptime leaves unconverted data
        return None
    fraction = text[20:-1] if len(text) > 20 else ""
    if len(fraction) > 6:
        return None
    try:
        return datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError:
        return None


def _ordered(first: JSON, op: str, second: JSON) -> bool:
    """``stix2validator.v21.musts.compare``; raises TypeError where it does."""
    if not isinstance(first, str) or not isinstance(second, str):
        raise TypeError("timestamps to compare must be strings")
    if len(first) == len(second):
        # Either both parse, with the same fixed-width layout (so chronological order is string order),
        # or stix2validator compares the strings anyway.
        return first >= second if op == "ge" else first > second
    if _TIMESTAMP_RE.match(first) and _TIMESTAMP_RE.match(second):
        a, b = _strptime(first), _strptime(second)
        if a is not None and b is not None:
            return a >= b if op == "ge" else a > b
    return first >= second if op == "ge" else first > second


def _comparison_message(first: str, op: str, second: str, where: str = "") -> str:
    rule = "must not be earlier than" if op == "ge" else "must be later than"
    return f"{where}'{first}' {rule} '{second}'"


def _check_timestamp(name: str, value: JSON, errs: list[str], where: str = "") -> None:
    if type(value) is str and value in _GOOD_TIMESTAMPS:
        return
    if not isinstance(value, str):
        raise _Refused(f"{where}'{name}' must be a string")
    if _TIMESTAMP_RE.match(value) and not (value[8:10] <= "28" and value[17:19] != "60" and value[0:4] != "0000"):
        reason = _calendar_error(value)
        if reason:
            errs.append(f"{where}'{name}' {_short(value)} is not a valid timestamp: {reason}")
            return
    if len(_GOOD_TIMESTAMPS) >= 4096:
        _GOOD_TIMESTAMPS.clear()
    _GOOD_TIMESTAMPS.add(value)


#: strings this check found nothing wrong with (an object's created, modified and valid_from are often one)
_GOOD_TIMESTAMPS: Final[set[str]] = set()


# --------------------------------------------------------------------------------------------------
# patterns
# --------------------------------------------------------------------------------------------------

_OBSERVABLE_TYPES: Final = frozenset(enums.OBSERVABLE_TYPES)
_OBSERVABLE_PROPERTIES: Final = {k: frozenset(v) for k, v in enums.OBSERVABLE_PROPERTIES.items()}
_PATTERN_KEYWORDS: Final = frozenset(
    {
        "and", "or", "not", "followedby", "like", "matches", "issuperset", "issubset", "exists", "last", "in",
        "start", "stop", "seconds", "true", "false", "within", "repeats", "times",
    }
)  # fmt: skip
_PATTERN_COMPARISON_RE: Final = re.compile(
    r"([a-z][a-z0-9]*(?:-[a-z0-9]+)*):([a-z_][a-z0-9_]*)"
    r"((?:\.(?:[a-z_][a-z0-9_]*|'[^'\\]*'))*)"
    r" ?!?= ?('[^'\\]*'|0|[1-9][0-9]{0,17})"
)
_PATTERN_STEP_RE: Final = re.compile(r"\.(?:([a-z_][a-z0-9_]*)|'([^'\\]*)')")


def _fast_pattern(pattern: str) -> list[tuple[str, list[str], str]] | None:
    """Parse the common simple STIX 2.1 patterns without ANTLR.

    Accepts a strict subset of the grammar: ``[type:prop(.key|.'key')* (=|!=) ('string'|int) ((AND|OR) ...)*]``
    observations joined by `` AND `` / `` OR ``, single spaces, no escapes. Anything else returns None
    and goes to ``stix2patterns``. Returns ``(object type, property path, literal as written)`` per
    comparison, as ``stix2patterns``' inspector reports them.
    """
    comparisons: list[tuple[str, list[str], str]] = []
    pos, end = 0, len(pattern)
    while True:
        if not pattern.startswith("[", pos):
            return None
        pos += 1
        while True:
            match = _PATTERN_COMPARISON_RE.match(pattern, pos)
            if match is None:
                return None
            obj_type, first, steps, value = match.groups()
            path = [first]
            for step in _PATTERN_STEP_RE.finditer(steps):
                ident, quoted = step.groups()
                if ident is not None:
                    if ident in _PATTERN_KEYWORDS:
                        return None
                    path.append(ident)
                else:
                    path.append(quoted)
            if obj_type in _PATTERN_KEYWORDS or first in _PATTERN_KEYWORDS:
                return None
            comparisons.append((obj_type, path, value))
            pos = match.end()
            if pattern.startswith(" AND ", pos):
                pos += 5
            elif pattern.startswith(" OR ", pos):
                pos += 4
            else:
                break
        if not pattern.startswith("]", pos):
            return None
        pos += 1
        if pos == end:
            return comparisons
        if pattern.startswith(" AND ", pos):
            pos += 5
        elif pattern.startswith(" OR ", pos):
            pos += 4
        else:
            return None


def _pattern_inspection_messages(comparisons: Mapping[str, Iterable[Sequence[Any]]]) -> list[str]:
    """The object-type and property-name MUSTs ``stix2validator`` applies to a parsed pattern."""
    out: list[str] = []
    for obj_type, expressions in comparisons.items():
        if obj_type not in _OBSERVABLE_TYPES and (
            not musts.TYPE_FORMAT_RE.match(obj_type) or len(obj_type) < 3 or len(obj_type) > 250
        ):
            out.append(f"'pattern': {_short(obj_type)} is not a valid observable type name")
        known = _OBSERVABLE_PROPERTIES.get(obj_type, frozenset())
        for expression in expressions:
            prop = expression[0][0]
            if prop in known:
                continue
            if not musts.PROPERTY_FORMAT_RE.match(prop):
                out.append(f"'pattern': {_short(prop)} is not a valid observable property name")
    return out


def _fast_pattern_messages(comparisons: list[tuple[str, list[str], str]]) -> list[str]:
    out: list[str] = []
    # stix2patterns.v21.object_validator.verify_object
    for _obj_type, path, literal in comparisons:
        if "hashes" in path:
            selector = path[-1]
            hash_type = selector.upper().replace("-", "").replace("'", "")
            rule = _HASHES_REGEX.get(hash_type)
            value = literal.replace("'", "")
            if rule is not None and not re.match(rule[0], value):
                out.append(f"'pattern' is not a valid STIX pattern: {_short(value)} is not a valid {selector} hash")
    if out:
        return out
    grouped: dict[str, list[tuple[list[str], str, str]]] = {}
    for obj_type, path, literal in comparisons:
        grouped.setdefault(obj_type, []).append((path, "=", literal))
    return _pattern_inspection_messages(grouped)


@functools.lru_cache(maxsize=16384)
def _slow_pattern_messages(pattern: str, is_21: bool) -> tuple[str, ...]:
    try:
        errors = _run_pattern_validator(pattern, "2.1" if is_21 else "2.0")
        if errors:
            return tuple(
                f"'pattern' is not a valid STIX pattern: {_cut_quoted(str(e).removeprefix('FAIL: '))}" for e in errors
            )
        comparisons = _Pattern(pattern).inspect().comparisons
    except Exception as exc:  # stix2validator would raise
        return (f"'pattern' cannot be processed by the STIX pattern parser ({type(exc).__name__})",)
    return tuple(_pattern_inspection_messages(comparisons))


def _pattern_messages(pattern: str, version: JSON) -> list[str]:
    if version != "2.1":
        return list(_slow_pattern_messages(pattern, False))
    if len(pattern) <= _MEMO_PATTERN_CHARS:
        return list(_pattern_messages_21(pattern))
    return list(_pattern_messages_21.__wrapped__(pattern))


#: patterns up to this long have their verdict remembered: a released copy keeps its original's pattern as
#: written, so the copy's check (see ``Sanitizer``) finds the verdict its original got moments before
_MEMO_PATTERN_CHARS: Final = 1024


@functools.lru_cache(maxsize=2048)
def _pattern_messages_21(pattern: str) -> tuple[str, ...]:
    comparisons = _fast_pattern(pattern)
    if comparisons is not None:
        return tuple(_fast_pattern_messages(comparisons))
    return _slow_pattern_messages(pattern, True)


@functools.lru_cache(maxsize=4096)
def _cpe_verdict(value: str) -> str | None:
    try:
        _CPE(value, _CPE.VERSION_2_3)
    except NotImplementedError:
        return f"'cpe' {_short(value)} is not a CPE 2.3 string"
    except Exception as exc:
        return f"'cpe' {_short(value)} cannot be parsed as a CPE ({type(exc).__name__})"
    return None


# --------------------------------------------------------------------------------------------------
# the MUST rules of stix2validator.v21.musts (and the conditions under which they raise)
# --------------------------------------------------------------------------------------------------

_TIMESTAMP_PROPERTIES: Final = enums.TIMESTAMP_PROPERTIES
_TIMESTAMP_OBSERVABLE_PROPERTIES: Final = enums.TIMESTAMP_OBSERVABLE_PROPERTIES
_TIMESTAMP_EMBEDDED_PROPERTIES: Final = enums.TIMESTAMP_EMBEDDED_PROPERTIES
_TIMESTAMP_COMPARE: Final = enums.TIMESTAMP_COMPARE
_TIMESTAMP_COMPARE_OBSERVABLE: Final = enums.TIMESTAMP_COMPARE_OBSERVABLE
_LANG_CODES: Final = frozenset(enums.LANG_CODES)
_SOFTWARE_LANG_CODES: Final = frozenset(enums.SOFTWARE_LANG_CODES)
_MEDIA_TYPES: Final = frozenset(enums.media_types())
_CHAR_SETS: Final = frozenset(enums.char_sets())
_LIST_INDEX_RE: Final = re.compile(r"\[(\d+)\]")
_UUID4_ONLY_UNLESS: Final = {
    "artifact": ("hashes", "payload_bin"),
    "email-message": ("from_ref", "subject", "body"),
    "user-account": ("account_type", "user_id", "account_login"),
    "windows-registry-key": ("key", "values"),
    "x509-certificate": ("hashes", "serial_number"),
}


def _is_observable_data(inst: dict[str, JSON]) -> bool:
    """``stix2validator.util.has_cyber_observable_data(instance, "2.1")``."""
    kind = inst["type"]
    if kind == "observed-data" and "objects" in inst and type(inst["objects"]) is dict:
        return True
    return _in_strs(kind, _OBSERVABLE_TYPES)


def _observables(inst: dict[str, JSON]) -> list[tuple[str, JSON]]:
    """What a ``@cyber_observable_check("2.1")`` check runs on: (location, object) pairs."""
    if not _is_observable_data(inst):
        return []
    if "objects" in inst:
        objects = inst["objects"]
        if not isinstance(objects, dict):
            raise _Refused("'objects' of an observable must be an object (a dictionary of observables)")
        return [(f"objects.{_cut(str(key), 40)}: ", value) for key, value in objects.items()]
    return [("", inst)]


def _must_timestamps(inst: dict[str, JSON], errs: list[str]) -> None:
    kind = inst["type"]
    names = ["created", "modified"]
    if kind in _TIMESTAMP_PROPERTIES:  # raises for an unhashable type, as stix2validator does
        names += _TIMESTAMP_PROPERTIES[kind]
    for name in names:
        if name in inst:
            _check_timestamp(name, inst[name], errs)
    if not _is_observable_data(inst):
        return
    for name in _TIMESTAMP_OBSERVABLE_PROPERTIES.get(kind, ()):
        if name in inst:
            _check_timestamp(name, inst[name], errs)
    for embed, names_in in _TIMESTAMP_EMBEDDED_PROPERTIES.get(kind, {}).items():
        holder = inst.get(embed)
        if embed not in inst or not isinstance(holder, Mapping):
            continue
        for name in names_in:
            if embed == "extensions":
                for ext_name, ext in holder.items():
                    if isinstance(ext, int | float | bool) or ext is None:
                        raise _Refused(f"'extensions.{ext_name}' must be an object")
                    if name in ext:
                        if not isinstance(ext, dict):
                            raise _Refused(f"'extensions.{ext_name}' must be an object")
                        _check_timestamp(name, ext[name], errs, f"extensions.{ext_name}: ")
            elif name in holder:
                _check_timestamp(name, holder[name], errs, f"{embed}: ")


def _must_timestamp_order(inst: dict[str, JSON], errs: list[str]) -> None:
    compares = [("modified", "ge", "created"), *_TIMESTAMP_COMPARE.get(inst.get("type", ""), [])]
    for first, op, second in compares:
        if first in inst and second in inst:
            try:
                ordered = _ordered(inst[first], op, inst[second])
            except TypeError:
                raise _Refused(f"'{first}' and '{second}' must be strings") from None
            if not ordered:
                errs.append(_comparison_message(first, op, second))


def _must_observable_timestamp_order(inst: dict[str, JSON], errs: list[str]) -> None:
    for where, obj in _observables(inst):
        if not isinstance(obj, dict):
            raise _Refused(f"{where}an observable must be an object")
        for first, op, second in _TIMESTAMP_COMPARE_OBSERVABLE.get(obj.get("type", ""), []):
            if first in obj and second in obj:
                try:
                    ordered = _ordered(obj[first], op, obj[second])
                except TypeError:
                    raise _Refused(f"{where}'{first}' and '{second}' must be strings") from None
                if not ordered:
                    if "id" not in obj:
                        raise _Refused(f"{where}an observable must have an 'id'")
                    errs.append(_comparison_message(first, op, second, where))


def _must_marking_circular_refs(inst: dict[str, JSON], errs: list[str]) -> None:
    if inst["type"] != "marking-definition":
        return
    if "object_marking_refs" in inst:
        for ref in inst["object_marking_refs"]:
            if ref == inst["id"]:
                errs.append("'object_marking_refs' must not reference this marking definition itself")
    if "granular_markings" in inst:
        for marking in inst["granular_markings"]:
            if "marking_ref" in marking and marking["marking_ref"] == inst["id"]:
                errs.append("'granular_markings' must not reference this marking definition itself")


def _must_marking_selectors(inst: dict[str, JSON], errs: list[str]) -> None:
    if "granular_markings" not in inst:
        return
    for marking in inst["granular_markings"]:
        if "selectors" not in marking:
            continue
        for selector in marking["selectors"]:
            segments = selector.split(".")
            obj: JSON = inst
            previous: str | None = None
            for segment in segments:
                index = _LIST_INDEX_RE.match(segment)
                if index:
                    idx = int(index.group(1))
                    if isinstance(obj, list | str):
                        try:
                            obj = obj[idx]
                        except IndexError:
                            errs.append(
                                f"granular marking selector {_short(selector)} is invalid: {idx} is not a valid index"
                            )
                    elif isinstance(obj, dict):
                        errs.append(
                            f"granular marking selector {_short(selector)} is invalid: {_short(previous)} is not a list"
                        )
                    else:
                        raise _Refused(f"granular marking selector {_short(selector)} indexes into {_type_name(obj)}")
                elif isinstance(obj, dict):
                    if segment in obj:
                        obj = obj[segment]
                    else:
                        errs.append(
                            f"granular marking selector {_short(selector)} is invalid: "
                            f"{_short(segment)} is not a property"
                        )
                else:
                    errs.append(
                        f"granular marking selector {_short(selector)} is invalid: {_short(segment)} is not a property"
                    )
                previous = segment


def _must_observable_references(inst: dict[str, JSON], errs: list[str]) -> None:
    if not (inst["type"] == "observed-data" and "objects" in inst and type(inst["objects"]) is dict):
        return
    objects: dict[str, JSON] = inst["objects"]

    def check_refs(refs: JSON, prop: str, embedded: str, allowed: JSON, key: str) -> None:
        for ref in refs if isinstance(refs, list) else [refs]:
            if ref not in objects:  # raises for an unhashable reference, as stix2validator does
                where = f"'{embedded}' " if embedded else ""
                errs.append(f"'{prop}' {where}of observable {key!r} refers to {_short(ref)}, not in 'objects'")
                continue
            target = objects[ref]
            if not isinstance(target, dict):
                raise _Refused(f"observable {_short(ref)} must be an object")
            if "type" in target and target["type"] not in allowed:
                names = " or ".join(f"'{name}'" for name in allowed)
                errs.append(f"'{prop}' of observable {key!r} must refer to an object of type {names}")

    for key, obj in objects.items():
        if "type" not in obj:
            continue
        if not isinstance(obj, dict):
            raise _Refused(f"observable {key!r} must be an object")
        kind = obj["type"]
        if kind not in enums.OBSERVABLE_PROP_REFS:
            continue
        for prop, rule in enums.OBSERVABLE_PROP_REFS[kind].items():
            if prop not in obj:
                continue
            if isinstance(rule, list):
                check_refs(obj[prop], prop, "", rule, key)
                continue
            value = obj[prop]
            for embedded_prop, embedded_rule in rule.items():
                if isinstance(value, dict):
                    if embedded_prop not in value:
                        continue
                    embedded_obj = value[embedded_prop]
                    for embedded_key in embedded_obj:
                        if embedded_key not in embedded_rule:
                            continue
                        check_refs(embedded_obj[embedded_key], prop, embedded_key, embedded_rule[embedded_key], key)
                elif isinstance(value, list):
                    for item in value:
                        if embedded_prop not in item:
                            continue
                        check_refs(item[embedded_prop], prop, embedded_prop, embedded_rule, key)


def _must_iana(inst: dict[str, JSON], errs: list[str]) -> None:
    """artifact_mime_type, character_set and software_language."""
    for where, obj in _observables(inst):
        if (
            "type" in obj
            and obj["type"] == "artifact"
            and "mime_type" in obj
            and not _in_strs(obj["mime_type"], _MEDIA_TYPES)
        ):
            errs.append(f"{where}'mime_type' {_short(obj['mime_type'])} is not an IANA registered media type")
        if not isinstance(obj, dict) or "id" not in obj:  # character_set reads the id first
            raise _Refused(f"{where}an observable must be an object with an 'id'")
        for kind, prop in (("directory", "path_enc"), ("file", "name_enc")):
            if obj.get("type") == kind and prop in obj and not _in_strs(obj[prop], _CHAR_SETS):
                errs.append(f"{where}'{prop}' {_short(obj[prop])} is not an IANA registered character set")
        if "type" in obj and obj["type"] == "software" and "languages" in obj:
            for lang in obj["languages"]:
                if not _in_strs(lang, _LANG_CODES) and not _in_strs(lang, _SOFTWARE_LANG_CODES):
                    errs.append(f"{where}'languages' contains {_short(lang)}, which is not an RFC 5646 language code")


def _must_language(inst: dict[str, JSON], errs: list[str]) -> None:
    if "lang" in inst and not _in_strs(inst["lang"], _LANG_CODES):
        errs.append(f"'lang' {_short(inst['lang'])} is not a valid RFC 5646 language code")


def _must_pattern(inst: dict[str, JSON], errs: list[str]) -> None:
    if inst["type"] != "indicator" or inst.get("pattern_type", "") != "stix":
        return
    pattern = inst.get("pattern")
    if not isinstance(pattern, str):
        return
    if "pattern_version" in inst:
        version = inst["pattern_version"]
    elif "spec_version" in inst:
        version = inst["spec_version"]
    else:
        version = "2.1"
    errs.extend(_pattern_messages(pattern, version))


def _must_cpe(inst: dict[str, JSON], errs: list[str]) -> None:
    if "cpe" not in inst:
        return
    value = inst["cpe"]
    if not isinstance(value, str):
        raise _Refused(f"'cpe' must be a string, not {_type_name(value)}")
    message = _cpe_verdict(value)
    if message:
        errs.append(message)


def _must_language_contents(inst: dict[str, JSON], errs: list[str]) -> None:
    if inst["type"] != "language-content" or "contents" not in inst:
        return
    contents = inst["contents"]
    if not isinstance(contents, dict):
        raise _Refused("'contents' must be an object")
    for lang, value in contents.items():
        if not _in_strs(lang, _LANG_CODES):
            errs.append(f"'contents' key {_short(lang)} is not an RFC 5646 language code")
        if not isinstance(value, dict):
            raise _Refused(f"'contents.{_cut(lang, 40)}' must be an object mapping property names to translations")
        for sub in value:
            if not musts.PROPERTY_FORMAT_RE.match(sub):
                errs.append(f"'contents.{_cut(lang, 40)}' key {_short(sub)} is not a valid property name")


def _uuid_version(identifier: JSON) -> int | None:
    if not isinstance(identifier, str):
        raise _Refused("'id' must be a string")
    try:
        return uuid.UUID(identifier.split("--")[-1]).version
    except ValueError:
        raise _Refused("'id' does not end in a UUID") from None


def _must_uuid_versions(inst: dict[str, JSON], errs: list[str]) -> None:
    kind = inst["type"]
    if not isinstance(kind, str):
        return
    contributing = _UUID4_ONLY_UNLESS.get(kind)
    if contributing is not None and "id" in inst:
        version = _uuid_version(inst["id"])
        if all(k not in inst for k in contributing) and version != 4:
            names = ", ".join(f"'{k}'" for k in contributing)
            errs.append(f"'id' must use a UUIDv4 when none of the ID contributing properties ({names}) is present")
    if kind == "process" and _uuid_version(inst["id"]) != 4:
        errs.append("the 'id' of a process must use a UUIDv4")


_MUSTS: Final[tuple[Callable[[dict[str, JSON], list[str]], None], ...]] = (
    _must_timestamps,
    _must_timestamp_order,
    _must_observable_timestamp_order,
    _must_marking_circular_refs,
    _must_marking_selectors,
    _must_observable_references,
    _must_iana,
    _must_language,
    _must_pattern,
    _must_cpe,
    _must_language_contents,
    _must_uuid_versions,
)


# --------------------------------------------------------------------------------------------------
# where stix2validator's SHOULD checks raise (they only warn otherwise)
# --------------------------------------------------------------------------------------------------

_VOCAB_PROPERTIES: Final = enums.VOCAB_PROPERTIES
_KILL_CHAIN_USERS: Final = frozenset(enums.KILL_CHAIN_PHASE_USES)
_REL_ENDPOINT_RE: Final = re.compile(r"(.+)--")
_CORE_TYPES: Final = frozenset(enums.TYPES) | frozenset(enums.RESERVED_OBJECTS) | _OBSERVABLE_TYPES
_PROPERTIES: Final = {k: frozenset(v) for k, v in enums.PROPERTIES.items()}
_RESERVED_PROPERTIES: Final = frozenset(enums.RESERVED_PROPERTIES)
_VOCAB_USES: Final[dict[str, tuple[str, ...]]] = {}
for _vocab in (
    "ATTACK_MOTIVATION",
    "ATTACK_RESOURCE_LEVEL",
    "GROUPING_CONTEXT",
    "IDENTITY_CLASS",
    "IMPLEMENTATION_LANGUAGES",
    "INDICATOR_TYPE",
    "INFRASTRUCTURE_TYPE",
    "INDUSTRY_SECTOR",
    "MALWARE_TYPE",
    "MALWARE_RESULT",
    "MALWARE_CAPABILITIES",
    "PROCESSOR_ARCHITECTURE",
    "REPORT_TYPE",
    "THREAT_ACTOR_TYPE",
    "THREAT_ACTOR_ROLE",
    "THREAT_ACTOR_SOPHISTICATION",
    "TOOL_TYPE",
    "REGION",
    "INDICATOR_PATTERN",
):
    for _kind, _props in getattr(enums, _vocab + "_USES").items():
        _VOCAB_USES[_kind] = _VOCAB_USES.get(_kind, ()) + tuple(_props)


def _uses_extension(inst: dict[str, JSON], kinds: tuple[str, ...]) -> bool:
    """``shoulds._uses_extension``; raises where it does."""
    return any(ext.get("extension_type", "") in kinds for ext in inst.get("extensions", {}).values())


def _nested_get(obj: JSON, *keys: str) -> tuple[bool, JSON]:
    """``obj[k1][k2]...`` swallowing KeyError and TypeError, as the SHOULD checks do."""
    try:
        for key in keys:
            obj = obj[key]
    except (KeyError, TypeError):
        return False, None
    return True, obj


def _should_general(inst: dict[str, JSON]) -> None:
    kind = inst["type"]
    # uuid_check
    if not isinstance(inst["id"], str):
        raise _Refused("'id' must be a string")
    # open_vocab_values (and deprecated_property_check: both index dicts by the type)
    if kind in _VOCAB_PROPERTIES:
        for prop in _VOCAB_PROPERTIES[kind]:
            if prop in inst:
                value = inst[prop]
                if type(value) is dict:
                    break
                for item in value if type(value) is list else [value]:
                    if not isinstance(item, str):
                        raise _Refused(f"'{prop}' must hold strings, not {_type_name(item)}")
    kind in enums.DEPRECATED_PROPERTIES  # noqa: B015 - raises for an unhashable type
    # kill_chain_phase_names
    if _in_strs(kind, _KILL_CHAIN_USERS) and "kill_chain_phases" in inst:
        for phase in inst["kill_chain_phases"]:
            if "kill_chain_name" not in phase:
                break
            if not isinstance(phase, dict):
                raise _Refused("'kill_chain_phases' must hold objects")
            if not isinstance(phase["kill_chain_name"], str) or not isinstance(phase["phase_name"], str):
                raise _Refused("'kill_chain_phases': 'kill_chain_name' and 'phase_name' must be strings")
    # malware_analysis_product
    if "product" in inst and kind == "malware-analysis" and not isinstance(inst["product"], str):
        raise _Refused("'product' must be a string")
    # the vocabulary checks build sets of list values
    if isinstance(kind, str):
        for prop in _VOCAB_USES.get(kind, ()):
            value = inst.get(prop)
            if type(value) is list:
                set(value)
    # countries
    if kind == "location" and "country" in inst and not isinstance(inst["country"], str):
        raise _Refused("'country' must be a string")
    # extref_hashes
    if "external_references" in inst:
        for ref in inst["external_references"]:
            if "url" in ref and "hashes" not in ref:
                if "source_name" in ref:
                    ref["source_name"]
                break
    # extension_properties
    if kind == "extension-definition":
        "toplevel-property-extension" in inst.get("extension_types", [])  # noqa: B015
    # relationships_strict
    if kind == "relationship" and all(k in inst for k in ("relationship_type", "source_ref", "target_ref")):
        rel_type = inst["relationship_type"]
        try:
            source = _REL_ENDPOINT_RE.search(inst["source_ref"]).group(1)  # type: ignore[union-attr]
            target = _REL_ENDPOINT_RE.search(inst["target_ref"]).group(1)  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            pass
        else:
            if (
                rel_type not in enums.COMMON_RELATIONSHIPS
                and source not in enums.NON_SDOS
                and target not in enums.NON_SDOS
                and source in enums.RELATIONSHIPS
            ):
                rel_type in enums.RELATIONSHIPS[source]  # noqa: B015
    # duplicate_ids
    if kind == "bundle" and "objects" in inst:
        seen: dict[JSON, JSON] = {}
        for obj in inst["objects"]:
            if "id" not in obj or "modified" not in obj:
                continue
            if obj["id"] not in seen:
                seen[obj["id"]] = obj["modified"]
            else:
                obj["modified"] == seen[obj["id"]]  # noqa: B015
    # extensions_use: custom_object and custom_property
    if not _in_strs(kind, _CORE_TYPES):
        _uses_extension(inst, ("new-sdo", "new-sco", "new-sro"))
    known = _PROPERTIES.get(kind)  # raises for an unhashable type, as stix2validator does
    if known is None:
        known = _OBSERVABLE_PROPERTIES.get(kind)
    if (
        known is not None
        and not inst.keys() <= known  # the common case, in C: every property is one the type defines
        and any(prop not in known and prop not in _RESERVED_PROPERTIES for prop in inst)
    ):
        _uses_extension(inst, ("toplevel-property-extension",))


def _should_hash_keys(obj: dict[str, JSON], hashes: JSON) -> None:
    """``shoulds.valid_hash_value`` regex-matches every name that is not a known algorithm."""
    for name in hashes:
        if not isinstance(name, str):
            raise _Refused("hash names must be strings")


def _hash_length(obj: dict[str, JSON]) -> None:
    """``shoulds.hash_length`` (it stops at its first finding)."""
    if "type" not in obj:
        return
    kind = obj["type"]
    if kind == "file":
        if "hashes" not in obj:
            return
        for name in obj["hashes"]:
            if len(name) > 30:
                return
        found, streams = _nested_get(obj, "extensions", "ntfs-ext", "alternate_data_streams")
        if not found:
            return
        for stream in streams:
            if "hashes" not in stream:
                return
            for name in stream["hashes"]:
                if len(name) > 30:
                    return
        for path in (
            ("extensions", "windows-pebinary-ext", "file_header_hashes"),
            ("extensions", "windows-pebinary-ext", "optional_header", "hashes"),
        ):
            found, hashes = _nested_get(obj, *path)
            if not found:
                return
            for name in hashes:
                if len(name) > 30:
                    return
        found, sections = _nested_get(obj, "extensions", "windows-pebinary-ext", "sections")
        if not found:
            return
        for section in sections:
            if "hashes" not in section:
                return
            for name in section["hashes"]:
                if len(name) > 30:
                    return
    elif kind in ("artifact", "x509-certificate"):
        found, hashes = _nested_get(obj, "hashes")
        if found:
            for name in hashes:
                if len(name) > 30:
                    return


def _should_observable(inst: dict[str, JSON]) -> None:
    for where, obj in _observables(inst):
        try:
            _should_one_observable(obj)
        except _Refused as refused:
            raise _Refused(where + refused.message) from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise _Refused(f"{where}malformed observable ({type(exc).__name__}: {_cut(str(exc), 60)})") from None


def _should_one_observable(obj: JSON) -> None:
    # observable_dictionary_keys, hash_length, vocab_* read the id first
    obj["id"]
    kind = obj["type"]  # the extensions_use checks read the type unconditionally
    _hash_length(obj)
    is_file = kind == "file"
    # vocab_hash_algo
    if kind in ("file", "artifact", "x509-certificate") and "hashes" in obj:
        _should_hash_keys(obj, obj["hashes"])
    if is_file and "extensions" in obj:
        found, streams = _nested_get(obj, "extensions", "ntfs-ext", "alternate_data_streams")
        if found:
            for stream in streams:
                if "hashes" in stream:
                    _should_hash_keys(obj, stream["hashes"])
        for path in (
            ("extensions", "windows-pebinary-ext", "file_header_hashes"),
            ("extensions", "windows-pebinary-ext", "optional_header", "hashes"),
        ):
            found, hashes = _nested_get(obj, *path)
            if found:
                _should_hash_keys(obj, hashes)
        found, sections = _nested_get(obj, "extensions", "windows-pebinary-ext", "sections")
        if found:
            for section in sections:
                if "hashes" in section:
                    _should_hash_keys(obj, section["hashes"])
    # windows_process_priority_format
    if kind == "process":
        found, priority = _nested_get(obj, "extensions", "windows-process-ext", "priority")
        if found and not isinstance(priority, str):
            raise _Refused("'extensions.windows-process-ext.priority' must be a string")
    # mime_type, protocols, ipfix, http_request_headers, socket_options, pdf_doc_info (iterate; the
    # warnings read the id, which was read above already)
    if kind == "network-traffic":
        for prop in ("protocols", "ipfix"):
            if prop in obj:
                for _item in obj[prop]:
                    pass
        for ext_path in (("http-request-ext", "request_header"), ("socket-ext", "options")):
            found, values = _nested_get(obj, "extensions", *ext_path)
            if found:
                for _item in values:
                    pass
    if is_file:
        found, values = _nested_get(obj, "extensions", "pdf-ext", "document_info_dict")
        if found:
            for _item in values:
                pass
    # custom_observable_embedded_property
    if kind in enums.OBSERVABLE_EMBEDDED_PROPERTIES:  # raises for an unhashable type
        embedded = enums.OBSERVABLE_EMBEDDED_PROPERTIES[kind]
        for prop in obj:
            if prop in embedded:
                for _item in obj[prop]:
                    pass
    # custom_observable_extension_property
    if kind in enums.OBSERVABLE_EXTENSIONS and "extensions" in obj:
        known = enums.OBSERVABLE_EXTENSIONS[kind]
        extensions = obj["extensions"]
        for ext_key in extensions:
            if ext_key not in known:
                continue
            ext = extensions[ext_key]
            embedded_props = enums.OBSERVABLE_EXTENSION_EMBEDDED_PROPERTIES.get(ext_key)
            for ext_prop in ext:
                if embedded_props is not None and ext_prop in embedded_props:
                    for item in ext[ext_prop]:
                        if isinstance(item, Iterable) and not isinstance(item, str):
                            for _sub in item:
                                pass
    # custom_observable_extension
    extensions = obj.get("extensions")
    if "extensions" in obj and isinstance(extensions, Mapping) and kind in enums.OBSERVABLE_EXTENSIONS:
        known = enums.OBSERVABLE_EXTENSIONS[kind]
        for ext_key in extensions:
            if ext_key not in known:
                _uses_extension(obj, ("property-extension",))


_SHOULDS: Final[tuple[Callable[[dict[str, JSON]], None], ...]] = (_should_general, _should_observable)


@functools.lru_cache(maxsize=1024)
def _checks_for(
    kind: str,
) -> tuple[tuple[Callable[[dict[str, JSON], list[str]], None], ...], tuple[Callable[[dict[str, JSON]], None], ...]]:
    """The MUST and SHOULD checks that can find or raise anything for an object of this type, in order.

    Each check left out returns at once for every other type (its first test is of the type, or of
    :func:`_observables`, which is empty unless the type is observed-data or an observable's).
    """
    observable = kind == "observed-data" or kind in _OBSERVABLE_TYPES
    only: dict[Callable[..., None], bool] = {
        _must_observable_timestamp_order: observable,
        _must_marking_circular_refs: kind == "marking-definition",
        _must_observable_references: kind == "observed-data",
        _must_iana: observable,
        _must_pattern: kind == "indicator",
        _must_language_contents: kind == "language-content",
        _must_uuid_versions: kind in _UUID4_ONLY_UNLESS or kind == "process",
        _should_observable: observable,
    }
    return (
        tuple(m for m in _MUSTS if only.get(m, True)),
        tuple(c for c in _SHOULDS if only.get(c, True)),
    )


def _has_odd_observable_ids(inst: dict[str, JSON]) -> bool:
    """True if a SHOULD warning about an embedded observable could carry a non-string, non-int id.

    ``stix2validator`` formats each warning with the id of the object it concerns and raises if that id
    is neither a string nor an int. Observables embedded in an ``objects`` dictionary are the only
    objects whose warnings can carry such an id without another check refusing the object first.
    """
    objects = inst.get("objects")
    if not isinstance(objects, dict) or not _is_observable_data(inst):
        return False
    for obj in objects.values():
        if isinstance(obj, dict) and not (isinstance(obj.get("id"), str) or type(obj.get("id")) is int):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# the validator
# --------------------------------------------------------------------------------------------------


class Validator:
    """Validates STIX 2.1 objects with the same verdict as ``stix2-validator`` (default options)."""

    def __init__(self, lazy: bool = False) -> None:
        """``lazy``: compile each type's schema when an object of that type first comes (the checking process,
        which sees only the types of the envelopes it is given, a few in most); by default all at once."""
        self._lazy = lazy
        self._v21 = _SchemaSet("2.1", lazy)
        self._v20: _SchemaSet | None = None
        # types whose schema alone decides (no embedded observables or bundle members to validate)
        self._v21_by_type: Mapping[str, Any] = (
            _Compiled(
                (kind for kind in self._v21.validators if kind not in ("observed-data", "bundle")),
                self._v21.validators.__getitem__,
            )
            if lazy
            else {
                kind: validator
                for kind, validator in self._v21.validators.items()
                if kind not in ("observed-data", "bundle")
            }
        )

    # ---- public API -----------------------------------------------------------------------------

    def check(self, obj: object) -> list[str]:
        """Everything wrong with one parsed JSON value as a STIX object; ``[]`` when it is valid."""
        if not isinstance(obj, dict):
            return [NOT_AN_OBJECT]
        if "type" not in obj or "id" not in obj:
            missing = [name for name in ("type", "id") if name not in obj]
            return [f"the object has no {' or '.join(repr(m) for m in missing)} property"]
        errs: list[str] = []
        crashes: list[str] = []  # where stix2validator itself would raise: reported if nothing else is wrong
        kind = obj["type"]
        try:
            validator = self._v21_by_type.get(kind) if type(kind) is str else None
            if validator is not None:  # the common case: a spec-defined type, nothing embedded to validate
                if not validator.is_valid(obj):
                    self._report(validator, self._v21, obj, errs, "")
            else:
                self._schema_validate(obj, None, errs, "")
                if kind == "bundle" and "objects" in obj:
                    self._schema_validate_bundle(obj, errs)
        except _Refused as refused:
            crashes.append(refused.message)
        except Exception as exc:  # jsonschema_rs conversion problems, format checker crashes
            crashes.append(f"the object cannot be validated ({type(exc).__name__}: {_cut(str(exc), 80)})")
        odd_ids = self._custom_checks(obj, errs, crashes, "")
        if errs:
            return _dedupe(errs)
        if crashes:
            return _dedupe(crashes)
        if odd_ids:
            return self._reference_verdict(obj)
        return []

    def check_all(self, objs: Sequence[object]) -> list[Problem]:
        """One :class:`Problem` per invalid object, in order."""
        problems: list[Problem] = []
        check = self.check
        for index, obj in enumerate(objs):
            messages = check(obj)
            if messages:
                object_id = obj.get("id") if isinstance(obj, dict) else None
                problems.append(Problem(index, object_id if isinstance(object_id, str) else None, "; ".join(messages)))
        return problems

    # ---- schemas --------------------------------------------------------------------------------

    def _schemas(self, version: str) -> _SchemaSet:
        if version == "2.0":
            if self._v20 is None:
                self._v20 = _SchemaSet("2.0", self._lazy)
            return self._v20
        return self._v21

    def _validate_with(
        self, schemas: _SchemaSet, name: JSON, default: str, obj: JSON, errs: list[str], prefix: str
    ) -> None:
        """stix2validator's ``_get_error_generator`` followed by validation."""
        validator = schemas.validators.get(name) if isinstance(name, str) else None
        if validator is None:
            if not isinstance(name, str | list | dict):
                # `'extension-definition--' in name` raises for these
                raise _Refused(f"{prefix}'type' must be a string, not {_type_name(name)}")
            validator = schemas.validators[default]
        if not validator.is_valid(obj):
            self._report(validator, schemas, obj, errs, prefix)

    def _report(self, validator: Any, schemas: _SchemaSet, obj: JSON, errs: list[str], prefix: str) -> None:
        errors = list(validator.iter_errors(obj))
        specific = {
            tuple(e.instance_path)
            for e in errors
            if type(e.kind).__name__ not in ("AnyOf", "OneOfNotValid", "OneOfMultipleValid")
        }
        for error in errors:
            if type(error.kind).__name__ in ("AnyOf", "OneOfNotValid") and tuple(error.instance_path) in specific:
                continue  # a more precise message about the same value exists
            errs.append(_schema_message(error, prefix.removesuffix(": "), schemas))

    def _schema_validate(self, obj: JSON, bundle_version: JSON, errs: list[str], prefix: str) -> None:
        """stix2validator's ``_schema_validate``: the object and any observables it embeds."""
        if not isinstance(obj, dict):
            raise _Refused(f"{prefix}an object must be a JSON object")
        version = "2.1"
        if bundle_version == "2.0" or (bundle_version == "2.1" and "spec_version" not in obj and "created" in obj):
            version = "2.0"
        schemas = self._schemas(version)
        default = "core"
        if (
            version != "2.0"
            and "type" in obj
            and "id" in obj
            and "created" not in obj
            and "modified" not in obj
            and obj["type"] != "marking-definition"
        ):
            default = "cyber-observable-core"
        if "type" not in obj:
            raise _Refused(f"{prefix}the object has no 'type' property")
        kind = obj["type"]
        self._validate_with(schemas, kind, default, obj, errs, prefix)
        if kind != "observed-data" or "objects" not in obj:
            return
        objects = obj["objects"]
        if not isinstance(objects, dict):
            errs.append(f"{prefix}'objects' must be a dictionary of observables")
            return
        for key, value in objects.items():
            where = f"{prefix}objects.{_cut(str(key), 40)}: "
            if isinstance(value, int | float | bool) or value is None:
                raise _Refused(f"{where}an observable must be an object")
            if "type" not in value:
                errs.append(f"{where}an observable must have a 'type' property")
                continue
            if not isinstance(value, dict):
                raise _Refused(f"{where}an observable must be an object")
            self._validate_with(schemas, value["type"], "cyber-observable-core", value, errs, where)

    def _schema_validate_bundle(self, bundle: dict[str, JSON], errs: list[str]) -> None:
        """stix2validator's ``_schema_validate_bundle``."""
        objects = bundle["objects"]
        if isinstance(objects, int | float | bool) or objects is None:
            raise _Refused("'objects' of a bundle must be an array")
        if "spec_version" in bundle and bundle["spec_version"] != "2.1" and not isinstance(bundle["id"], str):
            raise _Refused("'id' must be a string")
        for index, obj in enumerate(objects):
            if isinstance(obj, int | float | bool) or obj is None:
                raise _Refused(f"objects[{index}]: must be an object")
            if "spec_version" in obj:
                if not isinstance(obj, dict):
                    raise _Refused(f"objects[{index}]: must be an object")
                if obj["spec_version"] != "2.1" and not isinstance(obj.get("id"), str):
                    raise _Refused(f"objects[{index}]: 'id' must be a string")
        bundle_version = bundle.get("spec_version", "2.1")
        for index, obj in enumerate(objects):
            if "type" not in obj:
                raise _Refused(f"objects[{index}]: every object in a bundle must have a 'type' property")
            self._schema_validate(obj, bundle_version, errs, f"objects[{index}]: ")

    # ---- MUST rules and crash conditions -----------------------------------------------------------

    def _custom_checks(self, inst: dict[str, JSON], errs: list[str], crashes: list[str], prefix: str) -> bool:
        """stix2validator's ``_iter_errors_custom`` for its MUST and SHOULD checks.

        Returns whether some embedded observable has an odd id (see :func:`_has_odd_observable_ids`).
        """
        odd_ids = False
        if "objects" in inst:
            with contextlib.suppress(Exception):  # an unhashable type: the checks below report it
                odd_ids = _has_odd_observable_ids(inst)
        if prefix:  # a nested object: its messages need the prefix
            self._checks_one_by_one(inst, errs, crashes, prefix)
        else:
            mark = len(errs)
            kind = inst.get("type")
            musts, shoulds = _checks_for(kind) if type(kind) is str else (_MUSTS, _SHOULDS)
            try:  # all checks in one go; only if one raises, redo them one by one for precise messages
                for must in musts:
                    must(inst, errs)
                for should in shoulds:
                    should(inst)
            except Exception:
                del errs[mark:]
                self._checks_one_by_one(inst, errs, crashes, prefix)
        for key, value in inst.items():
            if type(value) is list:
                for index, item in enumerate(value):
                    if (
                        isinstance(item, dict)
                        and "id" in item
                        and "type" in item
                        and self._custom_checks(item, errs, crashes, f"{prefix}{key}[{index}]: ")
                    ):
                        odd_ids = True
        return odd_ids

    @staticmethod
    def _checks_one_by_one(inst: dict[str, JSON], errs: list[str], crashes: list[str], prefix: str) -> None:
        for must in _MUSTS:
            try:
                _prefixed(must, inst, errs, prefix)
            except _Refused as refused:
                crashes.append(prefix + refused.message)
            except Exception as exc:
                crashes.append(f"{prefix}the object cannot be checked ({_crash_reason(must.__name__, exc)})")
        for should in _SHOULDS:
            try:
                should(inst)
            except _Refused as refused:
                crashes.append(prefix + refused.message)
            except Exception as exc:
                crashes.append(f"{prefix}the object cannot be checked ({_crash_reason(should.__name__, exc)})")

    def _reference_verdict(self, obj: dict[str, JSON]) -> list[str]:
        """Ask stix2validator itself (only for objects embedding observables with odd ids: rare)."""
        from stix2validator import ValidationOptions, validate_instance

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = validate_instance(obj, ValidationOptions(version="2.1"))
        except Exception:
            return ["an embedded observable has an 'id' that is neither a string nor an integer"]
        return [] if result.is_valid else [_cut_quoted(str(e)) for e in result.errors] or ["invalid object"]


def _prefixed(
    must: Callable[[dict[str, JSON], list[str]], None], inst: dict[str, JSON], errs: list[str], prefix: str
) -> None:
    found: list[str] = []
    try:
        must(inst, found)
    finally:
        errs.extend(prefix + message for message in found)


_CHECK_SUBJECTS: Final = {
    "_must_timestamps": "timestamps",
    "_must_timestamp_order": "timestamp order",
    "_must_observable_timestamp_order": "observable timestamps",
    "_must_marking_circular_refs": "'object_marking_refs' / 'granular_markings'",
    "_must_marking_selectors": "'granular_markings'",
    "_must_observable_references": "references between observables in 'objects'",
    "_must_iana": "observable media types, character sets or languages",
    "_must_language": "'lang'",
    "_must_pattern": "'pattern'",
    "_must_cpe": "'cpe'",
    "_must_language_contents": "'contents'",
    "_must_uuid_versions": "'id'",
    "_should_general": "property values",
    "_should_observable": "observable properties",
}


def _crash_reason(check: str, exc: Exception) -> str:
    subject = _CHECK_SUBJECTS.get(check, check)
    return f"{subject} hold a value of an unexpected type: {type(exc).__name__}: {_cut(str(exc), 60)}"


def _dedupe(messages: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for message in messages:
        if message not in seen:
            seen.add(message)
            out.append(message)
    if len(out) > _MAX_MESSAGES:
        extra = len(out) - _MAX_MESSAGES
        out = [*out[:_MAX_MESSAGES], f"... and {extra} more problem(s)"]
    return out


@functools.cache
def default_validator() -> Validator:
    """The process-wide :class:`Validator` (compiled on first use)."""
    return Validator()
