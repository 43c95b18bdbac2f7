"""Pure post-processing of noisy counts: consistent estimates, totals and shares.

Nothing here sees private data: everything is computed from OpenDP's noisy output and the
public description of its noise, so it costs no privacy.

Consistency. The tables of one input are all sums of the same unknown cross-classified
counts (the cells of every column they use, with derived columns such as region mapped to
the column they group). Each noisy cell is one measurement with a known noise variance.
The weighted least squares (generalised least squares) estimate of every measured cell
from all measurements together is their projection onto the consistent tables:

    y_hat = D^1/2 P D^-1/2 y,   Cov(y_hat) = D^1/2 P D^1/2,

where D is the diagonal of noise variances and P the orthogonal projection onto the range
of D^-1/2 A (A maps the cross-classified counts to the measured cells). P is found from
the Gram matrix A A^T, which is computed from the public keys alone, so the unknown
cross-classification is never built. The estimates are unbiased, agree across tables
(every total, force -> region -> all), and have the least variance of any unbiased linear
estimate (Gauss-Markov). They are not forced to be non-negative, which would bias small
cells upwards; a negative or small estimate is published as a marker instead.

Under zCDP the tables of an input are not measured cell by cell but by the queries of
their strategy (:mod:`publisher.strategy`); the least squares estimate from those noisy
answers and its exact covariance are :meth:`strategy.Design.estimate`'s, and intervals
are normal (the estimates mix integers scaled far finer than the noise). The projection
above serves pure DP, where each table is measured alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import polars as pl

from publisher import intervals
from publisher.privacy import (
    CONFIDENCE,
    NOISY_COUNT,
    DesignMeasurement,
    Measurements,
    NoisyTable,
    TruncationMeasurement,
    keys_of,
    noise_variance,
)
from publisher.spec import ReleaseSpec, Share, Table

__all__ = [
    "ESTIMATE",
    "MARGIN",
    "STANDARD_ERROR",
    "Figure",
    "Noise",
    "ShareEstimate",
    "TableEstimates",
    "TruncationEstimate",
    "consistent_estimates",
    "estimate_share",
    "projection",
    "quantile",
    "truncation_estimate",
    "with_totals",
]

ESTIMATE = "estimate"
STANDARD_ERROR = "standard_error"
MARGIN = "margin_95"
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
# The 95% two-sided quantile of a Laplace distribution, in standard deviations.
_LAPLACE_Q = math.log(1 / (1 - CONFIDENCE)) / math.sqrt(2)

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Noise:
    """The noise of every measured count of one input, in measurement order: OpenDP's
    distribution, its scale and its variance."""

    distributions: list[str]
    scales: Matrix
    variances: Matrix

    @classmethod
    def of(cls, tables: list[tuple[str, float, int]]) -> Noise:
        """From (distribution, scale, cells) per measured table, in order."""
        distributions = [d for d, _, cells in tables for _ in range(cells)]
        scales = np.repeat([scale for _, scale, _ in tables], [cells for *_, cells in tables])
        variances = np.asarray(
            [noise_variance(d, float(s)) for d, s in zip(distributions, scales, strict=True)]
        )
        return cls(distributions, scales.astype(float), variances)


@dataclass(frozen=True)
class TableEstimates:
    """A table's consistent cell estimates, how they were made from the noisy counts of
    its input, and their covariance (noise only)."""

    name: str
    by: tuple[str, ...]
    cells: pl.DataFrame  # the key columns, then ``estimate`` (Float64), in key order
    covariance: Matrix  # cells x cells
    # cells x the input's measured counts (estimate = weights @ noisy) and their noise,
    # when the tables were measured as they are (pure DP); None for a strategy's queries,
    # whose estimates mix integers scaled far finer than the noise (continuous, normal).
    weights: Matrix | None
    noise: Noise | None
    quantile: float  # 95% half-width in standard deviations, for ratios (Fieller)

    def margins(self, combinations: Matrix, base: int) -> tuple[Matrix, Matrix]:
        """For each linear combination of the cells (rows of ``combinations``): its
        standard error and the margin whose outward-rounded 95% interval covers the true
        value with at least 95% probability (see :mod:`publisher.intervals`)."""
        errors = np.sqrt(
            # The diagonal of C V C^T.
            np.maximum((_rows_times(combinations, self.covariance) * combinations).sum(axis=1), 0.0)
        )
        if self.weights is None or self.noise is None:
            models: list[intervals.ErrorModel] = [
                intervals.Smooth("normal", float(error)) for error in errors
            ]
        else:
            noise = self.noise
            models = [
                intervals.error_model(row, noise.distributions, noise.scales, noise.variances)
                for row in _rows_times(combinations, self.weights)
            ]
        margins = np.asarray([intervals.margin(model, base) for model in models])
        return errors, margins


def _rows_times(combinations: Matrix, matrix: Matrix) -> Matrix:
    """``combinations @ matrix``, with the rows that pick one cell (a single 1) taken as
    that cell's row of ``matrix``: exactly what the product gives for them, without the
    product (a table's cells are such rows: 5,000 cells took seconds through BLAS)."""
    picks = (np.count_nonzero(combinations, axis=1) == 1) & (combinations.max(axis=1) == 1.0)
    product = np.empty((combinations.shape[0], matrix.shape[1]))
    product[picks] = matrix[np.argmax(combinations[picks], axis=1)]
    if not picks.all():
        # Totals and other sums, through BLAS (an einsum here is not).
        product[~picks] = combinations[~picks] @ matrix
    return product


def quantile(distribution: str) -> float:
    """The 95% half-width of an estimate in standard deviations, for OpenDP's ``distribution``:
    normal for Gaussian noise (sums and averages of it stay Gaussian); for Laplace noise
    the Laplace quantile, conservative for combinations. Used for headline shares."""
    return _LAPLACE_Q if distribution == "Integer Laplace" else _Z


def _membership(spec: ReleaseSpec, table: Table, base: str) -> Matrix:
    """For each cell of ``table``: which keys of the base column ``base`` it covers."""
    base_keys = spec.categories[spec.inputs[table.input].columns[base].categories].values
    position = {key: index for index, key in enumerate(base_keys)}
    keys = keys_of(spec, table)
    covered = np.ones((keys.height, len(base_keys)))
    for column in table.by:
        declared = spec.inputs[table.input].columns[column]
        if (declared.derived_from or column) != base:
            continue
        if declared.derived_from is None:
            members = {key: [key] for key in base_keys}
        else:
            groups = spec.categories[declared.categories].groups
            assert groups is not None  # checked by the spec
            members = groups.members
        rows = np.zeros_like(covered)
        for row, key in enumerate(keys[column]):
            rows[row, [position[member] for member in members[key]]] = 1.0
        covered *= rows
    return covered


def _gram(spec: ReleaseSpec, tables: list[Table]) -> Matrix:
    """A A^T: how many cross-classified cells each pair of measured cells shares."""
    source = spec.inputs[tables[0].input]
    bases = {column.derived_from or name for name, column in source.columns.items()}
    used = sorted(
        base
        for base in bases
        if any(
            (source.columns[column].derived_from or column) == base
            for table in tables
            for column in table.by
        )
    )
    gram = None
    for base in used:
        covered = np.vstack([_membership(spec, table, base) for table in tables])
        shared = covered @ covered.T
        gram = shared if gram is None else gram * shared
    assert gram is not None  # every table has at least one column
    return gram


def projection(
    spec: ReleaseSpec, tables: list[Table], variances: list[float]
) -> tuple[Matrix, Matrix]:
    """The weighted least squares map W (y_hat = W y) and Cov(y_hat) for the cells of
    ``tables`` (all of one input), each table's cells having noise variance ``variances``.

    Depends on public parameters only, so ``publisher plan`` can use it before any spend.
    """
    sizes = [keys_of(spec, table).height for table in tables]
    noise = np.repeat(np.asarray(variances, dtype=float), sizes)
    gram = _gram(spec, tables)
    diagonal = np.diagonal(gram)
    if (diagonal > 0).all() and np.count_nonzero(gram) == len(diagonal):
        # No two cells share a count by key (one table): each noisy cell is its own least
        # squares estimate. (The eigendecomposition below gives the same, in minutes for
        # a table of 5,000 cells.)
        return np.eye(len(noise)), np.diag(noise)
    root = np.sqrt(noise)
    scaled = gram / np.outer(root, root)
    eigenvalues, eigenvectors = np.linalg.eigh(scaled)
    keep = eigenvalues > eigenvalues.max() * 1e-10
    basis = eigenvectors[:, keep]
    project = basis @ basis.T
    weights = root[:, None] * project / root[None, :]
    covariance = root[:, None] * project * root[None, :]
    return weights, covariance


def consistent_estimates(
    spec: ReleaseSpec, measurements: Measurements, names: set[str] | None = None
) -> dict[str, TableEstimates]:
    """Every table's cells estimated from all the noisy tables of its input together (of
    the inputs of the tables ``names`` only, when given)."""
    estimates: dict[str, TableEstimates] = {}
    for input_name in spec.inputs:
        tables = [table for table in spec.tables if table.input == input_name]
        if not tables or (names is not None and not any(t.name in names for t in tables)):
            continue
        design = measurements.design(input_name)
        if design is not None:
            estimates |= _strategy_estimates(spec, tables, design)
            continue
        noisy = [_own(measurements, table.name) for table in tables]
        weights, covariance = projection(spec, tables, [t.variance for t in noisy])
        observed = np.concatenate(
            [t.noisy_counts[NOISY_COUNT].to_numpy().astype(float) for t in noisy]
        )
        fitted = weights @ observed
        noise = Noise.of([(t.distribution, t.scale, t.noisy_counts.height) for t in noisy])
        start = 0
        for table, measured in zip(tables, noisy, strict=True):
            stop = start + measured.noisy_counts.height
            estimates[table.name] = TableEstimates(
                name=table.name,
                by=tuple(table.by),
                cells=measured.noisy_counts.select(table.by).with_columns(
                    pl.Series(ESTIMATE, fitted[start:stop], dtype=pl.Float64)
                ),
                covariance=covariance[start:stop, start:stop],
                weights=weights[start:stop],
                noise=noise,
                quantile=quantile(measured.distribution),
            )
            start = stop
    return estimates


def _own(measurements: Measurements, name: str) -> NoisyTable:
    table = measurements.table(name)
    if table is None:
        raise KeyError(f"table {name!r} was not measured on its own")
    return table


def _strategy_estimates(
    spec: ReleaseSpec, tables: list[Table], measured: DesignMeasurement
) -> dict[str, TableEstimates]:
    """The least-squares estimates of an input's tables from its strategy's noisy answers,
    with their exact covariance (:meth:`strategy.Design.estimate`)."""
    noisy = [np.asarray(query.noisy, dtype=float) for query in measured.queries]
    variances = [query.variance for query in measured.queries]
    fitted = measured.design.estimate(noisy, variances)
    return {
        table.name: TableEstimates(
            name=table.name,
            by=tuple(table.by),
            cells=keys_of(spec, table).with_columns(
                pl.Series(ESTIMATE, np.asarray(fitted.cells(table.name)).ravel(), dtype=pl.Float64)
            ),
            covariance=np.asarray(fitted.covariance(table.name)),
            weights=None,
            noise=None,
            quantile=_Z,
        )
        for table in tables
    }


def with_totals(
    estimates: TableEstimates,
    *,
    order: dict[str, list[str]],
    total_label: str | None,
    base: int,
) -> pl.DataFrame:
    """The table's cells, plus every margin when ``total_label`` is given, each with its
    unrounded estimate, standard error and 95% margin for intervals rounded outward to
    ``base``. Totals are sums of the unrounded cell estimates.

    ``order`` gives each column's keys in publication order; totals come last.
    """
    by = list(estimates.by)
    keys = [[*order[column], *([total_label] if total_label else [])] for column in by]
    rows = list(product(*keys))
    combinations = np.ones((len(rows), estimates.cells.height))
    for position, column in enumerate(by):
        cell_keys = estimates.cells[column].to_numpy()
        row_keys = np.asarray([row[position] for row in rows], dtype=object)
        combinations *= (row_keys[:, None] == total_label) | (
            row_keys[:, None] == cell_keys[None, :]
        )
    fitted = estimates.cells[ESTIMATE].to_numpy()
    errors, margins = estimates.margins(combinations, base)
    return pl.DataFrame(
        rows, schema=[(column, pl.String) for column in by], orient="row"
    ).with_columns(
        pl.Series(ESTIMATE, combinations @ fitted, dtype=pl.Float64),
        pl.Series(STANDARD_ERROR, errors, dtype=pl.Float64),
        pl.Series(MARGIN, margins, dtype=pl.Float64),
    )


@dataclass(frozen=True)
class ShareEstimate:
    """A share of one table's cells in another set of its cells, with a 95% interval."""

    share: Share
    estimate: float | None  # None when the estimated denominator is not positive
    lower_95: float
    upper_95: float


def _selected(frame: pl.DataFrame, selection: dict[str, list[str]]) -> Matrix:
    mask = np.ones(frame.height, dtype=bool)
    for column, values in selection.items():
        mask &= frame[column].is_in(values).to_numpy()
    return mask.astype(float)


def estimate_share(share: Share, estimates: TableEstimates) -> ShareEstimate:
    """The share numerator / denominator, with Fieller's 95% interval.

    With N the estimated numerator and D the estimated denominator, the true share p
    satisfies (N - p D)^2 <= q^2 Var(N - p D) with 95% probability under normal noise;
    the variance allows for the covariance of N and D. Solving that quadratic gives an
    interval for a ratio that does not pretend the denominator is known.
    """
    cells = estimates.cells
    denominator_cells = _selected(cells, share.denominator)
    numerator_cells = denominator_cells * _selected(cells, share.numerator)
    fitted = cells[ESTIMATE].to_numpy()
    numerator = float(numerator_cells @ fitted)
    denominator = float(denominator_cells @ fitted)
    cov = estimates.covariance
    var_n = float(numerator_cells @ cov @ numerator_cells)
    var_d = float(denominator_cells @ cov @ denominator_cells)
    cov_nd = float(numerator_cells @ cov @ denominator_cells)
    estimate = min(max(numerator / denominator, 0.0), 1.0) if denominator > 0 else None

    q2 = estimates.quantile**2
    a = denominator**2 - q2 * var_d
    b = -2.0 * numerator * denominator + 2.0 * q2 * cov_nd
    c = numerator**2 - q2 * var_n
    discriminant = b * b - 4.0 * a * c
    if a <= 0 or discriminant < 0:
        # The denominator is not distinguishable from zero: nothing can be said.
        return ShareEstimate(share, estimate, 0.0, 1.0)
    root = math.sqrt(discriminant)
    lower, upper = sorted(((-b - root) / (2 * a), (-b + root) / (2 * a)))
    # Shares lie in [0, 1]: both bounds are kept there (an interval of a negative estimate
    # would otherwise end below 0, and its lower bound above its upper one).
    return ShareEstimate(share, estimate, min(max(lower, 0.0), 1.0), min(max(upper, 0.0), 1.0))


@dataclass(frozen=True)
class Figure:
    """An estimate derived from noisy counts, rounded to the base, with its 95% interval
    rounded outward (never below zero)."""

    estimate: int
    lower_95: int
    upper_95: int


@dataclass(frozen=True)
class TruncationEstimate:
    """What an input's bounds left out, estimated from its truncation measurement.

    ``histogram``: ``people`` over the bound and ``records`` left out (a person in the
    open top bin counted at its least). ``linked``: ``left_out``, own people counted
    under the reference bound but not under the release's bound.
    """

    measurement: TruncationMeasurement
    people: Figure | None = None
    records: Figure | None = None
    left_out: Figure | None = None


def _figure(measurement: TruncationMeasurement, weights: list[int], base: int) -> Figure:
    values = np.asarray(measurement.noisy_counts, dtype=float)
    combination = np.asarray(weights, dtype=float)
    cells = len(values)
    model = intervals.error_model(
        combination,
        [measurement.distribution] * cells,
        np.full(cells, measurement.scale),
        np.full(cells, measurement.variance),
    )
    estimate = float(combination @ values)
    half_width = intervals.margin(model, base)
    return Figure(
        estimate=max(0, intervals.round_to_base(estimate, base)),
        lower_95=max(0, intervals.round_down(estimate - half_width, base)),
        upper_95=max(base, intervals.round_up(estimate + half_width, base)),
    )


def truncation_estimate(measurement: TruncationMeasurement, base: int) -> TruncationEstimate:
    """The figures a truncation measurement gives, rounded like the counts to ``base``."""
    if measurement.kind == "linked":
        return TruncationEstimate(measurement, left_out=_figure(measurement, [1], base))
    bound = measurement.bound
    over = list(range(1, len(measurement.bins) - bound + 1))  # records beyond the bound
    return TruncationEstimate(
        measurement,
        people=_figure(measurement, [0] * bound + [1] * len(over), base),
        records=_figure(measurement, [0] * bound + over, base),
    )
