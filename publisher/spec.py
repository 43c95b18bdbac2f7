"""The release spec: YAML (safe load only) into frozen, validated models.

Every problem is collected with its YAML path (``tables[2].by[0]``) and reported at once.
Category keys are public knowledge declared here; they are never derived from the data.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from publisher import files, lookalike
from publisher.errors import SpecError

__all__ = [
    "LICENCES",
    "LIMITS",
    "Category",
    "Column",
    "EngineSettings",
    "Hop",
    "Input",
    "Link",
    "LinkedUnit",
    "PressContact",
    "Privacy",
    "Reach",
    "Release",
    "ReleaseSpec",
    "Share",
    "SparkSettings",
    "Table",
    "Unit",
    "load",
    "parse",
]

SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
SEMVER = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$"


def _number_not_bool(value: object) -> object:
    # YAML reads `yes`/`true` as booleans, which pydantic would quietly take as 1.
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Number = BeforeValidator(_number_not_bool)
Slug = Annotated[str, Field(pattern=SLUG, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
PositiveFinite = Annotated[float, Number, Field(gt=0, allow_inf_nan=False)]
# The largest losses a spec may state. Above them a release gives no meaningful
# protection (and OpenDP's arithmetic overflows long before 1e9): refuse them outright.
MAX_LOSS = {"rho": 10.0, "epsilon": 20.0}
MAX_CAP = {"rho": 100.0, "epsilon": 200.0}

# OpenDP's own guidance on the largest typical total loss (it warns above these).
CAUTION_ABOVE = {"zcdp": 0.5, "pure": 5.0}


@dataclass(frozen=True)
class Limits:
    """What one spec may ask for, checked before anything is read or reserved, so that a
    release that passes ``check`` finishes in bounded time and memory (docs/spec.md)."""

    # The tables of one input are estimated together, by a dense least-squares projection
    # over all their cells: its time grows with the cube of the cells, its memory with the
    # square (5,000 cells: about a minute and 1.5 GB on two cores for the projection alone).
    cells_per_table: int = 5_000
    cells_per_input: int = 5_000
    cells_per_release: int = 20_000
    # Each table is a CSV, a sheet of each spreadsheet and a page of the site, and the
    # work of checking and planning grows with their number (1,000 tables: 43 s to check).
    tables_per_release: int = 200
    keys_per_category: int = 5_000
    # The largest disclosure threshold: counts are 64-bit integers, and a threshold above
    # any count a release could hold hides every cell anyway.
    threshold: int = 1_000_000_000
    # A table's weight, relative to the others (its share of the loss).
    weight: tuple[float, float] = (1e-3, 1e3)
    # The least loss a table may get: less gives noise that swamps every count (a scale
    # above a million for 1,000 records per person), and OpenDP's accuracy of such noise
    # takes minutes to compute.
    min_table_loss: Mapping[str, float] = field(
        default_factory=lambda: {"rho": 1e-6, "epsilon": 1e-3}
    )
    # Text: any one value, the spec file, its nesting and its size once YAML aliases are
    # expanded (an alias of an alias can stand for billions of values).
    text_chars: int = 10_000
    spec_bytes: int = 10 << 20
    yaml_depth: int = 50
    yaml_values: int = 1_000_000


LIMITS = Limits()
Weight = Annotated[
    float, Number, Field(ge=LIMITS.weight[0], le=LIMITS.weight[1], allow_inf_nan=False)
]

# The columns every published table has beside its key columns (package.py writes them):
# a key column of the same name would make two columns with one name.
PUBLISHED_COLUMNS = ("value", "marker", "lower_95", "upper_95", "is_total")

# Licences we can describe fully (id -> title, URL). Official statistics use OGL.
LICENCES: dict[str, tuple[str, str]] = {
    "OGL-UK-3.0": (
        "Open Government Licence v3.0",
        "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
    ),
    "CC-BY-4.0": (
        "Creative Commons Attribution 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
    ),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# A web address the site can link to as it is: https, and no character that Markdown or
# HTML would read as syntax.
HTTPS_URL = r"^https://[^\s<>()\[\]\"'`\\|]+$"
Url = Annotated[str, Field(pattern=HTTPS_URL)]


class Contact(_Model):
    """Who readers write to about the figures (GSS practice: a named statistician too)."""

    name: Text
    email: Annotated[str, Field(pattern=EMAIL)]
    # The statistician responsible for the release, named on the site.
    statistician: str = ""
    phone: str = ""


class PressContact(_Model):
    """Where journalists ask about the release (a press office)."""

    name: Text
    email: Annotated[str, Field(pattern=EMAIL)] | None = None
    phone: str = ""


class Link(_Model):
    """A related page, listed on the release page."""

    title: Text
    url: Url
    description: str = ""


# The status of the statistics, as UK official statistics say it (each explained on the
# site): accredited official statistics, official statistics, official statistics in
# development, management information, or not official statistics at all.
StatisticsStatus = Literal[
    "accredited-official",
    "official",
    "official-in-development",
    "management-information",
    "not-official",
]


def _source_path(value: str) -> str:
    """Where a source can be found, as the descriptor states it: an https address, or a
    relative path (no '..', no scheme such as javascript: or data:, no backslash)."""
    if re.fullmatch(HTTPS_URL, value):
        return value
    parts = value.split("/")
    if ":" in value or "\\" in value or value.startswith(("/", "~", ".")) or ".." in parts:
        raise ValueError(
            "expected an https:// address or a relative path without '..', ':' or '\\' "
            "(for example 'https://example.org/data' or 'crimes/2024.csv')"
        )
    return value


class Source(_Model):
    title: Text
    description: str = ""
    path: Annotated[str, AfterValidator(_source_path)] | None = None


class Release(_Model):
    """What is published: identity, period, licence and who publishes it."""

    id: Slug
    title: Text
    version: Annotated[str, Field(pattern=SEMVER)]
    period: Text
    description: Text
    publisher: Text
    contact: Contact
    licence: Literal["OGL-UK-3.0", "CC-BY-4.0"] = "OGL-UK-3.0"
    published: date | None = None
    geography: str = ""
    keywords: list[Text] = []
    sources: list[Source] = []
    synthetic: bool = False
    # Provisional figures carry [p]; a later version for the same period revises them.
    status: Literal["final", "provisional"] = "final"
    next_update: str = "To be announced"
    # What the site says about the release (none is required):
    statistics_status: StatisticsStatus | None = None
    url: Url | None = None  # the release's own web page, cited with the version
    versions_url: Url | None = None  # where every version, earlier ones too, can be found
    press: PressContact | None = None
    related: list[Link] = []
    # Terms this release uses, defined for readers (the site's glossary has the rest).
    glossary: dict[Text, Text] = {}


class Cap(_Model):
    """The lifetime privacy loss a dataset may ever spend, over all its releases."""

    rho: PositiveFinite | None = None
    epsilon: PositiveFinite | None = None


class Unit(_Model):
    """A kind of person the release protects (a privacy unit), such as a child victim."""

    title: Text
    description: str = ""


class Privacy(_Model):
    """The privacy-loss model, the loss this release spends and the dataset's lifetime cap.

    ``rho`` (or ``epsilon``) bounds the loss of every person of every declared unit: each
    unit's loss, over all the tables that reach it, is at most this much.
    """

    model: Literal["zcdp", "pure"]
    rho: PositiveFinite | None = None
    epsilon: PositiveFinite | None = None
    # Only used to state a zCDP release as (epsilon, delta); no delta is spent by pure DP.
    delta: Annotated[float, Number, Field(gt=0, lt=1e-3)] = 1e-7
    cap: Cap
    # The people the release protects, by name (inputs say which one their identifier names).
    units: Annotated[dict[Slug, Unit], Field(min_length=1)]
    # The part of the loss spent estimating what the per-person bounds left out.
    truncation_share: Annotated[float, Number, Field(ge=0, le=0.5)] = 0.05
    # What the measurement strategy minimises (zCDP): the weighted mean variance of the
    # tables' cells ("total"), or the largest weighted variance of any cell ("worst_cell").
    objective: Literal["total", "worst_cell"] = "total"
    # The private budget ledger (SQLite), relative to the spec; never inside a package.
    ledger: Text = "ledger.sqlite"
    # Releases of one dataset share its cap; defaults to the release id.
    dataset: Slug | None = None
    # Why this release deliberately starts a new dataset on inputs another dataset of the
    # ledger released (recorded in the ledger); without it such a release is refused.
    new_dataset_reason: Text | None = None

    @model_validator(mode="after")
    def _one_loss(self) -> Privacy:
        wanted, other = ("rho", "epsilon") if self.model == "zcdp" else ("epsilon", "rho")
        if getattr(self, wanted) is None:
            raise ValueError(f"model '{self.model}' needs '{wanted}': set the total loss")
        if getattr(self, other) is not None:
            raise ValueError(f"model '{self.model}' takes '{wanted}', not '{other}': remove it")
        loss = getattr(self, wanted)
        if loss > MAX_LOSS[wanted]:
            raise ValueError(
                f"{wanted} = {loss:g} is absurd: above {MAX_LOSS[wanted]:g} a release gives no "
                f"meaningful protection; lower privacy.{wanted}"
            )
        cap = getattr(self.cap, wanted)
        if cap is not None and cap > MAX_CAP[wanted]:
            raise ValueError(
                f"cap {wanted} = {cap:g} is absurd: keep the lifetime cap at most "
                f"{MAX_CAP[wanted]:g}; lower privacy.cap.{wanted}"
            )
        if cap is None or getattr(self.cap, other) is not None:
            raise ValueError(f"cap: model '{self.model}' needs the cap as '{wanted}' only")
        if cap < getattr(self, wanted):
            raise ValueError(
                f"{wanted} = {getattr(self, wanted):g} is above the lifetime cap {cap:g}: "
                "lower the release's loss"
            )
        return self

    @property
    def cap_loss(self) -> float:
        """The lifetime cap in the model's own unit."""
        value = self.cap.rho if self.model == "zcdp" else self.cap.epsilon
        assert value is not None  # guaranteed by the validator
        return value

    @property
    def loss(self) -> float:
        """The total loss in the model's own unit (rho for zCDP, epsilon for pure DP)."""
        value = self.rho if self.model == "zcdp" else self.epsilon
        assert value is not None  # guaranteed by the validator
        return value

    @property
    def loss_name(self) -> str:
        return "rho" if self.model == "zcdp" else "epsilon"

    @property
    def caution(self) -> str | None:
        """Guidance when the total loss is above what OpenDP calls a typical loss."""
        typical = CAUTION_ABOVE[self.model]
        if self.loss <= typical:
            return None
        return (
            f"privacy.{self.loss_name} = {self.loss:g} is above {typical:g}, the largest loss "
            "OpenDP considers typical; the protection is weaker than usual, so check that "
            "this is intended"
        )


