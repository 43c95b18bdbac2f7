"""Read the private inputs once, check them against the spec, and stage what is used.

Each input is streamed as Arrow record batches (pyarrow's CSV reader, Parquet row groups,
or a DuckDB query), so memory stays bounded whatever the size of the file: Polars' own
CSV reader maps the whole file into memory. Every batch is checked (counts only) and
what the release uses of it is written to a private staging folder as Parquet: the
identifier as a 64-bit hash (never in clear), the categorical columns as enums and the
columns that references compare as hashes. Duplicates and references between inputs are
then checked on the staged columns, and the measurements read the staged files, not the
inputs again.

Only the identifier, the declared categorical columns and the columns that references
need are ever selected. Problems are reported as counts and column names, never as the
offending values: those are private (reader messages, which can quote rows, are never
shown).
"""

from __future__ import annotations

import csv
import io
import os
import stat
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import polars.selectors as cs

from publisher import files, staging
from publisher.errors import InputError
from publisher.progress import Progress, quiet
from publisher.spec import Input, ReleaseSpec

__all__ = [
    "Counting",
    "InputSummary",
    "Staged",
    "check",
    "identifier_hash",
    "linked_column",
    "load",
    "reference_column",
]

# About 16 MB of CSV text per batch (some 300,000 rows of the demo's inputs): large enough
# to read fast, small enough that memory does not grow with the file.
_CSV_BLOCK_BYTES = 16 << 20
_BATCH_ROWS = 500_000
# A header row is read whole (it holds names only): longer than this, or with more
# columns than this, it is refused rather than read into memory.
_HEADER_BYTES = 64 << 20
_HEADER_COLUMNS = 1_000_000
# Identifiers and the columns references compare are staged as seeded 64-bit hashes: a
# fraction of the memory of the text, and no identifier in clear on disk. A collision
# could only merge two people into one, whose records are then bounded together (the
# protection is never weaker), or hide one unmatched reference (odds about 1 in 10^12).
_IDENTIFIER_SEED = 20231121
_KEY_SEED = 20240611
_REFERENCE = "__ref:"
_SECOND = "__ref2:"
_LINKED = "__unit:"


def linked_column(unit: str) -> str:
    """The staged column that holds, for each record, the hashed identifier of the person
    of ``unit`` it depends on through the input's references (see ``linked_units``)."""
    return _LINKED + unit


class InputSummary(dict[str, int]):
    """Row counts per input, from :func:`check`. Never published: it is not noisy."""


@dataclass(frozen=True)
class Staged:
    """An input's staged, checked columns: a scan of the Parquet parts in ``folder``."""

    frame: pl.LazyFrame
    rows: int
    folder: Path


class Counting:
    """How the checks that span a whole input (or two) are counted: by Polars, streaming
    from the staged files. An engine that works out of core (DuckDB) counts them itself,
    on the same staged files (:class:`publisher.engines.duckdb.DuckDBCounting`). Counts
    only: no value is ever returned."""

    def distinct(self, staged: Staged, columns: list[str]) -> int:
        """How many distinct combinations of ``columns`` the input has (missing counts)."""
        return int(
            staged.frame.select(pl.struct(columns).n_unique()).collect(engine="streaming").item()
        )

    def unmatched(self, staged: Staged, column: str, target: Staged, target_column: str) -> int:
        """Rows whose ``column`` matches no ``target_column`` of ``target``."""
        known = target.frame.select(pl.col(target_column).alias("key")).unique()
        unmatched = (
            staged.frame.select(pl.col(column).alias("key"))
            .join(known, on="key", how="anti")
            .select(pl.len())
        )
        return int(unmatched.collect(engine="streaming").item())

    def differing(
        self, staged: Staged, identifier: str, columns: Mapping[str, Sequence[str]]
    ) -> dict[str, int]:
        """For each of ``columns`` (with its keys: the values it can hold once staged):
        the people whose records hold more than one value."""
        found = (
            staged.frame.group_by(identifier)
            .agg(pl.col(columns).n_unique())
            .select((pl.col(column) > 1).sum() for column in columns)
            .collect(engine="streaming")
            .row(0, named=True)
        )
        return {column: int(count) for column, count in found.items()}


