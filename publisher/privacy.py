"""Differentially private counts with OpenDP: the only module that draws noise.

Who is protected. The spec declares privacy units (for the demo: each child victim, each
suspect). A neighbouring dataset removes one person of a unit and, along the inputs'
references, every record that depends on them (PrivateSQL's semantics, Kotsogiannis et
al., VLDB 2019): removing a victim removes their crimes, their victim record and the
suspect records of those crimes. Each input's records are reached by its own unit through
its identifier and, through its references, by the units of the inputs it points at.

How each input is bounded, before anything is counted:

- An input reached only by its own unit is truncated once to ``max_records_per_person``
  records of each person, taken in a keyed random order (so a random choice of each
  person's records is kept): on Polars by OpenDP's truncation transformation, whose
  stability map gives how many kept records one person can change (:func:`truncation`),
  in SQL by the same rule (``row_number() <= k`` per person).
- An input also reached by a linked unit (suspect records, reached by victims through
  their crimes) counts each own person once, and at most ``m`` own people per linked
  person, by :func:`linked_projection`, a greedy matching in a random order whose bounds
  are proved there.

The exact counts of the kept records (every public key combination, true zeros included)
are then measured by OpenDP: integer noise added to each count vector at the scale
:mod:`publisher.accounting` planned, and each unit's loss read from OpenDP's privacy map at
the vector's sensitivity for that unit. Counts are signed: negative noisy counts are kept.

Each input whose bounds can leave records out also gets a small noisy measurement of how
much they left out (see :mod:`publisher.accounting`), so the release can say so.

The bounding and the counting run on an engine (:mod:`publisher.engines`: Polars in
memory, DuckDB out of core, or Spark), which returns exact counts only; the noise and the
accounting are OpenDP's, here and in :mod:`publisher.accounting`, whatever the engine.

Nothing private leaves this module but noisy counts and the public description of their
noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from itertools import product
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from opendp.accuracy import (
    discrete_gaussian_scale_to_accuracy,
    discrete_laplacian_scale_to_accuracy,
)
from opendp.combinators import make_zCDP_to_approxDP
from opendp.context import domain_of
from opendp.domains import atom_domain
from opendp.extras.polars import Bound
from opendp.measurements import make_gaussian
from opendp.metrics import absolute_distance, frame_distance, symmetric_id_distance
from opendp.mod import enable_features
from opendp.transformations import make_stable_lazyframe

from publisher import accounting, engines, ingest, staging, strategy
from publisher.accounting import Accounting, Planned, histogram_bins
from publisher.engines import LeafCounts, Loaded
from publisher.progress import Progress, quiet
from publisher.spec import ReleaseSpec, Table

__all__ = [
    "CONFIDENCE",
    "ONE_PERSON",
    "BoundedInput",
    "Measurements",
    "NoisyTable",
    "TruncationMeasurement",
    "bound_input",
    "epsilon_delta",
    "keys_of",
    "linked_projection",
    "measure",
    "placeholder",
    "prepare",
    "truncation",
    "truncation_bound",
]

# Features are enabled once, here, explicitly: "contrib" gives the Polars and vector
# constructors this module uses; nothing else is switched on. (OpenDP's modules are
# imported one by one: its prelude also imports scikit-learn, a second of start-up.)
enable_features("contrib")

CONFIDENCE = 0.95
NOISY_COUNT = "noisy_count"
# The privacy unit as OpenDP's frame distance states it: one person (one identifier).
ONE_PERSON = [Bound(per_group=1)]
# Edges of the linked projection are processed in chunks, so memory stays bounded.
_CHUNK = 1 << 20

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class NoisyTable:
    """The noisy counts of one table, with what is public about their noise."""

    name: str
    by: tuple[str, ...]
    noisy_counts: pl.DataFrame  # the key columns, then ``noisy_count`` (Int64, signed)
    distribution: str  # as OpenDP names it, e.g. "Integer Gaussian"
    scale: float
    unit_losses: dict[str, float]  # per unit reaching the table, by OpenDP's privacy map
    sensitivity: dict[str, int]  # per unit: how far one person can move the counts

    @property
    def loss(self) -> float:
        """The table's loss for the unit it costs most (its part of the release's loss)."""
        return max(self.unit_losses.values(), default=0.0)

    @property
    def margin_95(self) -> float:
        """OpenDP's 95% accuracy of one cell's noise: |noisy - exact| < margin_95 w.p. 0.95."""
        return noise_accuracy(self.distribution, self.scale)

    @property
    def variance(self) -> float:
        """The variance of one cell's noise (discrete Laplace exactly; Gaussian bounded)."""
        return noise_variance(self.distribution, self.scale)