class Groups(_Model):
    """How each key of a category groups the keys of a finer one (force -> region)."""

    of: Text
    members: Annotated[dict[str, list[Text]], Field(min_length=1)]


class Category(_Model):
    """A public set of keys for a dimension, in the order they are published."""

    title: Text
    description: str = ""
    values: Annotated[list[Text], Field(min_length=1)]
    ordered: bool = False
    unknown: str | None = None
    definitions: dict[str, str] = {}
    groups: Groups | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Category:
        seen: set[str] = set()
        for value in self.values:
            if value in seen:
                raise ValueError(f"value '{value}' is listed twice: list each key once")
            seen.add(value)
        if self.unknown is not None and self.unknown not in seen:
            raise ValueError(f"unknown '{self.unknown}' is not one of the values: add it")
        for key in self.definitions:
            if key not in seen:
                raise ValueError(f"definitions names '{key}', which is not one of the values")
        if self.groups is not None and set(self.groups.members) != seen:
            raise ValueError("groups.members must list the members of every value, and only those")
        return self


class Column(_Model):
    """A categorical column of an input and what to do with values outside its keys.

    With ``from``, the column is not read from the file but derived from another column
    by its categories' ``groups`` (for example region from force).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    categories: Text
    on_unknown: Literal["error", "map"] = "error"
    derived_from: str | None = Field(default=None, alias="from")


class LinkedUnit(_Model):
    """The bound on one person of a unit that reaches an input through its references."""

    max_records_per_person: Annotated[int, Number, Field(ge=1, le=1000)]


class Input(_Model):
    """A private microdata file, the privacy unit its identifier names, and its bounds."""

    # The file (or Parquet folder); a Spark table (format spark) has none.
    path: Text | None = None
    format: Literal["csv", "parquet", "duckdb", "spark"] = "csv"
    # With format duckdb: the table (or view) of the database file to read. With format
    # spark: the table as Spark SQL names it in the session's catalog.
    table: str | None = None
    title: str = ""
    description: str = ""
    identifier: Text
    # Which declared privacy unit the identifier names (privacy.units).
    unit: Text
    max_records_per_person: Annotated[int, Number, Field(ge=1, le=1000)]
    columns: Annotated[dict[str, Column], Field(min_length=1)]
    # One row per person (a victims file): duplicated identifiers are an error.
    unique_identifier: bool = False
    # Columns that must match a column of another input: {crime_id: crimes.crime_id}.
    references: dict[str, Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+$")]] = {}
    # Units other than ``unit`` whose people the records depend on through ``references``,
    # each with the most records of one such person that are counted.
    linked_units: dict[str, LinkedUnit] = {}


class Table(_Model):
    """One published table: counts of an input's records by public dimensions."""

    name: Slug
    input: Text
    by: Annotated[list[Text], Field(min_length=1, max_length=4)]
    title: Text
    description: Text
    counts: Text = "records"
    weight: Weight = 1.0
    totals: bool = True


