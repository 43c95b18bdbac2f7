"""Engines: where the private computation runs (bounding each input, then counting).

One description of the computation, run by an engine the spec or the command line
chooses (``engine.name``, ``--engine``):

- ``polars``: in memory, OpenDP's truncation transformation on a Polars frame (the
  embedded default for inputs that fit in memory);
- ``duckdb``: out of core (DuckDB spills to disk in the private folder), the default
  above :data:`AUTO_DUCKDB_RECORDS` records over the inputs;
- ``spark``: on a Spark session (local or a cluster), reading each input where it lives;
  its checks run in Spark too.

Every engine computes, for one input, exactly the same thing (``tests/test_engines.py``):

- bounding: an input reached only by its own unit keeps at most ``max_records_per_person``
  records of each person, the first in a keyed random order (:class:`OrderKey`; SQL:
  ``row_number() over (partition by id order by key) <= k``); an input reached by a
  linked unit keeps the own people that :func:`publisher.privacy.linked_projection`
  counts, its edges taken in the keyed order (the SQL engines run the equivalent
  round-based algorithm of :mod:`publisher.engines.sql`);
- counting: the exact counts of the kept records over the full cross-classification of the
  input's base columns (:class:`LeafCounts`), from which every table is a sum, and the
  exact vector of the input's truncation estimate.

An engine returns only counts: nothing row-level leaves it. The noise and the accounting
stay OpenDP's, in :mod:`publisher.privacy` and :mod:`publisher.accounting`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from publisher import staging
from publisher.errors import SpecError

if TYPE_CHECKING:
    import polars as pl

    from publisher.progress import Progress
    from publisher.spec import ReleaseSpec

__all__ = [
    "AUTO_DUCKDB_RECORDS",
    "ENGINES",
    "Checked",
    "Engine",
    "InputCounts",
    "LeafCounts",
    "Loaded",
    "OrderKey",
    "choose",
    "from_frames",
    "get",
    "random_seed",
    "table_counts",
]

EngineName = Literal["polars", "duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("polars", "duckdb", "spark")
# Above this many records over the inputs, ``auto`` chooses DuckDB (benchmarks/ENGINES.md:
# from 1 million records DuckDB takes no longer than Polars, and less memory, and Polars'
# memory grows with the inputs while DuckDB's stays within its limit).
AUTO_DUCKDB_RECORDS = 1_000_000

Int64Array = npt.NDArray[np.int64]

# The order key's prime: every product of two numbers below it fits in a signed 64-bit
# integer, so the key is the same exact integer arithmetic on every engine.
PRIME = 2_147_483_647
_LANES = 2
_HALF = 1 << 32


@dataclass(frozen=True)
class OrderKey:
    """A keyed random order of records, computed the same way on every engine.

    For integer fields ``x_1 .. x_n`` (64-bit identifiers split into two 32-bit halves,
    category codes), each of two lanes is ``(a_0 + sum_i a_i * (x_i mod P)) mod P`` with
    ``P = 2^31 - 1`` and multipliers ``a`` drawn from the seed, reduced after every term
    (so it never leaves signed 64-bit integers); the key is ``lane_1 * 2^31 + lane_2``.
    A linear hash with random multipliers is pairwise independent, so the order is a
    random order for every practical purpose; ties (two records with the same key) are
    broken by the fields themselves, so the order is total and every engine's is the same.
    The order is not part of the privacy guarantee (the bounds hold for every order): it
    keeps the choice of records from following the data's own order.
    """

    seed: int

    def multipliers(self, fields: int) -> list[list[int]]:
        """Per lane, ``a_0 .. a_fields``: each in [1, P), from a hash of the seed."""
        lanes = []
        for lane in range(_LANES):
            values = []
            for position in range(fields + 1):
                digest = hashlib.blake2b(
                    f"{self.seed}:{lane}:{position}".encode(), digest_size=8
                ).digest()
                values.append(1 + int.from_bytes(digest, "little") % (PRIME - 1))
            lanes.append(values)
        return lanes

    def sql(self, fields: Sequence[str], *, split: Sequence[bool], dialect: SqlDialect) -> str:
        """The key as a SQL expression of integer ``fields`` (``split``: a 64-bit value)."""
        parts: list[str] = []
        for field_sql, is_wide in zip(fields, split, strict=True):
            if is_wide:
                parts += [dialect.high_half(field_sql), dialect.low_half(field_sql)]
            else:
                parts.append(f"CAST({field_sql} AS BIGINT)")
        lanes = []
        for multipliers in self.multipliers(len(parts)):
            lane = str(multipliers[0])
            for multiplier, part in zip(multipliers[1:], parts, strict=True):
                lane = f"(({lane}) + {multiplier} * (({part}) % {PRIME})) % {PRIME}"
            lanes.append(lane)
        return f"(CAST({lanes[0]} AS BIGINT) * {PRIME + 1} + CAST({lanes[1]} AS BIGINT))"

    def numpy(self, fields: Sequence[npt.NDArray[Any]], *, split: Sequence[bool]) -> Int64Array:
        """The key of arrays of integer ``fields`` (for tests and small inputs)."""
        parts: list[Int64Array] = []
        for values, is_wide in zip(fields, split, strict=True):
            if is_wide:
                unsigned = np.asarray(values).astype(np.uint64)
                parts += [
                    (unsigned // np.uint64(_HALF)).astype(np.int64),
                    (unsigned % np.uint64(_HALF)).astype(np.int64),
                ]
            else:
                parts.append(np.asarray(values).astype(np.int64))
        lanes = []
        for multipliers in self.multipliers(len(parts)):
            lane = np.full(len(parts[0]), multipliers[0], dtype=np.int64)
            for multiplier, part in zip(multipliers[1:], parts, strict=True):
                lane = (lane + multiplier * (part % PRIME)) % PRIME
            lanes.append(lane)
        key: Int64Array = lanes[0] * (PRIME + 1) + lanes[1]
        return key


class SqlDialect(ABC):
    """What differs between the SQL engines in the order key."""

    @abstractmethod
    def high_half(self, field: str) -> str:
        """The upper 32 bits of a 64-bit integer, as a non-negative integer."""

    @abstractmethod
    def low_half(self, field: str) -> str:
        """The lower 32 bits of a 64-bit integer, as a non-negative integer."""


def random_seed() -> int:
    """A fresh seed for an order key (63 bits from the operating system)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


