"""Intervals rounded outward keep 95% coverage for every true count: checked exactly, by
summing over every possible noise value, not by simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher import intervals
from publisher.disclosure import publish_cell

GAUSSIAN, LAPLACE = "Integer Gaussian", "Integer Laplace"


def pmf(distribution: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and probabilities of OpenDP's integer noise, by brute force."""
    support = np.arange(-400, 401)
    weights = (
        np.exp(-np.abs(support) / scale)
        if distribution == LAPLACE
        else np.exp(-(support**2) / (2 * scale**2))
    )
    return support, weights / weights.sum()


def exact_coverage(
    support: np.ndarray, probabilities: np.ndarray, truth: int, margin: float, base: int
) -> float:
    """P(the published interval covers ``truth``) when the estimate is truth + error."""
    covered = 0.0
    for error, probability in zip(support, probabilities, strict=True):
        cell = publish_cell(truth + float(error), margin, base=base, threshold=0)
        covered += probability * (cell.lower_95 <= truth <= cell.upper_95)
    return covered


@pytest.mark.parametrize("distribution", [GAUSSIAN, LAPLACE])
@pytest.mark.parametrize("scale", [0.7, 2.5, 3.4, 12.0])
@pytest.mark.parametrize("base", [1, 5, 10])
def test_a_count_estimated_alone_is_covered_95_percent_for_every_true_count(
    distribution: str, scale: float, base: int
) -> None:
    weights = np.ones(1)
    model = intervals.error_model(weights, [distribution], np.array([scale]), np.array([1.0]))
    assert isinstance(model, intervals.Lattice)
    margin = intervals.margin(model, base)
    support, probabilities = pmf(distribution, scale)
    coverages = [
        exact_coverage(support, probabilities, truth, margin, base)
        for truth in range(3 * base + 40)
    ]
    assert min(coverages) >= 0.95
    # The margin is the least that works: one less loses the guarantee somewhere.
    if margin >= 1:
        smaller = [
            exact_coverage(support, probabilities, truth, margin - 1, base)
            for truth in range(3 * base + 40)
        ]
        assert min(smaller) < 0.95


def test_a_total_of_counts_estimated_alone_is_an_exact_convolution() -> None:
    scales = np.array([1.5, 2.0, 2.5])
    model = intervals.error_model(np.ones(3), [GAUSSIAN] * 3, scales, scales**2)
    assert isinstance(model, intervals.Lattice)
    supports = [pmf(GAUSSIAN, scale) for scale in scales]
    brute: dict[int, float] = {}
    small = [(s[np.abs(s) <= 20], p[np.abs(s) <= 20]) for s, p in supports]
    for combination in itertools.product(*(zip(s, p, strict=True) for s, p in small)):
        value = sum(int(v) for v, _ in combination)
        brute[value] = brute.get(value, 0.0) + math.prod(p for _, p in combination)
    for value in range(-10, 11):
        got = model.probabilities[value - model.offset]
        assert got == pytest.approx(brute[value], rel=1e-9, abs=1e-12)


def mixture(
    distribution: str, scale: float, weights: list[float], denominator: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """The exact distribution of sum_j weights[j] * noise_j (weights in 1/20ths)."""
    offset, probabilities = 0, np.ones(1)
    for weight in weights:
        step = round(weight * denominator)
        support, p = pmf(distribution, scale)
        if step < 0:
            support, p, step = -support[::-1], p[::-1], -step
        spread = np.zeros((len(p) - 1) * step + 1)
        spread[::step] = p
        offset += int(support[0]) * step
        probabilities = np.convolve(probabilities, spread)
    return (offset + np.arange(len(probabilities))) / denominator, probabilities


@pytest.mark.parametrize("distribution", [GAUSSIAN, LAPLACE])
@pytest.mark.parametrize(
    "weights",
    [[0.6, 0.4], [0.5, 0.3, 0.2], [0.9, 0.1], [0.75, 0.25, 0.25, -0.25], [0.5, 0.5]],
)
@pytest.mark.parametrize("base", [1, 5])
def test_mixtures_of_noises_are_covered_95_percent_for_every_true_count(
    distribution: str, weights: list[float], base: int
) -> None:
    """Consistent estimates mix noisy counts with fractional weights: the normal (Gaussian)
    or Laplace (Laplace noise) model with the exact variance, moved in by half the
    largest weight at each end, must keep the promise for the exact distribution of the
    mixture, which has atoms."""
    scale = 3.0
    support, probabilities = mixture(distribution, scale, weights)
    noise_support, noise_p = pmf(distribution, scale)
    noise_variance = float(np.sum(noise_support**2 * noise_p))
    count = len(weights)
    model = intervals.error_model(
        np.asarray(weights), [distribution] * count, np.full(count, scale),
        np.full(count, noise_variance),
    )  # fmt: skip
    assert isinstance(model, intervals.Smooth)
    margin = intervals.margin(model, base)
    for truth in range(20, 20 + 2 * base + 5):
        lower = np.maximum(np.floor((truth + support - margin) / base) * base, 0)
        upper = np.maximum(np.ceil((truth + support + margin) / base) * base, base)
        assert probabilities[(lower <= truth) & (truth <= upper)].sum() >= 0.95, truth


@given(st.floats(0.1, 50), st.integers(1, 20))
def test_the_margin_meets_the_worst_case_coverage_and_no_smaller_one_does(
    sd: float, base: int
) -> None:
    model = intervals.Smooth("normal", sd)
    margin = intervals.margin(model, base)
    assert intervals.coverage(model, margin, base) >= 0.95
    if margin > 0:
        assert intervals.coverage(model, margin * 0.999, base) < 0.95


def test_rounding_helpers() -> None:
    assert [intervals.round_down(v, 5) for v in (-0.1, 0, 4.9, 5, 12)] == [-5, 0, 0, 5, 10]
    assert [intervals.round_up(v, 5) for v in (-0.1, 0, 0.1, 5, 12)] == [0, 0, 5, 5, 15]