def identifier_hash(identifier: pl.Expr) -> pl.Expr:
    """An identifier as it is staged: its text's seeded 64-bit hash."""
    return _text_hash(identifier, _IDENTIFIER_SEED)


@contextmanager
def load(
    spec: ReleaseSpec,
    progress: Progress = quiet,
    *,
    links: bool = True,
    counting: Counting | None = None,
) -> Iterator[dict[str, pl.LazyFrame]]:
    """Check every input, then give scans of their staged, checked columns, valid inside
    the ``with`` block: the identifier (hashed by :func:`identifier_hash`) and the
    categorical columns as enums of their categories, derived ones included, and for
    each unit an input is bounded for through references, the linked person
    (:func:`linked_column`).

    With ``links=False``, the linked people are left for the caller to find (an engine
    that joins out of core): the staged hashes of the columns references compare are kept
    instead, named by :func:`reference_column`.

    ``counting`` counts the checks that span whole inputs (by Polars when None).

    Raises :class:`InputError` listing every problem of every input.
    """
    with staging.private_folder() as folder:
        checked = _each_input(spec, folder, progress, links=links, counting=counting)
        yield {name: frame for name, (frame, _) in checked.items()}


def reference_column(column: str) -> str:
    """The staged column holding the hash of ``column``, a column references compare."""
    return _REFERENCE + column


def check(
    spec: ReleaseSpec, progress: Progress = quiet, counting: Counting | None = None
) -> InputSummary:
    """Check every input against the spec; raise :class:`InputError` listing all problems."""
    with staging.private_folder() as folder:
        checked = _each_input(spec, folder, progress, counting=counting)
        return InputSummary({name: rows for name, (_, rows) in checked.items()})


def _each_input(
    spec: ReleaseSpec,
    folder: Path,
    progress: Progress,
    *,
    links: bool = True,
    counting: Counting | None = None,
) -> dict[str, tuple[pl.LazyFrame, int]]:
    counting = counting or Counting()
    problems: list[str] = []
    staged = {}
    for name in spec.inputs:
        try:
            staged[name] = _stage(spec, name, folder, progress, counting)
        except InputError as error:
            problems.extend(error.problems)
    if problems:
        raise InputError(problems)
    progress("Checking references between inputs", None)
    problems = _reference_problems(spec, staged, counting)
    if problems:
        raise InputError(problems)
    problems = [
        problem
        for name in spec.inputs
        for problem in _person_problems(spec, name, staged[name], counting)
    ]
    if problems:
        raise InputError(problems)
    if not links:
        return {
            name: (input.frame.select(~cs.starts_with(_SECOND)), input.rows)
            for name, input in staged.items()
        }
    frames = {name: input.frame for name, input in staged.items()}
    linked = {name: _with_linked_units(spec, name, frames) for name in spec.inputs}
    # Reference keys were staged for the checks and links only: nothing else sees them.
    return {
        name: (
            linked[name].select(~cs.starts_with(_REFERENCE) & ~cs.starts_with(_SECOND)),
            input.rows,
        )
        for name, input in staged.items()
    }


