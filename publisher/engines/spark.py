"""The Spark engine: the inputs read, checked, bounded and counted where they live.

Each input is a table of the Spark session's catalog (``format: spark``, ``table:``), or
a CSV or Parquet path that Spark reads. Its checks run in Spark (the same checks as
:mod:`publisher.ingest`: columns, empty identifiers, values outside the keys, duplicates,
references, people whose columns differ), counted, never quoting a value. Spark then
builds the relation the counting SQL reads (:mod:`publisher.engines.sql`): the identifier
as a 64-bit hash (``xxhash64``), the linked person found by following the references, and
the category codes, cached in the session; only counts are collected to the driver.

The session: an active one is used as it is (a notebook's, or ``spark-submit``'s);
otherwise one is made from ``engine.spark`` (``master``, ``config``), with
``spark.local.dir`` (where local Spark writes shuffle and spill files) in the release's
private folder, so those copies are removed with it (and by the next run after a kill),
and stopped at the end.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from publisher import ingest, staging
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
from publisher.engines.duckdb import sql_counts
from publisher.errors import InputError

if TYPE_CHECKING:
    from publisher.progress import Progress
    from publisher.spec import ReleaseSpec

__all__ = ["SparkEngine", "SparkInputs", "SparkRunner", "session"]


@contextmanager
def session(spec: ReleaseSpec, folder: Path) -> Iterator[Any]:
    """The Spark session the release runs on (see the module docstring)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError(
            "the spark engine needs pyspark (and Java): pip install 'publisher[spark]'"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    settings = spec.engine.spark
    builder = SparkSession.builder.appName(f"publisher {spec.release.id}")
    builder = builder.master(settings.master or "local[*]")
    private = folder / "spark"
    private.mkdir(mode=0o700)
    builder = builder.config("spark.local.dir", str(private))
    builder = builder.config("spark.sql.warehouse.dir", str(private / "warehouse"))
    # The web UI shows query plans (the public keys, never data); off unless configured.
    builder = builder.config("spark.ui.enabled", "false")
    # The counting queries aggregate: few partitions suit a local session (a cluster's
    # engine.spark.config can set more).
    builder = builder.config("spark.sql.shuffle.partitions", "4")
    for name, value in settings.config.items():
        builder = builder.config(name, value)
    try:
        spark = builder.getOrCreate()
    except Exception:
        raise InputError(
            "the Spark session could not start; check engine.spark (master, config) and "
            "that Java 17 or later is installed"
        ) from None
    # Spark logs failed queries with their plans; a message about data could quote it.
    spark.sparkContext.setLogLevel("OFF")
    try:
        yield spark
    finally:
        spark.stop()


class SparkRunner(sql.SqlRunner):
    """The SQL of :mod:`publisher.engines.sql` on a Spark session."""

    def __init__(self, spark: Any):
        self.spark = spark
        self.made: dict[str, Any] = {}

    def high_half(self, field: str) -> str:
        return f"shiftrightunsigned(CAST({field} AS BIGINT), 32)"

    def low_half(self, field: str) -> str:
        return f"(CAST({field} AS BIGINT) & 4294967295)"

    def fetch(self, query: str) -> list[tuple[int, ...]]:
        return [tuple(row) for row in self.spark.sql(query).collect()]

    def materialize(self, name: str, query: str) -> None:
        self.keep(name, self.spark.sql(query))

    def keep(self, name: str, frame: Any) -> None:
        """Keep a Spark DataFrame as the table ``name``, computed once: a local checkpoint
        (kept by the executors, memory then disk) cuts its plan from the tables it was
        made of, so dropping them leaves it whole and the plans of the linked
        projection's rounds do not grow with every round."""
        frame = frame.localCheckpoint(eager=True)
        frame.createOrReplaceTempView(name)
        self.made[name] = frame

    def drop(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)
        frame = self.made.pop(name, None)
        if frame is not None:
            frame.unpersist()

    def drop_all(self) -> None:
        for name in list(self.made):
            self.drop(name)


class SparkEngine(Engine):
    name: EngineName = "spark"

    def check(self, spec: ReleaseSpec, progress: Progress) -> Checked:
        with self.load(spec, progress) as loaded:
            assert isinstance(loaded, SparkInputs)
            return Checked(loaded.row_counts, loaded.digests())

    @contextmanager
    def load(self, spec: ReleaseSpec, progress: Progress) -> Iterator[Loaded]:
        with staging.private_folder() as folder, session(spec, folder) as spark:
            runner = SparkRunner(spark)
            try:
                yield _checked(spec, runner, progress)
            finally:
                runner.drop_all()


class SparkInputs(Loaded):
    """Inputs held by Spark as cached relations (``id``, ``linked``, ``c0`` ...)."""

    engine: EngineName = "spark"

    def __init__(
        self,
        runner: SparkRunner,
        relations: dict[str, str],
        row_counts: dict[str, int] | None = None,
        digests: dict[str, str] | None = None,
    ):
        self.runner = runner
        self.relations = relations
        self.row_counts = row_counts or {}
        self._digests = digests or {}

    def digests(self) -> dict[str, str]:
        return dict(self._digests)

    @classmethod
    @contextmanager
    def from_frames(
        cls, spec: ReleaseSpec, frames: dict[str, pl.LazyFrame], folder: Path
    ) -> Iterator[SparkInputs]:
        """Frames as :func:`publisher.ingest.load` stages them, handed to Spark (for the
        tests: the same hashed identifiers, so the same keyed order, as the other engines)."""
        from publisher import privacy

        with session(spec, folder) as spark:
            runner = SparkRunner(spark)
            relations = {}
            try:
                for input_name, frame in frames.items():
                    source = spec.inputs[input_name]
                    prepared = privacy.prepare(spec, input_name, frame)
                    linked = [
                        pl.col(ingest.linked_column(unit)).reinterpret(signed=True).alias("linked")
                        for unit in source.linked_units
                    ]
                    codes = [
                        pl.col(column).to_physical().cast(pl.Int64).alias(f"c{position}")
                        for position, column in enumerate(base_columns(spec, input_name))
                    ]
                    relation = prepared.select(
                        pl.col(source.identifier).reinterpret(signed=True).alias("id"),
                        *linked,
                        *codes,
                    ).collect()
                    name = runner.new_name("input")
                    runner.keep(name, spark.createDataFrame(relation.to_pandas()))
                    relations[input_name] = name
                yield cls(runner, relations)
            finally:
                runner.drop_all()

    def counts(
        self, spec: ReleaseSpec, input_name: str, *, estimate: bool, seed: int
    ) -> InputCounts:
        relation = self.relations[input_name]
        return sql_counts(self.runner, spec, input_name, relation, estimate, seed)

    def histogram(self, spec: ReleaseSpec, input_name: str, bins: int) -> Int64Array:
        return sql.histogram(self.runner, self.relations[input_name], bins)

    def linked_counted(
        self, spec: ReleaseSpec, input_name: str, caps: Sequence[int], seed: int
    ) -> list[int]:
        relation = self.relations[input_name]
        return sql.linked_counted(self.runner, relation, caps, OrderKey(seed))


# --- reading and checking in Spark -------------------------------------------------------


def _column(name: str) -> Any:
    """A column by its name, whatever characters it holds."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _read(spec: ReleaseSpec, spark: Any, name: str) -> tuple[Any, str]:
    """An input as a Spark DataFrame of its columns (as stored), and how to name it."""
    source = spec.inputs[name]
    if source.format == "spark":
        where = f"Spark table {source.table} (inputs.{name}.table)"
        try:
            return spark.table(source.table), where
        except Exception:
            raise InputError(
                f"{where}: the Spark session has no such table; check the name and the "
                "session's catalog (engine.spark.config)"
            ) from None
    if source.format == "duckdb":
        raise InputError(
            f"{spec.input_path(name)} (inputs.{name}.format): a DuckDB database is read by "
            "the polars or duckdb engine, not by Spark; choose one of those engines"
        )
    # The same checks of the path as every engine (inside the spec's folder, regular files).
    path, _, _ = ingest._open(spec, name)
    where = f"{path} (inputs.{name})"
    try:
        if source.format == "parquet":
            return spark.read.parquet(str(path)), where
        reader = spark.read.options(
            header=True, multiLine=True, mode="FAILFAST", encoding="UTF-8", escape='"'
        )
        return reader.csv(str(path)), where
    except Exception:
        raise InputError(
            f"{where}: cannot be read as {source.format.upper()}; check the file's format"
        ) from None


def _checked(spec: ReleaseSpec, runner: SparkRunner, progress: Progress) -> SparkInputs:
    """Read and check every input in Spark; keep each as the relation the SQL counts."""

    spark = runner.spark
    problems: list[str] = []
    frames: dict[str, Any] = {}
    rows: dict[str, int] = {}
    digests: dict[str, str] = {}
    for name, source in spec.inputs.items():
        progress(f"Reading and checking {name} in Spark", None)
        try:
            frame, where = _read(spec, spark, name)
            columns = ingest._used_columns(spec, name)
            found = list(frame.columns)
            column_problems = ingest._column_problems(where, name, found, columns)
            if column_problems:
                problems.extend(column_problems)
                continue
            raw = {unicodedata.normalize("NFC", column): column for column in found}
            frame = frame.select(*(_column(raw[column]).alias(column) for column in columns))
            frame = frame.select(
                *(_column(column).cast("string").alias(column) for column in columns)
            )
            counts, digest = _value_counts(spec, name, frame)
        except InputError as error:
            problems.extend(error.problems)
            continue
        except Exception:
            # Spark's messages can quote row contents: never shown.
            raise InputError(
                f"{spec.input_path(name)} (inputs.{name}): cannot be read to the end by Spark; "
                "check the input's format"
            ) from None
        if counts["__rows"] == 0:
            problems.append(f"{where}: the input has no rows; expected data")
            continue
        problems.extend(ingest._value_problems(where, name, source, counts))
        frames[name] = _mapped(spec, name, frame)
        rows[name] = counts["__rows"]
        if source.format == "spark":
            digests[name] = digest
    if problems:
        raise InputError(problems)
    progress("Checking references between inputs in Spark", None)
    problems = _reference_problems(spec, frames)
    if problems:
        raise InputError(problems)
    relations = {}
    for name in spec.inputs:
        linked = _with_linked_units(spec, name, frames)
        problems.extend(_person_problems(spec, name, linked))
        relation = runner.new_name("input")
        runner.keep(relation, _relation(spec, name, linked))
        relations[name] = relation
    if problems:
        raise InputError(problems)
    return SparkInputs(runner, relations, rows, digests)


def _value_counts(spec: ReleaseSpec, name: str, frame: Any) -> tuple[Counter[str], str]:
    """Rows, empty identifiers, values outside the keys and duplicates (one pass), and a
    digest of the used columns (for the ledger's fingerprint of a Spark table)."""
    from pyspark.sql import functions as F

    source = spec.inputs[name]
    identifier = _column(source.identifier)
    empty = identifier.isNull() | (F.trim(identifier) == "")
    checks = [F.count(F.lit(1)).alias("__rows"), F.sum(empty.cast("long")).alias("__ids")]
    for column in ingest._read_columns(source):
        outside = _column(column).isNull() | ~_column(column).isin(keys(spec, name, column))
        checks.append(F.sum(outside.cast("long")).alias(column))
    if source.unique_identifier:
        checks.append(F.count_distinct(identifier).alias("__distinct"))
        checks.append(F.max(identifier.isNull().cast("long")).alias("__null"))
    row_hash = F.xxhash64(*(_column(column) for column in frame.columns))
    checks.append(F.sum(row_hash.cast("decimal(38,0)")).cast("string").alias("__sum"))
    checks.append(F.bit_xor(row_hash).alias("__xor"))
    (result,) = frame.agg(*checks).collect()
    found = result.asDict()
    counts: Counter[str] = Counter()
    counts["__rows"] = int(found["__rows"])
    counts["__ids"] = int(found["__ids"] or 0)
    for column in ingest._read_columns(source):
        counts[column] = int(found[column] or 0)
    if source.unique_identifier:
        distinct = int(found["__distinct"]) + int(found["__null"] or 0)
        counts["__duplicates"] = counts["__rows"] - distinct
    digest = f"{counts['__rows']}:{found['__sum']}:{found['__xor']}"
    return counts, digest


def _mapped(spec: ReleaseSpec, name: str, frame: Any) -> Any:
    """Values outside the keys as the unknown key, where the spec maps them."""
    from pyspark.sql import functions as F

    source = spec.inputs[name]
    for column in ingest._read_columns(source):
        declared = source.columns[column]
        if declared.on_unknown == "map":
            category = spec.categories[declared.categories]
            inside = _column(column).isin(list(category.values))
            frame = frame.withColumn(
                column, F.when(inside, _column(column)).otherwise(F.lit(category.unknown))
            )
    return frame


def _reference_problems(spec: ReleaseSpec, frames: dict[str, Any]) -> list[str]:
    """Referenced keys that repeat and references that match nothing, counted in Spark."""
    from pyspark.sql import functions as F

    problems = []
    referenced = sorted(
        {target for source in spec.inputs.values() for target in source.references.values()}
    )
    for target in referenced:
        target_input, target_column = target.split(".", 1)
        column = _column(target_column)
        (result,) = (
            frames[target_input]
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.count_distinct(column).alias("distinct"),
                F.max(column.isNull().cast("long")).alias("nulls"),
            )
            .collect()
        )
        repeated = int(result["rows"]) - int(result["distinct"]) - int(result["nulls"] or 0)
        if repeated:
            problems.append(ingest.repeated_key_problem(spec, target, repeated))
    for name, source in spec.inputs.items():
        for column, target in source.references.items():
            target_input, target_column = target.split(".", 1)
            known = frames[target_input].select(_column(target_column).alias("__key")).distinct()
            unmatched = (
                frames[name]
                .select(_column(column).alias("__reference"))
                .join(known, F.col("__reference") == F.col("__key"), "left_anti")
                .count()
            )
            if unmatched:
                problems.append(ingest.unmatched_problem(spec, name, column, unmatched))
    return problems


def _with_linked_units(spec: ReleaseSpec, name: str, frames: dict[str, Any]) -> Any:
    """The input with, for each unit that reaches it through references, the identifier of
    the person each record depends on (``__unit:NAME``), found by following the
    references hop by hop (each points at a key, checked unique)."""
    from pyspark.sql import functions as F

    frame = frames[name]
    for reach in spec.reaches(name):
        if not reach.through or reach.unit not in spec.inputs[name].linked_units:
            continue
        current = _column(reach.through[0].column)
        step = frame.withColumn("__key", current)
        for position, hop in enumerate(reach.through):
            following = reach.through[position + 1] if position + 1 < len(reach.through) else None
            value = following.column if following is not None else spec.inputs[hop.input].identifier
            target = frames[hop.input].select(
                _column(hop.key).alias("__target"), _column(value).alias("__next")
            )
            step = (
                step.join(target, F.col("__key") == F.col("__target"), "left")
                .drop("__key", "__target")
                .withColumnRenamed("__next", "__key")
            )
        frame = step.withColumnRenamed("__key", ingest.linked_column(reach.unit))
    return frame


def _person_problems(spec: ReleaseSpec, name: str, frame: Any) -> list[str]:
    """People of a linked input whose columns differ between their records (counted)."""
    from pyspark.sql import functions as F

    source = spec.inputs[name]
    if not source.linked_units:
        return []
    columns = ingest._read_columns(source)
    per_person = frame.groupBy(source.identifier).agg(
        *(F.count_distinct(column).alias(column) for column in columns)
    )
    (result,) = per_person.agg(
        *(F.sum((_column(column) > 1).cast("long")).alias(column) for column in columns)
    ).collect()
    return [
        ingest.person_problem(spec, name, column, int(result[column] or 0))
        for column in columns
        if result[column]
    ]


def _relation(spec: ReleaseSpec, name: str, frame: Any) -> Any:
    """What the counting SQL reads: ``id`` (the identifier's 64-bit hash), ``linked`` (the
    linked person's) and the base columns' codes (positions in their keys)."""
    from pyspark.sql import functions as F

    source = spec.inputs[name]
    selected = [F.xxhash64(_column(source.identifier).cast("string")).alias("id")]
    for unit in source.linked_units:
        linked = _column(ingest.linked_column(unit))
        selected.append(F.xxhash64(linked.cast("string")).alias("linked"))
    for position, column in enumerate(base_columns(spec, name)):
        listed = F.array(*(F.lit(key) for key in keys(spec, name, column)))
        code = (F.array_position(listed, _column(column)) - 1).cast("long")
        selected.append(code.alias(f"c{position}"))
    return frame.select(*selected)
