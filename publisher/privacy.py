"""Differentially private counts with OpenDP: the only module that counts row-level data.

The privacy unit is the person named by an input's identifier column. Each input is
truncated once, by OpenDP's truncation transformation, to the spec's
``max_records_per_person`` records of each person; OpenDP's stability map of that
transformation says how far one person can move the truncated records, and one OpenDP
Context per input measures every table of the input on them. The spec's total loss is
split across tables by weight; each table is measured at the noise scale its share calls
for, OpenDP's privacy map and compositor check the loss, and OpenDP adds the noise. Keys
come from the spec, so every cell, true zeros included, is measured. Counts are signed:
negative noisy counts are kept, not clamped.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from itertools import product
from pathlib import Path
from typing import Any

import polars as pl
from opendp.accuracy import summarize_polars_measurement
from opendp.combinators import make_zCDP_to_approxDP
from opendp.context import Context, domain_of, loss_of
from opendp.domains import atom_domain
from opendp.extras.polars import Bound, dp_len
from opendp.measurements import make_gaussian, make_private_lazyframe
from opendp.measures import max_divergence, zero_concentrated_divergence
from opendp.metrics import absolute_distance, frame_distance, symmetric_id_distance
from opendp.mod import enable_features
from opendp.transformations import make_stable_lazyframe

from publisher import ingest, staging
from publisher.progress import Progress, quiet
from publisher.spec import ReleaseSpec, Table

__all__ = [
    "CONFIDENCE",
    "ONE_PERSON",
    "Measurements",
    "NoisyTable",
    "epsilon_delta",
    "keys_of",
    "measure",
    "prepare",
    "table_measurement",
    "truncation",
]

# Features are enabled once, here, explicitly: "contrib" gives the Polars and composition
# constructors this module uses; nothing else is switched on. (OpenDP's modules are
# imported one by one: its prelude also imports scikit-learn, a second of start-up.)
enable_features("contrib")

CONFIDENCE = 0.95
NOISY_COUNT = "noisy_count"
# The privacy unit as OpenDP's frame distance states it: one person (one identifier).
ONE_PERSON = [Bound(per_group=1)]


@dataclass(frozen=True)
class NoisyTable:
    """The noisy counts of one table, with what is public about their noise."""

    name: str
    by: tuple[str, ...]
    noisy_counts: pl.DataFrame  # the key columns, then ``noisy_count`` (Int64, signed)
    distribution: str  # as OpenDP names it, e.g. "Integer Gaussian"
    scale: float
    margin_95: float  # OpenDP's 95% accuracy: |noisy - exact| <= margin_95 w.p. 0.95
    loss: float  # the table's privacy loss by OpenDP's privacy map (rho or epsilon)

    @property
    def variance(self) -> float:
        """The variance of one cell's noise (discrete Laplace exactly; Gaussian bounded)."""
        if self.distribution == "Integer Laplace":
            decay = math.exp(-1.0 / self.scale)
            return 2.0 * decay / (1.0 - decay) ** 2
        return self.scale**2


@dataclass(frozen=True)
class Measurements:
    """Everything released by OpenDP for one release, and its accounting."""

    model: str  # "zcdp" or "pure"
    tables: tuple[NoisyTable, ...]
    input_loss: dict[str, float]  # per input, from each Context's accountant
    total_loss: float
    epsilon: float
    delta: float
    opendp_version: str

    def table(self, name: str) -> NoisyTable:
        return next(table for table in self.tables if table.name == name)


def keys_of(spec: ReleaseSpec, table: Table) -> pl.DataFrame:
    """Every public key combination of a table, in the spec's order."""
    values = [spec.category_of(table, column).values for column in table.by]
    rows = list(product(*values))
    return pl.DataFrame(rows, schema=[(column, pl.String) for column in table.by], orient="row")


def _loss_of(model: str, loss: float) -> Any:
    # OpenDP warns about large losses on stderr; `publisher check` states that guidance
    # itself (see spec.Privacy.caution), so the library stays quiet here.
    opendp_log = logging.getLogger("opendp")
    level = opendp_log.level
    opendp_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return loss_of(rho=loss) if model == "zcdp" else loss_of(epsilon=loss)
    finally:
        opendp_log.setLevel(level)