def _stage(
    spec: ReleaseSpec, name: str, folder: Path, progress: Progress, counting: Counting
) -> Staged:
    """Check one input in one pass over its rows and stage its used columns."""
    source = spec.inputs[name]
    path, names, header_bytes = _open(spec, name)
    where = f"{path} (inputs.{name})"
    columns = _used_columns(spec, name)
    problems = _column_problems(where, name, names, columns)
    if problems:
        raise InputError(problems)
    # The file's own spelling of each column (another Unicode form of the spec's name).
    raw = {unicodedata.normalize("NFC", column): column for column in names}
    file_columns = {raw[column]: column for column in columns}
    checks = _value_checks(spec, name)
    counts: Counter[str] = Counter()
    # A folder of its own (not named after the input: names come from the spec).
    staged = Path(tempfile.mkdtemp(prefix="input-", dir=folder))
    try:
        progress(f"Reading and checking {name}", 0.0)
        batches = _batches(path, source, list(file_columns), header_bytes)
        for number, (batch, fraction) in enumerate(batches):
            progress(f"Reading and checking {name}", fraction)
            # A blank line is not a record (readers give it as a row of empty fields).
            batch = batch.rename(file_columns).filter(~pl.all_horizontal(pl.all().is_null()))
            batch = _normalised(batch, _read_columns(source))
            counts.update(batch.select(checks).row(0, named=True))
            _staged_columns(spec, name, batch).write_parquet(staged / f"{number:06d}.parquet")
    except InputError:
        raise
    except Exception:
        # Reader messages (pyarrow, Polars, DuckDB) can quote row contents: never shown.
        detail = (
            " (a row with more or fewer fields than the header, a malformed row, a wrong "
            "delimiter or an encoding other than UTF-8)"
            if source.format == "csv"
            else ""
        )
        raise InputError(
            f"{where}: cannot be read to the end{detail}; check the file's format"
        ) from None
    rows = counts["__rows"]
    if rows == 0:
        raise InputError(f"{where}: the file has a header but no rows; expected data")
    result = Staged(pl.scan_parquet(staged / "*.parquet"), rows, staged)
    if source.unique_identifier:  # counting distinct identifiers is costly: only if asked
        # Two independent 64-bit hashes: a false duplicate would need both to collide.
        both = [source.identifier, _REFERENCE + source.identifier]
        counts["__duplicates"] = rows - counting.distinct(result, both)
    problems = _value_problems(where, name, source, counts)
    if problems:
        raise InputError(problems)
    return result


def _open(spec: ReleaseSpec, name: str) -> tuple[Path, list[str], int]:
    """The input's path, its column names in order and the length of its header in bytes
    (0 for formats without one), checking it can be opened.

    The path must stay inside the spec's folder once links are resolved, and be a regular
    file (or, for Parquet, a folder of regular files): a pipe, a device or a socket is
    refused for what it is, without ever being opened.
    """
    source = spec.inputs[name]
    path = spec.input_path(name)
    where = f"{path} (inputs.{name}.path)"
    if not path.is_relative_to(spec.base_dir.resolve()):
        raise InputError(
            f"{spec.base_dir / (source.path or '.')} (inputs.{name}.path): leads outside the "
            "spec's folder (through a symbolic link); copy or move the data into the spec's folder"
        )
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{where}: the file does not exist; check the path in the spec") from None
    except OSError as error:
        raise InputError(f"{where}: cannot be read ({error.strerror}); check it") from None
    if stat.S_ISDIR(mode) and source.format != "parquet":
        raise InputError(
            f"{where}: this is a directory, not a file; point it at a file (a folder is read "
            "only as the parts of one Parquet table, with format: parquet)"
        )
    if stat.S_ISDIR(mode):
        for relative, what in files.walk_regular(path):
            if what is not None:
                raise InputError(
                    f"{where}: holds {relative}, which is {what}; a Parquet folder may hold "
                    "only regular files (no links, pipes or devices)"
                )
    elif not stat.S_ISREG(mode):
        raise InputError(
            f"{where}: is {files.describe(mode)}, not a regular file; point it at the data file"
        )
    elif os.stat(path).st_size == 0:
        raise InputError(f"{where}: the file is empty; expected a header row and data")
    try:
        if source.format == "csv":
            return (path, *_csv_header(path))
        if source.format == "parquet":
            table = _parquet(path)
            if not table.files:
                raise InputError(
                    f"{where}: the folder holds no Parquet files; point it at a table's parts"
                )
            return path, list(table.schema.names), 0
        return path, _duckdb_columns(path, source, f"{path} (inputs.{name}.table)"), 0
    except InputError:
        raise
    except _HeaderTooLarge as error:
        raise InputError(f"{where}: {error}; check the file is CSV with a header row") from None
    except Exception:
        # Reader messages (pyarrow, DuckDB) can quote row contents, so they are never shown.
        raise InputError(
            f"{where}: cannot be read as {source.format.upper()}"
            + (" (UTF-8, comma-separated, with a header row)" if source.format == "csv" else "")
            + "; check the file's format"
        ) from None