@dataclass(frozen=True)
class LeafCounts:
    """Exact counts of records over the full cross-classification of an input's base
    columns (every combination of their public keys), stored as its non-empty leaves.

    ``codes[i, j]`` is leaf ``i``'s position in the keys of ``columns[j]``; ``counts[i]``
    its number of records. Every table of the input is a sum of leaves (:meth:`table`).
    """

    columns: tuple[str, ...]
    shape: tuple[int, ...]
    codes: Int64Array  # (leaves, columns)
    counts: Int64Array  # (leaves,)

    @classmethod
    def from_frame(
        cls, columns: Sequence[str], shape: Sequence[int], rows: Sequence[Sequence[int]]
    ) -> LeafCounts:
        """From rows of ``(code_1, .., code_n, count)``; leaves may repeat (they add up)."""
        width = len(columns)
        array = np.asarray(rows, dtype=np.int64).reshape(-1, width + 1)
        codes, counts = array[:, :width], array[:, width]
        if array.size and (codes.min() < 0 or (codes >= np.asarray(shape)).any()):
            raise AssertionError("a counted record has a value outside the public keys")
        flat = np.ravel_multi_index(tuple(codes.T), tuple(shape)) if width else np.zeros(0)
        unique, inverse = np.unique(np.asarray(flat, dtype=np.int64), return_inverse=True)
        summed = np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)
        leaf_codes = np.stack(np.unravel_index(unique, tuple(shape)), axis=1).astype(np.int64)
        keep = summed != 0
        return cls(tuple(columns), tuple(shape), leaf_codes[keep], summed[keep])

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def dense(self) -> Int64Array:
        """The whole tensor (axes in :attr:`columns` order), zeros included."""
        tensor = np.zeros(self.shape, dtype=np.int64)
        if len(self.counts):
            tensor[tuple(self.codes.T)] = self.counts
        return tensor

    def table(
        self, axes: Sequence[npt.NDArray[np.int64] | int], sizes: Sequence[int]
    ) -> Int64Array:
        """A table's counts, in the order of its keys (the first column slowest).

        Each of ``axes`` is a base column's position in :attr:`columns`, or an array
        mapping the codes of the base column it is derived from (the first entry of
        a pair ``(position, mapping)``) to its own codes; see :func:`table_axes`.
        """
        index = np.zeros(len(self.counts), dtype=np.int64)
        for axis, size in zip(axes, sizes, strict=True):
            index = index * size + _axis_codes(self, axis)
        return np.bincount(index, weights=self.counts, minlength=int(np.prod(sizes))).astype(
            np.int64
        )


def _axis_codes(leaves: LeafCounts, axis: Any) -> Int64Array:
    if isinstance(axis, tuple):
        position, mapping = axis
        codes: Int64Array = np.asarray(mapping, dtype=np.int64)[leaves.codes[:, position]]
        if (codes < 0).any():
            raise AssertionError("a counted record has no group in a derived column")
        return codes
    return leaves.codes[:, int(axis)]


def base_columns(spec: ReleaseSpec, input_name: str) -> list[str]:
    """An input's base columns (read from the data, not derived), in the spec's order."""
    source = spec.inputs[input_name]
    return [name for name, column in source.columns.items() if column.derived_from is None]


def keys(spec: ReleaseSpec, input_name: str, column: str) -> list[str]:
    """A column's public keys, in the spec's order (its codes are positions in this list)."""
    return list(spec.categories[spec.inputs[input_name].columns[column].categories].values)


