"""View models: what each page shows, chosen from the package, with no prose.

Python decides here which figures a page shows and in what order (the total of a table,
its largest category, the markers it uses, the files to offer, the bars of a chart);
the templates say it in words. Checks that concern only the site (a table name must make
a page name; two files must not be offered under one name) are made here too.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from publisher.errors import PackageError
from publisher.model import (
    CHECKSUMS,
    LOWER,
    MARKER,
    UPPER,
    VALUE,
    ArchivedVersion,
    Dimension,
    MeasuredQuery,
    Measurement,
    Package,
    PackageFile,
    PrivacyUnit,
    Reach,
    Resource,
    Share,
)
from publisher.site.charts import Bar, Chart, Layout, layout
from publisher.site.text import SAFE_URL, md, one_line, percents

__all__ = ["Download", "TableView", "Views", "build_views"]

TOTAL = "is_total"
_PAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_INTEGER = re.compile(r"-?\d+")
_WHOLE = re.compile(r"\d+")

Row = Mapping[str, str]
#: The chart words: the macros of ``templates/chart-words.txt.j2``, called by name.
Words = Callable[..., str]


@dataclass(frozen=True)
class Download:
    """A file the site offers: the package's file and where the site puts its copy."""

    file: PackageFile
    href: str  # of the copy in the generated folder (Markdown files get ".txt")
    version: str = ""  # the earlier version it belongs to, for files of the archive

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def format(self) -> str:
        return self.file.format.lower()

    @property
    def renamed(self) -> bool:
        return self.href != self.file.path


@dataclass(frozen=True)
class Largest:
    """The largest known category of one breakdown, and the one after it."""

    dimension: Dimension
    top: Row
    runner_up: Row
    overlaps: bool  # the two intervals overlap: which is larger is not certain