class _HeaderTooLarge(Exception):
    """A header row beyond what is read whole (its message says which limit)."""


def _csv_header(path: Path) -> tuple[list[str], int]:
    """The header's names and its length in bytes (only the header is decoded here: a
    bad byte further on is the reader's to report). A quoted name may span lines, so the
    header ends at the first line break outside quotes. It is found by counting quotes
    and separators a block at a time, so memory stays bounded until the header is known
    to be within :data:`_HEADER_BYTES` and :data:`_HEADER_COLUMNS`."""
    with files.open_regular(path) as stream:
        length = _header_length(stream)
        stream.seek(0)
        text = stream.read(length).decode("utf-8")
    header = next(csv.reader(io.StringIO(text.removeprefix("\ufeff"))), None)
    if not header:
        raise ValueError("no header row")
    return header, length


def _header_length(stream: BinaryIO) -> int:
    """Bytes up to and including the first line break outside quotes (or the whole file)."""
    quotes = separators = offset = 0
    while chunk := stream.read(1 << 20):
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            quotes += chunk.count(b'"', start, newline)
            if quotes % 2 == 0:
                separators += chunk.count(b",", start, newline)
                _check_header_size(offset + newline + 1, separators)
                return offset + newline + 1
            start = newline + 1
        quotes += chunk.count(b'"', start)
        separators += chunk.count(b",")
        offset += len(chunk)
        _check_header_size(offset, separators)
    return offset


def _check_header_size(length: int, separators: int) -> None:
    if length > _HEADER_BYTES:
        raise _HeaderTooLarge(
            f"the header row is longer than {_HEADER_BYTES >> 20} MB (or a quote in it is "
            "never closed)"
        )
    if separators >= _HEADER_COLUMNS:
        raise _HeaderTooLarge(f"the header row has more than {_HEADER_COLUMNS:,} columns")


def _batches(
    path: Path, source: Input, columns: list[str], header_bytes: int
) -> Iterator[tuple[pl.DataFrame, float]]:
    """The input's ``columns``, as text, in batches of bounded size, each with the fraction
    of the input read once it is processed (for progress reports)."""
    if source.format == "csv":
        yield from _csv_batches(path, columns, header_bytes)
    elif source.format == "parquet":
        table = _parquet(path)
        yield from _counted(
            # One batch read ahead, one file at a time: pyarrow's defaults (16 batches of
            # 4 files) hold gigabytes of a large table in memory.
            table.to_batches(
                columns=columns,
                batch_size=_BATCH_ROWS,
                batch_readahead=1,
                fragment_readahead=1,
            ),
            table.count_rows(),
        )
    else:
        yield from _duckdb_batches(path, source, columns)


def _csv_batches(
    path: Path, columns: list[str], header_bytes: int
) -> Iterator[tuple[pl.DataFrame, float]]:
    # Imported here, like the other readers: commands that read no input (plan, validate,
    # site) should not pay for loading pyarrow.
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    # The reader's first block must hold the whole header, however long it is.
    block = max(_CSV_BLOCK_BYTES, header_bytes + (1 << 20))
    # pyarrow opens the path itself (it reads ahead on threads of its own, which must not
    # outlive a Python file object); _open has just checked it is a regular file.
    reader = pa_csv.open_csv(
        str(path),
        read_options=pa_csv.ReadOptions(block_size=block),
        # Quoted fields may hold line breaks; every row must have the header's fields.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            # Every field is text, so types are checked by us, not guessed; an empty field
            # is missing, as in Polars' reader.
            column_types={column: pa.string() for column in columns},
            include_columns=columns,
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=False,
        ),
    )
    size = path.stat().st_size
    for number, record_batch in enumerate(reader, start=1):
        # Each batch is one block of the file (the last one, less).
        yield _as_text(record_batch), min(1.0, number * block / size)


