"""The published data package, read once, checked, and shared by everything that reads one.

A package on disk is untrusted input: it may have been edited, truncated, or built by
someone else to make a reader copy private files. :func:`read` turns a package directory
into one immutable :class:`Package` or raises :class:`~publisher.errors.PackageError`
listing every problem at once. What it guarantees:

- **Paths are plain names inside the package.** Every path taken from the package
  (``resources[].path``, ``files[].path``, ``archive[].path``, each line of
  ``SHA256SUMS``) is relative, made of letters, digits, ``-``, ``_`` and ``.``, with no
  ``..``, no hidden part, no backslash and no URL (:func:`path_problem`).
- **No links, only regular files.** Files are opened one folder at a time with
  ``O_NOFOLLOW``, so a symbolic link anywhere on the way, a FIFO or a device is refused
  instead of followed or waited on (:func:`read_file`).
- **Bytes are what the package says.** Every file the package lists must have a SHA-256
  stated for it (its descriptor entry's ``hash`` or its ``SHA256SUMS`` line), and match
  every one stated, and its ``bytes``. ``datapackage.json`` itself matches its
  ``SHA256SUMS`` line when there is one. :meth:`Package.read_bytes` checks again when the
  bytes are used, so what is copied is what was checked.
- **Shapes are the publisher's.** The publisher's own keys (``release``, ``privacy``,
  ``disclosure``, ``markers``, ``shares``, each resource's ``table``) have the types the
  publisher writes; each count table's CSV has the header its schema declares.

Files found in the folder but listed nowhere are reported in :attr:`Package.unlisted`, not
refused: a reader that copies only listed files (the site) may ignore them; one that
republishes the folder (the next release's archive step) should refuse them.

The descriptor shapes that are still changing (per-unit guarantees under
``privacy.units``, ``truncation``, share descriptions) are read in both their old and new
forms; unknown resources are kept with their title, description and schema.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from publisher import files
from publisher.errors import PackageError, printable

__all__ = [
    "CHANGELOG",
    "CHECKSUMS",
    "DESCRIPTOR",
    "ArchivedVersion",
    "Contact",
    "Dimension",
    "Field",
    "Link",
    "MeasuredQuery",
    "Measurement",
    "Package",
    "PackageFile",
    "PrivacyUnit",
    "Reach",
    "Resource",
    "Share",
    "TablePrivacy",
    "Truncation",
    "UntrustedFile",
    "advice",
    "parse_checksums",
    "parse_json",
    "path_problem",
    "read",
    "read_file",
]

DESCRIPTOR = "datapackage.json"
CHECKSUMS = "SHA256SUMS"
CHANGELOG = "CHANGELOG.md"

# The count-table contract: every table CSV has its dimension columns plus these four.
VALUE = "value"
MARKER = "marker"
LOWER = "lower_95"
UPPER = "upper_95"
COUNT_COLUMNS = (VALUE, MARKER, LOWER, UPPER)

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.\-]+$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Exactly the line `publisher release` writes (text mode: two spaces, never " *").
_CHECKSUM_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
_CHECKSUM_FORMAT = (
    "expected 64 lowercase hexadecimal digits, two spaces and a path, as `sha256sum` writes "
    "them ('<hash>  <path>')"
)
_CHECKSUM_FIX = "download the package again, or release it again"
_HINT = (
    "The package is read as `publisher release` writes it: check it with "
    "`publisher validate {package}`, fix it or release again"
)


class UntrustedFile(PackageError):
    """A path of the package names something that is not a plain file inside it.

    ``reason`` says why, without the path (for example "is missing").
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A column of a resource's table schema."""

    name: str
    title: str
    type: str
    description: str


@dataclass(frozen=True)
class Dimension:
    """A breakdown of a count table: its public keys, in their published order."""

    name: str
    title: str
    description: str
    values: tuple[str, ...]
    unknown: str | None
    definitions: tuple[tuple[str, str], ...]
    ordered: bool = False

    def definition(self, value: str) -> str:
        """The spec's definition of one key, or "" when it has none."""
        return dict(self.definitions).get(value, "")


@dataclass(frozen=True)
class TablePrivacy:
    """What the package states about one table's noise and privacy loss."""

    rho: float | None
    epsilon: float | None
    delta: float | None
    distribution: str
    scale: float | None
    margin_95: float | None
    # Per privacy unit the table concerns: how far one person can move its counts, and
    # what the table costs them (rho, or epsilon under pure DP).
    sensitivity: tuple[tuple[str, float], ...] = ()
    unit_losses: tuple[tuple[str, float], ...] = ()
    # "alone" (its own noise, above), "with its input's tables" (by the measurement of
    # ``Package.measurements`` for its input, whose loss the tables share), or "" (older).
    measured: str = ""
    method: str = ""  # the strategy of that measurement ("optimum")


@dataclass(frozen=True)
class MeasuredQuery:
    """One noisy vector of a measurement: its size, noise and sensitivity per unit."""

    name: str
    size: int | None
    distribution: str
    scale: float | None
    sensitivity: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Measurement:
    """An input's tables measured together by one strategy (zCDP): what it cost each
    unit, and its queries."""

    input: str
    title: str
    tables: tuple[str, ...]
    method: str
    objective: str
    unit_losses: tuple[tuple[str, float], ...]
    queries: tuple[MeasuredQuery, ...]
    notes: tuple[str, ...] = ()  # what the planner says about how close to optimal it is


@dataclass(frozen=True)
class Resource:
    """A resource of the package. Count tables (with a ``table`` key) carry their rows."""

    name: str
    path: str
    title: str
    description: str
    format: str
    fields: tuple[Field, ...]
    counts: str = "records"
    input: str = ""
    dimensions: tuple[Dimension, ...] = ()
    totals: bool = False
    privacy: TablePrivacy | None = None
    rows: tuple[dict[str, str], ...] = ()

    @property
    def is_table(self) -> bool:
        """Whether this is a count table (dimensions, value, marker and interval)."""
        return bool(self.dimensions)

    def field(self, name: str) -> Field:
        return next(item for item in self.fields if item.name == name)


