"""The publisher's own checks of a written data package, beyond what frictionless checks.

``check_package`` reads a package directory and reports every problem at once, one line
each, so a release manager sees the whole picture in one run:

- ``<file>: <rule>: <what is wrong and what was expected>`` for a problem with a file, and
- ``<file>: row <N>: <rule>: ...`` for a problem in one CSV row, where N counts rows as a
  spreadsheet does (the header is row 1, the first data row is row 2).

The rules, each named by a short stable id in its messages:

- ``descriptor``: ``datapackage.json`` is missing, is not JSON, or the publisher's own
  keys (``disclosure``, ``table``, ``files``) are not shaped as the publisher writes them.
- ``profile``: ``datapackage.json`` against the Data Package v2 JSON Schema profile, with
  the JSON path of each error. The profiles ship in ``publisher/profiles`` and their
  ``$ref``\\ s resolve to one another offline, through a ``referencing`` registry that can
  never fetch anything.
- ``path``, ``bytes``, ``hash``: every resource and every entry of ``files`` is a regular
  file inside the package whose size and SHA-256 match the descriptor. Every path read
  from a package is untrusted: a plain relative name (no URL, absolute path, ``..`` or
  backslash), opened without following any link (a link is a problem, never followed).
- ``csv``, ``columns``, ``blank-row``: a data file that cannot be read, lacks a column the
  rules need, or has a row of the wrong length or an empty row.
- ``unknown-marker``, ``missing-value``, ``marker-with-value``, ``marker-without-value``:
  markers are those the schema allows and agree with the value: a marker that stands
  instead of a number (``[low]``, ``[c]``, ``[x]``, ``[z]``) has an empty value beside it,
  any other marker (``[r]``, ``[p]``, ``[u]``) needs a value, and an empty value needs
  a marker that stands instead of it.
- ``not-integer``, ``not-number``, ``not-rounded``, ``below-threshold``: every count shown
  is a whole number, a multiple of the rounding base, positive and at least the threshold;
  every bound is a whole multiple of the base.
- ``missing-key``, ``duplicate-key``, ``unexpected-key``: every public key combination (the
  categories of each dimension, and the total label where the table has totals) appears
  exactly once, and no other does.
- ``interval``: ``0 <= lower_95 <= value <= upper_95`` for counts, and
  ``0 <= lower_95 <= percent <= upper_95 <= 100`` for headline shares.
- ``checksum``: ``SHA256SUMS`` exists, is exactly as ``publisher release`` writes it (see
  :func:`publisher.model.parse_checksums`), each line names a plain path and matches its file,
  every file of the package but ``SHA256SUMS`` itself is listed, and the package holds
  nothing but regular files (no links, pipes or devices). Previous versions under
  ``archive/`` are checked through these hashes only.
- ``zip``: each zip at the top of the package holds the package's own files, byte for byte
  (optionally under one top folder named after the zip), and every file the descriptor
  names; no member is a link or an unsafe path.

A file is only ever read through these checks: no row of any file is quoted, and a file
reached through a link is never opened.

Messages name files, rows, columns and public category labels, never a published number.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import itertools
import json
import math
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from publisher import files, model

__all__ = [
    "CHECKSUMS",
    "PROFILE",
    "check_package",
    "check_profile",
    "read_checksums",
    "safe_to_open",
]

PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"
CHECKSUMS = "SHA256SUMS"

_DESCRIPTOR = "datapackage.json"
_PROFILE_BASE = "https://datapackage.org/profiles/2.0/"
_PROFILE_FILES = ("datapackage.json", "dataresource.json", "tableschema.json", "tabledialect.json")
# GSS markers that stand instead of a number; every other marker stands beside one.
_INSTEAD_OF_VALUE = frozenset({"[low]", "[c]", "[x]", "[z]"})
_MARKER = re.compile(r"\[[a-z]+\]")
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[-+][0-9]{2}:[0-9]{2})"
)
_COUNT_COLUMNS = ("value", "marker", "lower_95", "upper_95")
_SHARE_COLUMNS = ("share", "percent", "lower_95", "upper_95")
_CHUNK = 1 << 20
# What model.read_file says of a path that names nothing.
_MISSING = "is missing"


def check_package(package_dir: Path) -> list[str]:
    """Every problem of the package in ``package_dir``, one line each; empty when valid.

    Never raises for a malformed package: an unreadable descriptor or data file is itself
    reported. Only the package at the root is checked; previous versions under
    ``archive/`` are covered by ``SHA256SUMS`` alone.
    """
    if not package_dir.is_dir():
        return [f"{package_dir}: descriptor: not a directory; give the directory of a package"]
    descriptor_path = package_dir / _DESCRIPTOR
    descriptor, problems = _load_descriptor(package_dir)
    if descriptor is not None:
        problems += [f"{descriptor_path}: profile: {line}" for line in check_profile(descriptor)]
        problems += _check_contents(package_dir, descriptor)
    problems += _check_checksums(package_dir)
    problems += _check_zips(package_dir, descriptor)
    return problems


def safe_to_open(package_dir: Path) -> bool:
    """Whether another reader (frictionless) may open the files the descriptor names: every
    path is a plain name of a regular file inside the package, reached without links, and
    schemas and dialects are written inline (a string there is a path or URL it would
    fetch). Otherwise :func:`check_package` reports why, and nothing else should read it."""
    descriptor, problems = _load_descriptor(package_dir)
    if descriptor is None or problems or descriptor.get("$schema") != PROFILE:
        return False
    resources = descriptor.get("resources")
    if not isinstance(resources, list):
        return False
    for resource in resources:
        if not isinstance(resource, dict):
            return False
        if any(isinstance(resource.get(key), str) for key in ("schema", "dialect", "$schema")):
            return False
        relative = resource.get("path")
        if model.path_problem(relative) is not None:
            return False
        assert isinstance(relative, str)
        try:
            model.read_file(package_dir, relative)
        except model.UntrustedFile:
            return False
    return True


def check_profile(descriptor: object) -> list[str]:
    """Errors of ``descriptor`` against the Data Package v2 profile, as ``<JSON path>: <why>``.

    The descriptor must also declare that profile in ``$schema``. Works on the parsed JSON,
    so a package can be checked before it is written.
    """
    from referencing.exceptions import Unresolvable

    problems = []
    if isinstance(descriptor, dict) and descriptor.get("$schema") != PROFILE:
        problems.append(f"$['$schema']: expected {PROFILE!r}, the Data Package v2 profile")
    try:
        errors = sorted(_profile_validator().iter_errors(descriptor), key=_error_order)
        for error in errors:
            problems += _explain(error)
    except Unresolvable as error:  # the shipped profiles refer to something not shipped
        problems.append(f"$: the profile cannot be resolved offline ({error}); reinstall publisher")
    return problems


# --- the v2 profile ------------------------------------------------------------------------


@functools.cache
def _profile_validator() -> Any:
    """A validator for the datapackage profile with all four profiles in an offline registry.

    Each profile is registered under its canonical URL and given that URL as ``$id``, so a
    ``$ref`` between them (absolute, or relative to that base) resolves from the shipped
    copies. The registry has no ``retrieve`` function: a ``$ref`` to anything else fails
    with ``Unresolvable`` instead of going to the network.

    jsonschema and referencing are imported here, as frictionless is (see
    :mod:`publisher.package`): a release imports them first on the thread of its dry run.
    """
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    folder = resources.files("publisher").joinpath("profiles")
    contents: dict[str, dict[str, Any]] = {}
    for name in _PROFILE_FILES:
        schema = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
        contents[_PROFILE_BASE + name] = {**schema, "$id": _PROFILE_BASE + name}
    registry: Registry[Any] = Registry().with_resources(
        (url, Resource.from_contents(schema, default_specification=DRAFT7))
        for url, schema in contents.items()
    )
    root = contents[PROFILE]
    validator_class = validator_for(root)
    return validator_class(root, registry=registry, format_checker=_format_checker())


def _format_checker() -> Any:
    """The standard format checks, plus RFC 3339 date-times, which jsonschema checks only
    when an optional library is installed: ``created`` must be checked everywhere alike."""
    from jsonschema import FormatChecker  # type: ignore[import-untyped]

    checker = FormatChecker()

    checker.checks("date-time", raises=ValueError)(_is_datetime)
    return checker


def _is_datetime(instance: object) -> bool:
    """RFC 3339: a date, a time and an offset; ``fromisoformat`` rejects impossible dates."""
    if not isinstance(instance, str):
        return True
    if not _RFC3339.fullmatch(instance):
        return False
    datetime.fromisoformat(instance.upper().replace("Z", "+00:00").replace(" ", "T"))
    return True


def _error_order(error: Any) -> tuple[list[tuple[int, int, str]], str]:
    """Errors in the order of the descriptor: by path (``resources[2]`` before ``[10]``)."""
    path = [
        (1, 0, part) if isinstance(part, str) else (0, part, "") for part in error.absolute_path
    ]
    return path, str(error.validator)


def _explain(error: Any) -> list[str]:
    """One line per error, ``<JSON path>: <why>``, descending into ``oneOf``/``anyOf``."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        branches: dict[object, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        # A branch for another kind of value (an array where a string was given) says nothing.
        fitting = [
            errors
            for errors in branches.values()
            if not any(e.validator == "type" and not e.relative_path for e in errors)
        ] or list(branches.values())
        fitting, unmatched = _by_discriminator(fitting)
        if unmatched is not None:
            return [unmatched]
        if len(fitting) == 1:
            return [line for sub in sorted(fitting[0], key=_error_order) for line in _explain(sub)]
        reasons = sorted({_reason(min(errors, key=_error_order)) for errors in fitting})
        if len(reasons) == 1:
            return [f"{error.json_path}: {reasons[0]}"]
        return [f"{error.json_path}: matches none of the forms allowed: {'; or '.join(reasons)}"]
    if error.validator == "oneOf":
        return [
            f"{error.json_path}: matches more than one of the forms allowed; it must match "
            "exactly one (for a resource: give either 'path' or 'data')"
        ]
    return [f"{error.json_path}: {_reason(error)}"]