@dataclass(frozen=True)
class TruncationMeasurement:
    """A noisy measurement of what an input's bounds left out.

    ``histogram``: people by their number of records (``bins``), each person in one bin,
    the last bin open-ended; the bound is ``max_records_per_person``. ``linked``: one
    count, of own people that a bound of ``reference_bound`` per linked person would count
    and the release's bound ``bound`` does not.
    """

    input: str
    kind: Literal["histogram", "linked"]
    unit: str  # the unit whose bound it measures
    bound: int
    reference_bound: int | None
    bins: tuple[str, ...]
    noisy_counts: tuple[int, ...]
    distribution: str
    scale: float
    unit_losses: dict[str, float]
    sensitivity: dict[str, int]

    @property
    def variance(self) -> float:
        return noise_variance(self.distribution, self.scale)


@dataclass(frozen=True)
class NoisyQuery:
    """One noisy vector of a strategy's integer queries, as OpenDP released it."""

    name: str  # the ledger's name for it ("crimes: residuals")
    noisy: tuple[int, ...]
    distribution: str
    scale: float
    unit_losses: dict[str, float]
    sensitivity: dict[str, int]  # OpenDP's input distance for one person of each unit

    @property
    def variance(self) -> float:
        return noise_variance(self.distribution, self.scale)


@dataclass(frozen=True)
class DesignMeasurement:
    """An input's tables measured together by its strategy (zCDP): what was measured
    (:class:`strategy.Design`, public) and the noisy answers of its queries."""

    input: str
    design: strategy.Design
    queries: tuple[NoisyQuery, ...]

    @property
    def unit_losses(self) -> dict[str, float]:
        return accounting.unit_totals(query.unit_losses for query in self.queries)


@dataclass(frozen=True)
class Measurements:
    """Everything released by OpenDP for one release, and its accounting per unit.

    Under zCDP each input's tables are measured together (``designs``); under pure DP each
    table is measured alone (``tables``).
    """

    model: str  # "zcdp" or "pure"
    tables: tuple[NoisyTable, ...]
    truncation: tuple[TruncationMeasurement, ...]
    unit_losses: dict[str, float]  # each unit's loss over every measurement (OpenDP's maps)
    delta: float  # the delta at which zCDP losses are stated as (epsilon, delta)
    opendp_version: str
    designs: tuple[DesignMeasurement, ...] = ()

    @property
    def total_loss(self) -> float:
        """The release's loss: what the unit that loses most loses."""
        return max(self.unit_losses.values(), default=0.0)

    @property
    def epsilon(self) -> float:
        """The release's loss as epsilon (at :attr:`delta` under zCDP)."""
        return epsilon_delta(self.model, self.total_loss, self.delta)[0]

    def unit_epsilon(self, unit: str) -> float:
        return epsilon_delta(self.model, self.unit_losses[unit], self.delta)[0]

    def table(self, name: str) -> NoisyTable | None:
        """A table's own noisy counts (pure DP), None when measured with its input (zCDP)."""
        return next((table for table in self.tables if table.name == name), None)

    def design(self, input_name: str) -> DesignMeasurement | None:
        return next((item for item in self.designs if item.input == input_name), None)


def noise_variance(distribution: str, scale: float) -> float:
    """The variance of OpenDP's integer noise (discrete Laplace exactly; the discrete
    Gaussian's variance is at most its scale squared)."""
    if distribution == "Integer Laplace":
        decay = math.exp(-1.0 / scale)
        return 2.0 * decay / (1.0 - decay) ** 2
    return scale**2