def _counted(record_batches: Iterable[Any], total: int) -> Iterator[tuple[pl.DataFrame, float]]:
    """Record batches as text frames, with the fraction of ``total`` rows read."""
    done = 0
    for record_batch in record_batches:
        done += record_batch.num_rows
        yield _as_text(record_batch), min(1.0, done / max(total, 1))


def _parquet(path: Path) -> Any:
    """A Parquet file, or a folder of Parquet parts as Spark, Hive, DuckDB or Polars write
    one table (``key=value`` subfolders are columns; names starting with ``_`` or ``.``,
    such as Spark's ``_SUCCESS``, are not data)."""
    import pyarrow.dataset as pa_dataset

    return pa_dataset.dataset(path, format="parquet", partitioning="hive")


def _as_text(record_batch: Any) -> pl.DataFrame:
    """An Arrow record batch as a frame of text columns."""
    frame = pl.from_arrow(record_batch)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(pl.all().cast(pl.String))


def _duckdb_columns(path: Path, source: Input, where: str) -> list[str]:
    with _duckdb(path) as connection:
        found = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [source.table],
        ).fetchall()
    if not found:
        raise InputError(f"{where}: the database has no table '{source.table}'; check the name")
    return [row[0] for row in found]


def _duckdb_batches(
    path: Path, source: Input, columns: list[str]
) -> Iterator[tuple[pl.DataFrame, float]]:
    """The declared columns of a DuckDB table: DuckDB reads and projects, in batches."""
    assert source.table is not None  # checked by the spec
    table = _quoted(source.table)
    selected = ", ".join(_quoted(column) for column in columns)
    with _duckdb(path) as connection:
        ((total,),) = connection.execute(f"SELECT count(*) FROM {table}").fetchall()  # noqa: S608
        query = connection.sql(f"SELECT {selected} FROM {table}")  # noqa: S608
        with query.to_arrow_reader(batch_size=_BATCH_ROWS) as reader:
            yield from _counted(reader, total)


# Bytes per record of the demo's CSV files (2.3 GB for 36 million records): how a CSV's
# records are estimated without reading it.
CSV_BYTES_PER_RECORD = 64


def records_estimate(spec: ReleaseSpec, name: str) -> int:
    """How many records an input holds, without reading its rows: a Parquet file or
    folder's from its footers, a DuckDB table's from DuckDB, a CSV's from its size (at
    :data:`CSV_BYTES_PER_RECORD`); 0 for what cannot be opened (the checks say why) and
    for a Spark table."""
    source = spec.inputs[name]
    if source.path is None:
        return 0
    path = spec.input_path(name)
    try:
        # Nothing that could block or lead elsewhere is opened (a FIFO, a device, a link):
        # the checks refuse it, saying what it is.
        if not _plain(path):
            return 0
        if source.format == "parquet":
            return int(_parquet(path).count_rows())
        if source.format == "duckdb":
            assert source.table is not None  # checked by the spec
            with _duckdb(path) as connection:
                query = f"SELECT count(*) FROM {_quoted(source.table)}"  # noqa: S608
                ((total,),) = connection.execute(query).fetchall()
            return int(total)
        return path.stat().st_size // CSV_BYTES_PER_RECORD
    except Exception:  # any reader's failure: the checks report it
        return 0


