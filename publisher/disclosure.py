"""Official-statistics rules on noisy counts: rounding, thresholds and GSS markers.

Pure functions of noisy values and public rules, so they cost no privacy. A negative or
small estimate is never shown as a number: it is marked ``[low]`` (its interval is
shown). A ``0`` is never shown either, because under noise a true zero is never known.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from publisher import intervals
from publisher.intervals import round_to_base
from publisher.postprocess import ESTIMATE, MARGIN

__all__ = [
    "COLUMNS",
    "LOW",
    "MARKERS",
    "PROVISIONAL",
    "REVISED",
    "PublishedCell",
    "apply",
    "mark_status",
    "publish_cell",
    "round_to_base",
]

LOW = "[low]"
REVISED = "[r]"
PROVISIONAL = "[p]"
# The GSS markers this publisher can write, with what each means in its files. [low]
# stands instead of a value; [r] and [p] stand beside one.
MARKERS: dict[str, str] = {
    LOW: (
        "the estimate is below the publication threshold (or rounds to zero), so no value "
        "is shown: counts this small are mostly noise. It is not a true zero; the 95% "
        "interval beside it is published as for every count."
    ),
    REVISED: "revised: the figure differs from the one published in the previous version.",
    PROVISIONAL: "provisional: the figure may be revised in a later version.",
}
COLUMNS = ("value", "marker", "lower_95", "upper_95")


@dataclass(frozen=True)
class PublishedCell:
    """One published count: a rounded value or a marker, and a rounded 95% interval."""

    value: int | None
    marker: str | None
    lower_95: int
    upper_95: int


def publish_cell(estimate: float, margin: float, *, base: int, threshold: int) -> PublishedCell:
    """Apply the rules to one unrounded estimate and the margin of its 95% interval.

    The interval is rounded outward (lower bound down, upper bound up to the base), so
    rounding never takes a true count out of it (see :mod:`publisher.intervals`): it is
    never below zero and never 0 to 0, since under noise a zero is never known. A value
    below the threshold is not shown (``[low]``); its interval is.
    """
    rounded = round_to_base(estimate, base)
    lower = max(0, intervals.round_down(estimate - margin, base))
    upper = max(base, intervals.round_up(estimate + margin, base))
    # Neither the estimate nor the shown value may be below the threshold (with a
    # threshold that is not a multiple of the base, rounding could cross it).
    if estimate < threshold or rounded < threshold or rounded <= 0:
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


def mark_status(
    table: pl.DataFrame,
    by: list[str],
    *,
    provisional: bool,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Mark shown values ``[p]`` in a provisional release, else ``[r]`` where the value
    differs from ``previous`` (the same table of the version this one revises).

    ``[low]`` is kept: a cell has one marker, and a value that is not shown has nothing
    to revise. A key or value missing from ``previous`` counts as changed, and so does
    every value when ``previous`` broke the table down by other columns.
    """
    shown = pl.col("value").is_not_null()
    if provisional:
        flag = shown
        marker = PROVISIONAL
    elif previous is not None and not set(by) <= set(previous.columns):
        flag = shown
        marker = REVISED
    elif previous is not None:
        before = previous.select(*by, pl.col("value").alias("__before"))
        table = table.join(before, on=by, how="left", maintain_order="left", nulls_equal=True)
        flag = shown & pl.col("value").ne_missing(pl.col("__before"))
        marker = REVISED
    else:
        return table
    return table.with_columns(
        pl.when(flag).then(pl.lit(marker)).otherwise(pl.col("marker")).alias("marker")
    ).select(*by, *COLUMNS)