def noise_accuracy(distribution: str, scale: float) -> float:
    """OpenDP's 95% accuracy of one noisy count."""
    alpha = 1.0 - CONFIDENCE
    if distribution == "Integer Gaussian":
        return float(discrete_gaussian_scale_to_accuracy(scale, alpha))
    return float(discrete_laplacian_scale_to_accuracy(scale, alpha))


def keys_of(spec: ReleaseSpec, table: Table) -> pl.DataFrame:
    """Every public key combination of a table, in the spec's order."""
    values = [spec.category_of(table, column).values for column in table.by]
    rows = list(product(*values))
    return pl.DataFrame(rows, schema=[(column, pl.String) for column in table.by], orient="row")


def epsilon_delta(model: str, loss: float, delta: float) -> tuple[float, float]:
    """The (epsilon, delta) statement of a loss, by OpenDP's own conversion.

    For zCDP, a Gaussian mechanism whose privacy map gives exactly ``loss`` at the chosen
    input distance is converted with ``make_zCDP_to_approxDP``; pure DP is (epsilon, 0).
    """
    if model == "pure":
        return loss, 0.0
    if loss <= 0:
        return 0.0, delta
    gaussian = make_gaussian(atom_domain(T=float, nan=False), absolute_distance(T=float), scale=1.0)
    # rho = d_in**2 / (2 * scale**2) for this mechanism.
    profile = make_zCDP_to_approxDP(gaussian).map(math.sqrt(2.0 * loss))  # type: ignore[no-untyped-call]
    return float(profile.epsilon(delta)), delta


# --- bounding the records of an input ---------------------------------------------------


@dataclass(frozen=True)
class BoundedInput:
    """The exact counts an input's measurements need, from its bounded records."""

    leaves: LeafCounts  # the kept records over the input's base columns (every table a sum)
    tables: dict[str, Int64Array]  # table name -> counts in the order of keys_of
    truncation: Int64Array | None  # the exact vector of its truncation estimate, if any

    def workload_leaves(self, spec: ReleaseSpec, input_name: str) -> Int64Array:
        """Counts by every key combination of the base columns the input's tables use (one
        axis each, zeros included, in the order of ``strategy.workload_from_spec``): what
        a strategy's queries combine."""
        attributes = strategy.workload_from_spec(spec, input_name).attributes
        sizes = [size for _, size in attributes]
        axes = [self.leaves.columns.index(name) for name, _ in attributes]
        return self.leaves.table(axes, sizes).reshape(sizes)


def linked_projection(
    own: Sequence[int] | Int64Array,
    linked: Sequence[int] | Int64Array,
    own_people: int,
    linked_people: int,
    caps: Sequence[int],
) -> list[npt.NDArray[np.bool_]]:
    """For each cap ``m`` in ``caps``: which own people a greedy matching counts, taking
    the edges ``(own[i], linked[i])`` in the given (random) order and keeping an edge when
    its own person is not yet counted and its linked person has fewer than ``m`` counted.
    People are numbered from 0; each edge is a distinct pair.

    The bounds the release relies on (proved here; checked by the privacy audit):

    Let ``G`` be the edges and ``G'`` the edges without those of one person ``x``, in the
    same order, and compare the two runs. Remove ``x``'s edges one at a time, the last in
    the order first. Removing an edge that the current run did not keep changes nothing
    (the runs agree up to it and it changed no count). Removing a kept edge ``(x, y)``, when
    ``x`` has no later edges: afterwards the runs' counts differ at ``x`` (irrelevant: it
    has no later edges) and at ``y`` by one. By induction over the later edges, at any
    time the runs' counts differ, apart from ``x``, at one node at most, by one: an edge
    not touching that node is decided the same in both runs; an edge touching it is
    decided the same, or differently, and then the difference moves to its other end
    (the node is then level, the other end differs by one). So each removed kept edge
    changes, at the end, whether one other node is matched at most, and the order of
    removal ensures at most ``deg(x)`` kept edges are removed: ``m`` for a linked person,
    one for an own person (each own person keeps at most one edge).

    The sign follows the path: removing a linked person starts the difference at an own
    person who lost an edge, and own people on the path only ever lose: at most ``m``
    own people stop being counted, none start. Removing an own person (who stops being
    counted) starts it at a linked person with a free place, and at most one other own
    person starts being counted. With each own person's columns the same on all their
    records (checked when the input is read), a count vector over own people therefore
    moves by at most ``m`` (L1 and L2) for a linked person and by at most 2 (L1; L2 at
    most 2 too) for an own person.
    """
    own_codes = np.asarray(own, dtype=np.int64)
    linked_codes = np.asarray(linked, dtype=np.int64)
    counted = [bytearray(own_people) for _ in caps]
    places = [[0] * linked_people for _ in caps]
    for start in range(0, len(own_codes), _CHUNK):
        pairs = list(
            zip(
                own_codes[start : start + _CHUNK].tolist(),
                linked_codes[start : start + _CHUNK].tolist(),
                strict=True,
            )
        )
        for cap, done, used in zip(caps, counted, places, strict=True):
            for person, other in pairs:
                if not done[person] and used[other] < cap:
                    done[person] = 1
                    used[other] += 1
    return [np.frombuffer(bytes(done), dtype=np.uint8).astype(bool) for done in counted]


