"""Pure post-processing of noisy counts: totals and headline shares with intervals.

Nothing here sees private data; everything is computed from OpenDP's noisy output and
the public description of its noise, so it costs no privacy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import polars as pl

from publisher.privacy import CONFIDENCE, NOISY_COUNT, NoisyTable
from publisher.spec import Share

__all__ = ["ESTIMATE", "MARGIN", "ShareEstimate", "estimate_share", "with_totals"]

ESTIMATE = "estimate"
MARGIN = "margin_95"
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


def _rank(column: str, keys: list[str]) -> pl.Expr:
    return pl.col(column).replace_strict(keys, list(range(len(keys)))).alias(f"__rank_{column}")


def with_totals(
    table: NoisyTable, *, order: dict[str, list[str]], total_label: str | None
) -> pl.DataFrame:
    """The table's cells, plus every margin when ``total_label`` is given, each with its 95%
    margin of error. Totals are sums of the noisy, unrounded cells, so their noise is the
    sum of independent noises: a normal approximation with the summed variance.

    ``order`` gives each dimension's keys in publication order; totals come last.
    """
    by = list(table.by)
    cells = table.noisy_counts.select(
        *by, pl.col(NOISY_COUNT).alias(ESTIMATE), pl.lit(1, dtype=pl.Int64).alias("__cells")
    )
    parts = [cells]
    if total_label is not None:
        for size in range(1, len(by) + 1):
            for summed in combinations(by, size):
                kept = [column for column in by if column not in summed]
                aggregate = [pl.col(ESTIMATE).sum(), pl.col("__cells").sum()]
                part = cells.group_by(kept).agg(aggregate) if kept else cells.select(aggregate)
                parts.append(
                    part.with_columns(pl.lit(total_label).alias(column) for column in summed)
                )
    combined = pl.concat([part.select(*by, ESTIMATE, "__cells") for part in parts])
    single_cell_margin = table.margin_95
    margin = (
        pl.when(pl.col("__cells") == 1)
        .then(pl.lit(single_cell_margin))
        .otherwise(_Z * (pl.col("__cells") * table.variance).sqrt())
    )
    ranks = [
        _rank(column, [*order[column], total_label] if total_label else order[column])
        for column in by
    ]
    return (
        combined.with_columns(margin.alias(MARGIN), *ranks)
        .sort([f"__rank_{column}" for column in by])
        .select(*by, ESTIMATE, MARGIN)
    )


@dataclass(frozen=True)
class ShareEstimate:
    """A share of one table's cells in another set of its cells, with a 95% interval."""

    share: Share
    estimate: float | None  # None when the noisy denominator is not positive
    lower_95: float
    upper_95: float


def _selected(frame: pl.DataFrame, selection: dict[str, list[str]]) -> pl.Series:
    mask = pl.Series([True] * frame.height)
    for column, values in selection.items():
        mask = mask & frame[column].is_in(values)
    return mask


def estimate_share(share: Share, table: NoisyTable) -> ShareEstimate:
    """The share numerator / denominator from noisy cells, with Fieller's 95% interval.

    With N the noisy numerator and M the noisy rest of the denominator (independent noise,
    variances vN and vM), the true share p satisfies (N - p(N+M))^2 <= z^2 ((1-p)^2 vN +
    p^2 vM) with 95% probability under normal noise. Solving that quadratic gives an
    interval for a ratio that does not pretend the denominator is known.
    """
    frame = table.noisy_counts
    in_denominator = _selected(frame, share.denominator)
    in_numerator = in_denominator & _selected(frame, share.numerator)
    rest = in_denominator & ~in_numerator
    numerator = float(frame.filter(in_numerator)[NOISY_COUNT].sum())
    others = float(frame.filter(rest)[NOISY_COUNT].sum())
    var_numerator = int(in_numerator.sum()) * table.variance
    var_others = int(rest.sum()) * table.variance
    denominator = numerator + others
    estimate = min(max(numerator / denominator, 0.0), 1.0) if denominator > 0 else None

    z2 = _Z**2
    a = denominator**2 - z2 * (var_numerator + var_others)
    b = -2.0 * numerator * denominator + 2.0 * z2 * var_numerator
    c = numerator**2 - z2 * var_numerator
    discriminant = b * b - 4.0 * a * c
    if a <= 0 or discriminant < 0:
        # The denominator is not distinguishable from zero: nothing can be said.
        return ShareEstimate(share, estimate, 0.0, 1.0)
    root = math.sqrt(discriminant)
    lower, upper = sorted(((-b - root) / (2 * a), (-b + root) / (2 * a)))
    return ShareEstimate(share, estimate, max(lower, 0.0), min(upper, 1.0))