def table_counts(
    spec: ReleaseSpec, input_name: str, leaves: LeafCounts, by: Sequence[str]
) -> Int64Array:
    """The exact counts of a table of ``by`` from an input's leaves, in ``keys_of`` order."""
    source = spec.inputs[input_name]
    axes: list[Any] = []
    sizes = []
    for column in by:
        declared = source.columns[column]
        sizes.append(len(keys(spec, input_name, column)))
        if declared.derived_from is None:
            axes.append(leaves.columns.index(column))
            continue
        groups = spec.categories[declared.categories].groups
        assert groups is not None  # checked by the spec
        own = keys(spec, input_name, column)
        group_of = {key: group for group, members in groups.members.items() for key in members}
        mapping = [
            own.index(group_of[key]) if key in group_of else -1
            for key in keys(spec, input_name, declared.derived_from)
        ]
        axes.append((leaves.columns.index(declared.derived_from), mapping))
    return leaves.table(axes, sizes)


@dataclass(frozen=True)
class InputCounts:
    """What an engine returns for one input: exact counts, nothing row-level."""

    leaves: LeafCounts  # the kept records, over the input's base columns
    truncation: Int64Array | None  # the exact vector of its truncation estimate, if asked


@dataclass(frozen=True)
class Checked:
    """What checking the inputs found (all private: never published)."""

    rows: dict[str, int]  # each input's number of rows (``check``'s summary)
    # Inputs the ledger fingerprints by a digest of their content computed where they
    # live (Spark tables), instead of their files' bytes.
    digests: dict[str, str]


class Loaded(ABC):
    """The checked inputs of a release, held by an engine (staged files, or tables in
    Spark), valid while the engine's ``load`` context is open."""

    engine: EngineName

    def digests(self) -> dict[str, str]:
        """Digests of the inputs that have no files here (see :class:`Checked`)."""
        return {}

    @abstractmethod
    def counts(
        self, spec: ReleaseSpec, input_name: str, *, estimate: bool, seed: int
    ) -> InputCounts:
        """The exact counts of an input's bounded records (and its estimate's vector)."""

    @abstractmethod
    def histogram(self, spec: ReleaseSpec, input_name: str, bins: int) -> Int64Array:
        """People by their number of records (all records), the last bin open-ended."""

    @abstractmethod
    def linked_counted(
        self, spec: ReleaseSpec, input_name: str, caps: Sequence[int], seed: int
    ) -> list[int]:
        """How many own people the linked projection counts under each of ``caps``."""


class Engine(ABC):
    """An engine: reads and checks a release's inputs, then counts them."""

    name: EngineName

    @abstractmethod
    def check(self, spec: ReleaseSpec, progress: Progress) -> Checked:
        """Check every input, raising :class:`InputError` with every problem."""

    @abstractmethod
    def load(self, spec: ReleaseSpec, progress: Progress) -> AbstractContextManager[Loaded]:
        """Check every input (raising :class:`InputError` with every problem) and hold
        them for counting inside the ``with`` block; working copies live in a private
        folder removed on exit (and by the next run if this one is killed)."""


def get(name: str) -> Engine:
    """The engine called ``name``."""
    if name == "polars":
        from publisher.engines.polars import PolarsEngine

        return PolarsEngine()
    if name == "duckdb":
        from publisher.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        from publisher.engines.spark import SparkEngine

        return SparkEngine()
    raise SpecError(f"engine '{name}': expected one of {', '.join(ENGINES)} (or auto)")


def choose(spec: ReleaseSpec, override: str | None = None) -> EngineName:
    """The engine a release runs on: ``override`` (``--engine``), else ``engine.name``;
    ``auto`` is Spark when an input is a Spark table, DuckDB when the inputs hold more
    than :data:`AUTO_DUCKDB_RECORDS` records (as :func:`ingest.records_estimate` counts
    them without reading the rows) and the duckdb package is installed, Polars otherwise."""
    name = override or spec.engine.name
    if name != "auto":
        for known in ENGINES:
            if name == known:
                return known
        raise SpecError(f"--engine {name}: expected auto, {', '.join(ENGINES)}")
    if any(source.format == "spark" for source in spec.inputs.values()):
        return "spark"
    from publisher import ingest

    records = sum(ingest.records_estimate(spec, name) for name in spec.inputs)
    # Without the duckdb package (an extra), Polars: slower beyond, but it runs.
    installed = importlib.util.find_spec("duckdb") is not None
    return "duckdb" if records > AUTO_DUCKDB_RECORDS and installed else "polars"


@contextmanager
def from_frames(
    spec: ReleaseSpec, name: str, frames: dict[str, pl.LazyFrame], private: Path | None
) -> Iterator[Loaded]:
    """Inputs as :func:`publisher.ingest.load` stages them (or as tests build them), held by
    the engine ``name`` for counting; working copies in ``private`` (a private folder made
    and removed here when None)."""
    with ExitStack() as stack:
        folder = private or stack.enter_context(staging.private_folder())
        if name == "polars":
            from publisher.engines.polars import PolarsInputs

            yield PolarsInputs(frames)
        elif name == "duckdb":
            from publisher.engines.duckdb import DuckDBInputs

            yield stack.enter_context(DuckDBInputs.opened(spec, frames, folder))
        elif name == "spark":
            from publisher.engines.spark import SparkInputs

            yield stack.enter_context(SparkInputs.from_frames(spec, frames, folder))
        else:
            raise SpecError(f"engine '{name}': expected one of {', '.join(ENGINES)}")