def bound_input(
    spec: ReleaseSpec,
    input_name: str,
    inputs: Loaded | pl.LazyFrame,
    private: Path | None = None,
    *,
    order_seed: int | None = None,
    engine: str = "polars",
) -> BoundedInput:
    """Bound the records of one input as the module docstring says and count them, on
    the engine that holds ``inputs`` (see :mod:`publisher.engines`).

    ``inputs`` is what an engine's ``load`` gives, or one input as :func:`ingest.load`
    stages it (or as :func:`prepare` makes it), counted by ``engine``. ``private`` is a
    private folder for working copies (made and removed here when None). ``order_seed``
    fixes the keyed random order (for the audit and the tests of the engines).
    """
    seed = engines.random_seed() if order_seed is None else order_seed
    estimate = input_name in spec.truncation_inputs
    if isinstance(inputs, Loaded):
        counted = inputs.counts(spec, input_name, estimate=estimate, seed=seed)
    else:
        with engines.from_frames(spec, engine, {input_name: inputs}, private) as loaded:
            counted = loaded.counts(spec, input_name, estimate=estimate, seed=seed)
    tables = {
        table.name: engines.table_counts(spec, input_name, counted.leaves, table.by)
        for table in spec.tables
        if table.input == input_name
    }
    return BoundedInput(counted.leaves, tables, counted.truncation)


def truncation_bound(truncate: Any) -> int:
    """How many kept records one person can change, by OpenDP's stability map."""
    (bound,) = truncate.map(ONE_PERSON)
    return int(bound.per_group)


def prepare(spec: ReleaseSpec, input_name: str, frame: pl.LazyFrame) -> pl.LazyFrame:
    """An input as the measurements read it: the identifier as a 64-bit hash (a fraction
    of the memory of text, much faster to group by) and the categorical columns as enums.
    Inputs staged by :func:`ingest.load` are in this form already; text frames are
    hashed the same way. A hash collision could only merge two people into one, whose
    records are then bounded together: the protection is never weaker."""
    source = spec.inputs[input_name]
    schema = frame.collect_schema()
    hashed = [
        pl.col(column)
        if schema[column] == pl.UInt64
        else ingest.identifier_hash(pl.col(column)).alias(column)
        for column in [source.identifier, *map(ingest.linked_column, source.linked_units)]
        if column in schema
    ]
    return frame.with_columns(
        *hashed,
        *(pl.col(column).cast(_enum(spec, input_name, column)) for column in source.columns),
    )


def _enum(spec: ReleaseSpec, input_name: str, column: str) -> pl.Enum:
    return pl.Enum(spec.categories[spec.inputs[input_name].columns[column].categories].values)


