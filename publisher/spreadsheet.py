"""Accessible spreadsheets of a whole release, ODS and XLSX, read from a written package.

The layout follows the Government Statistical Service guidance on releasing statistics in
spreadsheets, as gptables lays it out: a Cover sheet, a Contents sheet, a Notes sheet, then
one table per sheet with its title in A1, short lines of context under it, a header row
and no blank rows, blank columns or merged cells inside the table. Numbers are stored as
numbers with a thousands separator; where no number is published the GSS marker (for
example ``[low]``) stands in the cell.

Both files are drawn from one model of the workbook, so they hold the same cells: XLSX is
written with XlsxWriter (what gptables writes with) and ODS with odfpy. gptables itself is
not used: under pandas 3 it warns on every numeric table (the test suite turns warnings
into errors) and it cannot write ODS. The zip containers are normalised so that the same
package always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import xlsxwriter  # type: ignore[import-untyped]
from odf import dc, meta, teletype  # type: ignore[import-untyped]
from odf.element import Element  # type: ignore[import-untyped]
from odf.namespaces import STYLENS  # type: ignore[import-untyped]
from odf.number import Number, NumberStyle  # type: ignore[import-untyped]
from odf.opendocument import OpenDocumentSpreadsheet  # type: ignore[import-untyped]
from odf.style import (  # type: ignore[import-untyped]
    DefaultStyle,
    MasterPage,
    PageLayout,
    PageLayoutProperties,
    ParagraphProperties,
    Style,
    TableCellProperties,
    TableColumnProperties,
    TableProperties,
    TableRowProperties,
    TextProperties,
)
from odf.table import (  # type: ignore[import-untyped]
    DatabaseRange,
    DatabaseRanges,
    Table,
    TableCell,
    TableColumn,
    TableHeaderRows,
    TableRow,
)
from odf.text import A, P  # type: ignore[import-untyped]

from publisher import notes as documents
from publisher.errors import PackageError

__all__ = ["MEDIATYPES", "write_spreadsheets"]

MEDIATYPES: dict[str, str] = {
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

DESCRIPTOR = "datapackage.json"
# The name package.py gives the shares resource (not imported: package.py imports this).
SHARES_RESOURCE = "headline-shares"
LANGUAGE = "en-GB"
NOT_AVAILABLE = "[x]"
COUNT_COLUMNS = ("value", "marker", "lower_95", "upper_95")
SHARE_COLUMNS = ("share", "description", "percent", "lower_95", "upper_95")
STEM = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
REBUILD = "rebuild the package with `publisher release`"
INSTRUCTIONS = (
    "This worksheet contains one table. Where no number is shown, a marker in square "
    "brackets stands in its place; the Notes worksheet explains each marker."
)


# --- The workbook model that both formats draw --------------------------------------------


@dataclass(frozen=True)
class _Link:
    """Text that links to a web address, or to a sheet of this workbook (``#Sheet``)."""

    text: str
    target: str


_Cell = str | int | float | _Link
_ColumnKind = Literal["label", "count", "percent"]


@dataclass(frozen=True)
class _Line:
    """One line of text in column A: a title, a heading, or context above a table."""

    content: str | _Link
    style: Literal["title", "heading", "text"] = "text"


@dataclass(frozen=True)
class _Column:
    header: str
    kind: _ColumnKind = "label"


@dataclass(frozen=True)
class _Table:
    name: str  # the Excel table name: letters, digits and underscores
    columns: tuple[_Column, ...]
    rows: tuple[tuple[_Cell, ...], ...]


@dataclass(frozen=True)
class _Sheet:
    name: str
    lines: tuple[_Line, ...]
    table: _Table | None = None  # None: a sheet of prose (the cover)


@dataclass(frozen=True)
class _Properties:
    title: str
    subject: str
    author: str
    keywords: tuple[str, ...]
    comments: str
    created: datetime


# --- Reading the package -----------------------------------------------------------------


@dataclass
class _Reader:
    """Reads the descriptor, collecting every problem instead of stopping at the first."""

    path: Path
    problems: list[str] = field(default_factory=list)

    def text(self, data: Any, *keys: str, required: bool = True, within: str = "") -> str:
        """The text at ``keys`` in ``data`` (itself at ``within`` in the descriptor)."""
        value: Any = data
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
        if required:
            self.problems.append(
                f"{self.path}: '{within}{'.'.join(keys)}' is missing or not text; {REBUILD}"
            )
        return ""

    def integer(self, data: Any, *keys: str) -> int:
        value: Any = data
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.problems.append(f"{self.path}: '{'.'.join(keys)}' is not an integer; {REBUILD}")
        return 0


def _load_descriptor(package_dir: Path) -> dict[str, Any]:
    path = package_dir / DESCRIPTOR
    if not path.is_file():
        raise PackageError(f"{path}: not found; give the directory of a data package")
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackageError(
            f"{path}: cannot be read as JSON ({type(error).__name__}); {REBUILD}"
        ) from None
    if not isinstance(descriptor, dict):
        raise PackageError(f"{path}: is not a JSON object; {REBUILD}")
    return descriptor


def _read_csv(
    package_dir: Path, resource: dict[str, Any], columns: Sequence[str]
) -> list[dict[str, str]]:
    path = package_dir / str(resource.get("path") or "")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (FileNotFoundError, IsADirectoryError):
        raise PackageError(
            f"{path}: not found, but {DESCRIPTOR} lists it as resource "
            f"'{resource.get('name')}'; {REBUILD}"
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PackageError(f"{path}: cannot be read as CSV ({type(error).__name__})") from None
    missing = [column for column in columns if column not in header]
    if missing:
        raise PackageError(
            f"{path}: has no column {', '.join(missing)}; expected {', '.join(columns)}; {REBUILD}"
        )
    return rows


def _integer(path: Path, line: int, column: str, text: str) -> int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        # The cell is not quoted: errors never carry data values.
        raise PackageError(
            f"{path}: line {line}, column '{column}' is not an integer; {REBUILD}"
        ) from None


def _percent(path: Path, line: int, column: str, text: str) -> float | None:
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise PackageError(f"{path}: line {line}, column '{column}' is not a number; {REBUILD}")
    return number


@dataclass(frozen=True)
class _Count:
    labels: tuple[str, ...]
    value: int | None
    marker: str
    lower: int
    upper: int


@dataclass(frozen=True)
class _Share:
    name: str
    description: str
    numerator: str
    denominator: str
    figures: tuple[float | None, float | None, float | None]  # percent, lower, upper


@dataclass(frozen=True)
class _Resource:
    """One table of the package and the sheet it goes on."""

    descriptor: dict[str, Any]
    sheet: str
    excel_name: str
    counts: tuple[_Count, ...] = ()
    shares: tuple[_Share, ...] = ()

    @property
    def name(self) -> str:
        return str(self.descriptor.get("name"))

    @property
    def title(self) -> str:
        return str(self.descriptor.get("title") or self.name)

    @property
    def description(self) -> str:
        return str(self.descriptor.get("description") or "")

    @property
    def is_shares(self) -> bool:
        return self.name == SHARES_RESOURCE

    def field_title(self, name: str, default: str) -> str:
        for item in self.descriptor.get("schema", {}).get("fields", []):
            if isinstance(item, dict) and item.get("name") == name and item.get("title"):
                return str(item["title"])
        return default


def _counts(package_dir: Path, resource: dict[str, Any], markers: dict[str, str]) -> list[_Count]:
    path = package_dir / str(resource.get("path"))
    by = [str(d.get("name")) for d in resource["table"].get("dimensions") or []]
    counts = []
    for line, row in enumerate(_read_csv(package_dir, resource, [*by, *COUNT_COLUMNS]), 2):
        value = _integer(path, line, "value", row["value"])
        marker = row["marker"]
        lower = _integer(path, line, "lower_95", row["lower_95"])
        upper = _integer(path, line, "upper_95", row["upper_95"])
        if marker and marker not in markers:
            raise PackageError(
                f"{path}: line {line} has a marker that {DESCRIPTOR} does not declare under "
                f"'markers'; {REBUILD}"
            )
        if (value is None and not marker) or lower is None or upper is None:
            raise PackageError(
                f"{path}: line {line} lacks a value or marker, or an interval bound; {REBUILD}"
            )
        counts.append(_Count(tuple(row[c] for c in by), value, marker, lower, upper))
    return counts


def _shares(package_dir: Path, resource: dict[str, Any]) -> list[_Share]:
    path = package_dir / str(resource.get("path"))
    shares = []
    for line, row in enumerate(_read_csv(package_dir, resource, SHARE_COLUMNS), 2):
        percent, lower, upper = (
            _percent(path, line, c, row[c]) for c in ("percent", "lower_95", "upper_95")
        )
        shares.append(
            _Share(
                row["share"],
                row["description"],
                row.get("numerator") or "",
                row.get("denominator") or "",
                (percent, lower, upper),
            )
        )
    return shares


def _excel_table_name(resource_name: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", resource_name)[:200]
    # Excel refuses table names that start with a digit or read as a cell reference.
    if not re.match(r"[A-Za-z_]", name) or re.fullmatch(r"[A-Za-z]{1,3}\d+|[RrCc]\d*", name):
        name = f"table_{name}"
    candidate, suffix = name, 2
    while candidate.lower() in taken:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    taken.add(candidate.lower())
    return candidate


@dataclass(frozen=True)
class _Package:
    """What the spreadsheets say, read once from the package."""

    title: str
    description: str
    name: str
    version: str
    created: datetime
    published: str
    next_update: str
    period: str
    geography: str
    synthetic: bool
    publisher: str
    sources: tuple[tuple[str, str], ...]  # (title, description)
    keywords: tuple[str, ...]
    contact: tuple[str, str]  # (name, email)
    licence: tuple[str, str]  # (title, url)
    privacy_statement: str
    estimation: str  # how the published estimates were made from the noisy counts
    units: tuple[dict[str, str], ...]  # as notes.privacy_units reads them
    unit_tables: tuple[tuple[str, tuple[str, ...]], ...]  # unit name -> its tables
    truncation: tuple[str, ...]  # what the per-person bounds removed, per input
    rounding_base: int
    threshold: int
    total_label: str
    markers: dict[str, str]
    share_tables: dict[str, str]  # share name -> table name
    resources: tuple[_Resource, ...]

    def sheet_of(self, table: str) -> str | None:
        return next((r.sheet for r in self.resources if r.name == table), None)


def _read_package(package_dir: Path) -> _Package:
    descriptor = _load_descriptor(package_dir)
    reader = _Reader(package_dir / DESCRIPTOR)
    created = _timestamp(reader, reader.text(descriptor, "created"))
    published = reader.text(descriptor, "release", "published")
    try:
        published = _long_date(date.fromisoformat(published)) if published else ""
    except ValueError:
        reader.problems.append(f"{reader.path}: 'release.published' is not an ISO 8601 date")
    markers = descriptor.get("markers")
    if not isinstance(markers, dict) or not all(isinstance(m, str) for m in markers.values()):
        reader.problems.append(f"{reader.path}: 'markers' must map each marker to its meaning")
        markers = {}
    licences = descriptor.get("licenses") or [{}]
    package = _Package(
        title=reader.text(descriptor, "title"),
        description=reader.text(descriptor, "description", required=False),
        name=reader.text(descriptor, "name"),
        version=reader.text(descriptor, "version", required=False),
        created=created,
        published=published,
        next_update=reader.text(descriptor, "release", "next_update", required=False)
        or "To be announced",
        period=reader.text(descriptor, "release", "period"),
        geography=reader.text(descriptor, "release", "geography", required=False),
        synthetic=(descriptor.get("release") or {}).get("synthetic") is True,
        publisher=next(
            (
                reader.text(c, "title", within=f"contributors[{i}].")
                for i, c in enumerate(descriptor.get("contributors") or [])
                if isinstance(c, dict) and "publisher" in (c.get("roles") or [])
            ),
            "",
        ),
        sources=tuple(
            (
                reader.text(s, "title", within=f"sources[{i}]."),
                reader.text(s, "description", required=False),
            )
            for i, s in enumerate(descriptor.get("sources") or [])
        ),
        keywords=tuple(str(k) for k in descriptor.get("keywords") or []),
        contact=(
            reader.text(descriptor, "release", "contact", "name"),
            reader.text(descriptor, "release", "contact", "email"),
        ),
        licence=(
            reader.text(licences[0], "title", within="licenses[0]."),
            reader.text(licences[0], "path", within="licenses[0]."),
        ),
        privacy_statement=reader.text(descriptor, "privacy", "statement"),
        estimation=reader.text(descriptor, "estimation", "description", required=False),
        units=tuple(documents.privacy_units(descriptor)),
        unit_tables=_unit_tables(descriptor),
        truncation=tuple(documents.truncation_statements(descriptor)),
        rounding_base=reader.integer(descriptor, "disclosure", "rounding_base"),
        threshold=reader.integer(descriptor, "disclosure", "threshold"),
        total_label=reader.text(descriptor, "disclosure", "total_label", required=False) or "Total",
        markers=markers,
        share_tables={
            str(s.get("name")): str(s.get("table"))
            for s in descriptor.get("shares") or []
            if isinstance(s, dict)
        },
        resources=(),
    )
    tables = [
        r
        for r in descriptor.get("resources") or []
        # Other resources (the spreadsheets themselves, a README) are not tables to show.
        if isinstance(r, dict)
        and (isinstance(r.get("table"), dict) or r.get("name") == SHARES_RESOURCE)
    ]
    if not tables:
        reader.problems.append(f"{reader.path}: lists no table resources; {REBUILD}")
    if reader.problems:
        raise PackageError(reader.problems)
    taken = {"contents_table", "notes_table"}
    resources = []
    for number, table in enumerate(tables, 1):
        sheet = f"Table_{number}"
        excel_name = _excel_table_name(str(table.get("name")), taken)
        if table.get("name") == SHARES_RESOURCE:
            shares = tuple(_shares(package_dir, table))
            resources.append(_Resource(table, sheet, excel_name, shares=shares))
        else:
            counts = tuple(_counts(package_dir, table, markers))
            resources.append(_Resource(table, sheet, excel_name, counts=counts))
    return replace(package, resources=tuple(resources))


def _unit_tables(descriptor: dict[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The tables each privacy unit appears in: ``tables`` as a list or as a mapping of
    table to loss (the descriptor may say either), and the tables of the ``inputs`` whose
    tables were measured together (each resource's ``table.input``)."""
    by_input: dict[str, list[str]] = {}
    for resource in descriptor.get("resources") or []:
        table = resource.get("table") if isinstance(resource, dict) else None
        if isinstance(table, dict) and isinstance(table.get("input"), str):
            by_input.setdefault(table["input"], []).append(str(resource.get("name")))
    found = []
    for unit in (descriptor.get("privacy") or {}).get("units") or []:
        if isinstance(unit, dict):
            name = unit.get("title") or unit.get("name") or unit.get("input") or ""
            tables = [str(table) for table in unit.get("tables") or ()]
            for input_name in unit.get("inputs") or ():
                tables += [t for t in by_input.get(str(input_name), []) if t not in tables]
            found.append((str(name), tuple(tables)))
    return tuple(found)


def _timestamp(reader: _Reader, text: str) -> datetime:
    try:
        created = datetime.fromisoformat(text) if text else datetime(1980, 1, 1)
    except ValueError:
        reader.problems.append(f"{reader.path}: 'created' is not an ISO 8601 date and time")
        created = datetime(1980, 1, 1)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created.astimezone(UTC)


def _long_date(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


# --- Building the workbook ---------------------------------------------------------------


@dataclass(frozen=True)
class _Notes:
    """Numbered notes in order, each with the sheets it applies to."""

    texts: dict[str, str]
    sheets: dict[str, list[str]]

    def number(self, key: str) -> int:
        return list(self.texts).index(key) + 1

    def references(self, sheet: str) -> str:
        """The note markers a sheet's context line shows, e.g. ``[note 1] [note 3]``."""
        keys = [key for key, sheets in self.sheets.items() if sheet in sheets]
        return " ".join(f"[note {self.number(key)}]" for key in keys)


def _notes(package: _Package) -> _Notes:
    counts = [r.sheet for r in package.resources if not r.is_shares]
    shares = [r.sheet for r in package.resources if r.is_shares]
    texts: dict[str, str] = {}
    applies: dict[str, list[str]] = {}

    def add(key: str, text: str, sheets: list[str]) -> None:
        if sheets:
            texts[key], applies[key] = text, sheets

    base = package.rounding_base
    if package.synthetic:
        add(
            "synthetic",
            "The figures in this release come from synthetic data: records made up by a "
            "computer program. They describe no real people and are not official statistics.",
            counts + shares,
        )
    add(
        "noise",
        "Every figure has random noise added to protect the people it describes "
        "(differential privacy). The figures are estimates: close to the recorded numbers, "
        "but not exactly equal to them. The Cover worksheet gives the privacy statement.",
        counts + shares,
    )
    add(
        "rounding",
        f"Counts are rounded to the nearest {base} after the noise is added. A count below "
        f"{package.threshold} is not shown: a marker stands in its place.",
        counts,
    )
    for marker, meaning in package.markers.items():
        add(f"marker {marker}", f"{marker} {meaning}", counts)
    add(
        "zero",
        "A 0 is never shown. With noise added nobody can know whether a count is truly "
        "zero, so small counts, zero or not, are shown with a marker instead of a number.",
        counts,
    )
    add(
        "intervals",
        "The lower and upper bounds give a 95% interval for each count: whatever the true "
        "count of the records kept, an interval made this way contains it with at least 95% "
        "probability. It allows for the noise and the estimation, its bounds are rounded "
        f"outward to multiples of {base}, and it is shown even where a marker stands in "
        "place of the count.",
        counts,
    )
    add(
        "totals",
        f"Rows labelled '{package.total_label}' are computed from the unrounded noisy "
        "estimates, not from the rounded figures shown, and rounded on their own, so they may "
        "differ from the sum of the rounded figures.",
        [r.sheet for r in package.resources if r.descriptor.get("table", {}).get("totals")],
    )
    for unit, (name, tables) in zip(package.units, package.unit_tables, strict=True):
        facts = "; ".join(part for part in (unit["guarantee"], unit["bounds"]) if part)
        add(
            f"unit {name}",
            f"Privacy unit: {unit['name']}"
            + (f" ({unit['description']})" if unit["description"] else "")
            + (f". {facts}." if facts else ".")
            + " The Cover worksheet gives the privacy statement.",
            [s for s in map(package.sheet_of, tables) if s],
        )
    unit_sheets = [
        sheet
        for _, tables in package.unit_tables
        for sheet in map(package.sheet_of, tables)
        if sheet
    ]
    if package.truncation:
        add("truncation", " ".join(package.truncation), counts)
    elif any(unit["bounds"] for unit in package.units):
        # A package that does not state what the bounds removed still says they apply.
        add(
            "truncation",
            "Each person's records are counted up to the bound of their privacy unit; any "
            "further records of the same person are left out before counting (truncation), "
            "so a count can be lower than the number of records.",
            list(dict.fromkeys(unit_sheets)),
        )
    add(
        "shares",
        "Headline shares are percentages computed from the unrounded noisy estimates of one "
        "table, not from the rounded figures shown. Their 95% intervals allow for the noise "
        "in both the numerator and the denominator. They are shown to one decimal place.",
        shares,
    )
    missing = any(None in s.figures for r in package.resources for s in r.shares)
    if missing:
        add(
            "not available",
            f"{NOT_AVAILABLE} Not available: the share cannot be estimated because its "
            "estimated denominator is not positive.",
            shares,
        )
    return _Notes(texts, applies)


def _cover(package: _Package) -> _Sheet:
    licence_title, licence_url = package.licence
    name, email = package.contact
    synthetic = (
        "These are synthetic data: the records were made up by a computer program. They "
        "describe no real people, and none of these figures are official statistics."
    )
    lines = [
        _Line(package.title, "title"),
        _Line(package.description),
        _Line(synthetic if package.synthetic else ""),
        _Line("About this release", "heading"),
        _Line(f"Period: {package.period}."),
        _Line(f"Geography: {package.geography}." if package.geography else ""),
        _Line(f"Published: {package.published}."),
        _Line(f"Next update: {package.next_update}."),
        _Line(f"Version: {package.version}." if package.version else ""),
        _Line(f"Publisher: {package.publisher}."),
        _Line("Source", "heading"),
        *(
            _Line(f"{title}. {description}".strip())
            for title, description in package.sources or ((package.publisher, ""),)
        ),
        _Line("Methodology", "heading"),
        _Line(package.privacy_statement),
        *(
            _Line(
                f"Privacy unit: {unit['name']}"
                + (f" ({unit['description']})" if unit["description"] else "")
                + "".join(f". {part}" for part in (unit["guarantee"], unit["bounds"]) if part)
                + "."
            )
            for unit in package.units
        ),
        *(_Line(statement) for statement in package.truncation),
        _Line(f"Estimation: {package.estimation}" if package.estimation else ""),
        _Line(
            f"Rounding: counts are rounded to the nearest {package.rounding_base}. Counts "
            f"below {package.threshold} are not shown; a marker in square brackets stands in "
            "their place:"
        ),
        *(_Line(f"{marker} {meaning}") for marker, meaning in package.markers.items()),
        _Line(
            "The Contents worksheet lists the tables, one per worksheet. The Notes worksheet "
            "explains the markers, the rounding, the intervals and the totals."
        ),
        _Line("Licence", "heading"),
        _Line(f"These data are published under the {licence_title}:"),
        _Line(_Link(licence_url, licence_url)),
        _Line("Contact", "heading"),
        _Line(name),
        _Line(_Link(f"Email: {email}", f"mailto:{email}")),
    ]
    return _Sheet("Cover", tuple(line for line in lines if line.content))


def _context(
    package: _Package, notes: _Notes, resource: _Resource, measured: str
) -> tuple[_Line, ...]:
    """The lines under a table's title: what, when, where, from what, and its notes."""
    sources = "; ".join(title for title, _ in package.sources) or package.publisher
    lines = [
        _Line(resource.title, "title"),
        _Line(resource.description),
        _Line(INSTRUCTIONS),
        _Line(measured),
        _Line(f"Period: {package.period}."),
        _Line(f"Geography: {package.geography}." if package.geography else ""),
        _Line(f"Source: {sources}."),
        _Line("These figures come from synthetic (made-up) data." if package.synthetic else ""),
        _Line(
            f"Notes for this table are on the Notes worksheet: {notes.references(resource.sheet)}"
        ),
    ]
    return tuple(line for line in lines if line.content)


def _count_sheet(package: _Package, notes: _Notes, resource: _Resource) -> _Sheet:
    table = resource.descriptor["table"]
    counted = str(table.get("counts") or "records")
    # A marker beside a shown number (a revision, say) needs a column of its own: in the
    # number's cell it would turn the number into text.
    qualified = any(c.value is not None and c.marker for c in resource.counts)
    columns = [
        *(_Column(str(d.get("title") or d.get("name"))) for d in table.get("dimensions") or []),
        _Column(resource.field_title("value", f"Number of {counted}"), "count"),
        *([_Column("Marker")] if qualified else []),
        _Column(resource.field_title("lower_95", "Lower bound of the 95% interval"), "count"),
        _Column(resource.field_title("upper_95", "Upper bound of the 95% interval"), "count"),
    ]
    rows = []
    for count in resource.counts:
        shown: _Cell = count.marker if count.value is None else count.value
        beside: list[_Cell] = [count.marker if count.value is not None else ""] if qualified else []
        rows.append((*count.labels, shown, *beside, count.lower, count.upper))
    measured = (
        f"What is counted: {counted}. Each count has random noise added; the interval "
        "columns show how far from the count without noise it may be."
    )
    return _Sheet(
        resource.sheet,
        _context(package, notes, resource, measured),
        _Table(resource.excel_name, tuple(columns), tuple(rows)),
    )


def _shares_sheet(package: _Package, notes: _Notes, resource: _Resource) -> _Sheet:
    def percent(name: str, default: str) -> _Column:
        return _Column(f"{resource.field_title(name, default)} (%)", "percent")

    # Packages written before the numerator and denominator were described lack them.
    described = any(share.numerator or share.denominator for share in resource.shares)
    columns = (
        _Column("Headline share"),
        *((_Column("Numerator"), _Column("Denominator")) if described else ()),
        percent("percent", "Estimated share"),
        percent("lower_95", "Lower bound of the 95% interval"),
        percent("upper_95", "Upper bound of the 95% interval"),
        _Column("Computed from"),
    )
    rows = tuple(
        (
            share.description or share.name,
            *((share.numerator, share.denominator) if described else ()),
            *(NOT_AVAILABLE if figure is None else figure for figure in share.figures),
            package.sheet_of(package.share_tables.get(share.name, "")) or NOT_AVAILABLE,
        )
        for share in resource.shares
    )
    measured = (
        "What is measured: percentages, to one decimal place: the numerator as a share of "
        "the denominator, both estimated before rounding."
    )
    return _Sheet(
        resource.sheet,
        _context(package, notes, resource, measured),
        _Table(resource.excel_name, columns, rows),
    )


def _workbook(package: _Package) -> list[_Sheet]:
    notes = _notes(package)
    contents = _Sheet(
        "Contents",
        (
            _Line("Contents", "title"),
            _Line("This worksheet contains one table. Select a sheet name to go to that table."),
        ),
        _Table(
            "contents_table",
            (_Column("Sheet name"), _Column("Table title"), _Column("Description")),
            tuple(
                (_Link(r.sheet, f"#{r.sheet}"), r.title, r.description or r.title)
                for r in package.resources
            ),
        ),
    )
    notes_sheet = _Sheet(
        "Notes",
        (
            _Line("Notes", "title"),
            _Line(
                "This worksheet contains one table. Tables refer to these notes by number, "
                "for example [note 1]."
            ),
        ),
        _Table(
            "notes_table",
            (_Column("Note number"), _Column("Note text"), _Column("Applies to")),
            tuple(
                (f"note {notes.number(key)}", text, ", ".join(notes.sheets[key]))
                for key, text in notes.texts.items()
            ),
        ),
    )
    tables = [
        _shares_sheet(package, notes, r) if r.is_shares else _count_sheet(package, notes, r)
        for r in package.resources
    ]
    return [_cover(package), contents, notes_sheet, *tables]


def _properties(package: _Package) -> _Properties:
    licence_title, licence_url = package.licence
    return _Properties(
        title=package.title,
        subject=package.description or package.title,
        author=package.publisher,
        keywords=package.keywords,
        comments=(
            f"Version {package.version}, published {package.published}. "
            f"{licence_title}: {licence_url}"
        ),
        created=package.created,
    )


# --- Layout shared by both formats -------------------------------------------------------


def _display(cell: _Cell, kind: _ColumnKind) -> str:
    if isinstance(cell, _Link):
        return cell.text
    if isinstance(cell, str):
        return cell
    return f"{cell:,.1f}" if kind == "percent" else f"{cell:,.0f}"


def _widths(sheet: _Sheet) -> list[float]:
    """Column widths in characters: wide enough for the data; long text and headers wrap."""
    if sheet.table is None:
        # Wide enough for the longest word (a web address) and every link, which
        # LibreOffice draws on one line, unbroken.
        unbroken = [
            len(line.content.text) if isinstance(line.content, _Link) else len(word)
            for line in sheet.lines
            for word in (line.content.split() if isinstance(line.content, str) else [""])
        ]
        longest = max(unbroken, default=0)
        return [max(PROSE_WIDTH, math.ceil(longest / CHARS_PER_WIDTH[True]) + 2)]
    widths = []
    for index, column in enumerate(sheet.table.columns):
        longest = max(
            (len(_display(row[index], column.kind)) for row in sheet.table.rows), default=0
        )
        header = min(len(column.header), 40 if column.kind == "label" else 20)
        widths.append(float(min(max(longest, header, 10) + 2, LABEL_WIDTH)))
    return widths


# Character widths assumed when wrapping: LibreOffice may draw Calibri with a wider font
# (DejaVu Sans) and does not fit row heights to wrapped text in XLSX, so rows are given
# heights from this conservative count of lines.
PROSE_WIDTH = 78.0  # the Cover's column A: fits A4 portrait
LABEL_WIDTH = 45.0
CHARS_PER_WIDTH = {False: 0.8, True: 0.7}  # characters per unit of width, regular and bold
FONT_POINTS = {"title": 16.0, "heading": 13.0, "text": 11.0}
LINE_SPACING = 1.3  # points of line height per point of font size
PORTRAIT_WIDTH = 80.0  # characters that fit across A4 portrait at 100%
CM_PER_CHARACTER = 0.22


def _line_count(text: str, width: float, *, bold: bool = False) -> int:
    """How many lines ``text`` takes when wrapped at word boundaries in ``width``."""
    capacity = max(1, int(width * CHARS_PER_WIDTH[bold]))
    lines = 0
    for paragraph in text.split("\n"):
        lines += 1
        used = 0
        for word in paragraph.split():
            if used and used + 1 + len(word) <= capacity:
                used += 1 + len(word)
                continue
            if used:
                lines += 1
            lines += (len(word) - 1) // capacity
            used = (len(word) - 1) % capacity + 1
    return lines


def _height(lines: int, points: float) -> float:
    return round(lines * points * LINE_SPACING + 3.0, 1)


@dataclass(frozen=True)
class _Layout:
    """How a sheet is laid out and printed, the same in both formats."""

    widths: list[float]
    heights: dict[int, float]  # row index -> height in points, where not the default
    header_row: int | None  # the table's header row, repeated on every printed page
    landscape: bool


def _layout(sheet: _Sheet) -> _Layout:
    widths = _widths(sheet)
    heights: dict[int, float] = {}
    prose = sheet.table is None
    for row, line in enumerate(sheet.lines):
        text = line.content.text if isinstance(line.content, _Link) else line.content
        points = FONT_POINTS[line.style]
        wraps = prose and not isinstance(line.content, _Link)
        lines = _line_count(text, widths[0], bold=line.style != "text") if wraps else 1
        if lines > 1 or line.style != "text":
            heights[row] = _height(lines, points)
    header_row = None
    if sheet.table is not None:
        header_row = len(sheet.lines)
        columns = sheet.table.columns
        lines = max(
            _line_count(c.header, w, bold=True) for c, w in zip(columns, widths, strict=True)
        )
        heights[header_row] = _height(lines, FONT_POINTS["text"])
        for offset, cells in enumerate(sheet.table.rows, start=header_row + 1):
            lines = max(
                _line_count(_display(cell, column.kind), width)
                for cell, column, width in zip(cells, columns, widths, strict=True)
            )
            if lines > 1:
                heights[offset] = _height(lines, FONT_POINTS["text"])
    return _Layout(widths, heights, header_row, sum(widths) > PORTRAIT_WIDTH)


# --- XLSX --------------------------------------------------------------------------------


def _xlsx(sheets: list[_Sheet], properties: _Properties) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(
        buffer,
        {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False},
    )
    top = {"valign": "top"}
    link = {"font_color": "#0000FF", "underline": 1}
    formats = {
        "title": book.add_format({"bold": True, "font_size": 16}),
        "heading": book.add_format({"bold": True, "font_size": 13}),
        "text": book.add_format({}),
        "link": book.add_format(link),
        "prose": book.add_format({"text_wrap": True, **top}),
        "prose link": book.add_format({"text_wrap": True, **top, **link}),
        "prose title": book.add_format({"bold": True, "font_size": 16, "text_wrap": True, **top}),
        "prose heading": book.add_format({"bold": True, "font_size": 13, "text_wrap": True, **top}),
        "header": book.add_format({"bold": True, "bottom": 1, "text_wrap": True, **top}),
        "label": book.add_format({"text_wrap": True, **top}),
        "marker": book.add_format({"align": "right", **top}),
        "count": book.add_format({"num_format": "#,##0", **top}),
        "percent": book.add_format({"num_format": "#,##0.0", **top}),
    }
    for sheet in sheets:
        worksheet = book.add_worksheet(sheet.name)
        prose = sheet.table is None
        layout = _layout(sheet)
        for column, width in enumerate(layout.widths):
            worksheet.set_column(column, column, width)
        for row, height in layout.heights.items():
            worksheet.set_row(row, height)
        # Printing: A4, the whole width on one page, the header row on every page.
        worksheet.set_paper(9)
        if layout.landscape:
            worksheet.set_landscape()
        worksheet.fit_to_pages(1, 0)
        if layout.header_row is not None:
            worksheet.repeat_rows(layout.header_row)
        for row, line in enumerate(sheet.lines):
            if isinstance(line.content, _Link):
                style = "prose link" if prose else "link"
                _xlsx_link(worksheet, row, 0, line.content, formats[style])
            else:
                style = _line_style(prose, line)
                worksheet.write_string(row, 0, line.content, formats[style])
        if sheet.table is not None:
            _xlsx_table(worksheet, sheet.table, len(sheet.lines), formats)
    book.set_properties(
        {
            "title": properties.title,
            "subject": properties.subject,
            "author": properties.author,
            "keywords": ", ".join(properties.keywords),
            "comments": properties.comments,
            "created": properties.created,
        }
    )
    book.close()
    # A format has an index only once a cell uses it.
    headings = {
        name: used
        for style, name in (("title", "Heading 1"), ("heading", "Heading 2"))
        if (
            used := [
                f.xf_index
                for f in (formats[style], formats[f"prose {style}"])
                if f.xf_index is not None
            ]
        )
    }
    return _normalised_zip(
        buffer.getvalue(),
        properties.created,
        lambda part, data: _with_heading_styles(part, _with_language(part, data), headings),
    )


# Excel's built-in cell styles "Heading 1" and "Heading 2" (ECMA-376, cellStyle builtinId).
_BUILTIN_STYLE_IDS = {"Heading 1": 16, "Heading 2": 17}


def _line_style(prose: bool, line: _Line) -> str:
    """The style of a line of text: on a sheet of prose every line wraps."""
    if not prose:
        return line.style
    return "prose" if line.style == "text" else f"prose {line.style}"


def _with_heading_styles(part: str, data: bytes, headings: dict[str, list[int]]) -> bytes:
    """Make the title and heading formats the built-in heading styles: XlsxWriter writes
    formats, not named styles, so its styles part gets the named styles added and the two
    formats based on them (LibreOffice and Excel then list them as Heading 1 and 2)."""
    if part != "xl/styles.xml":
        return data
    text = data.decode("utf-8")
    cell_xfs = re.search(r"<cellXfs count=\"\d+\">(.*?)</cellXfs>", text, re.S)
    style_xfs = re.search(r"<cellStyleXfs count=\"(\d+)\">(.*?)</cellStyleXfs>", text, re.S)
    styles = re.search(r"<cellStyles count=\"(\d+)\">(.*?)</cellStyles>", text, re.S)
    if not (cell_xfs and style_xfs and styles):
        raise PackageError("XlsxWriter wrote a styles part this publisher cannot read")
    formats = re.findall(r"<xf [^>]*?(?:/>|>.*?</xf>)", cell_xfs.group(1), re.S)
    base, named = int(style_xfs.group(1)), int(styles.group(1))
    new_style_xfs, new_styles = [], []
    for offset, (name, indexes) in enumerate(headings.items()):
        font = re.search(r'fontId="(\d+)"', formats[indexes[0]])
        font_id = font.group(1) if font else "0"
        new_style_xfs.append(
            f'<xf numFmtId="0" fontId="{font_id}" fillId="0" borderId="0" applyFont="1"/>'
        )
        new_styles.append(
            f'<cellStyle name="{name}" xfId="{base + offset}" '
            f'builtinId="{_BUILTIN_STYLE_IDS[name]}"/>'
        )
        for index in indexes:
            formats[index] = formats[index].replace('xfId="0"', f'xfId="{base + offset}"', 1)
    replacements = [
        (cell_xfs.span(1), "".join(formats)),
        (
            style_xfs.span(),
            f'<cellStyleXfs count="{base + len(headings)}">{style_xfs.group(2)}'
            + "".join(new_style_xfs)
            + "</cellStyleXfs>",
        ),
        (
            styles.span(),
            f'<cellStyles count="{named + len(headings)}">{styles.group(2)}'
            + "".join(new_styles)
            + "</cellStyles>",
        ),
    ]
    # From the end, so the earlier spans stay where they were found.
    for (start, end), replacement in sorted(replacements, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text.encode("utf-8")


def _xlsx_link(worksheet: Any, row: int, column: int, link: _Link, style: Any) -> None:
    target = link.target
    url = f"internal:'{target[1:]}'!A1" if target.startswith("#") else target
    worksheet.write_url(row, column, url, style, link.text)


def _xlsx_table(worksheet: Any, table: _Table, top: int, formats: dict[str, Any]) -> None:
    for row, cells in enumerate(table.rows, start=top + 1):
        for column, (cell, spec) in enumerate(zip(cells, table.columns, strict=True)):
            if isinstance(cell, _Link):
                _xlsx_link(worksheet, row, column, cell, formats["link"])
            elif isinstance(cell, str):
                style = formats["label" if spec.kind == "label" else "marker"]
                if cell:
                    worksheet.write_string(row, column, cell, style)
                else:
                    worksheet.write_blank(row, column, None, style)
            else:
                worksheet.write_number(row, column, cell, formats[spec.kind])
    # An Excel table, so screen readers announce the header of each cell.
    worksheet.add_table(
        top,
        0,
        top + len(table.rows),
        len(table.columns) - 1,
        {
            "name": table.name,
            "header_row": True,
            "autofilter": False,
            "style": None,
            "columns": [
                {"header": column.header, "header_format": formats["header"]}
                for column in table.columns
            ],
        },
    )


def _with_language(part: str, data: bytes) -> bytes:
    """Add the language to XLSX core properties: XlsxWriter cannot set it."""
    if part != "docProps/core.xml":
        return data
    closing = b"</cp:coreProperties>"
    return data.replace(closing, f"<dc:language>{LANGUAGE}</dc:language>".encode() + closing)


# --- ODS ---------------------------------------------------------------------------------


def _ods(sheets: list[_Sheet], properties: _Properties) -> bytes:
    # odfpy keeps the namespaces it has met in one dict shared by the whole process and
    # declares them all in every file it writes; start each file from none, so its bytes do
    # not depend on what the process read or wrote before.
    known = dict(Element.namespaces)
    Element.namespaces.clear()
    try:
        return _ods_document(sheets, properties)
    finally:
        Element.namespaces.update(known)


def _ods_document(sheets: list[_Sheet], properties: _Properties) -> bytes:
    document = OpenDocumentSpreadsheet()
    stamp = properties.created.strftime("%Y-%m-%dT%H:%M:%SZ")
    for element in (
        dc.Title(text=properties.title),
        dc.Subject(text=properties.subject),
        dc.Description(text=properties.comments),
        dc.Language(text=LANGUAGE),
        dc.Creator(text=properties.author),
        dc.Date(text=stamp),
        meta.InitialCreator(text=properties.author),
        meta.CreationDate(text=stamp),
        *(meta.Keyword(text=keyword) for keyword in properties.keywords),
    ):
        document.meta.addElement(element)
    styles = _ods_styles(document)
    pages = _ods_page_styles(document)
    row_styles: dict[float, Any] = {}

    def row_style(height: float | None) -> Any:
        if height is None:
            return None
        if height not in row_styles:
            style = Style(name=f"ro-{len(row_styles) + 1}", family="table-row")
            # An explicit height: LibreOffice would keep the default for wrapped text.
            style.addElement(
                TableRowProperties(rowheight=f"{height:.1f}pt", useoptimalrowheight="false")
            )
            document.automaticstyles.addElement(style)
            row_styles[height] = style
        return row_styles[height]

    ranges = DatabaseRanges()
    for number, sheet in enumerate(sheets):
        layout = _layout(sheet)
        table = Table(name=sheet.name, stylename=pages[layout.landscape])
        for index, width in enumerate(layout.widths):
            column_style = Style(name=f"co{number}-{index}", family="table-column")
            column_style.addElement(
                TableColumnProperties(columnwidth=f"{width * CM_PER_CHARACTER:.2f}cm")
            )
            document.automaticstyles.addElement(column_style)
            table.addElement(TableColumn(stylename=column_style))
        prose = sheet.table is None
        for row, line in enumerate(sheet.lines):
            style = _line_style(prose, line)
            text = _ods_text(line.content, styles[style])
            table.addElement(_ods_row([text], row_style(layout.heights.get(row))))
        if sheet.table is not None and layout.header_row is not None:
            columns = sheet.table.columns
            # Header rows are repeated at the top of every printed page.
            header = TableHeaderRows()
            header.addElement(
                _ods_row(
                    [_ods_text(c.header, styles["header"]) for c in columns],
                    row_style(layout.heights.get(layout.header_row)),
                )
            )
            table.addElement(header)
            for row, values in enumerate(sheet.table.rows, start=layout.header_row + 1):
                table.addElement(
                    _ods_row(
                        [
                            _ods_cell(cell, spec.kind, styles)
                            for cell, spec in zip(values, columns, strict=True)
                        ],
                        row_style(layout.heights.get(row)),
                    )
                )
            # A database range over the table (header included), as the XLSX has a table.
            last = _column_letters(len(columns) - 1)
            quoted = "'" + sheet.name.replace("'", "''") + "'"
            ranges.addElement(
                DatabaseRange(
                    name=sheet.table.name,
                    targetrangeaddress=(
                        f"{quoted}.A{layout.header_row + 1}:"
                        f"{quoted}.{last}{layout.header_row + 1 + len(sheet.table.rows)}"
                    ),
                    containsheader="true",
                )
            )
        document.spreadsheet.addElement(table)
    document.spreadsheet.addElement(ranges)
    buffer = io.BytesIO()
    document.write(buffer)
    return buffer.getvalue()


def _column_letters(index: int) -> str:
    """The spreadsheet name of a column: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _ods_page_styles(document: Any) -> dict[bool, Any]:
    """Table styles for portrait and landscape sheets: A4, scaled to one page wide."""
    tables = {}
    for landscape in (False, True):
        name = "Landscape" if landscape else "Portrait"
        width, height = ("29.7cm", "21cm") if landscape else ("21cm", "29.7cm")
        layout = PageLayout(name=f"pm-{name.lower()}")
        properties = PageLayoutProperties(
            pagewidth=width,
            pageheight=height,
            printorientation=name.lower(),
            margin="1.5cm",
        )
        # Fit the width to one page, any number of pages down (ODF 1.3 style:scale-to-X).
        properties.setAttrNS(STYLENS, "scale-to-X", "1")
        properties.setAttrNS(STYLENS, "scale-to-Y", "0")
        layout.addElement(properties)
        document.automaticstyles.addElement(layout)
        document.masterstyles.addElement(MasterPage(name=name, pagelayoutname=layout))
        table = Style(name=f"ta-{name.lower()}", family="table", masterpagename=name)
        table.addElement(TableProperties(display="true"))
        document.automaticstyles.addElement(table)
        tables[landscape] = table
    return tables


def _ods_styles(document: Any) -> dict[str, Any]:
    language = DefaultStyle(family="table-cell")
    language.addElement(TextProperties(language="en", country="GB"))
    document.styles.addElement(language)

    def number_format(name: str, decimals: int) -> Any:
        style = NumberStyle(name=name)
        style.addElement(Number(decimalplaces=decimals, minintegerdigits=1, grouping="true"))
        document.automaticstyles.addElement(style)
        return style

    def cell_style(
        name: str,
        *,
        heading: str = "",
        parent: Any = None,
        align: str = "",
        data: Any = None,
        cell: dict[str, str] | None = None,
        text: dict[str, str] | None = None,
    ) -> Any:
        options: dict[str, Any] = {"name": name, "family": "table-cell"}
        if heading:
            options["displayname"] = heading
        if data is not None:
            options["datastylename"] = data
        if parent is not None:
            options["parentstylename"] = parent
        style = Style(**options)
        if cell:
            style.addElement(TableCellProperties(**cell))
        if align:
            style.addElement(ParagraphProperties(textalign=align))
        if text:
            style.addElement(TextProperties(**text))
        # Headings are named styles, like LibreOffice's own "Heading 1", so they are headings.
        (document.styles if heading else document.automaticstyles).addElement(style)
        return style

    top = {"verticalalign": "top"}
    wrap = {"wrapoption": "wrap", **top}
    title = cell_style(
        "Heading_20_1", heading="Heading 1", text={"fontsize": "16pt", "fontweight": "bold"}
    )
    heading = cell_style(
        "Heading_20_2", heading="Heading 2", text={"fontsize": "13pt", "fontweight": "bold"}
    )
    return {
        "title": title,
        "heading": heading,
        "prose title": cell_style("ce-prose-title", parent=title, cell=wrap),
        "prose heading": cell_style("ce-prose-heading", parent=heading, cell=wrap),
        "text": cell_style("ce-text"),
        "prose": cell_style("ce-prose", cell=wrap),
        "header": cell_style(
            "ce-header",
            cell={"borderbottom": "0.5pt solid #000000", **wrap},
            text={"fontweight": "bold"},
        ),
        "label": cell_style("ce-label", cell=wrap),
        "marker": cell_style("ce-marker", cell=top, align="end"),
        "count": cell_style("ce-count", cell=top, data=number_format("N-count", 0)),
        "percent": cell_style("ce-percent", cell=top, data=number_format("N-percent", 1)),
    }


def _ods_row(cells: list[Any], style: Any = None) -> Any:
    row = TableRow(stylename=style) if style is not None else TableRow()
    for cell in cells:
        row.addElement(cell)
    return row


def _ods_text(content: str | _Link, style: Any) -> Any:
    if content == "":
        return TableCell(stylename=style)
    cell = TableCell(valuetype="string", stylename=style)
    paragraph = P()
    if isinstance(content, _Link):
        target = content.target
        link = A(type="simple", href=f"{target}.A1" if target.startswith("#") else target)
        teletype.addTextToElement(link, content.text)
        paragraph.addElement(link)
    else:
        teletype.addTextToElement(paragraph, content)
    cell.addElement(paragraph)
    return cell


def _ods_cell(cell: _Cell, kind: _ColumnKind, styles: dict[str, Any]) -> Any:
    if isinstance(cell, _Link):
        return _ods_text(cell, styles["label"])
    if isinstance(cell, str):
        return _ods_text(cell, styles["label" if kind == "label" else "marker"])
    number = TableCell(valuetype="float", value=cell, stylename=styles[kind])
    number.addElement(P(text=_display(cell, kind)))
    return number


# --- Writing -----------------------------------------------------------------------------


def _normalised_zip(
    data: bytes, created: datetime, edit: Callable[[str, bytes], bytes] | None = None
) -> bytes:
    """The same archive with every entry stamped ``created``, so equal content is equal bytes.

    Entry order and compression are kept (ODS needs its uncompressed ``mimetype`` first).
    """
    stamp = (
        max(created.year, 1980),
        created.month,
        created.day,
        created.hour,
        created.minute,
        created.second,
    )
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(output, "w") as target:
        for entry in source.infolist():
            content = source.read(entry)
            fixed = zipfile.ZipInfo(entry.filename, date_time=stamp)
            fixed.compress_type = entry.compress_type
            fixed.create_system = 3  # Unix, whatever the machine
            fixed.external_attr = 0o644 << 16
            target.writestr(fixed, edit(entry.filename, content) if edit else content)
    return output.getvalue()


def _stem(stem: str | None, name: str) -> str:
    if stem is None:
        stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not STEM.match(stem):
        raise PackageError(
            f"spreadsheet file name '{stem}' is not valid: use lowercase letters, digits and "
            "single hyphens, for example 'crime-statistics-2023'"
        )
    return stem


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise PackageError(
            f"{path}: cannot be written ({error.strerror or type(error).__name__}); check "
            "that the package directory is writable and has space"
        ) from None


def write_spreadsheets(package_dir: Path, *, stem: str | None = None) -> list[Path]:
    """Write ``<stem>.ods`` and ``<stem>.xlsx`` of the whole release into ``package_dir``.

    Reads only the package in ``package_dir``: ``datapackage.json`` and the CSVs it lists.
    ``stem`` defaults to the package name, lowercase and hyphenated. The same package gives
    byte-identical files (stamped with the package's ``created`` time). Returns the paths
    written, ODS first. Raises ``PackageError`` when the package cannot be read or a file
    cannot be written.
    """
    package = _read_package(Path(package_dir))
    name = _stem(stem, package.name)
    sheets = _workbook(package)
    properties = _properties(package)
    files = {
        package_dir / f"{name}.ods": _normalised_zip(_ods(sheets, properties), package.created),
        package_dir / f"{name}.xlsx": _xlsx(sheets, properties),
    }
    for path, data in files.items():
        _write_atomically(path, data)
    return list(files)