def _plain(path: Path) -> bool:
    """Whether ``path`` is a regular file, or a folder holding only folders and regular
    files, none of them a link."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        return all(what is None for _, what in files.walk_regular(path))
    return files.kind_problem(path, follow_links=False) is None


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@contextmanager
def _duckdb(path: Path) -> Iterator[Any]:
    try:
        import duckdb
    except ImportError:
        raise InputError(
            f"{path}: reading DuckDB needs the duckdb package: pip install 'publisher[duckdb]'"
        ) from None
    with duckdb.connect(str(path), read_only=True) as connection:
        yield connection


def _column_problems(where: str, name: str, names: list[str], wanted: list[str]) -> list[str]:
    # Names are compared in Unicode NFC form, as the spec's are.
    names = [unicodedata.normalize("NFC", column) for column in names]
    # Which of two columns of the same name is meant?
    repeated = [column for column in wanted if names.count(column) > 1]
    if repeated:
        return [
            f"{where}: the header repeats column "
            + ", ".join(f"'{column}'" for column in repeated)
            + "; keep one column of each name"
        ]
    missing = [column for column in wanted if column not in names]
    if not missing:
        return []
    hint = ""
    if len(names) == 1 and any(sep in names[0] for sep in ";\t|"):
        hint = " (the header is one column: is the file comma-separated?)"
    return [
        f"{where}: missing column{'s' if len(missing) > 1 else ''} "
        + ", ".join(f"'{column}'" for column in missing)
        + f"{hint}; expected the columns declared under inputs.{name}"
    ]


def _normalised(batch: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The categorical ``columns`` with their values in Unicode NFC form, as the spec's keys
    are, so that "Café" typed composed or decomposed is one key. Only the distinct values
    that change are rewritten (most data is in NFC already)."""
    changes = []
    for column in columns:
        distinct = batch.get_column(column).drop_nulls().unique()
        changed = distinct.filter(distinct.str.normalize("NFC") != distinct)
        if changed.len():
            mapping = dict(zip(changed, changed.str.normalize("NFC"), strict=True))
            changes.append(pl.col(column).replace(mapping))
    return batch.with_columns(changes) if changes else batch


def _value_checks(spec: ReleaseSpec, name: str) -> list[pl.Expr]:
    """Per batch: rows, empty identifiers, values outside the keys (summed over batches)."""
    source = spec.inputs[name]
    identifier = pl.col(source.identifier)
    empty_identifier = identifier.is_null() | (identifier.str.strip_chars() == "")
    checks = [pl.len().alias("__rows"), empty_identifier.sum().alias("__ids")]
    for column in _read_columns(source):
        keys = spec.categories[source.columns[column].categories].values
        outside = ~pl.col(column).is_in(keys) | pl.col(column).is_null()
        checks.append(outside.sum().alias(column))
    return checks


def _value_problems(where: str, name: str, source: Input, counts: Counter[str]) -> list[str]:
    problems = []
    if counts["__ids"]:
        problems.append(
            f"{where}: column '{source.identifier}' (the identifier) has {counts['__ids']:,} "
            "empty values; every record needs the person it is about"
        )
    if counts["__duplicates"]:
        problems.append(
            f"{where}: column '{source.identifier}' (the identifier) has "
            f"{counts['__duplicates']:,} duplicate values, but each person must appear once "
            f"(inputs.{name}.unique_identifier); remove the duplicates"
        )
    for column in _read_columns(source):
        declared = source.columns[column]
        outside = counts[column]
        if outside and declared.on_unknown == "error":
            problems.append(
                f"{where}: column '{column}' has {outside:,} values that are empty or outside "
                f"categories.{declared.categories}; add the keys to the spec or set "
                f"inputs.{name}.columns.{column}.on_unknown: map"
            )
    return problems