def truncation(spec: ReleaseSpec, input_name: str, schema: pl.Schema) -> Any:
    """OpenDP's transformation that keeps at most ``max_records_per_person`` records of each
    person of an input (its first ones, in the order of the data).

    Its stability map turns "one person" (:data:`ONE_PERSON`) into how many records that
    person can change afterwards: the sensitivity of every count table of the input. With
    one record per person the truncation is a group-by on the identifier (OpenDP accepts
    both forms; the group-by is several times faster on millions of rows).
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


# --- measuring -------------------------------------------------------------------------


def _noisy(planned: Planned, exact: Int64Array) -> list[int]:
    """OpenDP's noisy release of one exact count vector."""
    if len(exact) != planned.cells:
        raise AssertionError(f"{planned.name}: {len(exact)} counts for {planned.cells} cells")
    return [int(value) for value in planned.measurement()(exact.tolist())]


def _truncation_measurement(
    spec: ReleaseSpec, planned: Planned, values: Sequence[int]
) -> TruncationMeasurement:
    source = spec.inputs[planned.input]
    if source.linked_units:
        ((unit, linked),) = source.linked_units.items()
        bound = linked.max_records_per_person
        reference: int | None = accounting.LINKED_REFERENCE_FACTOR * bound
        kind: Literal["histogram", "linked"] = "linked"
        bins: tuple[str, ...] = ("left out",)
    else:
        unit, bound, reference, kind = source.unit, source.max_records_per_person, None, "histogram"
        bins = tuple(histogram_bins(bound))
    return TruncationMeasurement(
        input=planned.input,
        kind=kind,
        unit=unit,
        bound=bound,
        reference_bound=reference,
        bins=bins,
        noisy_counts=tuple(values),
        distribution=planned.distribution,
        scale=planned.scale,
        unit_losses=dict(planned.unit_losses),
        sensitivity=dict(planned.sensitivity),
    )


def _noisy_table(spec: ReleaseSpec, planned: Planned, values: Sequence[int]) -> NoisyTable:
    table = spec.table(planned.name)
    noisy_counts = keys_of(spec, table).with_columns(
        pl.Series(NOISY_COUNT, list(values), dtype=pl.Int64)
    )
    return NoisyTable(
        name=table.name,
        by=tuple(table.by),
        noisy_counts=noisy_counts,
        distribution=planned.distribution,
        scale=planned.scale,
        unit_losses=dict(planned.unit_losses),
        sensitivity=dict(planned.sensitivity),
    )


def _measurements(
    spec: ReleaseSpec, plan: Accounting, values: dict[tuple[str, str], Sequence[int]]
) -> Measurements:
    """The release's measurements from each planned measurement's noisy (or placeholder)
    values, keyed by (kind, name)."""
    tables = tuple(
        _noisy_table(spec, planned, values[("table", planned.name)])
        for planned in plan.measurements
        if planned.kind == "table"
    )
    designs = tuple(
        DesignMeasurement(
            input=input_name,
            design=design,
            queries=tuple(
                NoisyQuery(
                    name=planned.name,
                    noisy=tuple(values[("design", planned.name)]),
                    distribution=planned.distribution,
                    scale=planned.scale,
                    unit_losses=dict(planned.unit_losses),
                    sensitivity=dict(planned.sensitivity),
                )
                for planned in plan.of_input(input_name)
                if planned.kind == "design"
            ),
        )
        for input_name, design in plan.designs.items()
    )
    truncation_measurements = tuple(
        _truncation_measurement(spec, planned, values[("truncation", planned.name)])
        for planned in plan.measurements
        if planned.kind == "truncation"
    )
    return Measurements(
        model=plan.model,
        tables=tables,
        truncation=truncation_measurements,
        unit_losses=dict(plan.unit_losses),
        delta=spec.privacy.delta,
        opendp_version=version("opendp"),
        designs=designs,
    )