def _by_discriminator(branches: list[list[Any]]) -> tuple[list[list[Any]], str | None]:
    """Branches told apart by one property's value (a field's ``type``): keep those whose
    value matched; if none did, say which values that property may take."""

    def picks(errors: list[Any]) -> dict[str, Any]:
        return {
            str(e.json_path): e
            for e in errors
            if e.validator in ("enum", "const") and len(e.relative_path) == 1
        }

    by_branch = [picks(errors) for errors in branches]
    for path in sorted(set().union(*by_branch)) if by_branch else []:
        missed = [path in found for found in by_branch]
        if all(missed):
            allowed: list[str] = []
            for found in by_branch:
                sub = found[path]
                values = sub.validator_value if sub.validator == "enum" else [sub.validator_value]
                allowed += [repr(v) for v in values if repr(v) not in allowed]
            return branches, f"{path}: expected one of {_shorten(', '.join(allowed))}"
        if any(missed):
            return [b for b, m in zip(branches, missed, strict=True) if not m], None
    return branches, None


def _reason(error: Any) -> str:
    """What is wrong, briefly, without repeating a whole descriptor object."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    about = [schema.get(key) for key in ("title", "description")]
    where = ": ".join(text for text in about if isinstance(text, str))
    where = f" ({where.removesuffix('.')})" if where else ""
    match error.validator:
        case "required":
            missing = str(error.message).removesuffix(" is a required property")
            return f"missing required property: {missing}"
        case "type":
            return f"expected {_or(error.validator_value)}, found {_json_type(error.instance)}"
        case "enum":
            return f"expected one of {_shorten(', '.join(map(repr, error.validator_value)))}"
        case "pattern":
            return f"does not match the pattern the profile requires{where}"
        case "format":
            return f"is not a valid {error.validator_value}{where}"
        case _:
            return _shorten(str(error.message))


def _or(types: object) -> str:
    names = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    return " or ".join(map(str, names)) or "another type"


def _json_type(instance: object) -> str:
    kinds: list[tuple[type, str]] = [(bool, "boolean"), (int, "integer"), (float, "number")]
    kinds += [(str, "string"), (list, "array"), (dict, "object"), (type(None), "null")]
    return next((name for kind, name in kinds if isinstance(instance, kind)), "unknown")


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the descriptor and the files it lists --------------------------------------------------


def _load_descriptor(package_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = package_dir / _DESCRIPTOR
    try:
        text = model.read_file(package_dir, _DESCRIPTOR)
        descriptor = model.parse_json(text.decode("utf-8"))
    except model.UntrustedFile as error:
        if error.reason == _MISSING:
            return None, [f"{path}: descriptor: not found; give the directory of a data package"]
        return None, [f"{path}: descriptor: {error.reason}; expected the package's JSON file"]
    except UnicodeDecodeError as error:
        return None, [f"{path}: descriptor: cannot be read ({type(error).__name__})"]
    except RecursionError:
        return None, [f"{path}: descriptor: nested too deeply to read; expected a JSON object"]
    except ValueError as error:
        return None, [f"{path}: descriptor: not valid JSON ({error}); expected a JSON object"]
    if not isinstance(descriptor, dict):
        return None, [f"{path}: descriptor: expected a JSON object, found {_json_type(descriptor)}"]
    return descriptor, []


@dataclass(frozen=True)
class _Disclosure:
    """The disclosure rules the package states; None where the descriptor does not say."""

    rounding_base: int | None
    threshold: int | None
    total_label: str | None


def _check_contents(package_dir: Path, descriptor: dict[str, Any]) -> list[str]:
    descriptor_path = package_dir / _DESCRIPTOR
    problems: list[str] = []

    def bad(where: str, what: str) -> None:
        problems.append(f"{descriptor_path}: descriptor: {where}: {what}")

    rules = _disclosure(descriptor.get("disclosure"), bad)
    listed = descriptor.get("resources")
    for index, resource in enumerate(listed if isinstance(listed, list) else []):
        if not isinstance(resource, dict):
            continue  # the profile reports it
        where = f"$.resources[{index}]"
        found = _file_in_package(package_dir, resource, where, problems)
        if found is None:
            continue
        path, data = found
        if "table" in resource:
            problems += _check_count_table(path, data, resource, where, rules, bad)
        elif "percent" in _field_names(resource):
            problems += _check_shares(path, data, resource)
    entries = descriptor.get("files", [])
    if not isinstance(entries, list):
        bad("$.files", f"expected a list of file entries, found {_json_type(entries)}")
        entries = []
    for index, entry in enumerate(entries):
        where = f"$.files[{index}]"
        if not isinstance(entry, dict):
            bad(where, f"expected an object with path, bytes and hash, found {_json_type(entry)}")
            continue
        _file_in_package(package_dir, entry, where, problems)
    return problems


def _disclosure(rules: object, bad: Any) -> _Disclosure:
    if not isinstance(rules, dict):
        bad(
            "$.disclosure",
            "missing or not an object; expected rounding_base, threshold and "
            "total_label, the rules the counts were published under",
        )
        return _Disclosure(None, None, None)
    base = rules.get("rounding_base")
    threshold = rules.get("threshold")
    label = rules.get("total_label")
    if not (isinstance(base, int) and not isinstance(base, bool) and base >= 1):
        bad("$.disclosure.rounding_base", "expected a whole number of at least 1")
        base = None
    if not (isinstance(threshold, int) and not isinstance(threshold, bool) and threshold >= 0):
        bad("$.disclosure.threshold", "expected a whole number of at least 0")
        threshold = None
    if not (isinstance(label, str) and label):
        bad("$.disclosure.total_label", "expected the label of total rows, a non-empty string")
        label = None
    return _Disclosure(base, threshold, label)


def _file_in_package(
    package_dir: Path, entry: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[Path, bytes] | None:
    """The file an entry names and its bytes, checked against its ``bytes`` and ``hash``;
    None if it is absent or is not a plain regular file inside the package (the path is
    untrusted: no link is followed on the way)."""
    descriptor_path = package_dir / _DESCRIPTOR
    relative = entry.get("path")
    refused = model.path_problem(relative)
    if refused:
        problems.append(f"{descriptor_path}: path: {where}.path: {refused}")
        return None
    assert isinstance(relative, str)  # path_problem accepts nothing else
    path = package_dir / relative
    try:
        data = model.read_file(package_dir, relative)
    except model.UntrustedFile as error:
        if error.reason == _MISSING:
            problems.append(
                f"{descriptor_path}: path: {where}.path: {relative!r} is not a file in the package"
            )
        else:
            problems.append(f"{descriptor_path}: path: {where}.path: {relative!r} {error.reason}")
        return None
    size, digest = len(data), hashlib.sha256(data).hexdigest()
    stated_size = entry.get("bytes")
    if not isinstance(stated_size, int) or isinstance(stated_size, bool):
        problems.append(f"{descriptor_path}: bytes: {where}.bytes: missing; expected the size")
    elif stated_size != size:
        problems.append(
            f"{path}: bytes: the file has {size} bytes, {where}.bytes in {_DESCRIPTOR} says "
            f"{stated_size}; the file changed after release, or the descriptor is stale"
        )
    stated_hash = entry.get("hash")
    if not (isinstance(stated_hash, str) and stated_hash.startswith("sha256:")):
        problems.append(
            f"{descriptor_path}: hash: {where}.hash: missing or not SHA-256; expected "
            "'sha256:<64 hexadecimal digits>'"
        )
    elif not _SHA256.fullmatch(stated_hash.removeprefix("sha256:").lower()):
        problems.append(
            f"{descriptor_path}: hash: {where}.hash: expected 'sha256:' and 64 hexadecimal digits"
        )
    elif stated_hash.removeprefix("sha256:").lower() != digest:
        problems.append(
            f"{path}: hash: the SHA-256 of the file differs from {where}.hash in "
            f"{_DESCRIPTOR}; the file changed after release, or the descriptor is stale"
        )
    return path, data


# --- tables ---------------------------------------------------------------------------------


def _field_names(resource: Mapping[str, Any]) -> list[str]:
    schema = resource.get("schema")
    fields = schema.get("fields") if isinstance(schema, dict) else None
    if not isinstance(fields, list):
        return []
    return [f["name"] for f in fields if isinstance(f, dict) and isinstance(f.get("name"), str)]


def _allowed_markers(resource: Mapping[str, Any], column: str = "marker") -> frozenset[str]:
    schema = resource.get("schema")
    fields = schema.get("fields") if isinstance(schema, dict) else None
    for field in fields if isinstance(fields, list) else []:
        if isinstance(field, dict) and field.get("name") == column:
            constraints = field.get("constraints")
            enum = constraints.get("enum") if isinstance(constraints, dict) else None
            if isinstance(enum, list):
                return frozenset(m for m in enum if isinstance(m, str))
    return frozenset()


@dataclass(frozen=True)
class _Row:
    """One data row: its number as a spreadsheet counts, its cells and how many it had."""

    number: int
    cells: dict[str, str]
    length: int


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[_Row]


def _read_table(data: bytes, resource: Mapping[str, Any], needed: Sequence[str]) -> _Table | str:
    """The rows of a CSV (its bytes) that has the columns ``needed``, or why they cannot be
    checked."""
    encoding = resource.get("encoding", "utf-8")
    try:
        codec = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        return "csv: the resource's encoding is unknown; expected 'utf-8'"
    dialect = resource.get("dialect")
    delimiter, quote = ",", '"'
    if isinstance(dialect, dict):
        delimiter = _one_char(dialect.get("delimiter"), delimiter)
        quote = _one_char(dialect.get("quoteChar"), quote)
    try:
        # A byte order mark is not part of the first column's name.
        text = data.decode("utf-8-sig" if codec == "utf-8" else codec)
        handle = io.StringIO(text, newline="")
        records = list(csv.reader(handle, delimiter=delimiter, quotechar=quote, strict=True))
    except (UnicodeDecodeError, ValueError):
        return f"csv: not valid {codec} text; save the file as UTF-8"
    except csv.Error as error:
        return f"csv: cannot be parsed ({error}); expected comma-separated values (RFC 4180)"
    if not records or not any(records[0]):
        return "csv: the first row is empty; expected a header row with the column names"
    header = records[0]
    missing = [column for column in needed if column not in header]
    if missing:
        return (
            f"columns: the header has no column {', '.join(map(repr, missing))}; expected "
            f"the columns {', '.join(needed)}"
        )
    rows = []
    for number, record in enumerate(records[1:], start=2):
        # A short row is padded and a long one cut, so its other cells are still checked.
        cells = [*record[: len(header)], *[""] * (len(header) - len(record))]
        rows.append(_Row(number, dict(zip(header, cells, strict=True)), len(record)))
    return _Table(header, rows)


def _one_char(value: object, default: str) -> str:
    return value if isinstance(value, str) and len(value) == 1 else default


def _readable_rows(path: Path, table: _Table, problems: list[str]) -> Iterator[tuple[str, _Row]]:
    """Each row with its place (``file: row N``); a row of the wrong length is reported
    into ``problems``, and a blank one is skipped."""
    for row in table.rows:
        at = f"{path}: row {row.number}"
        shape = _shape_problem(row, len(table.header))
        if shape:
            problems.append(f"{at}: {shape}")
            if row.length == 0:
                continue
        yield at, row


def _shape_problem(row: _Row, width: int) -> str | None:
    if row.length == 0:
        return "blank-row: the row is empty; remove it"
    if row.length != width:
        return f"columns: the row has {row.length} cells; expected {width}, one per column"
    return None


def _marker_problems(marker: str, allowed: frozenset[str], shown: bool, column: str) -> list[str]:
    """Whether a marker is allowed and agrees with the number beside it being shown."""
    if not marker:
        if shown:
            return []
        return [
            f"missing-value: {column} is empty and no marker says why; expected a number, "
            f"or a marker that stands instead of one such as [low]"
        ]
    tokens = _MARKER.findall(marker)
    well_formed = bool(tokens) and "".join(marker.split()) == "".join(tokens)
    name = repr(marker) if well_formed else "the marker"
    problems = []
    if marker not in allowed:
        choices = ", ".join(sorted(allowed)) or "none (declare them in constraints.enum)"
        problems.append(
            f"unknown-marker: {name} is not a marker the table schema allows; expected one "
            f"of: {choices}"
        )
    if not well_formed:
        return problems
    instead = any(token in _INSTEAD_OF_VALUE for token in tokens)
    if instead and shown:
        problems.append(
            f"marker-with-value: {marker} stands instead of a number, but {column} is filled; "
            f"expected {column} empty beside {marker}"
        )
    elif not instead and not shown:
        problems.append(
            f"marker-without-value: {marker} stands beside a number, but {column} is empty; "
            f"expected a {column}, or a marker that stands instead of one such as [low]"
        )
    return problems


def _dimensions(
    table: object, where: str, rules: _Disclosure, bad: Any
) -> list[tuple[str, list[str]]] | None:
    """Each dimension column with its public keys (the total label last), or None if unknown."""
    if not isinstance(table, dict):
        bad(f"{where}.table", "expected an object with input, counts, by, totals, dimensions")
        return None
    dimensions = table.get("dimensions")
    if not isinstance(dimensions, list) or not dimensions:
        bad(f"{where}.table.dimensions", "expected a list of {name, values}, one per column")
        return None
    totals = table.get("totals", False)
    if not isinstance(totals, bool):
        bad(f"{where}.table.totals", "expected true or false")
        return None
    keys = []
    for index, dimension in enumerate(dimensions):
        name = dimension.get("name") if isinstance(dimension, dict) else None
        values = dimension.get("values") if isinstance(dimension, dict) else None
        if not (
            isinstance(name, str)
            and isinstance(values, list)
            and values
            and all(isinstance(value, str) for value in values)
        ):
            bad(
                f"{where}.table.dimensions[{index}]",
                "expected a name and a non-empty list of category labels (values)",
            )
            return None
        keys.append((name, list(values)))
    by = table.get("by")
    if by != [name for name, _ in keys]:
        bad(f"{where}.table.by", "expected the names of the dimensions, in the same order")
    if totals:
        if rules.total_label is None:
            return None  # reported with the disclosure rules
        keys = [(name, [*values, rules.total_label]) for name, values in keys]
    return keys


def _check_count_table(
    path: Path,
    data: bytes,
    resource: Mapping[str, Any],
    where: str,
    rules: _Disclosure,
    bad: Any,
) -> list[str]:
    """Markers, rounding, threshold, keys and intervals of one table of counts."""
    dimensions = _dimensions(resource.get("table"), where, rules, bad)
    needed = [*(name for name, _ in dimensions or []), *_COUNT_COLUMNS]
    table = _read_table(data, resource, needed)
    if isinstance(table, str):
        return [f"{path}: {table}"]
    allowed = _allowed_markers(resource)
    problems: list[str] = []
    first_seen: dict[tuple[str, ...], int] = {}
    for at, row in _readable_rows(path, table, problems):
        problems += [f"{at}: {line}" for line in _count_problems(row.cells, allowed, rules)]
        if dimensions is None:
            continue
        key = tuple(row.cells[name] for name, _ in dimensions)
        if any(label not in values for label, (_, values) in zip(key, dimensions, strict=True)):
            problems.append(
                f"{at}: unexpected-key: {_key(dimensions, key)} is not a combination of the "
                f"table's categories; expected one of those in {where}.table.dimensions"
            )
        elif key in first_seen:
            problems.append(
                f"{at}: duplicate-key: {_key(dimensions, key)} is already in row "
                f"{first_seen[key]}; expected each combination once"
            )
        else:
            first_seen[key] = row.number
    if dimensions is not None:
        for key in itertools.product(*(values for _, values in dimensions)):
            if key not in first_seen:
                problems.append(
                    f"{path}: missing-key: no row for {_key(dimensions, key)}; expected every "
                    "combination of the table's categories once"
                )
    return problems


def _key(dimensions: Sequence[tuple[str, list[str]]], key: Sequence[str]) -> str:
    return ", ".join(f"{name}={label!r}" for (name, _), label in zip(dimensions, key, strict=True))


def _count_problems(
    cells: Mapping[str, str], allowed: frozenset[str], rules: _Disclosure
) -> list[str]:
    """The rules for one row of counts, as ``<rule>: <message>`` lines."""
    value_text = cells["value"]
    problems = _marker_problems(cells["marker"], allowed, bool(value_text), "value")
    base = rules.rounding_base
    value = None
    if value_text:
        value = _whole(value_text, "value", base, problems)
        if value is not None and (
            value <= 0 or (rules.threshold is not None and value < rules.threshold)
        ):
            floor = (
                "above 0" if rules.threshold is None else f"at least {rules.threshold} and above 0"
            )
            problems.append(
                f"below-threshold: value is below what may be shown; expected {floor}, or an "
                "empty value marked [low]"
            )
    bounds = {}
    for column in ("lower_95", "upper_95"):
        if not cells[column]:
            problems.append(f"interval: {column} is empty; expected a whole number")
        else:
            bounds[column] = _whole(cells[column], column, base, problems)
    lower, upper = bounds.get("lower_95"), bounds.get("upper_95")
    problems += _interval_problems(value, lower, upper, "value", top=None)
    return problems


def _whole(text: str, column: str, base: int | None, problems: list[str]) -> int | None:
    """The whole number in a cell, noting when it is not one or not a multiple of ``base``."""
    if not _INTEGER.fullmatch(text):
        problems.append(f"not-integer: {column} is not a whole number; expected digits only")
        return None
    number = int(text)
    if base is not None and number % base:
        problems.append(
            f"not-rounded: {column} is not a multiple of the rounding base {base}; "
            f"expected it rounded to the nearest {base}"
        )
    return number


def _interval_problems(
    estimate: float | None, lower: float | None, upper: float | None, column: str, top: float | None
) -> list[str]:
    problems = []
    if lower is not None and lower < 0:
        problems.append("interval: lower_95 is negative; expected 0 or more")
    if upper is not None and top is not None and upper > top:
        problems.append(f"interval: upper_95 is above {top:g}; expected at most {top:g}")
    if lower is not None and upper is not None and lower > upper:
        problems.append("interval: lower_95 is above upper_95; expected lower_95 <= upper_95")
    if estimate is not None and lower is not None and estimate < lower:
        problems.append(
            f"interval: lower_95 is above {column}; expected lower_95 <= {column} <= upper_95"
        )
    if estimate is not None and upper is not None and estimate > upper:
        problems.append(
            f"interval: upper_95 is below {column}; expected lower_95 <= {column} <= upper_95"
        )
    return problems


def _check_shares(path: Path, data: bytes, resource: Mapping[str, Any]) -> list[str]:
    """Headline shares: numbers, intervals within 0-100 around the percent, one row each.

    An empty percent needs a marker when the resource has a marker column; without one
    (older packages) nothing could say why, so it is accepted.
    """
    table = _read_table(data, resource, _SHARE_COLUMNS)
    if isinstance(table, str):
        return [f"{path}: {table}"]
    marked = "marker" in table.header
    allowed = _allowed_markers(resource)
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for at, row in _readable_rows(path, table, problems):
        lines: list[str] = []
        percent_text = row.cells["percent"]
        if marked:
            lines += _marker_problems(row.cells["marker"], allowed, bool(percent_text), "percent")
        numbers: dict[str, float | None] = {}
        for column in ("percent", "lower_95", "upper_95"):
            text = row.cells[column]
            numbers[column] = None
            if not text:
                if column != "percent":
                    lines.append(f"interval: {column} is empty; expected a number")
            elif not _NUMBER.fullmatch(text) or not math.isfinite(float(text)):
                lines.append(f"not-number: {column} is not a number; expected a decimal number")
            else:
                numbers[column] = float(text)
        percent = numbers["percent"]
        if percent is not None and not 0 <= percent <= 100:
            lines.append("interval: percent is outside 0 to 100; expected a percentage")
        lines += _interval_problems(
            percent, numbers["lower_95"], numbers["upper_95"], "percent", top=100
        )
        problems += [f"{at}: {line}" for line in lines]
        share = row.cells["share"]
        if share in first_seen:
            problems.append(
                f"{at}: duplicate-key: share {share!r} is already in row {first_seen[share]}; "
                "expected each share once"
            )
        else:
            first_seen.setdefault(share, row.number)
    for share in sorted(_allowed_markers(resource, "share") - first_seen.keys()):
        problems.append(
            f"{path}: missing-key: no row for share {share!r}; expected each share once"
        )
    return problems


# --- SHA256SUMS -------------------------------------------------------------------------------


def _check_checksums(package_dir: Path) -> list[str]:
    """Each line of SHA256SUMS against its file, and every file of the package listed.

    SHA256SUMS is required, each path in it is untrusted (a plain name inside the package,
    reached without links), and the package may hold nothing but regular files.
    """
    sums_path = package_dir / CHECKSUMS
    listed, numbered = _checksum_lines(package_dir)
    if listed is None:
        return [problem for _, problem in numbered]
    for relative, (expected, number) in listed.items():
        at = f"{sums_path}: line {number}: checksum"
        try:
            digest = hashlib.sha256(model.read_file(package_dir, relative)).hexdigest()
        except model.UntrustedFile as error:
            if error.reason == _MISSING:
                explained = f"{at}: lists {relative!r}, which is not a file in the package"
            else:
                explained = f"{at}: lists {relative!r}, which {error.reason}"
            numbered.append((number, explained))
            continue
        if digest != expected:
            numbered.append(
                (
                    number,
                    f"{package_dir / relative}: checksum: the SHA-256 of the file differs from "
                    f"line {number} of {CHECKSUMS}; the file changed after release, or "
                    f"{CHECKSUMS} is stale",
                )
            )
    problems = [problem for _, problem in sorted(numbered, key=lambda item: item[0])]
    for relative, what in files.walk_regular(package_dir):
        if what is not None:
            problems.append(
                f"{package_dir / relative}: checksum: is {what}; a package holds only regular "
                "files (remove it)"
            )
        elif relative != CHECKSUMS and relative not in listed:
            problems.append(
                f"{package_dir / relative}: checksum: not listed in {CHECKSUMS}; expected "
                "every file of the package in it"
            )
    return problems


def read_checksums(
    package_dir: Path,
) -> tuple[dict[str, tuple[str, int]] | None, list[str]]:
    """The paths SHA256SUMS lists, each with its SHA-256 and line number, and the problems
    of its lines (see :func:`model.parse_checksums`: anything but what `publisher release`
    writes). None, with the problem, when the file is missing or is refused as a whole."""
    listed, numbered = _checksum_lines(package_dir)
    return listed, [problem for _, problem in numbered]


def _checksum_lines(
    package_dir: Path,
) -> tuple[dict[str, tuple[str, int]] | None, list[tuple[int, str]]]:
    sums_path = package_dir / CHECKSUMS
    try:
        data = model.read_file(package_dir, CHECKSUMS)
    except model.UntrustedFile as error:
        if error.reason != _MISSING:
            return None, [(0, f"{sums_path}: checksum: {error.reason}; expected a text file")]
        return None, [
            (
                0,
                f"{sums_path}: checksum: missing; every package lists the SHA-256 of each of "
                f"its files in {CHECKSUMS} (restore it, or release the package again)",
            )
        ]
    listed, problems = model.parse_checksums(data)
    return listed, [
        (number, f"{sums_path}: line {number}: checksum: {reason}")
        if number
        else (number, f"{sums_path}: checksum: {reason}")
        for number, reason in problems
    ]


# --- the zip of the version ----------------------------------------------------------------


def _check_zips(package_dir: Path, descriptor: dict[str, Any] | None) -> list[str]:
    """Every zip at the top of the package holds exactly the package's own files: each
    member byte for byte equal to the file of the same path (a single top folder named
    after the zip is allowed), and every file the descriptor names present."""
    problems: list[str] = []
    for relative, what in files.walk_regular(package_dir):
        if what is None and "/" not in relative and relative.endswith(".zip"):
            problems += _check_zip(package_dir, relative, descriptor)
    return problems


def _descriptor_paths(descriptor: dict[str, Any] | None) -> list[str]:
    """The descriptor and the files it names (resources and ``files``), as listed."""
    paths = [_DESCRIPTOR]
    for key in ("resources", "files"):
        entries = descriptor.get(key) if descriptor else None
        for entry in entries if isinstance(entries, list) else []:
            relative = entry.get("path") if isinstance(entry, dict) else None
            if isinstance(relative, str) and model.path_problem(relative) is None:
                paths.append(relative)
    return paths


def _check_zip(package_dir: Path, name: str, descriptor: dict[str, Any] | None) -> list[str]:
    where = f"{package_dir / name}: zip"
    try:
        archive = zipfile.ZipFile(io.BytesIO(model.read_file(package_dir, name)))
    except (model.UntrustedFile, zipfile.BadZipFile, ValueError) as error:
        return [f"{where}: cannot be read as a zip ({type(error).__name__})"]
    problems: list[str] = []
    members = [info for info in archive.infolist() if not info.is_dir()]
    top = name.removesuffix(".zip") + "/"
    prefix = top if members and all(m.filename.startswith(top) for m in members) else ""
    found: set[str] = set()
    for info in members:
        relative = info.filename.removeprefix(prefix)
        refused = model.path_problem(relative)
        if refused:
            problems.append(f"{where}: member {info.filename!r}: {refused}")
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"{where}: member {info.filename!r} is a symbolic link")
            continue
        found.add(relative)
        try:
            loose = model.read_file(package_dir, relative)
        except model.UntrustedFile:
            problems.append(
                f"{where}: member {info.filename!r} is not a file of the package; expected "
                "the zip to hold the package's own files only"
            )
            continue
        if info.file_size != len(loose) or _member_bytes(archive, info) != loose:
            problems.append(
                f"{where}: member {info.filename!r} differs from {relative!r} in the package; "
                "expected the same bytes (rebuild the zip, or release again)"
            )
    for relative in _descriptor_paths(descriptor):
        if relative not in found and relative != name:
            problems.append(f"{where}: {relative!r} is missing from the zip")
    return problems


def _member_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """A member's bytes (at most its stated size, so a zip bomb is not inflated), or None
    when it cannot be read."""
    try:
        with archive.open(info) as member:
            return member.read(info.file_size + 1)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return None
