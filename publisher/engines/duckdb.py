"""The DuckDB engine: each input bounded and counted out of core.

Inputs are read and checked by :func:`publisher.ingest.load` (bounded batches, staged as
Parquet in a private folder). Each input's relation (hashed identifiers and category
codes) is written next to them, and DuckDB runs the SQL of :mod:`publisher.engines.sql`
on it within ``engine.memory_limit``, spilling to that private folder when it needs more.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
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


class DuckDBEngine(Engine):
    name: EngineName = "duckdb"

    def check(self, spec: ReleaseSpec, progress: Progress) -> Checked:
        return Checked(dict(ingest.check(spec, progress)), {})

    @contextmanager
    def load(self, spec: ReleaseSpec, progress: Progress) -> Iterator[Loaded]:
        with (
            ingest.load(spec, progress) as frames,
            staging.private_folder() as folder,
            DuckDBInputs.opened(spec, frames, folder) as loaded,
        ):
            yield loaded


class DuckDBInputs(Loaded):
    """Staged inputs counted by DuckDB."""

    engine: EngineName = "duckdb"

    def __init__(self, frames: dict[str, pl.LazyFrame], runner: DuckDBRunner, folder: Path):
        self.frames = frames
        self.runner = runner
        self.folder = folder
        self._relations: dict[str, str] = {}

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
        """The input as the SQL reads it (``id``, ``linked``, ``c0`` ...), written once as
        Parquet in the private folder."""
        if input_name not in self._relations:
            from publisher import privacy

            source = spec.inputs[input_name]
            prepared = privacy.prepare(spec, input_name, self.frames[input_name])
            linked = [
                pl.col(ingest.linked_column(unit)).alias("linked") for unit in source.linked_units
            ]
            codes = [
                pl.col(column).to_physical().cast(pl.Int64).alias(f"c{position}")
                for position, column in enumerate(base_columns(spec, input_name))
            ]
            # A folder of its own, not named after the input (names come from the spec).
            path = Path(tempfile.mkdtemp(prefix="input-", dir=self.folder)) / "relation.parquet"
            prepared.select(pl.col(source.identifier).alias("id"), *linked, *codes).sink_parquet(
                path
            )
            name = self.runner.new_name("input")
            # A path made here (a temporary folder's), quoted as a SQL string.
            quoted = "'" + str(path).replace("'", "''") + "'"
            self.runner.connection.execute(
                f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({quoted})"
            )
            self._relations[input_name] = name
        return self._relations[input_name]

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
