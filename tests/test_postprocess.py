"""Totals and shares from noisy counts: arithmetic, order, and interval coverage."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from publisher.postprocess import _Z, ESTIMATE, MARGIN, estimate_share, with_totals
from publisher.privacy import NOISY_COUNT, NoisyTable
from publisher.spec import Share


def noisy_table(counts: dict[tuple[str, str], int], *, scale: float = 3.0) -> NoisyTable:
    rows = [(a, b, count) for (a, b), count in counts.items()]
    frame = pl.DataFrame(rows, schema=["a", "b", NOISY_COUNT], orient="row")
    return NoisyTable("t", ("a", "b"), frame, "Integer Gaussian", scale, 6.0, 0.1)


ORDER = {"a": ["x", "y"], "b": ["p", "q", "r"]}
COUNTS = {
    ("x", "p"): 10,
    ("x", "q"): -2,
    ("x", "r"): 5,
    ("y", "p"): 7,
    ("y", "q"): 0,
    ("y", "r"): 9,
}


def test_totals_are_sums_of_the_noisy_cells_in_publication_order() -> None:
    table = with_totals(noisy_table(COUNTS), order=ORDER, total_label="Total")
    keys = list(zip(table["a"], table["b"], strict=True))
    assert keys == [
        ("x", "p"), ("x", "q"), ("x", "r"), ("x", "Total"),
        ("y", "p"), ("y", "q"), ("y", "r"), ("y", "Total"),
        ("Total", "p"), ("Total", "q"), ("Total", "r"), ("Total", "Total"),
    ]  # fmt: skip
    values = dict(zip(keys, table[ESTIMATE], strict=True))
    assert values[("x", "Total")] == 13
    assert values[("Total", "q")] == -2
    assert values[("Total", "Total")] == sum(COUNTS.values())


def test_margins_grow_with_the_number_of_cells_summed() -> None:
    table = with_totals(noisy_table(COUNTS, scale=3.0), order=ORDER, total_label="Total")
    margins = dict(zip(zip(table["a"], table["b"], strict=True), table[MARGIN], strict=True))
    assert margins[("x", "p")] == 6.0  # OpenDP's own margin for one cell
    assert margins[("x", "Total")] == pytest.approx(_Z * math.sqrt(3) * 3.0)
    assert margins[("Total", "Total")] == pytest.approx(_Z * math.sqrt(6) * 3.0)


def test_without_totals_only_cells_are_published() -> None:
    table = with_totals(noisy_table(COUNTS), order=ORDER, total_label=None)
    assert table.height == 6
    assert "Total" not in table["a"].to_list()


SHARE = Share(name="s", table="t", title="S", statement="of things", numerator={"a": ["x"]})


def test_share_estimate_is_the_ratio_and_its_interval_contains_it() -> None:
    result = estimate_share(SHARE, noisy_table(COUNTS))
    assert result.estimate == pytest.approx(13 / 29)
    assert result.lower_95 < result.estimate < result.upper_95


def test_share_interval_shrinks_with_the_noise() -> None:
    big = {key: 1000 * value + 5000 for key, value in COUNTS.items()}
    wide = estimate_share(SHARE, noisy_table(big, scale=50.0))
    narrow = estimate_share(SHARE, noisy_table(big, scale=1.0))
    assert narrow.upper_95 - narrow.lower_95 < (wide.upper_95 - wide.lower_95) / 10


def test_share_with_a_denominator_lost_in_noise_says_nothing() -> None:
    tiny = dict.fromkeys(COUNTS, 1)
    result = estimate_share(SHARE, noisy_table(tiny, scale=50.0))
    assert (result.lower_95, result.upper_95) == (0.0, 1.0)


def test_share_interval_covers_the_truth_95_percent_of_the_time() -> None:
    # Simulated Gaussian noise on known true counts (a test-side simulation of the
    # mechanism's noise, not a publisher code path). 4,000 trials give a standard
    # error of 0.34 points on the coverage, so 93.5-96.5% is over 4 standard errors wide.
    rng = np.random.default_rng(20261125)
    truth = {
        ("x", "p"): 40,
        ("x", "q"): 15,
        ("x", "r"): 5,
        ("y", "p"): 60,
        ("y", "q"): 20,
        ("y", "r"): 10,
    }
    true_share = 60 / 150
    scale = 6.0
    covered = 0
    trials = 4000
    for _ in range(trials):
        noisy = {key: round(value + rng.normal(0, scale)) for key, value in truth.items()}
        result = estimate_share(SHARE, noisy_table(noisy, scale=scale))
        covered += result.lower_95 <= true_share <= result.upper_95
    assert 0.935 <= covered / trials <= 0.965