@dataclass(frozen=True)
class Reach:
    """How an input's records reach the people of a privacy unit, and the bound on them."""

    input: str
    input_title: str = ""  # the input's title, when the package gives it
    identifier: str = ""  # the column naming the person
    through: str = ""  # the references followed, in words ("" for the input's own identifier)
    bound: int | None = None  # the most records of one person that are counted
    bound_text: str = ""  # the package's own sentence about the bound


@dataclass(frozen=True)
class PrivacyUnit:
    """A kind of person the release protects, with the loss each such person may suffer.

    Packages written before per-unit guarantees state one unit per input: ``name`` is
    then the input's name and ``reaches`` has that one input.
    """

    name: str
    title: str
    description: str
    rho: float | None
    epsilon: float | None
    delta: float | None
    reaches: tuple[Reach, ...]
    tables: tuple[tuple[str, float | None], ...]  # table name -> its loss for this unit
    per_input: bool = False  # read from the older shape: one "unit" per input
    # Input name -> what measuring its tables together cost this unit.
    inputs: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Truncation:
    """What the per-person bounds left out of one input, as the package states it."""

    input: str
    statement: str


@dataclass(frozen=True)
class Share:
    """A headline share of one table, with its 95% interval (fractions, not percent)."""

    name: str
    title: str
    statement: str
    table: str
    numerator: tuple[tuple[str, tuple[str, ...]], ...]
    denominator: tuple[tuple[str, tuple[str, ...]], ...]
    estimate: float | None
    lower: float | None
    upper: float | None
    numerator_description: str = ""
    denominator_description: str = ""


@dataclass(frozen=True)
class Contact:
    """A person or team readers can write to."""

    name: str
    email: str = ""
    phone: str = ""
    statistician: str = ""  # the responsible statistician, when named


@dataclass(frozen=True)
class Link:
    """A related page, from the release's metadata."""

    title: str
    url: str
    description: str = ""


@dataclass(frozen=True)
class PackageFile:
    """A file of the package, verified against the SHA-256 the package states for it.

    ``kind`` says where the package lists it: ``resource``, ``file`` (the ``files`` key),
    ``checksummed`` (named only by ``SHA256SUMS``, such as the zip of the version),
    ``descriptor``, ``checksums`` or ``archive`` (a file of an earlier version).
    """

    path: str  # relative to the package, as the package writes it
    kind: str
    title: str
    description: str
    format: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class ArchivedVersion:
    """An earlier version the package keeps under ``archive/``: its metadata and zip."""

    version: str
    descriptor: PackageFile
    zips: tuple[PackageFile, ...]


@dataclass(frozen=True)
class Package:
    """A published data package, read and checked once (see the module docstring)."""

    directory: Path
    name: str
    title: str
    description: str
    version: str
    homepage: str
    keywords: tuple[str, ...]
    licence_name: str
    licence_title: str
    licence_url: str
    sources: tuple[tuple[str, str], ...]
    publisher: str
    contact: Contact
    press: Contact | None
    period: str
    published: str
    geography: str
    synthetic: bool
    tool: str
    opendp: str
    status: str  # "final" or "provisional" when the package says
    statistics_status: str
    next_update: str
    revises: str  # the version this one revises, or ""
    versions_url: str
    related: tuple[Link, ...]
    glossary: tuple[tuple[str, str], ...]
    model: str  # "zcdp" or "pure"
    loss_rho: float | None
    loss_epsilon: float | None
    loss_delta: float | None
    units: tuple[PrivacyUnit, ...]
    statement: str
    truncation: tuple[Truncation, ...]
    measurements: tuple[Measurement, ...]
    rounding_base: int
    threshold: int
    total_label: str
    markers: tuple[tuple[str, str], ...]
    shares: tuple[Share, ...]
    resources: tuple[Resource, ...]
    # Groups of tables estimated together (consistent with each other), by table name.
    consistent_groups: tuple[tuple[str, ...], ...]
    estimation_method: str  # as the package names it ("generalised least squares")
    estimation_description: str
    files: tuple[PackageFile, ...]  # every listed file of this version, verified
    archive: tuple[ArchivedVersion, ...]
    changelog: str | None  # the package's CHANGELOG.md, when it lists one
    unlisted: tuple[str, ...] = ()  # files in the folder that the package lists nowhere
    checksums: Mapping[str, str] = field(default_factory=dict)  # SHA256SUMS, by path

    @property
    def tables(self) -> tuple[Resource, ...]:
        """The count tables, in the package's order."""
        return tuple(resource for resource in self.resources if resource.is_table)

    def table(self, name: str) -> Resource:
        return next(resource for resource in self.tables if resource.name == name)

    def marker_meaning(self, marker: str) -> str:
        return dict(self.markers).get(marker, "")

    def file(self, path: str) -> PackageFile | None:
        """The verified file at ``path`` (of this version), if the package lists it."""
        return next((item for item in self.files if item.path == path), None)

    def read_bytes(self, item: PackageFile) -> bytes:
        """The file's bytes, read again without following links and checked again."""
        content = read_file(self.directory, item.path)
        if hashlib.sha256(content).hexdigest() != item.sha256:
            raise PackageError(
                f"{self.directory / item.path}: changed while it was being read; check the "
                f"package with `publisher validate {self.directory}`"
            )
        return content


# --------------------------------------------------------------------------------------
# Paths and files
# --------------------------------------------------------------------------------------


