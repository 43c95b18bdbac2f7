"""The DuckDB engine: each input bounded and counted out of core.

Inputs are read and checked by :func:`publisher.ingest.load` (bounded batches, staged as
Parquet in a private folder). Each input's relation (hashed identifiers and category
codes) is written next to them, and DuckDB runs the SQL of :mod:`publisher.engines.sql`
on it within ``engine.memory_limit``, spilling to that private folder when it needs more.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from publisher import accounting, ingest, staging
from publisher.engines import (
    Checked,
    Engine,
    EngineName,
    InputCounts,
    Int64Array,
    Loaded,
    OrderKey,
    base_columns,
    keys,
    sql,
)
from publisher.errors import InputError

if TYPE_CHECKING:
    from publisher.progress import Progress
    from publisher.spec import ReleaseSpec

__all__ = ["DuckDBEngine", "DuckDBInputs", "DuckDBRunner", "connect"]

_REFERENCES = ingest.reference_column("")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(folder: Path, memory_limit: str, threads: int | None = None) -> Any:
    """A DuckDB connection that spills to ``folder`` (private) beyond ``memory_limit``."""
    try:
        import duckdb
    except ImportError:
        raise InputError(
            "the duckdb engine needs the duckdb package: pip install 'publisher[duckdb]'"
        ) from None
    config: dict[str, Any] = {
        "temp_directory": str(folder / "spill"),
        "memory_limit": memory_limit,
        # Row order is never needed: without it DuckDB streams with less memory.
        "preserve_insertion_order": False,
    }
    if threads:
        config["threads"] = threads
    return duckdb.connect(":memory:", config=config)


class DuckDBRunner(sql.SqlRunner):
    """The SQL of :mod:`publisher.engines.sql` on a DuckDB connection."""

    def __init__(self, connection: Any):
        self.connection = connection

    def high_half(self, field: str) -> str:
        return f"(CAST({field} AS UBIGINT) >> 32)"

    def low_half(self, field: str) -> str:
        return f"(CAST({field} AS UBIGINT) & 4294967295)"

    def fetch(self, query: str) -> list[tuple[int, ...]]:
        return [tuple(row) for row in self.connection.execute(query).fetchall()]

    def materialize(self, name: str, query: str) -> None:
        self.connection.execute(f"CREATE TEMP TABLE {name} AS {query}")

    def drop(self, name: str) -> None:
        self.connection.execute(f"DROP TABLE IF EXISTS {name}")


def _enum(keys: Sequence[str]) -> str:
    """A DuckDB enum type of ``keys`` (public: the spec's), as SQL."""
    return "ENUM(" + ", ".join("'" + key.replace("'", "''") + "'" for key in keys) + ")"


def _parts(folder: Path) -> str:
    """The staged Parquet parts of an input, as DuckDB reads them (a path made here)."""
    return "read_parquet('" + str(folder / "*.parquet").replace("'", "''") + "')"


class DuckDBCounting(ingest.Counting):
    """The checks that span whole inputs, counted by DuckDB on the staged files, out of
    core (the same counts as Polars'; see :class:`publisher.ingest.Counting`)."""

    def __init__(self, connection: Any):
        self.connection = connection

    def _count(self, query: str) -> int:
        return int(self.connection.execute(query).fetchone()[0])

    def distinct(self, staged: ingest.Staged, columns: list[str]) -> int:
        listed = ", ".join(_quoted(column) for column in columns)
        return self._count(
            f"SELECT count(*) FROM (SELECT DISTINCT {listed} FROM {_parts(staged.folder)})"
        )

    def unmatched(
        self, staged: ingest.Staged, column: str, target: ingest.Staged, target_column: str
    ) -> int:
        return self._count(
            f"SELECT count(*) FROM {_parts(staged.folder)} s WHERE NOT EXISTS (SELECT 1 FROM "
            f"{_parts(target.folder)} t WHERE t.{_quoted(target_column)} = s.{_quoted(column)})"
        )

    def differing(
        self, staged: ingest.Staged, identifier: str, columns: Mapping[str, Sequence[str]]
    ) -> dict[str, int]:
        # A person's values differ when their least and greatest differ (the columns hold no
        # empty value by now): plain aggregates, which DuckDB spills to disk, where
        # ``count(DISTINCT ...)`` per person holds every person's set in memory. Compared as
        # enums of the column's keys (which are all it holds): integers, not text.
        per_person = ", ".join(
            f"min({typed}) <> max({typed}) AS c{position}"
            for position, (column, keys) in enumerate(columns.items())
            for typed in [f"CAST({_quoted(column)} AS {_enum(keys)})"]
        )
        over = ", ".join(f"count(*) FILTER (WHERE c{p})" for p in range(len(columns)))
        row = self.connection.execute(
            f"SELECT {over} FROM (SELECT {per_person} FROM {_parts(staged.folder)} "
            f"GROUP BY {_quoted(identifier)})"
        ).fetchone()
        return {column: int(count) for column, count in zip(columns, row, strict=True)}


class DuckDBEngine(Engine):
    name: EngineName = "duckdb"

    def check(self, spec: ReleaseSpec, progress: Progress) -> Checked:
        with staging.private_folder() as folder:
            connection = connect(folder, spec.engine.memory_limit, spec.engine.threads)
            try:
                return Checked(dict(ingest.check(spec, progress, DuckDBCounting(connection))), {})
            finally:
                connection.close()

    @contextmanager
    def load(self, spec: ReleaseSpec, progress: Progress) -> Iterator[Loaded]:
        with staging.private_folder() as folder:
            connection = connect(folder, spec.engine.memory_limit, spec.engine.threads)
            try:
                # The checks across whole inputs and the references are counted and
                # followed by DuckDB, out of core, rather than in memory.
                with ingest.load(
                    spec, progress, links=False, counting=DuckDBCounting(connection)
                ) as frames:
                    yield DuckDBInputs(frames, DuckDBRunner(connection), folder)
            finally:
                connection.close()


class DuckDBInputs(Loaded):
    """Staged inputs counted by DuckDB."""

    engine: EngineName = "duckdb"

    def __init__(self, frames: dict[str, pl.LazyFrame], runner: DuckDBRunner, folder: Path):
        self.frames = frames
        self.runner = runner
        self.folder = folder
        self._relations: dict[str, str] = {}
        self._staged_views: dict[str, str] = {}

    @classmethod
    @contextmanager
    def opened(
        cls, spec: ReleaseSpec, frames: dict[str, pl.LazyFrame], folder: Path
    ) -> Iterator[DuckDBInputs]:
        """The staged ``frames`` on a new DuckDB connection spilling to ``folder``."""
        connection = connect(folder, spec.engine.memory_limit, spec.engine.threads)
        try:
            yield cls(frames, DuckDBRunner(connection), folder)
        finally:
            connection.close()

    def relation(self, spec: ReleaseSpec, input_name: str) -> str:
        """The input as the SQL reads it (``id``, ``linked``, ``c0`` ...). An input bounded
        for a linked unit whose frame does not hold the linked person yet (the engine's
        own load) gets it here, by joining along its references in DuckDB (out of core)."""
        if input_name in self._relations:
            return self._relations[input_name]
        source = spec.inputs[input_name]
        staged = self._staged(spec, input_name)
        codes = "".join(
            f", s.c{position}" for position in range(len(base_columns(spec, input_name)))
        )
        described = self.runner.connection.execute(f"SELECT * FROM {staged} LIMIT 0").description
        names = [column[0] for column in described]
        joins = ""
        linked = ""
        if source.linked_units and "linked" in names:
            linked = ", s.linked"
        elif source.linked_units:
            ((unit, _),) = source.linked_units.items()
            reach = [r for r in spec.reaches(input_name) if r.unit == unit and r.through][-1]
            previous, column = "s", ingest.reference_column(reach.through[0].column)
            for position, hop in enumerate(reach.through):
                alias = f"h{position}"
                target = self._staged(spec, hop.input)
                joins += (
                    f" JOIN {target} {alias} ON {alias}.{_quoted(ingest.reference_column(hop.key))}"
                    f" = {previous}.{_quoted(column)}"
                )
                following = (
                    reach.through[position + 1] if position + 1 < len(reach.through) else None
                )
                column = "id" if following is None else ingest.reference_column(following.column)
                previous = alias
            linked = f", {previous}.id AS linked"
        name = self.runner.new_name("input")
        self.runner.connection.execute(
            f"CREATE TEMP VIEW {name} AS SELECT s.id{linked}{codes} FROM {staged} s{joins}"
        )
        self._relations[input_name] = name
        return name

    def _staged(self, spec: ReleaseSpec, input_name: str) -> str:
        """An input's staged columns as DuckDB reads them: ``id``, ``linked`` when the
        frame has it, the codes ``c0`` ..., and the hashes references compare, written once
        as Parquet in the private folder (a streaming copy: bounded memory)."""
        if input_name in self._staged_views:
            return self._staged_views[input_name]
        from publisher import privacy

        source = spec.inputs[input_name]
        prepared = privacy.prepare(spec, input_name, self.frames[input_name])
        schema = prepared.collect_schema()
        linked = [
            pl.col(ingest.linked_column(unit)).alias("linked")
            for unit in source.linked_units
            if ingest.linked_column(unit) in schema
        ]
        references = [pl.col(column) for column in schema.names() if column.startswith(_REFERENCES)]
        codes = [
            pl.col(column).to_physical().cast(pl.Int64).alias(f"c{position}")
            for position, column in enumerate(base_columns(spec, input_name))
        ]
        # A folder of its own, not named after the input (names come from the spec).
        path = Path(tempfile.mkdtemp(prefix="input-", dir=self.folder)) / "staged.parquet"
        prepared.select(
            pl.col(source.identifier).alias("id"), *linked, *codes, *references
        ).sink_parquet(path)
        name = self.runner.new_name("staged")
        # A path made here (a temporary folder's), quoted as a SQL string.
        quoted = "'" + str(path).replace("'", "''") + "'"
        self.runner.connection.execute(
            f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({quoted})"
        )
        self._staged_views[input_name] = name
        return name

    def counts(
        self, spec: ReleaseSpec, input_name: str, *, estimate: bool, seed: int
    ) -> InputCounts:
        return sql_counts(
            self.runner, spec, input_name, self.relation(spec, input_name), estimate, seed
        )

    def histogram(self, spec: ReleaseSpec, input_name: str, bins: int) -> Int64Array:
        return sql.histogram(self.runner, self.relation(spec, input_name), bins)

    def linked_counted(
        self, spec: ReleaseSpec, input_name: str, caps: Sequence[int], seed: int
    ) -> list[int]:
        relation = self.relation(spec, input_name)
        return sql.linked_counted(self.runner, relation, caps, OrderKey(seed))


def sql_counts(
    runner: sql.SqlRunner,
    spec: ReleaseSpec,
    input_name: str,
    relation: str,
    estimate: bool,
    seed: int,
) -> InputCounts:
    """An input's counts by the SQL engines (DuckDB and Spark)."""
    source = spec.inputs[input_name]
    columns = base_columns(spec, input_name)
    shape = [len(keys(spec, input_name, column)) for column in columns]
    order = OrderKey(seed)
    if source.linked_units:
        ((_, linked),) = source.linked_units.items()
        cap = linked.max_records_per_person
        leaves, more = sql.linked_counts(
            runner,
            relation,
            columns,
            shape,
            cap,
            accounting.LINKED_REFERENCE_FACTOR * cap if estimate else None,
            order,
        )
        return InputCounts(leaves, np.asarray([more], dtype=np.int64) if estimate else None)
    leaves = sql.leaf_counts(runner, relation, columns, shape, source.max_records_per_person, order)
    vector = None
    if estimate:
        bins = len(accounting.histogram_bins(source.max_records_per_person))
        vector = sql.histogram(runner, relation, bins)
    return InputCounts(leaves, vector)