def epsilon_delta(model: str, loss: float, delta: float) -> tuple[float, float]:
    """The (epsilon, delta) statement of a total loss, by OpenDP's own conversion.

    For zCDP, a Gaussian mechanism whose privacy map gives exactly ``loss`` at the chosen
    input distance is converted with ``make_zCDP_to_approxDP``; pure DP is (epsilon, 0).
    """
    if model == "pure":
        return loss, 0.0
    gaussian = make_gaussian(atom_domain(T=float, nan=False), absolute_distance(T=float), scale=1.0)
    # rho = d_in**2 / (2 * scale**2) for this mechanism.
    profile = make_zCDP_to_approxDP(gaussian).map(math.sqrt(2.0 * loss))  # type: ignore[no-untyped-call]
    return float(profile.epsilon(delta)), delta


def measure(
    spec: ReleaseSpec,
    frames: dict[str, pl.LazyFrame],
    progress: Progress = quiet,
) -> Measurements:
    """Release every table of the spec with OpenDP. This spends the spec's privacy loss.

    Each input is staged once, in a private temporary folder removed afterwards: shuffled,
    then truncated by OpenDP's truncation transformation to at most
    ``max_records_per_person`` records of each person, and kept as Parquet. Every table of
    the input is measured on those same truncated records, at the noise scale its loss
    calls for; the distance one person can make to them comes from the truncation's
    stability map, OpenDP's privacy map checks each table's scale against its share, and
    OpenDP's compositor checks every table against the input's loss.
    """
    model = spec.privacy.model
    tables: dict[str, NoisyTable] = {}
    input_loss: dict[str, float] = {}
    with staging.private_folder() as private:
        for input_name in spec.inputs:
            input_tables = [table for table in spec.tables if table.input == input_name]
            if not input_tables:
                continue
            progress(f"Truncating {input_name}", None)
            truncate, data = _stage(spec, input_name, frames[input_name], private)
            distance = truncate.map(ONE_PERSON)
            losses = [spec.table_loss(table) for table in input_tables]
            budget = math.fsum(losses)
            context = Context.compositor(
                data=data,
                privacy_unit=(truncate.output_metric, distance),
                domain=truncate.output_domain,
                privacy_loss=_loss_of(model, budget),
                split_by_weights=[loss / budget for loss in losses],
            )
            for done, table in enumerate(input_tables):
                progress(f"Measuring the {input_name} tables", done / len(input_tables))
                tables[table.name] = _release_table(spec, table, context, truncate, distance, data)
            input_loss[input_name] = float(context.accountant.map(distance))
    total = math.fsum(input_loss.values())
    epsilon, delta = epsilon_delta(model, total, spec.privacy.delta)
    return Measurements(
        model=model,
        tables=tuple(tables[table.name] for table in spec.tables),
        input_loss=input_loss,
        total_loss=total,
        epsilon=epsilon,
        delta=delta,
        opendp_version=version("opendp"),
    )


def _stage(
    spec: ReleaseSpec, input_name: str, frame: pl.LazyFrame, private: Path
) -> tuple[Any, pl.LazyFrame]:
    """Stage one input: its truncation and a scan of the records it keeps.

    The prepared records are written in random order, so the truncation keeps a random
    choice of each person's records; OpenDP's transformation then runs once, on a scan of
    that file (a scan crosses into OpenDP as a small plan, in-memory data would be copied),
    and only the records it keeps stay on disk.
    """
    # A folder of its own (not named after the input: names come from the spec).
    folder = Path(tempfile.mkdtemp(prefix="input-", dir=private))
    shuffled, staged = folder / "shuffled.parquet", folder / "truncated.parquet"
    prepare(spec, input_name, frame).collect(engine="streaming").sample(
        fraction=1.0, shuffle=True
    ).write_parquet(shuffled)
    source = pl.scan_parquet(shuffled)
    truncate = truncation(spec, input_name, source.collect_schema())
    truncate(source).collect().write_parquet(staged)
    shuffled.unlink()
    return truncate, pl.scan_parquet(staged)


def prepare(spec: ReleaseSpec, input_name: str, frame: pl.LazyFrame) -> pl.LazyFrame:
    """An input as the measurements read it: the identifier as a 64-bit hash (a fraction
    of the memory of text, much faster to group by) and the categorical columns as enums.
    Inputs staged by :func:`ingest.load` are in this form already; text frames are
    hashed the same way. A hash collision could only merge two people into one, whose
    records are then bounded together: the protection is never weaker."""
    source = spec.inputs[input_name]
    identifier = pl.col(source.identifier)
    if frame.collect_schema()[source.identifier] != pl.UInt64:
        identifier = ingest.identifier_hash(identifier)
    return frame.with_columns(
        identifier,
        *(pl.col(column).cast(_enum(spec, input_name, column)) for column in source.columns),
    )


