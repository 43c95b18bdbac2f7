"""The Polars engine: each input bounded and counted in memory.

Inputs are read and checked by :func:`publisher.ingest.load` (bounded batches, staged as
Parquet in a private folder). An input reached only by its own unit is sorted in the keyed
order and truncated by OpenDP's truncation transformation (its stability map checked);
an input bounded for a linked unit runs :func:`publisher.privacy.linked_projection` on its
edges in the keyed order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from publisher import accounting, ingest
from publisher.engines import (
    _HALF,
    PRIME,
    Checked,
    Engine,
    EngineName,
    InputCounts,
    Int64Array,
    LeafCounts,
    Loaded,
    OrderKey,
    base_columns,
    keys,
)

if TYPE_CHECKING:
    from publisher.progress import Progress
    from publisher.spec import ReleaseSpec

__all__ = ["PolarsEngine", "PolarsInputs", "order_key"]

_KEY = "__order"


def order_key(order: OrderKey, fields: Sequence[pl.Expr], split: Sequence[bool]) -> pl.Expr:
    """:class:`OrderKey` as a Polars expression (the same integers as its SQL form)."""
    parts: list[pl.Expr] = []
    for field, is_wide in zip(fields, split, strict=True):
        if is_wide:
            wide = field.cast(pl.UInt64)
            parts += [(wide // _HALF).cast(pl.Int64), (wide % _HALF).cast(pl.Int64)]
        else:
            parts.append(field.cast(pl.Int64))
    lanes = []
    for multipliers in order.multipliers(len(parts)):
        lane = pl.lit(multipliers[0], dtype=pl.Int64)
        for multiplier, part in zip(multipliers[1:], parts, strict=True):
            lane = (lane + multiplier * (part % PRIME)) % PRIME
        lanes.append(lane)
    return lanes[0] * (PRIME + 1) + lanes[1]


class PolarsEngine(Engine):
    name: EngineName = "polars"

    def check(self, spec: ReleaseSpec, progress: Progress) -> Checked:
        return Checked(dict(ingest.check(spec, progress)), {})

    @contextmanager
    def load(self, spec: ReleaseSpec, progress: Progress) -> Iterator[Loaded]:
        with ingest.load(spec, progress) as frames:
            yield PolarsInputs(frames)


class PolarsInputs(Loaded):
    """Staged inputs counted in memory by Polars (and OpenDP's truncation)."""

    engine: EngineName = "polars"

    def __init__(self, frames: dict[str, pl.LazyFrame]):
        self.frames = frames

    def counts(
        self, spec: ReleaseSpec, input_name: str, *, estimate: bool, seed: int
    ) -> InputCounts:
        return bounded_counts(spec, input_name, self.frames[input_name], estimate, seed)

    def histogram(self, spec: ReleaseSpec, input_name: str, bins: int) -> Int64Array:
        from publisher import privacy

        prepared = privacy.prepare(spec, input_name, self.frames[input_name])
        return _histogram(prepared, spec.inputs[input_name].identifier, bins)

    def linked_counted(
        self, spec: ReleaseSpec, input_name: str, caps: Sequence[int], seed: int
    ) -> list[int]:
        from publisher import privacy

        source = spec.inputs[input_name]
        ((unit, _),) = source.linked_units.items()
        prepared = privacy.prepare(spec, input_name, self.frames[input_name])
        edges = _edges(prepared, source.identifier, ingest.linked_column(unit), OrderKey(seed))
        counted = privacy.linked_projection(
            edges["own_code"].to_numpy(),
            edges["linked_code"].to_numpy(),
            edges["own"].n_unique(),
            edges["linked"].n_unique(),
            list(caps),
        )
        return [int(mask.sum()) for mask in counted]


def bounded_counts(
    spec: ReleaseSpec, input_name: str, frame: pl.LazyFrame, estimate: bool, seed: int
) -> InputCounts:
    """The exact counts of one input's bounded records, and its estimate's vector."""
    from publisher import privacy

    source = spec.inputs[input_name]
    prepared = privacy.prepare(spec, input_name, frame)
    order = OrderKey(seed)
    columns = base_columns(spec, input_name)
    shape = [len(keys(spec, input_name, column)) for column in columns]
    if source.linked_units:
        people, left_out = _linked_people(spec, input_name, prepared, order)
        leaves = _leaves(people.lazy(), columns, shape)
        vector = np.asarray([left_out], dtype=np.int64) if estimate else None
        return InputCounts(leaves, vector)
    identifier = source.identifier
    codes = [pl.col(column).to_physical() for column in columns]
    ordered = (
        prepared.select(identifier, *columns)
        .with_columns(
            order_key(order, [pl.col(identifier), *codes], [True] + [False] * len(codes)).alias(
                _KEY
            )
        )
        .collect(engine="streaming")
        .sort([_KEY, *columns])
    )
    truncate = privacy.truncation(spec, input_name, ordered.schema)
    bound = privacy.truncation_bound(truncate)
    if bound != source.max_records_per_person:
        raise AssertionError(f"OpenDP's truncation bounds one person to {bound} records")
    leaves = _leaves(truncate(ordered.lazy()), columns, shape)
    vector = None
    if estimate:
        bins = len(accounting.histogram_bins(source.max_records_per_person))
        vector = _histogram(ordered.lazy(), identifier, bins)
    return InputCounts(leaves, vector)


def _leaves(kept: pl.LazyFrame, columns: Sequence[str], shape: Sequence[int]) -> LeafCounts:
    counted = (
        kept.group_by(columns)
        .agg(pl.len().alias("__count"))
        .select(*(pl.col(column).to_physical() for column in columns), "__count")
        .collect()
    )
    return LeafCounts.from_frame(columns, shape, counted.rows())


def _histogram(frame: pl.LazyFrame, identifier: str, bins: int) -> Int64Array:
    """People by their number of records: one bin per count from 1, the last bin for that
    many records or more (so ``bins`` bins)."""
    per_person = (
        frame.group_by(identifier)
        .agg(pl.len().clip(upper_bound=bins).alias("records"))
        .group_by("records")
        .agg(pl.len().alias("people"))
        .collect(engine="streaming")
    )
    counts = np.zeros(bins, dtype=np.int64)
    for records, people in per_person.iter_rows():
        counts[int(records) - 1] = int(people)
    return counts


def _edges(frame: pl.LazyFrame, own: str, linked: str, order: OrderKey) -> pl.DataFrame:
    """The distinct (own person, linked person) pairs of a linked input in the keyed
    order (ties broken by the pair), with the people numbered from 0."""
    return (
        frame.select(pl.col(own).alias("own"), pl.col(linked).alias("linked"))
        .unique()
        .with_columns(
            order_key(order, [pl.col("own"), pl.col("linked")], [True, True]).alias("order")
        )
        .sort(["order", "own", "linked"])
        .with_columns(
            (pl.col("own").rank("dense") - 1).cast(pl.Int64).alias("own_code"),
            (pl.col("linked").rank("dense") - 1).cast(pl.Int64).alias("linked_code"),
        )
        .collect()
    )


def _linked_people(
    spec: ReleaseSpec, input_name: str, frame: pl.LazyFrame, order: OrderKey
) -> tuple[pl.DataFrame, int]:
    """The own people a linked input counts (one row each, with their columns), and its
    truncation estimate: those a bound ``LINKED_REFERENCE_FACTOR`` times larger would
    count and the release's bound does not."""
    from publisher import privacy

    source = spec.inputs[input_name]
    ((unit, linked),) = source.linked_units.items()
    identifier = source.identifier
    edges = _edges(frame, identifier, ingest.linked_column(unit), order)
    cap = linked.max_records_per_person
    counted, reference = privacy.linked_projection(
        edges["own_code"].to_numpy(),
        edges["linked_code"].to_numpy(),
        edges["own"].n_unique(),
        edges["linked"].n_unique(),
        [cap, accounting.LINKED_REFERENCE_FACTOR * cap],
    )
    codes = edges.select("own", "own_code").unique()
    kept_codes = pl.Series("own_code", np.flatnonzero(counted), dtype=pl.Int64)
    kept = codes.join(kept_codes.to_frame(), on="own_code", how="semi").select("own")
    columns: list[Any] = list(source.columns)
    people = (
        frame.group_by(identifier)
        .agg(pl.col(columns).first())
        .join(kept.lazy(), left_on=identifier, right_on="own", how="semi")
        .collect()
    )
    return people, int(reference.sum()) - int(counted.sum())