def _staged_columns(spec: ReleaseSpec, name: str, batch: pl.DataFrame) -> pl.DataFrame:
    """What is staged of a batch: the hashed identifier, the categorical columns as enums
    (unknown values mapped where the spec says so, derived columns added) and the hashed
    keys that references compare."""
    source = spec.inputs[name]
    keys = [
        _key_hash(pl.col(column)).alias(_REFERENCE + column) for column in _hashed_keys(spec, name)
    ]
    # Referenced keys get a second, independent hash: a false duplicate needs both to collide.
    keys += [
        _text_hash(pl.col(column), _KEY_SEED + 1).alias(_SECOND + column)
        for column in _referenced_keys(spec, name)
    ]
    mapped = []
    for column in _read_columns(source):
        declared = source.columns[column]
        if declared.on_unknown == "map":
            category = spec.categories[declared.categories]
            mapped.append(
                pl.when(pl.col(column).is_in(category.values))
                .then(pl.col(column))
                .otherwise(pl.lit(category.unknown))
                .alias(column)
            )
    # Values outside the keys (a refused input) become missing rather than fail the cast.
    enums = [
        pl.col(column).cast(pl.Enum(spec.categories[declared.categories].values), strict=False)
        for column, declared in source.columns.items()
    ]
    return (
        batch.with_columns(*keys)
        .with_columns(*mapped)
        .with_columns(_derived_columns(spec, source))
        .select(
            identifier_hash(pl.col(source.identifier)),
            *enums,
            cs.starts_with(_REFERENCE),
            cs.starts_with(_SECOND),
        )
    )


def _hashed_keys(spec: ReleaseSpec, name: str) -> list[str]:
    """The columns staged as key hashes: those references compare, and the identifier of
    an input whose identifiers must be unique (counted with both of its hashes)."""
    unique = [spec.inputs[name].identifier] if spec.inputs[name].unique_identifier else []
    return list(dict.fromkeys([*_key_columns(spec, name), *unique]))


def _referenced_keys(spec: ReleaseSpec, name: str) -> list[str]:
    """The columns of an input that other inputs' references point at (its keys)."""
    return sorted(
        {
            target.split(".", 1)[1]
            for other in spec.inputs.values()
            for target in other.references.values()
            if target.split(".", 1)[0] == name
        }
    )


def _key_hash(column: pl.Expr) -> pl.Expr:
    return _text_hash(column, _KEY_SEED)


def _text_hash(column: pl.Expr, seed: int) -> pl.Expr:
    """A column's text as a seeded 64-bit hash."""
    return column.cast(pl.String).hash(seed=seed)


def _used_columns(spec: ReleaseSpec, name: str) -> list[str]:
    """The columns read from an input: the identifier, the categorical columns that are
    not derived, and the columns references compare."""
    source = spec.inputs[name]
    return list(
        dict.fromkeys([source.identifier, *_read_columns(source), *_key_columns(spec, name)])
    )


def _read_columns(source: Input) -> list[str]:
    """The categorical columns read from the file (derived ones are computed)."""
    return [name for name, column in source.columns.items() if column.derived_from is None]


def _key_columns(spec: ReleaseSpec, name: str) -> list[str]:
    """The columns of an input that references compare (staged as hashes, never measured)."""
    source = spec.inputs[name]
    keys = list(source.references)
    for other in spec.inputs.values():
        for target in other.references.values():
            target_input, target_column = target.split(".", 1)
            if target_input == name:
                keys.append(target_column)
    return list(dict.fromkeys(keys))


def _derived_columns(spec: ReleaseSpec, source: Input) -> list[pl.Expr]:
    """Columns derived by a public grouping of another column's keys (force -> region)."""
    derived = []
    for name, column in source.columns.items():
        if column.derived_from is None:
            continue
        groups = spec.categories[column.categories].groups
        assert groups is not None  # checked by the spec
        group_of = {key: group for group, keys in groups.members.items() for key in keys}
        derived.append(
            # A value outside the keys (a refused input) has no group: missing.
            pl.col(column.derived_from)
            .replace_strict(group_of, default=None, return_dtype=pl.String)
            .alias(name)
        )
    return derived