class Share(_Model):
    """A headline share derived from one table: numerator cells over denominator cells."""

    name: Slug
    table: Text
    title: Text
    statement: Text
    numerator: Annotated[dict[str, list[Text]], Field(min_length=1)]
    denominator: dict[str, list[Text]] = {}


class Disclosure(_Model):
    """Official-statistics rules applied to the noisy counts."""

    rounding_base: Annotated[int, Number, Field(ge=1, le=1000)] = 5
    threshold: Annotated[int, Number, Field(ge=0, le=LIMITS.threshold)] = 10
    total_label: Text = "Total"
    # Also publish, per table, the unrounded consistent estimates with their standard
    # errors and the noisy counts as drawn: post-processing, no extra loss.
    unrounded_estimates: bool = False


class SparkSettings(_Model):
    """How the release manager's Spark session is made (engine spark)."""

    # The cluster: local[N], spark://HOST:PORT, yarn, k8s://...; without it, Spark's own
    # default (spark-submit's --master or the SPARK_* environment, else local).
    master: Text | None = None
    # Spark configuration properties, as in spark-defaults.conf.
    config: dict[Text, Text] = {}


class EngineSettings(_Model):
    """Where the private computation runs (see ``publisher.engines``)."""

    name: Literal["auto", "polars", "duckdb", "spark"] = "auto"
    # DuckDB: the memory it may use before it spills to the private temporary folder.
    memory_limit: Annotated[
        str, Field(pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    ] = "1.5GB"
    # DuckDB: how many threads (all cores by default).
    threads: Annotated[int, Number, Field(ge=1, le=1024)] | None = None
    spark: SparkSettings = SparkSettings()


class ReleaseSpec(_Model):
    """A whole release spec. ``base_dir`` is the folder relative paths start from."""

    release: Release
    privacy: Privacy
    categories: Annotated[dict[str, Category], Field(min_length=1)]
    inputs: Annotated[dict[str, Input], Field(min_length=1)]
    tables: Annotated[list[Table], Field(min_length=1)]
    shares: list[Share] = []
    disclosure: Disclosure = Disclosure()
    engine: EngineSettings = EngineSettings()
    base_dir: Path = Field(default=Path("."), exclude=True)

    @property
    def ledger_path(self) -> Path:
        return _real(self.base_dir / self.privacy.ledger)

    @property
    def dataset_id(self) -> str:
        return self.privacy.dataset or self.release.id

    def input_path(self, name: str) -> Path:
        """An input's file or folder (a Spark table's is the spec's folder: it has none)."""
        return _real(self.base_dir / (self.inputs[name].path or "."))

    def table(self, name: str) -> Table:
        return next(table for table in self.tables if table.name == name)

    def category_of(self, table: Table, column: str) -> Category:
        return self.categories[self.inputs[table.input].columns[column].categories]

    def table_loss(self, table: Table) -> float:
        """The part of every unit's loss given to ``table``, by weight (before OpenDP
        checks): the release's loss, less the part kept for the truncation estimates."""
        total_weight = math.fsum(t.weight for t in self.tables)
        return self.tables_loss * table.weight / total_weight

    @property
    def tables_loss(self) -> float:
        """The part of the loss the tables share (the rest estimates what bounds removed)."""
        if not self.truncation_inputs:
            return self.privacy.loss
        return self.privacy.loss * (1.0 - self.privacy.truncation_share)

    @property
    def truncation_inputs(self) -> list[str]:
        """The inputs whose bounds can leave records out, so that the release estimates how
        many: every input with a table, unless each person has exactly one row there (and
        no other unit reaches it) or no loss is set aside for the estimates."""
        if self.privacy.truncation_share == 0:
            return []
        used = {table.input for table in self.tables}
        return [
            name
            for name, source in self.inputs.items()
            if name in used and (source.linked_units or not source.unique_identifier)
        ]

    def truncation_loss(self, input_name: str) -> float:
        """The part of every unit's loss spent estimating what ``input_name``'s bounds left
        out (shared evenly by the inputs that need an estimate)."""
        inputs = self.truncation_inputs
        if input_name not in inputs:
            return 0.0
        return self.privacy.loss * self.privacy.truncation_share / len(inputs)

    def unit(self, name: str) -> Unit:
        return self.privacy.units[name]

    def reaches(self, input_name: str) -> list[Reach]:
        """How the records of an input depend on the people of each unit: through its own
        identifier first, then through each of its references, in order. A neighbouring
        dataset removes one person and every record that depends on them (PrivateSQL's
        semantics for databases with foreign keys)."""
        return [
            Reach(unit, hops, identifier, self._bound(input_name, unit, hops))
            for hops, unit, identifier in _paths(self, input_name, ())
            if not (hops and self._same_person(input_name, hops))
        ]

    def _same_person(self, input_name: str, hops: tuple[Hop, ...]) -> bool:
        """Whether every hop goes from an input's identifier to the next input's
        identifier: the path then ends at the record's own person (crimes.victim_id ->
        victims.victim_id), whom the input's own bound already covers."""
        current = input_name
        for hop in hops:
            if hop.column != self.inputs[current].identifier:
                return False
            if hop.key != self.inputs[hop.input].identifier:
                return False
            if self.inputs[hop.input].unit != self.inputs[current].unit:
                return False
            current = hop.input
        return True

    def _bound(self, input_name: str, unit: str, hops: tuple[Hop, ...]) -> int | None:
        source = self.inputs[input_name]
        if not hops:
            return source.max_records_per_person
        linked = source.linked_units.get(unit)
        return None if linked is None else linked.max_records_per_person


def _real(path: Path) -> Path:
    """``path`` with its links resolved as far as they go. Unlike ``Path.resolve`` it never
    raises on a link that points to itself: the file's own checks then report it."""
    return Path(os.path.realpath(path))


@dataclass(frozen=True)
class Hop:
    """One step from an input's records to the records they depend on: ``column`` of the
    input holds the key ``key`` of the input ``input``."""

    column: str
    input: str
    key: str

    def __str__(self) -> str:
        return f"{self.column} \N{RIGHTWARDS ARROW} {self.input}.{self.key}"


@dataclass(frozen=True)
class Reach:
    """How the records of an input depend on the people of one unit: ``through`` the hops
    (none: the input's own identifier) to ``identifier``, the column naming the person;
    ``bound`` is the most records of one such person that are counted."""

    unit: str
    through: tuple[Hop, ...]
    identifier: str
    bound: int | None

    @property
    def path(self) -> str:
        """The path in words, such as ``crime_id -> crimes.crime_id, then victim_id``."""
        steps = [str(hop) for hop in self.through]
        return ", then ".join([*steps, self.identifier])


class _CycleError(Exception):
    def __init__(self, cycle: tuple[str, ...]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


def _paths(
    spec: ReleaseSpec, input_name: str, visiting: tuple[str, ...]
) -> list[tuple[tuple[Hop, ...], str, str]]:
    """Every (hops, unit, identifier) by which the records of ``input_name`` depend on a
    person; raises :class:`_CycleError` when the references go round in a circle."""
    if input_name in visiting:
        raise _CycleError((*visiting[visiting.index(input_name) :], input_name))
    source = spec.inputs[input_name]
    paths: list[tuple[tuple[Hop, ...], str, str]] = [((), source.unit, source.identifier)]
    for column, target in source.references.items():
        target_input, key = target.split(".", 1)
        if target_input not in spec.inputs or target_input == input_name:
            continue  # reported as a reference problem
        for hops, unit, identifier in _paths(spec, target_input, (*visiting, input_name)):
            if hops and spec._same_person(target_input, hops):
                continue  # the target's own person, already reached by its identifier
            paths.append(((Hop(column, target_input, key), *hops), unit, identifier))
    return paths


@dataclass(frozen=True)
class _Problem:
    path: str
    message: str


def _yaml_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _pydantic_problems(error: ValidationError) -> list[_Problem]:
    problems = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not str(p).startswith("function-after"))
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown key: remove it or check its spelling against the spec reference"
        elif kind == "missing":
            message = "required key is missing: add it"
        elif kind == "value_error":
            message = str(item["msg"]).removeprefix("Value error, ")
        elif kind == "string_pattern_mismatch":
            message = _pattern_hint(str(item["ctx"]["pattern"]))
        elif kind == "string_type":
            message = (
                "expected text: put it in quotes (YAML reads 2024 as a number, 2024-01-31 "
                "as a date and yes as true)"
            )
        else:
            message = str(item["msg"])
        problems.append(_Problem(_yaml_path(loc), message))
    return problems


def _pattern_hint(pattern: str) -> str:
    if pattern == SLUG:
        return (
            "expected lowercase letters, digits and single hyphens (for example 'crimes-by-force')"
        )
    if pattern == SEMVER:
        return "expected a semantic version such as '1.0.0'"
    if pattern == HTTPS_URL:
        return (
            "expected an https:// address without spaces, quotes, brackets or '|' (for "
            "example 'https://example.org/statistics')"
        )
    return "expected an email address such as 'statistics@example.org'"


def _reference_problems(spec: ReleaseSpec) -> list[_Problem]:
    """Cross-references the models cannot check alone."""
    problems: list[_Problem] = []
    for name, source in spec.inputs.items():
        for column_name, column in source.columns.items():
            where = f"inputs.{name}.columns.{column_name}"
            category = spec.categories.get(column.categories)
            if category is None:
                problems.append(
                    _Problem(
                        f"{where}.categories",
                        f"no category set named '{column.categories}': declare it under "
                        "'categories' or fix the name",
                    )
                )
            elif column.on_unknown == "map" and category.unknown is None:
                problems.append(
                    _Problem(
                        f"{where}.on_unknown",
                        f"'map' needs categories.{column.categories}.unknown: declare the "
                        "unknown key or use 'error'",
                    )
                )
            problems.extend(_derived_problems(spec, name, column_name, column))
        if (source.path is None) != (source.format == "spark"):
            problems.append(
                _Problem(
                    f"inputs.{name}.path",
                    "a file input needs its path; a Spark table (format spark) takes none: "
                    "name it with table",
                )
            )
        relative = Path(source.path or ".")
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(
                _Problem(
                    f"inputs.{name}.path",
                    "must be a path inside the spec's folder (no '..', not absolute): move the "
                    "data next to the spec",
                )
            )
        for reference, target in source.references.items():
            target_input = target.split(".", 1)[0]
            if target_input not in spec.inputs or target_input == name:
                problems.append(
                    _Problem(
                        f"inputs.{name}.references.{reference}",
                        f"'{target}' must name another input and its column (INPUT.COLUMN)",
                    )
                )
        if (source.format in ("duckdb", "spark")) != (source.table is not None):
            problems.append(
                _Problem(
                    f"inputs.{name}.table",
                    "formats duckdb and spark need the table to read, and only they take one",
                )
            )
        if source.format == "spark" and spec.engine.name not in ("auto", "spark"):
            problems.append(
                _Problem(
                    f"inputs.{name}.format",
                    "a Spark table is read by the spark engine: set engine.name to spark (or auto)",
                )
            )
        if source.identifier in source.columns:
            problems.append(
                _Problem(
                    f"inputs.{name}.identifier",
                    "the identifier must not also be a categorical column: remove it from columns",
                )
            )

    for name, category in spec.categories.items():
        problems.extend(_groups_problems(spec, name, category))

    problems.extend(_unit_problems(spec))

    seen_tables: set[str] = set()
    for index, table in enumerate(spec.tables):
        where = f"tables[{index}]"
        if table.name in seen_tables:
            problems.append(_Problem(f"{where}.name", f"table name '{table.name}' is used twice"))
        seen_tables.add(table.name)
        table_input = spec.inputs.get(table.input)
        if table_input is None:
            problems.append(
                _Problem(
                    f"{where}.input",
                    f"no input named '{table.input}': expected one of {sorted(spec.inputs)}",
                )
            )
            continue
        if len(set(table.by)) != len(table.by):
            problems.append(_Problem(f"{where}.by", "a column is listed twice: list it once"))
        for position, by_column in enumerate(table.by):
            if by_column in PUBLISHED_COLUMNS:
                problems.append(
                    _Problem(
                        f"{where}.by[{position}]",
                        f"'{by_column}' is the name of a column every published table has "
                        f"({', '.join(PUBLISHED_COLUMNS)}): rename that column in the input",
                    )
                )
            elif by_column not in table_input.columns:
                problems.append(
                    _Problem(
                        f"{where}.by[{position}]",
                        f"input '{table.input}' has no categorical column '{by_column}': declare "
                        f"it under inputs.{table.input}.columns",
                    )
                )

    seen_shares: set[str] = set()
    for index, share in enumerate(spec.shares):
        where = f"shares[{index}]"
        if share.name in seen_shares or share.name in seen_tables:
            problems.append(_Problem(f"{where}.name", f"name '{share.name}' is used twice"))
        seen_shares.add(share.name)
        problems.extend(_share_problems(spec, share, where))
    return problems


def _unit_problems(spec: ReleaseSpec) -> list[_Problem]:
    """Every input names a declared unit, every declared unit is some input's, and every
    unit an input's records reach through references is bounded (or refused, where the
    bounds could not hold)."""
    problems: list[_Problem] = []
    declared = spec.privacy.units
    for name, source in spec.inputs.items():
        if source.unit not in declared:
            problems.append(
                _Problem(
                    f"inputs.{name}.unit",
                    f"no privacy unit named '{source.unit}': expected one of "
                    f"{sorted(declared)} (declared under privacy.units)",
                )
            )
    named = {source.unit for source in spec.inputs.values()}
    for unit in declared:
        if unit not in named:
            problems.append(
                _Problem(
                    f"privacy.units.{unit}",
                    "no input's identifier names this unit: set inputs.NAME.unit, or remove it",
                )
            )
    if problems:
        return problems
    for name, source in spec.inputs.items():
        problems.extend(_reach_problems(spec, name, source))
    return problems


def _reach_problems(spec: ReleaseSpec, name: str, source: Input) -> list[_Problem]:
    where = f"inputs.{name}"
    try:
        reaches = spec.reaches(name)
    except _CycleError as error:
        return [
            _Problem(
                f"{where}.references",
                f"the references go round in a circle ({error}); a record must not depend on "
                "itself: remove one of them",
            )
        ]
    problems: list[_Problem] = []
    linked: dict[str, list[Reach]] = {}
    for reach in reaches:
        if not reach.through:
            continue
        title = spec.unit(reach.unit).title
        if reach.unit == source.unit:
            problems.append(
                _Problem(
                    f"{where}.references.{reach.through[0].column}",
                    f"the records reach a second {title} through {reach.path}, besides the "
                    f"one named by {source.identifier}; the bounds cannot cover two people "
                    "of one unit in a record: remove this reference",
                )
            )
            continue
        linked.setdefault(reach.unit, []).append(reach)
    for unit, paths in linked.items():
        title = spec.unit(unit).title
        if len(paths) > 1:
            problems.append(
                _Problem(
                    f"{where}.references",
                    f"the records reach each {title} by {len(paths)} paths ("
                    + "; ".join(reach.path for reach in paths)
                    + "); a record could then depend on two different people of this unit: "
                    "keep one path",
                )
            )
        elif unit not in source.linked_units:
            problems.append(
                _Problem(
                    f"{where}.linked_units",
                    f"the records depend on each {title} through {paths[0].path}, so "
                    f"removing one {title} removes all of theirs: bound them with "
                    f"linked_units: {{{unit}: {{max_records_per_person: N}}}} (at most N "
                    f"records counted per {title})",
                )
            )
    for unit in source.linked_units:
        if unit not in linked:
            problems.append(
                _Problem(
                    f"{where}.linked_units.{unit}",
                    f"the records do not reach unit '{unit}' through references: remove it",
                )
            )
    if len(source.linked_units) > 1:
        problems.append(
            _Problem(
                f"{where}.linked_units",
                "an input may be bounded for one linked unit only (records about people of "
                "three units at once are not supported): split the input",
            )
        )
    if source.linked_units and source.max_records_per_person != 1:
        problems.append(
            _Problem(
                f"{where}.max_records_per_person",
                "an input bounded for a linked unit counts each person once: set it to 1 "
                "(each person's columns must then be the same on all their records)",
            )
        )
    return problems


def _groups_problems(spec: ReleaseSpec, name: str, category: Category) -> list[_Problem]:
    if category.groups is None:
        return []
    where = f"categories.{name}.groups"
    finer = spec.categories.get(category.groups.of)
    if finer is None or category.groups.of == name:
        return [_Problem(f"{where}.of", f"no other category set named '{category.groups.of}'")]
    listed = [key for members in category.groups.members.values() for key in members]
    if sorted(listed) != sorted(finer.values):
        return [
            _Problem(
                f"{where}.members",
                f"every key of '{category.groups.of}' must be in exactly one group: check "
                "for keys missing, repeated or not declared",
            )
        ]
    return []


def _derived_problems(
    spec: ReleaseSpec, name: str, column_name: str, column: Column
) -> list[_Problem]:
    if column.derived_from is None:
        return []
    where = f"inputs.{name}.columns.{column_name}.from"
    source = spec.inputs[name].columns.get(column.derived_from)
    category = spec.categories.get(column.categories)
    if source is None or source.derived_from is not None:
        return [_Problem(where, f"'{column.derived_from}' is not a column read from this input")]
    if category is None or category.groups is None or category.groups.of != source.categories:
        return [
            _Problem(
                where,
                f"categories.{column.categories} needs groups of '{source.categories}' to "
                f"derive this column from '{column.derived_from}'",
            )
        ]
    return []


def _share_problems(spec: ReleaseSpec, share: Share, where: str) -> list[_Problem]:
    table = next((t for t in spec.tables if t.name == share.table), None)
    if table is None:
        return [_Problem(f"{where}.table", f"no table named '{share.table}'")]
    problems: list[_Problem] = []
    for part in ("numerator", "denominator"):
        selection: dict[str, list[str]] = getattr(share, part)
        for column, values in selection.items():
            if column not in table.by:
                problems.append(
                    _Problem(
                        f"{where}.{part}.{column}",
                        f"table '{table.name}' is not broken down by '{column}': "
                        f"expected one of {table.by}",
                    )
                )
                continue
            declared = spec.inputs.get(table.input)
            column_spec = declared.columns.get(column) if declared else None
            category = spec.categories.get(column_spec.categories) if column_spec else None
            if category is None:
                continue  # the table's own problem is reported under tables[...]
            for position, value in enumerate(values):
                if value not in category.values:
                    problems.append(
                        _Problem(
                            f"{where}.{part}.{column}[{position}]",
                            f"'{value}' is not a declared key of '{column}'",
                        )
                    )
    for column, values in share.numerator.items():
        allowed = share.denominator.get(column)
        if allowed is not None and not set(values) <= set(allowed):
            problems.append(
                _Problem(
                    f"{where}.numerator.{column}",
                    "the numerator must be part of the denominator: add these keys to "
                    f"denominator.{column}",
                )
            )
    return problems


# Names the package and the site generate beside the spec's tables: a table of the same
# name would overwrite the generated resource or page (headline-shares.csv, the site's
# tables/index.md) or fail validation after the noise is drawn.
# Names of what a package or its site writes beside the tables: the shares' resource, the
# site's list of tables, the README's and changelog's resources and the noisy measurements.
RESERVED_TABLE_NAMES = frozenset(
    {"headline-shares", "index", "readme-md", "changelog-md", "noisy-measurements"}
)
# A table's unrounded estimates are the resource TABLE-unrounded.
RESERVED_TABLE_SUFFIX = "-unrounded"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _cells(spec: ReleaseSpec, table: Table) -> int | None:
    """The number of key combinations of a table (totals not counted); None when its
    columns or categories are not declared (reported with the references)."""
    source = spec.inputs.get(table.input)
    sizes = []
    for column in table.by:
        declared = source.columns.get(column) if source else None
        category = spec.categories.get(declared.categories) if declared else None
        if category is None:
            return None
        sizes.append(len(category.values))
    return math.prod(sizes)


def _limit_problems(spec: ReleaseSpec) -> list[_Problem]:
    """The sizes and losses of :data:`LIMITS`, so a valid spec releases in bounded time."""
    problems: list[_Problem] = []
    for name, category in spec.categories.items():
        if len(category.values) > LIMITS.keys_per_category:
            problems.append(
                _Problem(
                    f"categories.{name}.values",
                    f"{len(category.values):,} keys; a category may have at most "
                    f"{LIMITS.keys_per_category:,}: group the keys (see groups)",
                )
            )
    if len(spec.tables) > LIMITS.tables_per_release:
        problems.append(
            _Problem(
                "tables",
                f"{len(spec.tables):,} tables, more than the {LIMITS.tables_per_release:,} a "
                "release may have: split them between releases, or merge tables that share "
                "their columns",
            )
        )
    sizes = [_cells(spec, table) for table in spec.tables]
    if problems or None in sizes:
        return problems  # the sizes below need every table's keys
    per_input: dict[str, int] = {}
    for index, (table, cells) in enumerate(zip(spec.tables, sizes, strict=True)):
        assert cells is not None
        per_input[table.input] = per_input.get(table.input, 0) + cells
        if cells > LIMITS.cells_per_table:
            problems.append(
                _Problem(
                    f"tables[{index}].by",
                    f"the table has {cells:,} cells (key combinations), more than the "
                    f"{LIMITS.cells_per_table:,} a table may have: break it down by fewer "
                    "or coarser columns",
                )
            )
    for name, cells in per_input.items():
        if cells > LIMITS.cells_per_input:
            problems.append(
                _Problem(
                    f"inputs.{name}",
                    f"its tables have {cells:,} cells together, more than the "
                    f"{LIMITS.cells_per_input:,} the tables of one input may have (they are "
                    "estimated together): drop or coarsen a table",
                )
            )
    if sum(per_input.values()) > LIMITS.cells_per_release:
        problems.append(
            _Problem(
                "tables",
                f"the tables have {sum(per_input.values()):,} cells in all, more than the "
                f"{LIMITS.cells_per_release:,} a release may have: drop or coarsen tables",
            )
        )
    floor = LIMITS.min_table_loss[spec.privacy.loss_name]
    estimates = [spec.truncation_loss(name) for name in spec.truncation_inputs]
    if estimates and min(estimates) < floor:
        # The estimate of what the bounds left out is a measurement like a table's.
        problems.append(
            _Problem(
                "privacy.truncation_share",
                f"the part of the loss that estimates what each input's bounds left out is "
                f"{spec.privacy.loss_name} = {min(estimates):.3g}, below the least a "
                f"measurement may get ({floor:g}): raise privacy.truncation_share, or set it "
                "to 0 to publish no such estimate",
            )
        )
    for index, table in enumerate(spec.tables):
        loss = spec.table_loss(table)
        if loss < floor:
            problems.append(
                _Problem(
                    f"tables[{index}].weight",
                    f"the table's share of the loss is {spec.privacy.loss_name} = {loss:.3g}, "
                    f"below the least a table may get ({floor:g}): its noise would swamp "
                    f"every count; raise privacy.{spec.privacy.loss_name} or this table's "
                    "weight",
                )
            )
    return problems


def _name_problems(spec: ReleaseSpec) -> list[_Problem]:
    """Names that would clash with what the package generates, so the package could not
    be written or would be wrong once the noise is drawn."""
    problems: list[_Problem] = []
    label = spec.disclosure.total_label
    for index, table in enumerate(spec.tables):
        where = f"tables[{index}]"
        if table.name in RESERVED_TABLE_NAMES or table.name.endswith(RESERVED_TABLE_SUFFIX):
            problems.append(
                _Problem(
                    f"{where}.name",
                    f"'{table.name}' is the name of something the package generates (the "
                    f"names {', '.join(sorted(RESERVED_TABLE_NAMES))} and names ending in "
                    f"'{RESERVED_TABLE_SUFFIX}' are its own): choose another table name",
                )
            )
        source = spec.inputs.get(table.input)
        for column in table.by:
            declared = source.columns.get(column) if source else None
            if declared is None or declared.categories not in spec.categories:
                continue  # reported with the references
            if table.totals and label in spec.categories[declared.categories].values:
                problems.append(
                    _Problem(
                        "disclosure.total_label",
                        f"'{label}' is also a key of categories.{declared.categories}, which "
                        f"table '{table.name}' totals: its total rows could not be told from "
                        "that key's rows; change the label or the key",
                    )
                )
    return list({(p.path, p.message): p for p in problems}.values())


def _key_places(spec: ReleaseSpec) -> list[tuple[str, str]]:
    """Every key a table's rows are labelled with, and the names of its key columns."""
    places: list[tuple[str, str]] = [("disclosure.total_label", spec.disclosure.total_label)]
    for name, category in spec.categories.items():
        places += [(f"categories.{name}.values[{i}]", v) for i, v in enumerate(category.values)]
    for name, source in spec.inputs.items():
        places += [(f"inputs.{name}.columns.{column}", column) for column in source.columns]
    return places


# Keys are shown on one line with single spaces (a page, a chart, a sheet): a line break,
# a tab, a no-break or other special space, or two spaces in a row would make two keys look
# the same ("a  b" and "a b").
_NOT_ONE_LINE = re.compile(r"[^\S ]| {2}")


def _key_problems(spec: ReleaseSpec) -> list[_Problem]:
    """Keys and key column names that would not show as written, on one line."""
    return [
        _Problem(
            where,
            f"'{text}' holds a line break, a tab, a special space or two spaces in a row; a "
            "key is shown on one line with single spaces, so write it that way",
        )
        for where, text in _key_places(spec)
        if _NOT_ONE_LINE.search(text)
    ]


def _lookalike_problems(spec: ReleaseSpec) -> list[_Problem]:
    """Keys a reader could not tell apart: two keys of one category that look the same
    (equal TR39 skeletons, such as 'Kent' and 'Kent' spelt with a Cyrillic e, U+0435),
    and any key or key column name with a word mixing Latin, Greek or Cyrillic letters,
    which is how such lookalikes are typed or pasted."""
    problems: list[_Problem] = []
    for where, text in _key_places(spec):
        mixed = lookalike.mixed_script(text)
        if mixed:
            word, odd = mixed
            problems.append(
                _Problem(
                    where,
                    f"'{text}' mixes Latin, Greek or Cyrillic letters in the word '{word}' "
                    f"({lookalike.code_point(odd)} is of another script than its first "
                    "letter), so it can look like another key: type the word again in one "
                    "script",
                )
            )
    for name, category in spec.categories.items():
        seen: dict[str, int] = {}
        for index, key in enumerate(category.values):
            first = seen.setdefault(lookalike.skeleton(key), index)
            if first != index:
                problems.append(
                    _Problem(
                        f"categories.{name}.values[{index}]",
                        f"'{key}' looks the same as '{category.values[first]}' "
                        f"(values[{first}]) but is another key ("
                        f"{lookalike.difference(key, category.values[first])}), so readers "
                        "could not tell their rows apart: type both keys again in one script, "
                        "or keep one",
                    )
                )
    return problems


def _spreadsheet_problems(spec: ReleaseSpec) -> list[_Problem]:
    """Text that lands in a CSV cell and that a spreadsheet would run as a formula."""
    places = _key_places(spec)
    places += [(f"shares[{i}].title", share.title) for i, share in enumerate(spec.shares)]
    # A share's numerator and denominator in words start with what its table counts.
    places += [(f"tables[{i}].counts", table.counts) for i, table in enumerate(spec.tables)]
    return [
        _Problem(
            where,
            f"'{text}' starts with '{text[0]}', so a spreadsheet opening the CSV would run it "
            "as a formula: reword it so it starts with a letter or digit (for example "
            "'Minus 5 to 0' or 'Under 0' instead of '-5 to 0')",
        )
        for where, text in places
        if text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text)
    ]