def measure(
    spec: ReleaseSpec,
    frames: Loaded | Mapping[str, pl.LazyFrame],
    progress: Progress = quiet,
) -> Measurements:
    """Release every measurement of the spec with OpenDP. This spends the spec's loss.

    Each input is bounded once (see the module docstring), in a private temporary folder
    removed afterwards, and its exact counts measured at the scales and losses that
    :func:`accounting.account` planned from the spec.
    """
    plan = accounting.account(spec)
    values: dict[tuple[str, str], Sequence[int]] = {}
    with staging.private_folder() as private:
        for input_name in spec.inputs:
            planned = plan.of_input(input_name)
            if not planned:
                continue
            progress(f"Bounding {input_name}", None)
            bounded = bound_input(spec, input_name, _input(frames, input_name), private)
            exact = _exact_answers(spec, plan, input_name, bounded)
            for done, item in enumerate(planned):
                progress(f"Measuring the {input_name} tables", done / len(planned))
                values[(item.kind, item.name)] = _noisy(item, exact[(item.kind, item.name)])
    return _measurements(spec, plan, values)


def _exact_answers(
    spec: ReleaseSpec, plan: Accounting, input_name: str, bounded: BoundedInput
) -> dict[tuple[str, str], Int64Array]:
    """The exact vector each planned measurement of an input adds noise to."""
    answers: dict[tuple[str, str], Int64Array] = {}
    design = plan.designs.get(input_name)
    if design is not None:
        vectors = design.answers(design.leaf_counts(bounded.workload_leaves(spec, input_name)))
        names = [item.name for item in plan.of_input(input_name) if item.kind == "design"]
        answers |= {("design", name): vector for name, vector in zip(names, vectors, strict=True)}
    for item in plan.of_input(input_name):
        if item.kind == "table":
            answers[("table", item.name)] = bounded.tables[item.name]
        elif item.kind == "truncation":
            assert bounded.truncation is not None  # an input with a planned estimate has one
            answers[("truncation", item.name)] = bounded.truncation
    return answers