def _with_linked_units(
    spec: ReleaseSpec, name: str, frames: dict[str, pl.LazyFrame]
) -> pl.LazyFrame:
    """The input with, for each unit that reaches it through references, the hashed
    identifier of the person each record depends on (:func:`linked_column`), found by
    following the references hop by hop (each points at a key, checked unique)."""
    frame = frames[name]
    for reach in spec.reaches(name):
        if not reach.through or reach.unit not in spec.inputs[name].linked_units:
            continue
        current = frame.select(pl.int_range(pl.len(), dtype=pl.UInt64).alias("__row"), pl.all())
        keys = current.select("__row", pl.col(_REFERENCE + reach.through[0].column).alias("key"))
        for position, hop in enumerate(reach.through):
            following = reach.through[position + 1] if position + 1 < len(reach.through) else None
            value = (
                pl.col(_REFERENCE + following.column)
                if following is not None
                else pl.col(spec.inputs[hop.input].identifier)
            )
            target = frames[hop.input].select(
                pl.col(_REFERENCE + hop.key).alias("key"), value.alias("next")
            )
            keys = keys.join(target, on="key", how="inner").select("__row", key="next")
        frame = (
            current.join(keys, on="__row", how="left")
            .rename({"key": linked_column(reach.unit)})
            .sort("__row")
            .drop("__row")
        )
    return frame


def _person_problems(spec: ReleaseSpec, name: str, staged: Staged, counting: Counting) -> list[str]:
    """An input bounded for a linked unit counts each of its people once, by their columns:
    those must be the same on all of a person's records (counted, never shown)."""
    source = spec.inputs[name]
    if not source.linked_units:
        return []
    columns = {
        column: spec.categories[source.columns[column].categories].values
        for column in _read_columns(source)
    }
    differing = counting.differing(staged, source.identifier, columns)
    return [
        person_problem(spec, name, column, count) for column, count in differing.items() if count
    ]


def person_problem(spec: ReleaseSpec, name: str, column: str, count: int) -> str:
    """A column that differs between the records of ``count`` people of a linked input."""
    identifier = spec.inputs[name].identifier
    return (
        f"{spec.input_path(name)} (inputs.{name}): column '{column}' differs between the "
        f"records of {count:,} {'person' if count == 1 else 'people'} (the same "
        f"{identifier}); counted once each for inputs.{name}.linked_units, every person "
        "needs one value on all their records: make the records agree"
    )


def repeated_key_problem(spec: ReleaseSpec, target: str, count: int) -> str:
    """A referenced column with ``count`` repeated values."""
    target_input, target_column = target.split(".", 1)
    return (
        f"{spec.input_path(target_input)} (inputs.{target_input}): column "
        f"'{target_column}' is referenced as {target} but has {count:,} repeated "
        "values; a reference must point at one record: make the column a key"
    )


def unmatched_problem(spec: ReleaseSpec, name: str, column: str, count: int) -> str:
    """A reference column with ``count`` values that match nothing."""
    target = spec.inputs[name].references[column]
    return (
        f"{spec.input_path(name)} (inputs.{name}): column '{column}' has {count:,} "
        f"values that match no {target}; fix the rows or the reference"
    )


def _reference_problems(
    spec: ReleaseSpec, staged: dict[str, Staged], counting: Counting
) -> list[str]:
    """Rows whose reference matches nothing in the input it points at, and referenced keys
    that are not unique (counted, not shown), compared as hashes streamed from the staged
    files."""
    problems = []
    referenced = sorted(
        {target for source in spec.inputs.values() for target in source.references.values()}
    )
    for target in referenced:
        target_input, target_column = target.split(".", 1)
        # Two independent hashes: a false duplicate would need both to collide.
        both = [_REFERENCE + target_column, _SECOND + target_column]
        repeated = staged[target_input].rows - counting.distinct(staged[target_input], both)
        if repeated:
            problems.append(repeated_key_problem(spec, target, repeated))
    for name, source in spec.inputs.items():
        for column, target in source.references.items():
            target_input, target_column = target.split(".", 1)
            count = counting.unmatched(
                staged[name],
                _REFERENCE + column,
                staged[target_input],
                _REFERENCE + target_column,
            )
            if count:
                problems.append(unmatched_problem(spec, name, column, count))
    return problems