def path_problem(relative: object) -> str | None:
    """Why ``relative``, a path read from a package, cannot name a file of it; None if fine.

    A path must be a plain relative name: parts of letters, digits, ``-``, ``_`` and ``.``
    separated by ``/``, none of them empty, ``..`` or hidden (starting with a dot).
    """
    expected = (
        "expected a relative path inside the package made of letters, digits, '-', '_' and "
        "'.' (for example 'data/table.csv')"
    )
    if not isinstance(relative, str) or not relative:
        return expected
    parts = relative.split("/")
    if any(not part or part.startswith(".") or not _SAFE_PART.match(part) for part in parts):
        return expected
    return None


def read_file(package_dir: Path, relative: str) -> bytes:
    """The bytes of the regular file ``relative`` inside ``package_dir``, following no link.

    Each folder on the way and the file itself are opened with ``O_NOFOLLOW`` relative to
    the one before, so a symbolic link anywhere below ``package_dir`` is refused, as is
    anything that is not a regular file (a FIFO would block a reader forever). Raises
    :class:`UntrustedFile` saying why.
    """
    problem = path_problem(relative)
    if problem:
        raise UntrustedFile(f"{package_dir}: '{_printable(str(relative))}'", problem)
    where = package_dir / relative
    parts = relative.split("/")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    opened: list[int] = []
    try:
        try:
            folder = os.open(package_dir, flags | getattr(os, "O_DIRECTORY", 0))
            opened.append(folder)
            for part in parts[:-1]:
                folder = os.open(part, flags | getattr(os, "O_DIRECTORY", 0), dir_fd=folder)
                opened.append(folder)
            handle = os.open(parts[-1], flags | getattr(os, "O_NONBLOCK", 0), dir_fd=folder)
            opened.append(handle)
        except OSError as error:
            raise UntrustedFile(where, _open_problem(error, package_dir, parts)) from None
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            raise UntrustedFile(where, f"is {_kind(mode)}, not a regular file")
        chunks = []
        while chunk := os.read(handle, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        for descriptor in reversed(opened):
            os.close(descriptor)


def _open_problem(error: OSError, package_dir: Path, parts: Sequence[str]) -> str:
    """Why a file of the package could not be opened, found by looking at each part."""
    current = package_dir
    for number, part in enumerate(parts, start=1):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return (
                "is missing"
                if error.errno in (errno.ENOENT, errno.ENOTDIR)
                else (f"cannot be read ({error.strerror})")
            )
        if stat.S_ISLNK(mode):
            return (
                "is a symbolic link"
                if number == len(parts)
                else f"goes through the symbolic link {'/'.join(parts[:number])}"
            ) + "; a package holds plain files only"
        if number < len(parts) and not stat.S_ISDIR(mode):
            return f"goes through {'/'.join(parts[:number])}, which is not a folder"
    if error.errno == errno.EACCES:
        return "cannot be read (permission denied)"
    return f"cannot be read ({error.strerror})"


def _kind(mode: int) -> str:
    return files.describe(mode)


def _printable(text: str) -> str:
    """A path from the package, safe to print on one line (no control characters)."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", "?", text)[:200]


def _walk(package_dir: Path) -> Iterator[str]:
    """Every file and link under the package as POSIX paths; links are not followed."""
    for folder, folders, names in os.walk(package_dir):
        for name in [*names, *(item for item in folders if Path(folder, item).is_symlink())]:
            yield Path(folder, name).relative_to(package_dir).as_posix()


# --------------------------------------------------------------------------------------
# Reading JSON values, collecting every problem
# --------------------------------------------------------------------------------------


class _Reader:
    """Reads typed values out of parsed JSON, collecting every problem with its path."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")

    def mapping(self, obj: Any, where: str, *, required: bool = True) -> Mapping[str, Any]:
        if isinstance(obj, Mapping):
            return obj
        if obj is not None or required:
            self.problem(where, "expected an object")
        return {}

    def items(self, obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
        value = obj.get(key, [])
        if isinstance(value, list):
            return value
        self.problem(f"{where}{key}", "expected a list")
        return []

    def text(self, obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
        value = obj.get(key)
        if isinstance(value, str) and (value.strip() or not required):
            return value
        if value is None and not required:
            return ""
        self.problem(f"{where}{key}", "expected a non-empty text" if required else "expected text")
        return ""

    def optional_text(self, obj: Mapping[str, Any], key: str, where: str) -> str:
        """Text that may also be null (for example ``release.revises`` of a first version)."""
        return "" if obj.get(key) is None else self.text(obj, key, where)

    def number(self, obj: Mapping[str, Any], key: str, where: str) -> float | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.problem(f"{where}{key}", "expected a number")
        return None

    def numbers(
        self, obj: Mapping[str, Any], key: str, where: str
    ) -> tuple[tuple[str, float], ...]:
        """A mapping of names to numbers (absent: empty)."""
        values = self.mapping(obj.get(key), f"{where}{key}", required=False)
        return tuple(
            (str(name), number)
            for name in values
            if (number := self.number(values, name, f"{where}{key}.")) is not None
        )

    def whole(
        self, obj: Mapping[str, Any], key: str, where: str, *, required: bool = False
    ) -> int | None:
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if value is not None or required:
            self.problem(f"{where}{key}", "expected a whole number (0 or more)")
        return None

    def texts(self, obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.items(obj, key, where)
        if not all(isinstance(value, str) for value in values):
            self.problem(f"{where}{key}", "expected a list of texts")
            return ()
        return tuple(values)

    def selection(self, obj: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """A share's numerator or denominator: {column: [keys]}."""
        mapping = self.mapping(obj, where, required=False)
        selected = []
        for column, keys in mapping.items():
            if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
                self.problem(f"{where}.{column}", "expected a list of keys")
                continue
            selected.append((str(column), tuple(keys)))
        return tuple(selected)


# --------------------------------------------------------------------------------------
# Reading a package
# --------------------------------------------------------------------------------------


def read(package_dir: Path) -> Package:
    """Read and check the data package in ``package_dir`` (see the module docstring).

    Raises :class:`~publisher.errors.PackageError` listing every problem, the last line
    saying what to do.
    """
    hint = _HINT.format(package=package_dir)
    if not package_dir.is_dir():
        raise PackageError(
            f"{package_dir}: no such package directory: run `publisher release SPEC` to "
            f"write one, or pass the directory that holds {DESCRIPTOR}"
        )
    descriptor_path = package_dir / DESCRIPTOR
    if not descriptor_path.exists() and not descriptor_path.is_symlink():
        raise PackageError(
            f"{descriptor_path}: not found: {package_dir} is not a data package; run "
            "`publisher release SPEC` to write one, or pass the right directory"
        )
    try:
        raw = read_file(package_dir, DESCRIPTOR)
    except UntrustedFile as error:
        raise PackageError([*error.problems, hint]) from None
    try:
        descriptor = parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PackageError(f"{descriptor_path}: not UTF-8 text. {hint}") from None
    except json.JSONDecodeError as error:
        raise PackageError(
            f"{descriptor_path}: not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg}). {hint}"
        ) from None
    except ValueError as error:
        raise PackageError(f"{descriptor_path}: not valid JSON ({error}). {hint}") from None
    except RecursionError:
        raise PackageError(f"{descriptor_path}: nested too deeply to read. {hint}") from None

    reader = _Reader(descriptor_path)
    checksums = _read_checksums(reader, package_dir)
    descriptor_hash = checksums.get(DESCRIPTOR)
    if descriptor_hash is not None and descriptor_hash != hashlib.sha256(raw).hexdigest():
        reader.problems.append(
            f"{package_dir / CHECKSUMS}: the checksum of {DESCRIPTOR} differs from the file: "
            "the file changed after the release: check the package with `publisher validate`"
        )
    root = reader.mapping(descriptor, "(top level)")
    files = _Files(reader, package_dir, checksums, len(raw))
    package = _package(reader, package_dir, root, files, descriptor_hash or "")
    if reader.problems:
        raise PackageError([*reader.problems, hint])
    return package


def advice(package_dir: Path) -> str:
    """The last line of :func:`read`'s errors: what to do about a package it refuses."""
    return printable(_HINT.format(package=package_dir))


def parse_json(text: str) -> Any:
    """JSON as the publisher writes it: no NaN or Infinity, and no key twice in an object
    (readers disagree on which of two values wins, so such a descriptor could say one
    thing to the site and another to a catalogue). Raises ValueError."""
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {_printable(key)!r} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _package(
    reader: _Reader,
    package_dir: Path,
    root: Mapping[str, Any],
    files: _Files,
    descriptor_hash: str,
) -> Package:
    release = reader.mapping(root.get("release"), "release")
    privacy = reader.mapping(root.get("privacy"), "privacy")
    loss = reader.mapping(privacy.get("loss"), "privacy.loss")
    disclosure = reader.mapping(root.get("disclosure"), "disclosure")

    synthetic = release.get("synthetic")
    if not isinstance(synthetic, bool):
        # Never guess: a site of synthetic data must say so on every page.
        reader.problem("release.synthetic", "expected true or false")
        synthetic = True
    model = reader.text(privacy, "model", "privacy.", required=True)
    if model and model not in ("zcdp", "pure"):
        reader.problem("privacy.model", "expected 'zcdp' or 'pure'")
    version = reader.text(root, "version", "", required=True)
    if version and not _VERSION.match(version):
        reader.problem("version", "expected a version such as '1.0.0' (letters, digits, '.')")

    licences = [reader.mapping(item, "licenses[]") for item in reader.items(root, "licenses", "")]
    licence = licences[0] if licences else {}
    sources = tuple(
        (
            reader.text(source, "title", "sources[]."),
            reader.text(source, "description", "sources[]."),
        )
        for source in (
            reader.mapping(item, "sources[]") for item in reader.items(root, "sources", "")
        )
    )
    publisher = next(
        (
            reader.text(person, "title", "contributors[].")
            for person in (
                reader.mapping(item, "contributors[]")
                for item in reader.items(root, "contributors", "")
            )
            if "publisher" in (person.get("roles") or [])
        ),
        "",
    )
    markers_obj = reader.mapping(root.get("markers"), "markers", required=False)
    markers = tuple((str(key), str(value)) for key, value in markers_obj.items())
    estimation = reader.mapping(root.get("estimation"), "estimation", required=False)
    consistent_groups = tuple(
        tuple(
            str(name)
            for name in reader.items(
                reader.mapping(group, f"estimation.groups[{index}]"),
                "tables",
                f"estimation.groups[{index}].",
            )
        )
        for index, group in enumerate(reader.items(estimation, "groups", "estimation."))
    )
    rounding_base = reader.whole(disclosure, "rounding_base", "disclosure.", required=True)
    threshold = reader.whole(disclosure, "threshold", "disclosure.", required=True)
    total_label = reader.text(disclosure, "total_label", "disclosure.", required=True)

    units = tuple(
        _read_unit(reader, reader.mapping(item, f"privacy.units[{index}]"), index)
        for index, item in enumerate(reader.items(privacy, "units", "privacy."))
    )
    shares = tuple(
        _read_share(reader, reader.mapping(item, f"shares[{index}]"), index)
        for index, item in enumerate(reader.items(root, "shares", ""))
    )
    truncation = tuple(
        Truncation(
            input=reader.text(entry, "input", f"truncation[{index}]."),
            statement=reader.text(entry, "statement", f"truncation[{index}]."),
        )
        for index, entry in enumerate(
            reader.mapping(item, f"truncation[{index}]")
            for index, item in enumerate(reader.items(root, "truncation", ""))
        )
    )

    resource_items = reader.items(root, "resources", "")
    if not resource_items:
        reader.problem("resources", "expected at least one resource")
    resources = tuple(
        _read_resource(reader, files, reader.mapping(item, f"resources[{index}]"), index)
        for index, item in enumerate(resource_items)
    )
    names = [resource.name for resource in resources]
    for name in sorted({name for name in names if names.count(name) > 1}):
        reader.problem("resources", f"the name '{name}' is used twice: names must be unique")
    table_names = {resource.name for resource in resources if resource.is_table}
    for index, share in enumerate(shares):
        if share.table and share.table not in table_names:
            reader.problem(f"shares[{index}].table", f"no table resource named '{share.table}'")

    for index, item in enumerate(reader.items(root, "files", "")):
        files.add(reader.mapping(item, f"files[{index}]"), f"files[{index}].", "file")
    files.add_checksummed()
    files.add_own(DESCRIPTOR, "descriptor", descriptor_hash)
    if files.checksums:
        files.add_own(CHECKSUMS, "checksums", "")
    archive = _read_archive(reader, root, files)
    changelog_file = next((item for item in files.listed if item.path == CHANGELOG), None)
    changelog = None
    if changelog_file is not None:
        try:
            changelog = read_file(package_dir, CHANGELOG).decode("utf-8")
        except UnicodeDecodeError:
            reader.problems.append(f"{package_dir / CHANGELOG}: not UTF-8 text; release again")
        except UntrustedFile as error:
            reader.problems.extend(error.problems)

    contact = reader.mapping(release.get("contact"), "release.contact", required=False)
    press = reader.mapping(release.get("press"), "release.press", required=False)
    return Package(
        directory=package_dir,
        name=reader.text(root, "name", ""),
        title=reader.text(root, "title", "", required=True),
        description=reader.text(root, "description", ""),
        version=version,
        homepage=reader.text(root, "homepage", ""),
        keywords=reader.texts(root, "keywords", ""),
        licence_name=reader.text(licence, "name", "licenses[0]."),
        licence_title=reader.text(licence, "title", "licenses[0].")
        or reader.text(licence, "name", "licenses[0]."),
        licence_url=reader.text(licence, "path", "licenses[0]."),
        sources=sources,
        publisher=publisher,
        contact=_read_contact(reader, contact, "release.contact."),
        press=_read_contact(reader, press, "release.press.") if press else None,
        period=reader.text(release, "period", "release.", required=True),
        published=reader.text(release, "published", "release."),
        geography=reader.optional_text(release, "geography", "release."),
        synthetic=synthetic,
        tool=reader.text(release, "tool", "release."),
        opendp=reader.text(release, "opendp", "release."),
        status=reader.optional_text(release, "status", "release."),
        statistics_status=reader.optional_text(release, "statistics_status", "release."),
        next_update=reader.optional_text(release, "next_update", "release."),
        revises=reader.optional_text(release, "revises", "release."),
        versions_url=reader.optional_text(release, "versions_url", "release."),
        related=tuple(
            Link(
                title=reader.text(link, "title", f"release.related[{index}].", required=True),
                url=reader.text(link, "url", f"release.related[{index}].", required=True),
                description=reader.text(link, "description", f"release.related[{index}]."),
            )
            for index, link in enumerate(
                reader.mapping(item, f"release.related[{index}]")
                for index, item in enumerate(reader.items(release, "related", "release."))
            )
        ),
        glossary=tuple(
            (str(term), str(meaning))
            for term, meaning in reader.mapping(
                release.get("glossary"), "release.glossary", required=False
            ).items()
        ),
        model=model,
        loss_rho=reader.number(loss, "rho", "privacy.loss."),
        loss_epsilon=reader.number(loss, "epsilon", "privacy.loss."),
        loss_delta=reader.number(loss, "delta", "privacy.loss."),
        units=units,
        statement=reader.text(privacy, "statement", "privacy."),
        truncation=truncation,
        measurements=tuple(
            _read_measurement(reader, reader.mapping(item, f"privacy.measurements[{index}]"), index)
            for index, item in enumerate(reader.items(privacy, "measurements", "privacy."))
        ),
        rounding_base=rounding_base or 1,
        threshold=threshold or 0,
        total_label=total_label,
        markers=markers,
        shares=shares,
        resources=resources,
        consistent_groups=consistent_groups,
        estimation_method=reader.text(estimation, "method", "estimation."),
        estimation_description=reader.text(estimation, "description", "estimation."),
        files=tuple(files.listed),
        archive=archive,
        changelog=changelog,
        unlisted=tuple(
            sorted(
                path
                for path in _walk(package_dir)
                if path not in files.named and path not in files.checksums and path != CHECKSUMS
            )
        ),
        checksums=dict(files.checksums),
    )


def _read_contact(reader: _Reader, obj: Mapping[str, Any], where: str) -> Contact:
    return Contact(
        name=reader.text(obj, "name", where),
        email=reader.text(obj, "email", where),
        phone=reader.text(obj, "phone", where),
        statistician=reader.text(obj, "statistician", where),
    )


def _read_unit(reader: _Reader, obj: Mapping[str, Any], index: int) -> PrivacyUnit:
    """A privacy unit: per unit (``name`` and ``reaches``) or, in older packages, per input."""
    where = f"privacy.units[{index}]."
    tables_obj = obj.get("tables", [])
    tables: tuple[tuple[str, float | None], ...]
    if isinstance(tables_obj, Mapping):
        tables = tuple(
            (str(name), reader.number(tables_obj, name, f"{where}tables.")) for name in tables_obj
        )
    else:
        tables = tuple((str(name), None) for name in reader.items(obj, "tables", where))
    if "reaches" in obj or "name" in obj:
        reaches = tuple(
            Reach(
                input=reader.text(reach, "input", f"{where}reaches[{position}].", required=True),
                input_title=reader.text(reach, "input_title", f"{where}reaches[{position}]."),
                identifier=reader.text(reach, "identifier", f"{where}reaches[{position}]."),
                through=_through(reader, reach, f"{where}reaches[{position}]."),
                bound=reader.whole(reach, "bound", f"{where}reaches[{position}]."),
                bound_text=reader.text(reach, "bound_text", f"{where}reaches[{position}]."),
            )
            for position, reach in enumerate(
                reader.mapping(item, f"{where}reaches[{position}]")
                for position, item in enumerate(reader.items(obj, "reaches", where))
            )
        )
        name = reader.text(obj, "name", where, required=True)
    else:
        name = reader.text(obj, "input", where, required=True)
        reaches = (
            Reach(
                input=name,
                identifier=reader.text(obj, "identifier", where, required=True),
                bound=reader.whole(obj, "max_records_per_person", where, required=True),
            ),
        )
    return PrivacyUnit(
        name=name,
        title=reader.text(obj, "title", where),
        description=reader.text(obj, "description", where),
        rho=reader.number(obj, "rho", where),
        epsilon=reader.number(obj, "epsilon", where),
        delta=reader.number(obj, "delta", where),
        reaches=reaches,
        tables=tables,
        per_input=not ("reaches" in obj or "name" in obj),
        inputs=reader.numbers(obj, "inputs", where),
    )


def _unit_losses(
    reader: _Reader, obj: Mapping[str, Any], where: str
) -> tuple[tuple[str, float], ...]:
    """``units``: per unit, a mapping with its ``rho`` (zCDP) or ``epsilon``."""
    found = []
    for unit, item in reader.mapping(obj.get("units"), f"{where}units", required=False).items():
        entry = reader.mapping(item, f"{where}units.{unit}")
        loss = reader.number(entry, "rho" if "rho" in entry else "epsilon", f"{where}units.{unit}.")
        if loss is not None:
            found.append((str(unit), loss))
    return tuple(found)


def _read_measurement(reader: _Reader, obj: Mapping[str, Any], index: int) -> Measurement:
    where = f"privacy.measurements[{index}]."
    return Measurement(
        input=reader.text(obj, "input", where, required=True),
        title=reader.text(obj, "title", where),
        tables=tuple(str(name) for name in reader.items(obj, "tables", where)),
        method=reader.text(obj, "method", where),
        objective=reader.text(obj, "objective", where),
        notes=tuple(str(note) for note in reader.items(obj, "notes", where)),
        unit_losses=_unit_losses(reader, obj, where),
        queries=tuple(
            MeasuredQuery(
                name=reader.text(query, "name", f"{where}queries[{position}]."),
                size=reader.whole(query, "size", f"{where}queries[{position}]."),
                distribution=reader.text(query, "distribution", f"{where}queries[{position}]."),
                scale=reader.number(query, "scale", f"{where}queries[{position}]."),
                sensitivity=reader.numbers(query, "sensitivity", f"{where}queries[{position}]."),
            )
            for position, query in enumerate(
                reader.mapping(item, f"{where}queries[{position}]")
                for position, item in enumerate(reader.items(obj, "queries", where))
            )
        ),
    )


def _through(reader: _Reader, reach: Mapping[str, Any], where: str) -> str:
    """The references a unit's records are reached through, in words."""
    through = reach.get("through")
    if isinstance(through, list):
        return ", then ".join(str(step) for step in through)
    return reader.text(reach, "through", where)


def _read_share(reader: _Reader, obj: Mapping[str, Any], index: int) -> Share:
    where = f"shares[{index}]."
    return Share(
        name=reader.text(obj, "name", where, required=True),
        title=reader.text(obj, "title", where, required=True),
        statement=reader.text(obj, "statement", where, required=True),
        table=reader.text(obj, "table", where, required=True),
        numerator=reader.selection(obj.get("numerator"), f"{where}numerator"),
        denominator=reader.selection(obj.get("denominator"), f"{where}denominator"),
        estimate=reader.number(obj, "estimate", where),
        lower=reader.number(obj, LOWER, where),
        upper=reader.number(obj, UPPER, where),
        numerator_description=reader.text(obj, "numerator_description", where),
        denominator_description=reader.text(obj, "denominator_description", where),
    )


def _read_checksums(reader: _Reader, package_dir: Path) -> dict[str, str]:
    """The package's SHA256SUMS (see :func:`parse_checksums`), by path; {} if absent."""
    path = package_dir / CHECKSUMS
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        data = read_file(package_dir, CHECKSUMS)
    except UntrustedFile as error:
        reader.problems.extend(error.problems)
        return {}
    listed, problems = parse_checksums(data)
    reader.problems += [
        f"{path}: line {number}: {reason}" if number else f"{path}: {reason}"
        for number, reason in problems
    ]
    return {relative: digest for relative, (digest, _) in (listed or {}).items()}


def parse_checksums(
    data: bytes,
) -> tuple[dict[str, tuple[str, int]] | None, list[tuple[int, str]]]:
    """The paths a SHA256SUMS file lists, each with its SHA-256 and line number, and the
    problems found, each as (line number, reason), the number 0 for the file as a whole.

    Strict, as `validate` must be: only what `publisher release` writes is read, UTF-8
    without a byte order mark, LF line endings, a final newline, no blank line, and each
    line ``<64 lowercase hex>  <path>`` with a plain path (:func:`path_problem`) listed once.
    A file that went through a tool converting its line endings (CRLF, bare CR) or its
    encoding is refused as a whole (None), not half-read: its lines are not looked at.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return None, [
            (
                1,
                "starts with a byte order mark; expected UTF-8 text without one, as "
                f"`sha256sum` writes it: {_CHECKSUM_FIX}",
            )
        ]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, [(0, f"is not UTF-8 text: {_CHECKSUM_FIX}")]
    if "\r" in text:
        return None, [
            (
                text.count("\n", 0, text.index("\r")) + 1,
                "has a carriage return (CR, as in Windows CRLF line endings); expected LF "
                f"line endings, as `sha256sum` writes them: {_CHECKSUM_FIX}, with no tool "
                "converting line endings",
            )
        ]
    if not text:
        return None, [
            (0, f"is empty; expected a line for each file of the package: {_CHECKSUM_FIX}")
        ]
    if not text.endswith("\n"):
        return None, [
            (
                text.count("\n") + 1,
                "does not end with a newline; expected each line to end with LF, as "
                f"`sha256sum` writes them: {_CHECKSUM_FIX}",
            )
        ]
    problems: list[tuple[int, str]] = []
    listed: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        match = _CHECKSUM_LINE.fullmatch(line)
        if not line:
            problems.append((number, f"is blank; expected one line per file: {_CHECKSUM_FIX}"))
        elif match is None:
            problems.append(
                (number, f"not in sha256sum format; {_CHECKSUM_FORMAT}: {_CHECKSUM_FIX}")
            )
        elif refused := path_problem(match.group(2)):
            problems.append((number, f"the path '{_printable(match.group(2))}': {refused}"))
        elif match.group(2) in listed:
            problems.append(
                (
                    number,
                    f"'{match.group(2)}' is already listed on line {listed[match.group(2)][1]}",
                )
            )
        else:
            listed[match.group(2)] = (match.group(1), number)
    return listed, problems


class _Files:
    """The files a package lists, each checked once: place, kind, size and SHA-256."""

    def __init__(
        self, reader: _Reader, package_dir: Path, checksums: Mapping[str, str], descriptor_size: int
    ) -> None:
        self.reader = reader
        self.package_dir = package_dir
        self.checksums = checksums
        self.descriptor_size = descriptor_size
        self.listed: list[PackageFile] = []
        self.named: set[str] = set()
        self.contents: dict[str, bytes] = {}

    def add(
        self, entry: Mapping[str, Any], where: str, kind: str, *, listed: bool = True
    ) -> PackageFile | None:
        """Check the file an entry names against every size and checksum stated for it."""
        reader = self.reader
        path = reader.text(entry, "path", where, required=True)
        if not path:
            return None
        problem = path_problem(path)
        if problem:
            reader.problem(f"{where}path", problem)
            return None
        self.named.add(path)
        try:
            content = read_file(self.package_dir, path)
        except UntrustedFile as error:
            reader.problem(f"{where}path", f"the file {self.package_dir / path} {error.reason}")
            return None
        file = self.package_dir / path
        digest = hashlib.sha256(content).hexdigest()
        changed = "the file changed after the release: check the package with `publisher validate`"
        stated = entry.get("hash")
        stated_sha256 = None
        if isinstance(stated, str) and stated.startswith("sha256:"):
            stated_sha256 = stated.removeprefix("sha256:").lower()
        elif isinstance(stated, str) and _SHA256.match(stated):
            stated_sha256 = stated  # Frictionless v1 wrote a bare digest
        elif stated is not None and not (isinstance(stated, str) and ":" in stated):
            reader.problem(f"{where}hash", "expected 'sha256:' and 64 hexadecimal digits")
        if stated_sha256 is not None and stated_sha256 != digest:
            reader.problem(f"{where}hash", f"the SHA-256 checksum of {file} differs: {changed}")
        size = reader.whole(entry, "bytes", where)
        if size is not None and size != len(content):
            reader.problem(f"{where}bytes", f"{file} has {len(content):,} bytes: {changed}")
        summed = self.checksums.get(path)
        if summed is not None and summed != digest:
            reader.problems.append(
                f"{self.package_dir / CHECKSUMS}: the checksum of {path} differs from the file: "
                f"{changed}"
            )
        if stated_sha256 is None and summed is None:
            reader.problem(
                f"{where}path",
                f"no SHA-256 is stated for {path} (neither a 'hash' nor a line of {CHECKSUMS}), "
                "so its bytes cannot be trusted",
            )
            return None
        item = PackageFile(
            path=path,
            kind=kind,
            title=reader.text(entry, "title", where),
            description=reader.text(entry, "description", where),
            format=reader.text(entry, "format", where) or PurePosixPath(path).suffix.lstrip("."),
            size=len(content),
            sha256=digest,
        )
        if kind == "resource":
            self.contents[path] = content  # count tables are read from the checked bytes
        if listed:
            self.listed.append(item)
        return item

    def add_checksummed(self) -> None:
        """Files only SHA256SUMS names at the top of the package (the zip of the version)."""
        for path in self.checksums:
            if path not in self.named and "/" not in path and path not in (DESCRIPTOR, CHECKSUMS):
                self.add({"path": path}, f"{CHECKSUMS} entry {path}: ", "checksummed")

    def add_own(self, path: str, kind: str, digest: str) -> None:
        """The descriptor and SHA256SUMS, already read and checked by :func:`read`."""
        content = read_file(self.package_dir, path)
        self.named.add(path)
        self.listed.append(
            PackageFile(
                path=path,
                kind=kind,
                title="",
                description="",
                format="json" if path == DESCRIPTOR else "txt",
                size=len(content),
                sha256=digest or hashlib.sha256(content).hexdigest(),
            )
        )


def _read_archive(
    reader: _Reader, root: Mapping[str, Any], files: _Files
) -> tuple[ArchivedVersion, ...]:
    """The earlier versions listed under ``archive``: each one's metadata and zip, both
    verified through SHA256SUMS."""
    versions = []
    for index, item in enumerate(reader.items(root, "archive", "")):
        where = f"archive[{index}]."
        entry = reader.mapping(item, f"archive[{index}]")
        version = reader.text(entry, "version", where, required=True)
        path = reader.text(entry, "path", where, required=True)
        if not version or not path:
            continue
        if not _VERSION.match(version):
            reader.problem(f"{where}version", "expected a version such as '1.0.0'")
            continue
        problem = path_problem(path)
        if problem:
            reader.problem(f"{where}path", problem)
            continue
        descriptor = files.add({"path": path}, where, "archive", listed=False)
        folder = PurePosixPath(path).parent.as_posix() + "/"
        zips = [
            files.add({"path": name}, f"{CHECKSUMS} entry {name}: ", "archive", listed=False)
            for name in sorted(files.checksums)
            if name.startswith(folder)
            and "/" not in name.removeprefix(folder)
            and name.lower().endswith(".zip")
        ]
        if descriptor is not None:
            versions.append(
                ArchivedVersion(version, descriptor, tuple(z for z in zips if z is not None))
            )
    return tuple(versions)


def _read_resource(reader: _Reader, files: _Files, obj: Mapping[str, Any], index: int) -> Resource:
    where = f"resources[{index}]."
    name = reader.text(obj, "name", where, required=True)
    path = reader.text(obj, "path", where, required=True)
    problem = path_problem(path) if path else None
    if problem:
        reader.problem(f"{where}path", problem)
    item = files.add(obj, where, "resource") if path and not problem else None

    schema = reader.mapping(obj.get("schema"), f"{where}schema", required=False)
    fields = tuple(
        Field(
            name=reader.text(entry, "name", f"{where}schema.fields[{position}].", required=True),
            title=reader.text(entry, "title", f"{where}schema.fields[{position}]."),
            type=reader.text(entry, "type", f"{where}schema.fields[{position}]."),
            description=reader.text(entry, "description", f"{where}schema.fields[{position}]."),
        )
        for position, entry in enumerate(
            reader.mapping(value, f"{where}schema.fields[]")
            for value in reader.items(schema, "fields", f"{where}schema.")
        )
    )
    title = reader.text(obj, "title", where, required=True)
    description = reader.text(obj, "description", where)
    kind = reader.text(obj, "format", where) or PurePosixPath(path).suffix.lstrip(".")
    table = reader.mapping(obj.get("table"), f"{where}table", required=False)
    if not table:
        return Resource(name, path, title, description, kind, fields)

    dimensions = tuple(
        _read_dimension(
            reader,
            reader.mapping(value, f"{where}table.dimensions[{position}]"),
            f"{where}table.dimensions[{position}].",
        )
        for position, value in enumerate(reader.items(table, "dimensions", f"{where}table."))
    )
    if not dimensions:
        reader.problem(f"{where}table.dimensions", "expected at least one dimension")
    field_names = [entry.name for entry in fields]
    wanted = [dimension.name for dimension in dimensions] + list(COUNT_COLUMNS)
    missing = [column for column in wanted if column not in field_names]
    rows: tuple[dict[str, str], ...] = ()
    if missing:
        reader.problem(
            f"{where}schema.fields",
            f"a table needs the columns {missing}: every table has its dimension columns "
            f"plus {list(COUNT_COLUMNS)}",
        )
    elif item is not None:
        rows = _read_rows(reader, files, item, field_names, f"{where}path")
    privacy_obj = reader.mapping(obj.get("privacy"), f"{where}privacy", required=False)
    privacy = TablePrivacy(
        rho=reader.number(privacy_obj, "rho", f"{where}privacy."),
        epsilon=reader.number(privacy_obj, "epsilon", f"{where}privacy."),
        delta=reader.number(privacy_obj, "delta", f"{where}privacy."),
        distribution=reader.text(privacy_obj, "distribution", f"{where}privacy."),
        scale=reader.number(privacy_obj, "scale", f"{where}privacy."),
        margin_95=reader.number(privacy_obj, "margin_95", f"{where}privacy."),
        sensitivity=reader.numbers(privacy_obj, "sensitivity", f"{where}privacy."),
        unit_losses=_unit_losses(reader, privacy_obj, f"{where}privacy."),
        measured=reader.text(privacy_obj, "measured", f"{where}privacy."),
        method=reader.text(privacy_obj, "method", f"{where}privacy."),
    )
    return Resource(
        name=name,
        path=path,
        title=title,
        description=description,
        format=kind,
        fields=fields,
        counts=reader.text(table, "counts", f"{where}table.") or "records",
        input=reader.text(table, "input", f"{where}table."),
        dimensions=dimensions,
        totals=table.get("totals") is True,
        privacy=privacy,
        rows=rows,
    )


def _read_dimension(reader: _Reader, obj: Mapping[str, Any], where: str) -> Dimension:
    values = [str(value) for value in reader.items(obj, "values", where)]
    if not values:
        reader.problem(f"{where}values", "expected the list of category values")
    definitions = reader.mapping(obj.get("definitions"), f"{where}definitions", required=False)
    unknown = obj.get("unknown")
    return Dimension(
        name=reader.text(obj, "name", where, required=True),
        title=reader.text(obj, "title", where, required=True),
        description=reader.text(obj, "description", where),
        values=tuple(values),
        unknown=unknown if isinstance(unknown, str) else None,
        definitions=tuple((str(key), str(value)) for key, value in definitions.items()),
        ordered=obj.get("ordered") is True,
    )


def _read_rows(
    reader: _Reader, files: _Files, item: PackageFile, field_names: Sequence[str], where: str
) -> tuple[dict[str, str], ...]:
    path = files.package_dir / item.path
    try:
        rows = list(csv.reader(io.StringIO(files.contents[item.path].decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as error:
        reader.problem(where, f"{path} is not a readable UTF-8 CSV file ({error})")
        return ()
    if not rows or rows[0] != list(field_names):
        reader.problem(
            where, f"the header of {path} does not match the schema fields {list(field_names)}"
        )
        return ()
    body = rows[1:]
    if any(len(row) != len(field_names) for row in body):
        reader.problem(where, f"{path} has rows with the wrong number of columns")
        return ()
    return tuple(dict(zip(field_names, row, strict=True)) for row in body)