def placeholder(
    spec: ReleaseSpec, plan: Accounting | None = None, *, varied: bool = False
) -> Measurements:
    """Measurements of the right shape for a dry run: the same accounting as
    :func:`measure` (or ``plan``), every table and key, no data read and no noise drawn.

    Every noisy count is zero, or with ``varied`` (the package's dry run, see
    ``pipeline.rehearse``) the counts cycle through a negative count, zero, a count below
    the threshold and large ones, so that every rule (markers, intervals, shares, what
    the bounds left out) is exercised on the way to a package.
    """
    plan = plan or accounting.account(spec)
    rules = spec.disclosure
    cycle = [-2, 0, max(rules.threshold // 2, 1), 40 * (rules.threshold + rules.rounding_base)]

    def counts(size: int) -> list[int]:
        return [cycle[index % len(cycle)] + index if varied else 0 for index in range(size)]

    values: dict[tuple[str, str], Sequence[int]] = {
        (item.kind, item.name): counts(item.cells) for item in plan.measurements
    }
    # A strategy's queries answer for counts by key: varied counts by key, so the tables
    # estimated from them vary as a table measured alone would.
    for input_name, design in plan.designs.items():
        shape = tuple(size for _, size in strategy.workload_from_spec(spec, input_name).attributes)
        leaves = np.asarray(counts(math.prod(shape)), dtype=np.int64).reshape(shape)
        answers = design.answers(design.leaf_counts(leaves))
        names = [item.name for item in plan.of_input(input_name) if item.kind == "design"]
        values |= {
            ("design", name): answer.tolist() for name, answer in zip(names, answers, strict=True)
        }
    return _measurements(spec, plan, values)


# --- choosing the bounds ---------------------------------------------------------------


# Candidate bounds for an input linked to another unit (own people per linked person).
LINKED_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16)


@dataclass(frozen=True)
class BoundsMeasurement:
    """A noisy measurement for choosing one input's bound (``publisher bounds``).

    ``histogram``: people by their number of records, bins ``1`` to ``top`` and ``top``
    or more (each person in one bin). ``linked``: for each candidate bound on own people
    per linked person, how many own people the linked projection counts.
    """

    input: str
    kind: Literal["histogram", "linked"]
    unit: str  # the unit whose bound is being chosen
    candidates: tuple[int, ...]  # histogram: records 1..top; linked: candidate bounds
    noisy_counts: tuple[int, ...]
    distribution: str
    scales: tuple[float, ...]  # one per count (linked) or one for all (histogram)
    unit_losses: dict[str, float]


def bounds_plan(spec: ReleaseSpec, loss: float) -> list[Planned]:
    """The measurements of ``publisher bounds``: ``loss`` shared evenly by the inputs that
    have a bound to choose; within a linked input, shared by the candidate bounds so that
    each count gets the same noise. Sensitivities as in :mod:`publisher.accounting`."""
    inputs = [
        name
        for name, source in spec.inputs.items()
        if any(table.input == name for table in spec.tables)
        and (source.linked_units or not source.unique_identifier)
    ]
    planned: list[Planned] = []
    for name in inputs:
        source = spec.inputs[name]
        share = loss / len(inputs)
        if not source.linked_units:
            top = 4 * source.max_records_per_person + 4
            planned.append(
                accounting.calibrated(spec, name, "bounds", name, top + 1, share, {source.unit: 1})
            )
            continue
        ((unit, _),) = source.linked_units.items()
        power = 2 if spec.privacy.model == "zcdp" else 1
        weights = [m**power for m in LINKED_CANDIDATES]
        for m, weight in zip(LINKED_CANDIDATES, weights, strict=True):
            planned.append(
                accounting.calibrated(
                    spec,
                    f"{name}:{m}",
                    "bounds",
                    name,
                    1,
                    share * weight / sum(weights),
                    {source.unit: 1, unit: m},
                )
            )
    return planned


def _input(frames: Loaded | Mapping[str, pl.LazyFrame], input_name: str) -> Loaded | pl.LazyFrame:
    """One input of ``frames``: an engine's loaded inputs, or the staged frame."""
    return frames if isinstance(frames, Loaded) else frames[input_name]


@contextmanager
def _loaded(spec: ReleaseSpec, frames: Loaded | Mapping[str, pl.LazyFrame]) -> Iterator[Loaded]:
    """``frames`` as an engine's loaded inputs (staged frames: counted by Polars)."""
    if isinstance(frames, Loaded):
        yield frames
    else:
        with engines.from_frames(spec, "polars", dict(frames), None) as loaded:
            yield loaded


def measure_bounds(
    spec: ReleaseSpec, frames: Loaded | Mapping[str, pl.LazyFrame], plan: list[Planned]
) -> list[BoundsMeasurement]:
    """Draw the measurements of :func:`bounds_plan` with OpenDP. This spends their loss."""
    results = []
    with _loaded(spec, frames) as loaded:
        for input_name in dict.fromkeys(item.input for item in plan):
            items = [item for item in plan if item.input == input_name]
            source = spec.inputs[input_name]
            unit_losses = accounting.unit_totals(item.unit_losses for item in items)
            if not source.linked_units:
                (item,) = items
                top = item.cells - 1
                exact = loaded.histogram(spec, input_name, item.cells)
                results.append(
                    BoundsMeasurement(
                        input=input_name,
                        kind="histogram",
                        unit=source.unit,
                        candidates=tuple(range(1, top + 1)),
                        noisy_counts=tuple(_noisy(item, exact)),
                        distribution=item.distribution,
                        scales=(item.scale,),
                        unit_losses=unit_losses,
                    )
                )
                continue
            ((unit, _),) = source.linked_units.items()
            counted = loaded.linked_counted(
                spec, input_name, LINKED_CANDIDATES, engines.random_seed()
            )
            values = [
                _noisy(item, np.asarray([count], dtype=np.int64))[0]
                for item, count in zip(items, counted, strict=True)
            ]
            results.append(
                BoundsMeasurement(
                    input=input_name,
                    kind="linked",
                    unit=unit,
                    candidates=LINKED_CANDIDATES,
                    noisy_counts=tuple(values),
                    distribution=items[0].distribution,
                    scales=tuple(item.scale for item in items),
                    unit_losses=unit_losses,
                )
            )
    return results