@dataclass(frozen=True)
class TableView:
    """What the pages say about one count table."""

    resource: Resource
    total: Row | None
    largest: tuple[Largest, ...]
    hidden: int  # figures replaced by a marker
    used_markers: tuple[str, ...]
    unit: PrivacyUnit | None
    own_file: Download | None
    figures: tuple[Figure, ...]
    extra_fields: tuple[str, ...]  # columns beyond the dimensions and the count contract
    # How far one person of each unit can move the counts: stated, or implied (no unit).
    sensitivity: tuple[tuple[PrivacyUnit | None, float], ...] = ()
    sensitivity_implied: bool = False  # from the published scale and loss, not stated

    @property
    def name(self) -> str:
        return self.resource.name

    def is_total(self, row: Row, total_label: str) -> bool:
        return all(row[dimension.name] == total_label for dimension in self.resource.dimensions)

    def half_widths(self, total_label: str) -> tuple[int, int] | None:
        """The median and the largest half-width of the published intervals of the
        table's cells (rows without a total key), as printed: ``(upper - lower) / 2``."""
        widths = sorted(
            (int(row[UPPER]) - int(row[LOWER])) / 2
            for row in self.resource.rows
            if row[LOWER]
            and row[UPPER]
            and not any(row[d.name] == total_label for d in self.resource.dimensions)
        )
        if not widths:
            return None
        return math.floor(widths[len(widths) // 2]), math.floor(widths[-1])


@dataclass(frozen=True)
class MeasurementView:
    """An input's tables measured together (zCDP): the tables, and per query its noise
    and how far one person of each unit can move its answers."""

    measurement: Measurement
    tables: tuple[TableView, ...]
    unit_losses: tuple[tuple[PrivacyUnit | None, float], ...]
    queries: tuple[tuple[MeasuredQuery, tuple[tuple[PrivacyUnit | None, float], ...]], ...]

    def unit_loss(self, unit: PrivacyUnit) -> float | None:
        return next((loss for found, loss in self.unit_losses if found == unit), None)


@dataclass(frozen=True)
class TotalFinding:
    """One total of the main points: tables of the same input share theirs."""

    first: TableView
    tables: int
    unit: PrivacyUnit | None
    label: str  # what the input is ("Crimes"), for the finding's heading


@dataclass(frozen=True)
class Selection:
    """Some keys of one breakdown, as a share selects them."""

    dimension: Dimension
    keys: tuple[str, ...]

    @property
    def known(self) -> bool:
        """Every key but the unknown one: the share leaves out what is not known."""
        unknown = self.dimension.unknown
        return unknown is not None and set(self.keys) == set(self.dimension.values) - {unknown}


@dataclass(frozen=True)
class ShareView:
    """A headline share with what it is a share of, in words or as its selections."""

    share: Share
    statement: str
    counts: str = "records"  # what the share's table counts
    numerator: tuple[Selection, ...] = ()
    denominator: tuple[Selection, ...] = ()
    # The breakdowns with an unknown key that the denominator keeps whole.
    unknown_kept: tuple[Dimension, ...] = ()
    estimate: str = ""  # as printed, in percent; "" when not estimated
    lower: str = ""
    upper: str = ""


@dataclass(frozen=True)
class MarkerView:
    """A marker and its meaning: the name that starts the meaning ("Low") and the rest."""

    marker: str
    name: str
    text: str


def _marker_view(marker: str, meaning: str) -> MarkerView:
    # GSS meanings start with the marker's name ("Low: the noisy count..."): said once.
    named = re.match(r"^([A-Z][A-Za-z ]{0,30}): (.+)$", meaning.strip(), re.S)
    if named:
        return MarkerView(marker, named.group(1), named.group(2))
    return MarkerView(marker, "", meaning)


@dataclass(frozen=True)
class BoundView:
    """One per-person limit: a unit, the input it reaches, the tables counting it."""

    unit: PrivacyUnit
    reach: Reach
    counts: tuple[str, ...]
    tables: tuple[TableView, ...]
    statements: tuple[str, ...]  # what the package says the limit removed


@dataclass(frozen=True)
class ArchivedView:
    version: str
    downloads: tuple[Download, ...]


@dataclass(frozen=True)
class Views:
    """Everything the templates need, computed once from the package."""

    package: Package
    tables: tuple[TableView, ...]
    shares: tuple[ShareView, ...]
    total_findings: tuple[TotalFinding, ...]
    shares_figure: Figure | None
    downloads: tuple[Download, ...]
    archive: tuple[ArchivedView, ...]
    counts: tuple[str, ...]  # what the tables count, sorted
    consistent_groups: tuple[tuple[str, ...], ...]  # groups of more than one table, by title

    @property
    def markers(self) -> tuple[MarkerView, ...]:
        """Every marker of the package, its meaning split into a name and what it says."""
        return tuple(_marker_view(marker, meaning) for marker, meaning in self.package.markers)

    def marker(self, marker: str) -> MarkerView:
        return _marker_view(marker, self.package.marker_meaning(marker))

    @property
    def bounds(self) -> tuple[BoundView, ...]:
        """Each per-person limit of the release, with what the tables under it count."""
        found = []
        for unit in self.package.units:
            for reach in unit.reaches:
                tables = tuple(t for t in self.tables if t.resource.input == reach.input)
                if not tables:
                    continue
                statements = tuple(
                    item.statement
                    for item in self.package.truncation
                    if item.input == reach.input and item.statement
                )
                counts = tuple(dict.fromkeys(t.resource.counts for t in tables))
                found.append(BoundView(unit, reach, counts, tables, statements))
        return tuple(found)

    def reaching(self, input_name: str) -> tuple[tuple[PrivacyUnit, Reach], ...]:
        """Every privacy unit whose people an input's records depend on, with how."""
        return tuple(
            (unit, reach)
            for unit in self.package.units
            for reach in unit.reaches
            if reach.input == input_name
        )

    @property
    def description_sentence(self) -> str:
        """The first sentence of the release's description (a page's meta description)."""
        text = one_line(self.package.description)
        match = re.match(r"^(.{20,300}?[.!?])(\s|$)", text)
        return match.group(1) if match else text[:300]

    def has_marker(self, marker: str) -> bool:
        return any(name == marker for name, _ in self.package.markers)

    @property
    def unrounded(self) -> tuple[str, ...]:
        """The paths of the unrounded estimates published for analysts, if any."""
        return tuple(
            resource.path
            for resource in self.package.resources
            if resource.path.startswith("data/unrounded/")
        )

    @property
    def year(self) -> str:
        """The year of publication, for a citation ("" when not known)."""
        published = self.package.published
        return published[:4] if re.match(r"^\d{4}", published) else ""

    @property
    def bibtex_key(self) -> str:
        """The citation key: the package's name and version, letters and digits only."""
        key = re.sub(
            r"[^A-Za-z0-9]+", "-", f"{self.package.name or 'release'}-{self.package.version}"
        )
        return key.strip("-")

    @property
    def changelog(self) -> tuple[ChangelogLine | None, ...]:
        """The package's CHANGELOG.md as lines to show (None: a blank line)."""
        text = self.package.changelog
        return changelog_lines(text) if text and text.strip() else ()

    @property
    def citation_url(self) -> str:
        """The release's web page, when it is a plain https URL."""
        return self.package.homepage if SAFE_URL.match(self.package.homepage) else ""

    def downloads_of(self, *formats: str) -> tuple[Download, ...]:
        return tuple(item for item in self.downloads if item.format in formats)

    def download(self, path: str) -> Download | None:
        return next((item for item in self.downloads if item.path == path), None)

    @property
    def checksums_offered(self) -> bool:
        return self.download(CHECKSUMS) is not None

    @property
    def whole_release(self) -> tuple[Download, ...]:
        return self.downloads_of("zip") + self.downloads_of("ods", "xlsx")

    @property
    def table_files(self) -> tuple[Download, ...]:
        return self.downloads_of("csv")

    @property
    def other_files(self) -> tuple[Download, ...]:
        taken = {*self.whole_release, *self.table_files}
        return tuple(item for item in self.downloads if item not in taken)

    @property
    def any_renamed(self) -> bool:
        return any(item.renamed for item in self.downloads)

    @property
    def measurements(self) -> tuple[MeasurementView, ...]:
        """The package's joint measurements, each with its tables and units."""
        units = {unit.name: unit for unit in self.package.units}
        by_name = {table.name: table for table in self.tables}
        return tuple(
            MeasurementView(
                measurement=item,
                tables=tuple(by_name[name] for name in item.tables if name in by_name),
                unit_losses=tuple((units.get(name), loss) for name, loss in item.unit_losses),
                queries=tuple(
                    (query, tuple((units.get(name), value) for name, value in query.sensitivity))
                    for query in item.queries
                ),
            )
            for item in self.package.measurements
        )

    @property
    def tables_alone(self) -> tuple[TableView, ...]:
        """The tables with a noise of their own (not measured with their input's)."""
        joint = {name for item in self.package.measurements for name in item.tables}
        return tuple(table for table in self.tables if table.name not in joint)

    def measurement_of(self, table: TableView) -> MeasurementView | None:
        return next((item for item in self.measurements if table in item.tables), None)

    def unit_tables(self, unit: PrivacyUnit) -> tuple[TableView, ...]:
        """The tables a privacy unit's inputs feed."""
        inputs = {reach.input for reach in unit.reaches}
        return tuple(table for table in self.tables if table.resource.input in inputs)

    @property
    def dimensions(self) -> tuple[tuple[Dimension, tuple[str, ...]], ...]:
        """Every distinct dimension, with the titles of the tables that use it."""
        groups: dict[Dimension, list[str]] = {}
        for table in self.tables:
            for dimension in table.resource.dimensions:
                groups.setdefault(dimension, []).append(table.resource.title)
        return tuple((dimension, tuple(titles)) for dimension, titles in groups.items())


def build_views(package: Package, words: Mapping[str, Words]) -> Views:
    """The view models of every page; raises PackageError for what the site cannot show."""
    _check_page_names(package)
    downloads = tuple(_download(item) for item in package.files)
    archive = tuple(
        ArchivedView(
            version.version,
            tuple(_download(item, version.version) for item in _archived(version)),
        )
        for version in package.archive
    )
    hrefs = [item.href for item in downloads] + [
        item.href for version in archive for item in version.downloads
    ]
    duplicated = sorted({href for href in hrefs if hrefs.count(href) > 1})
    if duplicated:
        raise PackageError(
            [
                f"{package.directory / 'datapackage.json'}: files: two files would be offered "
                f"as '{href}': rename one"
                for href in duplicated
            ]
        )
    by_path = {item.path: item for item in downloads}
    tables = tuple(
        _table_view(package, resource, by_path.get(resource.path), words)
        for resource in package.tables
    )
    titles = {table.name: table.resource.title for table in tables}
    return Views(
        package=package,
        tables=tables,
        shares=tuple(_share_view(package, share) for share in package.shares),
        total_findings=_total_findings(package, tables),
        shares_figure=_shares_figure(package, words),
        downloads=downloads,
        archive=archive,
        counts=tuple(sorted({resource.counts for resource in package.tables})),
        consistent_groups=tuple(
            tuple(titles.get(name, name) for name in group)
            for group in package.consistent_groups
            if len(group) > 1
        ),
    )


def _check_page_names(package: Package) -> None:
    problems = [
        f"{package.directory / 'datapackage.json'}: resources[{index}].name: expected lowercase "
        "letters, digits, '.', '_' and '-' (and not 'index'): it names the table's page"
        for index, resource in enumerate(package.resources)
        if resource.is_table
        and (not _PAGE_NAME.match(resource.name) or resource.name in ("index", "readme"))
    ]
    if problems:
        raise PackageError(problems)


def _download(item: PackageFile, version: str = "") -> Download:
    # MkDocs would turn a Markdown file into a page: the site offers it as text.
    href = f"{item.path}.txt" if item.path.lower().endswith(".md") else item.path
    return Download(item, href, version)


def _archived(version: ArchivedVersion) -> tuple[PackageFile, ...]:
    return (*version.zips, version.descriptor)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def _table_view(
    package: Package, resource: Resource, own_file: Download | None, words: Mapping[str, Words]
) -> TableView:
    dimensions = resource.dimensions
    total = next(
        (row for row in resource.rows if _all_total(package, row, dimensions)),
        None,
    )
    used: list[str] = []
    for row in resource.rows:
        if row[MARKER] and row[MARKER] not in used:
            used.append(row[MARKER])
    order = [marker for marker, _ in package.markers]
    used.sort(key=lambda marker: order.index(marker) if marker in order else len(order))
    # is_total repeats what the key columns show (the total label): not for readers.
    known = {dimension.name for dimension in dimensions} | {VALUE, MARKER, LOWER, UPPER, TOTAL}
    sensitivity, implied = _sensitivity(package, resource)
    return TableView(
        sensitivity=sensitivity,
        sensitivity_implied=implied,
        resource=resource,
        total=total,
        largest=_largest(package, resource),
        hidden=sum(1 for row in resource.rows if not row[VALUE]),
        used_markers=tuple(used),
        unit=_unit_of(package, resource.input),
        own_file=own_file,
        figures=_table_figures(package, resource, words),
        extra_fields=tuple(field.name for field in resource.fields if field.name not in known),
    )


def _sensitivity(
    package: Package, resource: Resource
) -> tuple[tuple[tuple[PrivacyUnit | None, float], ...], bool]:
    """The table's sensitivity for each unit it concerns, as the package states it; in
    packages that do not state it, what the published scale and loss imply by the privacy
    map of the mechanism (rho = sensitivity^2 / (2 scale^2) for Gaussian noise under zCDP,
    epsilon = sensitivity / scale for Laplace noise), with no unit."""
    privacy = resource.privacy
    if privacy is None:
        return (), False
    if privacy.sensitivity:
        units = {unit.name: unit for unit in package.units}
        return tuple((units.get(name), value) for name, value in privacy.sensitivity), False
    if privacy.scale is None:
        return (), False
    if package.model == "zcdp" and privacy.rho is not None:
        return ((None, privacy.scale * math.sqrt(2.0 * privacy.rho)),), True
    if package.model == "pure" and privacy.epsilon is not None:
        return ((None, privacy.scale * privacy.epsilon),), True
    return (), False


def _all_total(package: Package, row: Row, dimensions: Sequence[Dimension]) -> bool:
    return all(row[dimension.name] == package.total_label for dimension in dimensions)


def _unit_of(package: Package, input_name: str) -> PrivacyUnit | None:
    """The privacy unit an input's own identifier names (the first that reaches it)."""
    return next(
        (
            unit
            for unit in package.units
            if any(reach.input == input_name and not reach.through for reach in unit.reaches)
        ),
        None,
    )


def _largest(package: Package, resource: Resource) -> tuple[Largest, ...]:
    """For each dimension, the largest known category and whether the order is certain."""
    found = []
    for dimension in resource.dimensions:
        others = [other for other in resource.dimensions if other is not dimension]
        candidates = [
            row
            for row in resource.rows
            if row[dimension.name] not in (package.total_label, dimension.unknown)
            and all(row[other.name] == package.total_label for other in others)
            and _WHOLE.fullmatch(row[VALUE])
        ]
        if len(candidates) < 2:
            continue
        ranked = sorted(candidates, key=lambda row: -int(row[VALUE]))
        top, runner_up = ranked[0], ranked[1]
        found.append(Largest(dimension, top, runner_up, int(top[LOWER]) <= int(runner_up[UPPER])))
    return tuple(found)


def _total_findings(package: Package, tables: Sequence[TableView]) -> tuple[TotalFinding, ...]:
    groups: dict[tuple[str, ...], list[TableView]] = {}
    for table in tables:
        if table.total is None:
            continue
        resource, total = table.resource, table.total
        key = (resource.input, resource.counts, *(total[c] for c in (VALUE, MARKER, LOWER, UPPER)))
        groups.setdefault(key, []).append(table)
    return tuple(
        TotalFinding(
            group[0],
            len(group),
            _unit_of(package, group[0].resource.input),
            _input_title(package, group[0].resource.input) or group[0].resource.counts.capitalize(),
        )
        for group in groups.values()
    )


def _input_title(package: Package, input_name: str) -> str:
    """The input's title, as the privacy units' reaches give it ("" when none does; in
    packages stating one unit per input, that unit's title is the input's)."""
    titles = (
        reach.input_title or (unit.title if unit.name == input_name else "")
        for unit in package.units
        for reach in unit.reaches
        if reach.input == input_name
    )
    return next((title for title in titles if title), "")


def _share_view(package: Package, share: Share) -> ShareView:
    statement = share.statement.strip().rstrip(".")
    table = next((table for table in package.tables if table.name == share.table), None)
    dimensions = {dimension.name: dimension for dimension in table.dimensions} if table else {}

    def selections(selected: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[Selection, ...]:
        return tuple(
            Selection(dimensions[column], keys) for column, keys in selected if column in dimensions
        )

    denominator = selections(share.denominator)
    restricted = {selection.dimension.name for selection in denominator}
    view = ShareView(
        share,
        statement,
        counts=table.counts if table else "records",
        numerator=selections(share.numerator),
        denominator=denominator,
        unknown_kept=tuple(
            dimension
            for dimension in dimensions.values()
            if dimension.unknown and dimension.name not in restricted
        ),
    )
    if share.estimate is None or share.lower is None or share.upper is None:
        return view
    estimate, lower, upper = percents(share.estimate, share.lower, share.upper)
    return dataclasses.replace(view, estimate=estimate, lower=lower, upper=upper)


# --------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Summary:
    """The bars of a chart as its description says them."""

    bars: tuple[Bar, ...]
    largest: Bar | None
    smallest: Bar | None
    hidden: tuple[Bar, ...]
    hidden_shown: tuple[str, ...]


def _summary(bars: Sequence[Bar]) -> _Summary:
    real = tuple(bar for bar in bars if not bar.heading)
    ranked = sorted((bar for bar in real if bar.value is not None), key=lambda b: -(b.value or 0))
    hidden = tuple(bar for bar in real if bar.value is None)
    return _Summary(
        bars=real,
        largest=ranked[0] if ranked else None,
        smallest=ranked[-1] if ranked else None,
        hidden=hidden,
        hidden_shown=tuple(sorted({bar.shown for bar in hidden})),
    )


def _said(words: Mapping[str, Words], name: str, *args: Any) -> str:
    return one_line(words[name](*args))


def _count_bar(row: Row, label: str, words: Mapping[str, Words], *, hatched: bool = False) -> Bar:
    """A bar for one published figure: a number (maybe with a marker beside it) or a marker."""
    value, marker = row[VALUE], row[MARKER]
    number = _INTEGER.fullmatch(value) is not None
    shown = " ".join(part for part in (f"{int(value):,}" if number else "", marker) if part)
    if not number:
        return Bar(label, shown=shown or _said(words, "no_number"), hatched=hatched)
    bounds = [row[LOWER], row[UPPER]]
    known = all(_INTEGER.fullmatch(bound) for bound in bounds)
    return Bar(
        label,
        value=float(value),
        lower=float(bounds[0]) if known else None,
        upper=float(bounds[1]) if known else None,
        shown=shown,
        lower_shown=f"{int(bounds[0]):,}" if known else "",
        upper_shown=f"{int(bounds[1]):,}" if known else "",
        hatched=hatched,
    )


def _rows_by(resource: Resource, dimension: Dimension, fixed: Mapping[str, str]) -> dict[str, Row]:
    """The rows of one dimension's categories where the other dimensions are ``fixed``."""
    return {
        row[dimension.name]: row
        for row in resource.rows
        if all(row[name] == value for name, value in fixed.items())
    }


def _category_bars(
    dimension: Dimension, rows: Mapping[str, Row], words: Mapping[str, Words]
) -> list[Bar]:
    """Bars in the declared order of the categories (which may be meaningful, as ages)."""
    return [
        _count_bar(rows[value], value, words, hatched=value == dimension.unknown)
        for value in dimension.values
        if value in rows
    ]


def _total_words(package: Package, row: Row | None, words: Mapping[str, Words]) -> str:
    if row is None:
        return ""
    return _said(words, "total_words", package.total_label, _count_bar(row, "", words))


@dataclass(frozen=True)
class Figure:
    """A chart in its two forms: wide (labels beside the bars) and narrow (for phones)."""

    wide: Layout
    narrow: Layout


def _figure(chart: Chart) -> Figure:
    return Figure(layout(chart), layout(chart, narrow=True))


def _table_figures(
    package: Package, resource: Resource, words: Mapping[str, Words]
) -> tuple[Figure, ...]:
    """The figures of a table page: one chart per breakdown, and for two breakdowns also
    the second within each category of the first, on one scale so bars compare."""
    value_title = resource.field(VALUE).title or _said(words, "value_axis", resource.counts)
    counts = resource.counts
    total = package.total_label
    dimensions = resource.dimensions
    charts: list[Chart] = []

    def ident() -> str:
        return f"chart-{resource.name.replace('.', '-')}-{len(charts) + 1}"

    for dimension in dimensions:
        if len(dimensions) > 1 and not resource.totals:
            continue
        others = {other.name: total for other in dimensions if other is not dimension}
        rows = _rows_by(resource, dimension, others)
        bars = _category_bars(dimension, rows, words)
        if not bars:
            continue
        by = dimension.title.lower()
        total_words = _total_words(package, rows.get(total), words)
        charts.append(
            Chart(
                ident=ident(),
                title=_said(words, "breakdown_title", counts, by),
                description=_said(
                    words, "breakdown_description", _summary(bars), counts, total_words
                ),
                axis=value_title,
                caption=_said(
                    words,
                    "breakdown_caption",
                    len(charts) + 1,
                    counts,
                    by,
                    package.period,
                    total_words,
                ),
                bars=tuple(bars),
            )
        )

    if len(dimensions) == 2:
        outer, inner = dimensions
        bars = []
        groups = []
        for key in outer.values:
            rows = _rows_by(resource, inner, {outer.name: key})
            inner_bars = _category_bars(inner, rows, words)
            if not inner_bars:
                continue
            heading = _said(
                words, "group_heading", key, _total_words(package, rows.get(total), words)
            )
            bars += [Bar(heading, heading=True), *inner_bars]
            groups.append((heading, _summary(inner_bars)))
        if bars:
            charts.append(
                Chart(
                    ident=ident(),
                    title=_said(
                        words, "grouped_title", counts, inner.title.lower(), outer.title.lower()
                    ),
                    description=_said(words, "grouped_description", groups, counts),
                    axis=value_title,
                    caption=_said(
                        words,
                        "grouped_caption",
                        len(charts) + 1,
                        counts,
                        inner.title.lower(),
                        outer.title.lower(),
                        package.period,
                    ),
                    bars=tuple(bars),
                )
            )
    return tuple(_figure(chart) for chart in charts)


def _shares_figure(package: Package, words: Mapping[str, Words]) -> Figure | None:
    """The headline shares as a bar chart in percent, with their intervals."""
    bars = []
    for share in package.shares:
        if share.estimate is None or share.lower is None or share.upper is None:
            bars.append(Bar(share.title, shown=_said(words, "not_estimated")))
            continue
        estimate, lower, upper = percents(share.estimate, share.lower, share.upper)
        bars.append(
            Bar(
                share.title,
                value=share.estimate,
                lower=share.lower,
                upper=share.upper,
                shown=estimate,
                lower_shown=lower,
                upper_shown=upper,
            )
        )
    if not bars:
        return None
    chart = Chart(
        ident="chart-headline-shares",
        title=_said(words, "shares_title"),
        description=_said(words, "shares_description", _summary(bars)),
        axis=_said(words, "shares_axis"),
        caption=_said(words, "shares_caption", package.period),
        bars=tuple(bars),
        percent=True,
    )
    return _figure(chart)


def file_name(path: str) -> str:
    """The last part of a package path."""
    return PurePosixPath(path).name


@dataclass(frozen=True)
class ChangelogLine:
    """A line of the package's changelog, to be escaped and shown: ``kind`` is ``item``,
    ``text`` or ``heading`` (of ``level``)."""

    kind: str
    text: str
    level: int = 0


def _unescape_markdown(text: str) -> str:
    """Text of a Markdown line as written by a person: entities and escapes resolved."""
    return html.unescape(re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>])", r"\1", text))


def changelog_lines(changelog: str) -> tuple[ChangelogLine | None, ...]:
    """The package's CHANGELOG.md, line by line: headings, list items, paragraphs.

    The text comes from the package, so it is never passed through as Markdown: each line
    is shown as text by the template. Its own top heading is dropped (the page has one)
    and its headings move one level down.
    """
    blocks: list[tuple[str, str]] = []  # (kind, text): heading level "2".."6", "item", "text"
    for raw in changelog.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        item = re.match(r"^[-*+]\s+(.*)$", line)
        if not line:
            blocks.append(("blank", ""))
        elif heading:
            level = len(heading.group(1))
            if level > 1:
                blocks.append((str(min(level + 1, 6)), heading.group(2)))
        elif item:
            blocks.append(("item", item.group(1)))
        elif raw[:1].isspace() and blocks and blocks[-1][0] in ("item", "text"):
            kind, text = blocks[-1]
            blocks[-1] = (kind, f"{text} {line}")
        elif blocks and blocks[-1][0] == "text":
            blocks[-1] = ("text", f"{blocks[-1][1]} {line}")
        else:
            blocks.append(("text", line))

    def shown(line: ChangelogLine | None) -> bool:
        # Whether the line prints anything (an empty paragraph counts as blank).
        return line is not None and (line.kind != "text" or bool(md(line.text)))

    lines: list[ChangelogLine | None] = []
    for kind, text in blocks:
        text = _unescape_markdown(text)
        if kind == "blank":
            if lines and shown(lines[-1]):
                lines.append(None)
        elif kind == "item":
            lines.append(ChangelogLine("item", text))
        elif kind == "text":
            paragraph = ChangelogLine("text", text)
            lines += [None, paragraph, None] if lines and shown(lines[-1]) else [paragraph, None]
        else:
            lines += [None, ChangelogLine("heading", text, int(kind)), None]
    cleaned: list[ChangelogLine | None] = []
    for entry in lines:
        if shown(entry) or (cleaned and shown(cleaned[-1])):
            cleaned.append(entry)
    return tuple([*cleaned, None] if cleaned and shown(cleaned[-1]) else cleaned)
