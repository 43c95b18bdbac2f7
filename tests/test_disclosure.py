"""Rounding, thresholds and markers: properties that must hold for every input."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.disclosure import LOW, apply, publish_cell
from publisher.intervals import round_to_base
from publisher.postprocess import ESTIMATE, MARGIN

counts = st.integers(min_value=-10_000, max_value=1_000_000)
bases = st.integers(min_value=1, max_value=100)
thresholds = st.integers(min_value=0, max_value=100)
margins = st.floats(min_value=0, max_value=10_000, allow_nan=False)


@given(counts, bases)
def test_rounding_gives_the_nearest_multiple_and_is_idempotent(count: int, base: int) -> None:
    rounded = round_to_base(count, base)
    assert rounded % base == 0
    assert abs(rounded - count) <= base / 2
    assert round_to_base(rounded, base) == rounded


def test_halves_round_away_from_zero() -> None:
    assert round_to_base(15, 10) == 20
    assert round_to_base(25, 10) == 30
    assert round_to_base(-15, 10) == -20
    assert round_to_base(12, 5) == 10
    assert round_to_base(13, 5) == 15


@given(counts, margins, bases, thresholds)
def test_a_cell_is_a_rounded_value_or_a_marker_never_both(
    count: int, margin: float, base: int, threshold: int
) -> None:
    cell = publish_cell(count, margin, base=base, threshold=threshold)
    assert (cell.value is None) == (cell.marker == LOW)
    if cell.value is not None:
        assert cell.value % base == 0
        assert cell.value > 0, "a zero would claim a true zero, which noise never shows"
        assert count >= threshold, "nothing below the threshold is shown"
        assert cell.value >= threshold, "rounding never shows a value below the threshold"
        assert cell.lower_95 <= cell.value <= cell.upper_95
    assert cell.lower_95 % base == 0 and cell.upper_95 % base == 0
    assert 0 <= cell.lower_95 <= cell.upper_95


@given(st.floats(-10_000, 1_000_000, allow_nan=False), margins, bases, thresholds)
def test_interval_bounds_are_rounded_outward_and_never_zero_to_zero(
    estimate: float, margin: float, base: int, threshold: int
) -> None:
    cell = publish_cell(estimate, margin, base=base, threshold=threshold)
    # The unrounded interval is inside the published one, and is widened by less than the
    # base at each end (or up to zero / the base at the edges).
    assert cell.lower_95 <= max(estimate - margin, 0) < cell.lower_95 + base
    assert cell.upper_95 >= estimate + margin and cell.upper_95 >= base
    assert cell.upper_95 - base < max(estimate + margin, base) or cell.upper_95 == base
    assert (cell.lower_95, cell.upper_95) != (0, 0)


@pytest.mark.parametrize("count", [-7, -1, 0, 1, 9])
def test_negative_and_small_noisy_counts_are_marked_low(count: int) -> None:
    cell = publish_cell(count, 4.0, base=5, threshold=10)
    assert cell.value is None and cell.marker == LOW


def test_with_no_threshold_a_count_rounding_to_zero_is_still_marked() -> None:
    assert publish_cell(2, 1.0, base=5, threshold=0).marker == LOW
    assert publish_cell(3, 1.0, base=5, threshold=0).value == 5


def test_apply_publishes_tidy_columns_in_order() -> None:
    estimates = pl.DataFrame(
        {"ward": ["A", "B", "Total"], ESTIMATE: [42, 3, 45], MARGIN: [6.0] * 3}
    )
    table = apply(estimates, ["ward"], base=5, threshold=10)
    assert table.columns == ["ward", "value", "marker", "lower_95", "upper_95"]
    assert table["ward"].to_list() == ["A", "B", "Total"]
    assert table["value"].to_list() == [40, None, 45]
    assert table["marker"].to_list() == [None, LOW, None]
    # Outward: 42 -+ 6 is 36 to 48, published as 35 to 50; 3 -+ 6 as 0 to 10.
    assert table["lower_95"].to_list() == [35, 0, 35]
    assert table["upper_95"].to_list() == [50, 10, 55]