def _enum(spec: ReleaseSpec, input_name: str, column: str) -> pl.Enum:
    return pl.Enum(spec.categories[spec.inputs[input_name].columns[column].categories].values)


def truncation(spec: ReleaseSpec, input_name: str, schema: pl.Schema) -> Any:
    """OpenDP's transformation that keeps at most ``max_records_per_person`` records of each
    person of an input (its first ones, in the order of the data).

    Its stability map turns "one person" (:data:`ONE_PERSON`) into how many records that
    person can change afterwards, which is what every table of the input is measured
    against. With one record per person the truncation is a group-by on the identifier
    (OpenDP accepts both forms; the group-by is several times faster on millions of rows).
    """
    source = spec.inputs[input_name]
    identifier = source.identifier
    k = source.max_records_per_person
    empty = pl.LazyFrame(schema=schema)
    if k == 1:
        others = [column for column in schema.names() if column != identifier]
        plan = empty.group_by(identifier).agg(pl.col(others).first())
    else:
        plan = empty.filter(pl.int_range(pl.len()).over(identifier) < k)
    return make_stable_lazyframe(
        domain_of(empty, infer=True),
        frame_distance(symmetric_id_distance(identifier)),
        plan,
        MO="FrameDistance<SymmetricDistance>",
    )


def table_measurement(
    spec: ReleaseSpec, table: Table, truncate: Any, data: pl.LazyFrame, loss: float
) -> Any:
    """The OpenDP measurement of one table, on its input's truncated records, at the scale
    its share of the loss calls for.

    ``truncate`` is the input's :func:`truncation`, ``data`` the records it kept and
    ``loss`` the table's share of the loss, as the compositor holds it. The query counts
    by the table's columns and joins the public keys, so every cell is measured. The
    scale is the one the loss calls for given the per-person bound; OpenDP's privacy map
    must confirm that the measurement's loss, at the distance the truncation's stability
    map gives for one person, is within the table's share (else the scale is nudged up),
    so the accounting is OpenDP's, not ours.
    """
    k = spec.inputs[table.input].max_records_per_person
    zcdp = spec.privacy.model == "zcdp"
    by = list(table.by)
    distance = truncate.map(ONE_PERSON)
    # The plan starts from an empty frame of the data's schema; OpenDP runs it on the data.
    counted = (
        pl.LazyFrame(schema=data.collect_schema())
        .group_by(by)
        .agg(dp_len(signed=True).alias(NOISY_COUNT))
    )
    keys = keys_of(spec, table).with_columns(
        pl.col(column).cast(_enum(spec, table.input, column)) for column in by
    )
    plan = keys.lazy().join(counted, on=by, how="left", nulls_equal=True)
    scale = k / math.sqrt(2.0 * loss) if zcdp else k / loss
    for _ in range(20):
        measurement = make_private_lazyframe(
            input_domain=truncate.output_domain,
            input_metric=truncate.output_metric,
            output_measure=zero_concentrated_divergence() if zcdp else max_divergence(),
            lazyframe=plan,
            global_scale=scale,
        )
        if measurement.map(distance) <= loss:  # type: ignore[no-untyped-call]
            return measurement
        scale *= 1.0 + 1e-12
    raise AssertionError("OpenDP's privacy map does not confirm the planned scale")


def _release_table(
    spec: ReleaseSpec,
    table: Table,
    context: Any,
    truncate: Any,
    distance: Any,
    data: pl.LazyFrame,
) -> NoisyTable:
    """Measure and release one table; ``distance`` is ``truncate.map(ONE_PERSON)``."""
    # The compositor's own share for this query (the spec's split, as OpenDP rounds it).
    share = context.d_mids[0]
    measurement = table_measurement(spec, table, truncate, data, share)
    summary = summarize_polars_measurement(measurement, alpha=1.0 - CONFIDENCE).row(0, named=True)
    released = context(measurement).collect().with_columns(pl.col(table.by).cast(pl.String))
    keys = keys_of(spec, table)
    # Publish in the spec's key order, whatever order the engine returned.
    noisy_counts = keys.join(released, on=list(table.by), how="left", maintain_order="left")
    return NoisyTable(
        name=table.name,
        by=tuple(table.by),
        noisy_counts=noisy_counts,
        distribution=str(summary["distribution"]),
        scale=float(summary["scale"]),
        margin_95=float(summary["accuracy"]),
        loss=float(measurement.map(distance)),
    )
