"""Official-statistics rules on noisy counts: rounding, thresholds and GSS markers.

Pure functions of noisy values and public rules, so they cost no privacy. A negative or
small noisy count is never shown as a number: it is marked ``[low]``. A ``0`` is never
shown either, because under noise a true zero is never known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from publisher.postprocess import ESTIMATE, MARGIN

__all__ = [
    "COLUMNS",
    "LOW",
    "MARKERS",
    "PublishedCell",
    "apply",
    "publish_cell",
    "round_to_base",
]

LOW = "[low]"
# The GSS markers this publisher can write, with what each means in its files.
MARKERS: dict[str, str] = {
    LOW: (
        "Low: the noisy count was below the publication threshold (or rounded to zero), so "
        "no number is shown. It is not a true zero."
    ),
}
COLUMNS = ("value", "marker", "lower_95", "upper_95")


@dataclass(frozen=True)
class PublishedCell:
    """One published count: a rounded value or a marker, and a rounded 95% interval."""

    value: int | None
    marker: str | None
    lower_95: int
    upper_95: int


def round_to_base(count: float, base: int) -> int:
    """Round to the nearest multiple of ``base``, halves away from zero (GSS practice)."""
    return int(math.copysign(math.floor(abs(count) / base + 0.5) * base, count))


def publish_cell(estimate: float, margin: float, *, base: int, threshold: int) -> PublishedCell:
    """Apply the rules to one noisy estimate and its 95% margin of error.

    The interval's bounds are rounded to the base like the counts, from the unrounded
    estimate, so rounding neither shifts the interval towards the rounded value nor
    makes it systematically wider; the lower bound is clipped at zero.
    """
    rounded = round_to_base(estimate, base)
    lower = max(0, round_to_base(estimate - margin, base))
    upper = max(0, round_to_base(estimate + margin, base))
    if estimate < threshold or rounded <= 0:
        return PublishedCell(None, LOW, lower, upper)
    return PublishedCell(rounded, None, lower, upper)


def apply(estimates: pl.DataFrame, by: list[str], *, base: int, threshold: int) -> pl.DataFrame:
    """The published table: key columns, ``value``, ``marker``, ``lower_95``, ``upper_95``."""
    cells = [
        publish_cell(estimate, margin, base=base, threshold=threshold)
        for estimate, margin in zip(estimates[ESTIMATE], estimates[MARGIN], strict=True)
    ]
    return estimates.select(by).with_columns(
        pl.Series("value", [cell.value for cell in cells], dtype=pl.Int64),
        pl.Series("marker", [cell.marker for cell in cells], dtype=pl.String),
        pl.Series("lower_95", [cell.lower_95 for cell in cells], dtype=pl.Int64),
        pl.Series("upper_95", [cell.upper_95 for cell in cells], dtype=pl.Int64),
    )
