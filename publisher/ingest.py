"""Read the private inputs lazily and check them against the spec.

Only the identifier and the declared categorical columns are ever selected. Problems are
reported as counts and column names, never as the offending values: those are private.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from publisher.errors import InputError
from publisher.spec import Input, ReleaseSpec

__all__ = ["InputSummary", "check", "load"]


class InputSummary(dict[str, int]):
    """Row counts per input, from :func:`check`. Never published: it is not noisy."""


def _scan(path: Path, source: Input) -> pl.LazyFrame:
    """A lazy scan of every column as text, so types are checked by us, not guessed."""
    if source.format == "parquet":
        return pl.scan_parquet(path).select(pl.all().cast(pl.String))
    if source.format == "duckdb":
        return _scan_duckdb(path, source)
    return pl.scan_csv(path, infer_schema=False, encoding="utf8")


def _scan_duckdb(path: Path, source: Input) -> pl.LazyFrame:
    """The declared columns of a DuckDB table: DuckDB reads and projects, Polars checks.

    Only the identifier and the declared columns are selected, in the database.
    """
    try:
        import duckdb
    except ImportError:
        raise InputError(
            f"{path}: reading DuckDB needs the duckdb package: pip install 'publisher[duckdb]'"
        ) from None
    assert source.table is not None  # checked by the spec
    with duckdb.connect(str(path), read_only=True) as connection:
        found = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [source.table],
        ).fetchall()
        columns = [row[0] for row in found]
        if not columns:
            raise InputError(
                f"{path}: the database has no table '{source.table}'; check the input's table"
            )
        wanted = [source.identifier, *source.columns]
        selected = [column for column in columns if column in wanted] or columns[:1]
        quoted = ", ".join('"' + column.replace('"', '""') + '"' for column in selected)
        table = '"' + source.table.replace('"', '""') + '"'
        frame: pl.DataFrame = connection.sql(f"SELECT {quoted} FROM {table}").pl()  # noqa: S608
    return frame.lazy().select(pl.all().cast(pl.String))


def _open(spec: ReleaseSpec, name: str) -> tuple[Path, pl.LazyFrame, list[str]]:
    source = spec.inputs[name]
    path = spec.input_path(name)
    where = f"{path} (inputs.{name}.path)"
    if not path.exists():
        raise InputError(f"{where}: the file does not exist; check the path in the spec")
    if not path.is_file():
        raise InputError(f"{where}: this is a directory, not a file; point it at a file")
    if path.stat().st_size == 0:
        raise InputError(f"{where}: the file is empty; expected a header row and data")
    try:
        frame = _scan(path, source)
        names = frame.collect_schema().names()
    except InputError:
        raise
    except Exception:
        # Reader messages (Polars, DuckDB) can quote row contents, so they are never shown.
        raise InputError(
            f"{where}: cannot be read as {source.format.upper()}"
            + (" (UTF-8, comma-separated, with a header row)" if source.format == "csv" else "")
            + "; check the file's format"
        ) from None
    return path, frame, names


def _column_problems(
    where: str, name: str, source: Input, names: list[str], keys: list[str]
) -> list[str]:
    wanted = [source.identifier, *_read_columns(source), *keys]
    # Polars renames a repeated header name to NAME_duplicated_0: which one is meant?
    repeated = [column for column in wanted if f"{column}_duplicated_0" in names]
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


def _value_problems(
    spec: ReleaseSpec, where: str, name: str, frame: pl.LazyFrame
) -> tuple[int, list[str]]:
    """One pass over the data: row count, empty identifiers, values outside the keys."""
    source = spec.inputs[name]
    identifier = pl.col(source.identifier)
    empty_identifier = identifier.is_null() | (identifier.str.strip_chars() == "")
    checks = [pl.len().alias("__rows"), empty_identifier.sum().alias("__ids")]
    if source.unique_identifier:  # counting distinct identifiers is costly: only if asked
        checks.append((pl.len() - identifier.n_unique()).alias("__duplicates"))
    for column in _read_columns(source):
        declared = source.columns[column]
        keys = spec.categories[declared.categories].values
        outside = ~pl.col(column).is_in(keys) | pl.col(column).is_null()
        checks.append(outside.sum().alias(column))
    try:
        counts = frame.select(checks).collect(engine="streaming").row(0, named=True)
    except (pl.exceptions.PolarsError, OSError):
        raise InputError(
            f"{where}: cannot be read to the end (a malformed row, a wrong delimiter or "
            "an encoding other than UTF-8); check the file's format"
        ) from None

    problems = []
    if counts["__rows"] == 0:
        problems.append(f"{where}: the file has a header but no rows; expected data")
    if counts["__ids"]:
        problems.append(
            f"{where}: column '{source.identifier}' (the identifier) has {counts['__ids']:,} "
            "empty values; every record needs the person it is about"
        )
    if counts.get("__duplicates"):
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
    return counts["__rows"], problems


def _check_whole_rows(where: str, frame: pl.LazyFrame) -> None:
    """Parse every field of every row once: reading only the declared columns would let a
    row with surplus fields (beside columns the spec does not use) pass unnoticed."""
    try:
        frame.select(pl.all().null_count()).collect(engine="streaming")
    except Exception:
        raise InputError(
            f"{where}: cannot be read to the end (a row with more or fewer fields than the "
            "header, a wrong delimiter or an encoding other than UTF-8); check the file's format"
        ) from None


def _prepare(spec: ReleaseSpec, name: str) -> tuple[pl.LazyFrame, int]:
    path, frame, names = _open(spec, name)
    where = f"{path} (inputs.{name})"
    source = spec.inputs[name]
    problems = _column_problems(where, name, source, names, _key_columns(spec, name))
    if problems:
        raise InputError(problems)
    if source.format == "csv" and len(names) > len(source.columns) + 1:
        _check_whole_rows(where, frame)
    # A blank line is not a record (CSV readers give it as a row of empty fields).
    frame = frame.select(
        source.identifier, *_read_columns(source), *_key_columns(spec, name)
    ).filter(~pl.all_horizontal(pl.all().is_null()))
    rows, problems = _value_problems(spec, where, name, frame)
    if problems:
        raise InputError(problems)
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
    if mapped:
        frame = frame.with_columns(mapped)
    return frame.with_columns(_derived_columns(spec, source)), rows


def _read_columns(source: Input) -> list[str]:
    """The categorical columns read from the file (derived ones are computed)."""
    return [name for name, column in source.columns.items() if column.derived_from is None]


def _key_columns(spec: ReleaseSpec, name: str) -> list[str]:
    """Columns read only to check references between inputs (never measured)."""
    source = spec.inputs[name]
    keys = list(source.references)
    for other in spec.inputs.values():
        for target in other.references.values():
            target_input, target_column = target.split(".", 1)
            if target_input == name:
                keys.append(target_column)
    categorical = {source.identifier, *source.columns}
    return [key for key in dict.fromkeys(keys) if key not in categorical]


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
            pl.col(column.derived_from).replace_strict(group_of, return_dtype=pl.String).alias(name)
        )
    return derived


def _each_input(spec: ReleaseSpec) -> dict[str, tuple[pl.LazyFrame, int]]:
    problems: list[str] = []
    prepared = {}
    for name in spec.inputs:
        try:
            prepared[name] = _prepare(spec, name)
        except InputError as error:
            problems.extend(error.problems)
    if problems:
        raise InputError(problems)
    problems = _reference_problems(spec, {name: frame for name, (frame, _) in prepared.items()})
    if problems:
        raise InputError(problems)
    # Key columns were read for the reference checks only: nothing else sees them.
    return {
        name: (frame.drop(_key_columns(spec, name)), rows)
        for name, (frame, rows) in prepared.items()
    }


def _reference_problems(spec: ReleaseSpec, frames: dict[str, pl.LazyFrame]) -> list[str]:
    """Rows whose reference matches nothing in the input it points at (counted, not shown)."""
    problems = []
    for name, source in spec.inputs.items():
        for column, target in source.references.items():
            target_input, target_column = target.split(".", 1)
            # Compared as 64-bit hashes, streamed: a fraction of the memory of the text.
            # (A collision could hide one unmatched value, with odds of about 1 in 10^12.)
            known = frames[target_input].select(pl.col(target_column).hash().alias("__key"))
            unmatched = (
                frames[name]
                .select(pl.col(column).hash().alias("__key"))
                .join(known.unique(), on="__key", how="anti")
                .select(pl.len())
            )
            count = int(unmatched.collect(engine="streaming").item())
            if count:
                problems.append(
                    f"{spec.input_path(name)} (inputs.{name}): column '{column}' has {count:,} "
                    f"values that match no {target}; fix the rows or the reference"
                )
    return problems


def check(spec: ReleaseSpec) -> InputSummary:
    """Check every input against the spec; raise :class:`InputError` listing all problems."""
    return InputSummary({name: rows for name, (_, rows) in _each_input(spec).items()})


def load(spec: ReleaseSpec) -> dict[str, pl.LazyFrame]:
    """Checked lazy frames per input: the identifier and the categorical columns only."""
    return {name: frame for name, (frame, _) in _each_input(spec).items()}