class _SpecLoader(yaml.SafeLoader):
    """A safe loader for specs anyone may have written: duplicate keys, keys that are not
    plain text, nesting deeper than :data:`LIMITS` allows and aliases that expand beyond
    it or refer to themselves are each a YAML error at their line. Values no Python type
    can hold (an integer of thousands of digits) stay text for the validation to report
    at their YAML path; dates stay text too."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # Composing is recursive: stop before Python's own recursion limit is reached.
        self._depth += 1
        try:
            if self._depth > LIMITS.yaml_depth:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {LIMITS.yaml_depth} levels deep; a spec needs a few",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as error:
            if isinstance(node, yaml.ScalarNode) and node.tag != _TIMESTAMP:
                # A number too large for Python (thousands of digits): keep what was
                # written, so the spec's validation reports it at its YAML path.
                return node.value
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a value that cannot be read ({type(error).__name__})",
                node.start_mark,
            ) from None


# Dates are read by the spec's own validation (which names the YAML path of an impossible
# one such as 2024-02-30), not by YAML: to YAML they are text, like any other value.
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases refer to themselves or expand to more values than
    :data:`LIMITS` allows (each alias counts as a full copy of what it names)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to the node that contains it", node.start_mark
            )
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        total = 1 + sum(size(child) for child in children)
        if total > LIMITS.yaml_values:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"expands to more than {LIMITS.yaml_values:,} values through aliases",
                node.start_mark,
            )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


_MERGE = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # A merge key (`<<: *defaults`) brings in the keys of another mapping; a key written
    # beside it overrides the merged one, as YAML says, so only written keys are compared.
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be plain text, not a list or a mapping (`? [a, b]`)",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node)
        if isinstance(key, str):
            key = unicodedata.normalize("NFC", key)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key '{key}' appears twice (compared in Unicode NFC form): keep one",
                mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_SpecLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

# Controls have no place in a spec: a line break is the only one text may hold (a tab is
# kept too). Anything else (escape sequences, C1 controls, DEL) is refused where it is, and
# so are the invisible characters that reorder or hide text wherever it is shown (a CSV
# cell, a page, a terminal): bidirectional embeddings, overrides and isolates, the zero-width
# space and word joiner, line and paragraph separators and the byte order mark. Two keys
# that differ only by one of them would look identical. (The marks that right-to-left and
# joined scripts need, U+200C to U+200F and U+061C, are kept.)
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
# What YAML may give a spec: text, numbers, true/false, null, lists and mappings. Explicit
# tags such as !!binary (bytes that would skip the checks on text) or !!set give others.
_PLAIN = (str, int, float, bool, type(None), list, dict)
_YAML_KIND = {bool: "true/false", int: "a number", float: "a number", type(None): "null"}


def _clean(value: Any, path: tuple[int | str, ...], problems: list[_Problem]) -> Any:
    """``value`` with every string (keys too) in Unicode NFC form, so that text typed in
    two normal forms ("Café" composed or decomposed) is one key; control characters and
    overlong text are reported with their YAML path."""
    if not isinstance(value, _PLAIN):
        problems.append(
            _Problem(
                _yaml_path(path),
                f"a YAML tag made it {type(value).__name__}, not text, a number or a list: "
                "remove the tag (such as !!binary or !!set)",
            )
        )
        return None
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value)
        where = _yaml_path(path)
        control = _CONTROL.search(text)
        if control:
            kind = "control" if ord(control.group()) < 0x100 else "invisible formatting"
            problems.append(
                _Problem(
                    where,
                    f"contains the {kind} character U+{ord(control.group()):04X}; remove it",
                )
            )
        if len(text) > LIMITS.text_chars:
            problems.append(
                _Problem(
                    where,
                    f"is {len(text):,} characters long; text is limited to "
                    f"{LIMITS.text_chars:,} (move long explanations to a linked document)",
                )
            )
        return text
    if isinstance(value, list):
        return [_clean(item, (*path, index), problems) for index, item in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                problems.append(
                    _Problem(
                        _yaml_path((*path, str(key))),
                        f"this key is read by YAML as {_YAML_KIND.get(type(key), 'a value')}, "
                        "not text: put it in quotes",
                    )
                )
        return {
            _clean(key, (*path, str(key)), problems): _clean(item, (*path, str(key)), problems)
            for key, item in value.items()
        }
    return value


def parse(text: str, *, name: str = "release spec", base_dir: Path = Path(".")) -> ReleaseSpec:
    """Parse a spec from YAML text. Raises :class:`SpecError` listing every problem."""
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(error, "problem", None) or "not valid YAML"
        if isinstance(error, yaml.reader.ReaderError):
            # A character YAML refuses anywhere (NUL, most controls): say which and where
            # (PyYAML gives the character as its code).
            code = error.character if isinstance(error.character, int) else ord(error.character)
            reason = (
                f"the character U+{code:04X} at character {error.position + 1} is not "
                "allowed in YAML; remove it"
            )
        raise SpecError(f"{name}: {where}invalid YAML ({reason}); fix the syntax") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{name}: expected a mapping with the keys release, privacy, categories, "
            "inputs and tables; see the release spec reference"
        )
    problems: list[_Problem] = []
    data = _clean(data, (), problems)
    if not problems:
        try:
            spec = ReleaseSpec.model_validate({**data, "base_dir": base_dir})
        except ValidationError as error:
            problems = _pydantic_problems(error)
        else:
            problems = [
                *_reference_problems(spec),
                *_limit_problems(spec),
                *_name_problems(spec),
                *_spreadsheet_problems(spec),
                *_key_problems(spec),
                *_lookalike_problems(spec),
            ]
    if problems:
        raise SpecError([f"{name}: {p.path}: {p.message}" for p in problems])
    return spec


def load(path: str | Path) -> ReleaseSpec:
    """Load and validate a release spec file; relative paths in it start from its folder.

    The spec must be a regular file (a pipe, a device or a folder is refused, without
    blocking on it) of at most ``LIMITS.spec_bytes``.
    """
    spec_path = Path(path)
    try:
        raw = files.read_regular(spec_path, limit=LIMITS.spec_bytes)
    except files.NotARegularFile as error:
        raise SpecError(
            f"{spec_path}: the release spec {error.what}; give the path to a YAML file"
        ) from None
    except FileNotFoundError:
        raise SpecError(
            f"{spec_path}: the release spec does not exist; give the path to a YAML file"
        ) from None
    except ValueError:
        raise SpecError(
            f"{spec_path}: the release spec is larger than {LIMITS.spec_bytes >> 20} MB; "
            "a spec is a short YAML file"
        ) from None
    except OSError as error:
        raise SpecError(f"{spec_path}: cannot be read ({error.strerror}); check it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{spec_path}: not UTF-8 text; save the spec as UTF-8") from None
    return parse(text, name=str(spec_path), base_dir=spec_path.parent.resolve())
