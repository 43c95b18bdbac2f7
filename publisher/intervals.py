"""95% intervals that keep their promise once their bounds are rounded outward.

A published count's interval is ``[floor_b(y - a), ceil_b(y + a)]``: the unrounded
estimate ``y`` widened by a margin ``a``, the lower bound rounded down and the upper bound
rounded up to the rounding base ``b`` (and never below 0, never 0 to 0). Write
``Z = y - x`` for the estimate's error about the true count ``x = q b + r`` (``0 <= r < b``).
Since ``floor_b(t) <= x`` exactly when ``t < floor_b(x) + b``, and ``ceil_b(t) >= x``
exactly when ``t > ceil_b(x) - b``, the interval covers ``x`` exactly when::

    -a - b < Z < a + b              if r = 0,
    -a - r < Z < a + b - r          otherwise.

For noise symmetric about zero and unimodal, the second window covers least when its
centre is furthest from zero, at ``r = 1`` (or ``b - 1``). So a margin with
``P(-a - 1 < Z < a + b - 1) >= 95%`` (``P(|Z| < a + 1)`` when ``b = 1``) gives every cell,
whatever its true count, at least 95% coverage. :func:`margin` finds the least such
``a`` for the distribution of ``Z``:

- an estimate that is an integer combination of noisy counts (a count estimated alone, or
  a total of such counts) has a lattice distribution, computed exactly from OpenDP's
  discrete Gaussian or discrete Laplace noise by convolution (with many terms, the normal
  with a continuity correction);
- an estimate that mixes counts with fractional weights (consistent estimates) is taken
  as normal with its exact variance (Gaussian noise), or as a Laplace distribution of
  that variance (Laplace noise: heavier-tailed than the mixture), with each end of the
  window moved in by half the largest weight, since the mixture still takes discrete
  values (tests/test_intervals.py checks the promise against exact distributions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "CONFIDENCE",
    "Lattice",
    "Smooth",
    "coverage",
    "error_model",
    "margin",
    "round_down",
    "round_to_base",
    "round_up",
]

CONFIDENCE = 0.95
# Exact convolution for up to this many terms; beyond, the normal (with a continuity
# correction) is exact to far below the precision that matters here.
_MAX_EXACT_TERMS = 64
_TAIL_SDS = 14.0  # support kept for a discrete noise distribution, in scales
_STANDARD = NormalDist()

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Lattice:
    """An integer-valued error: ``probabilities[i] = P(Z = offset + i)``."""

    offset: int
    probabilities: Vector

    def window(self, low: float, high: float) -> float:
        """``P(low < Z < high)``."""
        first = math.floor(low) + 1 - self.offset
        last = math.ceil(high) - 1 - self.offset
        first, last = max(first, 0), min(last, len(self.probabilities) - 1)
        return float(self.probabilities[first : last + 1].sum()) if first <= last else 0.0


@dataclass(frozen=True)
class Smooth:
    """A continuous model of an error that takes discrete values: normal or Laplace with
    standard deviation ``sd``, its values at most ``step`` apart around the window's ends
    (the largest weight of a noisy count in it; 1 for integers). A window loses up to half
    a step at each end to the atoms on its edges, so each end is moved in by half a step
    (the continuity correction, for integers)."""

    kind: str  # "normal" or "laplace"
    sd: float
    step: float = 0.0

    def _cdf(self, value: float) -> float:
        if self.sd <= 0:
            return 1.0 if value >= 0 else 0.0
        if self.kind == "normal":
            return _STANDARD.cdf(value / self.sd)
        scale = self.sd / math.sqrt(2.0)
        if value < 0:
            return 0.5 * math.exp(value / scale)
        return 1.0 - 0.5 * math.exp(-value / scale)

    def window(self, low: float, high: float) -> float:
        """``P(low < Z < high)``, conservatively."""
        low, high = low + self.step / 2.0, high - self.step / 2.0
        if low >= high:
            return 0.0
        return max(0.0, self._cdf(high) - self._cdf(low))


ErrorModel = Lattice | Smooth


def _noise_pmf(distribution: str, scale: float) -> tuple[int, Vector]:
    """OpenDP's integer noise as an exact probability vector over ``[-n, n]``."""
    n = math.ceil(_TAIL_SDS * max(scale, 1.0)) + 5
    support = np.arange(-n, n + 1, dtype=np.float64)
    if distribution == "Integer Laplace":
        weights = np.exp(-np.abs(support) / scale)
    else:
        weights = np.exp(-(support**2) / (2.0 * scale**2))
    return -n, weights / weights.sum()


def _scaled(offset: int, pmf: Vector, factor: int) -> tuple[int, Vector]:
    """The distribution of ``factor * Z``."""
    if factor == 1:
        return offset, pmf
    if factor < 0:
        return _scaled(-(offset + len(pmf) - 1), pmf[::-1].copy(), -factor)
    spread = np.zeros((len(pmf) - 1) * factor + 1)
    spread[::factor] = pmf
    return offset * factor, spread


def error_model(
    weights: Vector,
    distributions: list[str],
    scales: Vector,
    variances: Vector,
) -> ErrorModel:
    """The distribution of ``sum_j weights[j] * noise_j`` for independent OpenDP noises.

    ``distributions`` and ``scales`` describe each noise, ``variances`` its variance.
    """
    used = np.flatnonzero(np.abs(weights) > 1e-12)
    variance = float(np.sum(weights[used] ** 2 * variances[used]))
    laplace = any(distributions[j] == "Integer Laplace" for j in used)
    rounded = np.rint(weights[used])
    integer = bool(np.all(np.abs(weights[used] - rounded) < 1e-9))
    step = float(np.max(np.abs(weights[used]))) if len(used) else 0.0
    if not integer:
        return Smooth("laplace" if laplace else "normal", math.sqrt(variance), step)
    if len(used) > _MAX_EXACT_TERMS:
        return Smooth("normal", math.sqrt(variance), 1.0)
    offset, pmf = 0, np.ones(1)
    for j, factor in zip(used, rounded.astype(int), strict=True):
        term_offset, term = _scaled(*_noise_pmf(distributions[j], float(scales[j])), int(factor))
        offset, pmf = offset + term_offset, np.convolve(pmf, term)
    return Lattice(offset, pmf)


def coverage(model: ErrorModel, a: float, base: int) -> float:
    """The least coverage, over true counts, of intervals with margin ``a`` (module doc)."""
    if base == 1:
        return model.window(-a - 1.0, a + 1.0)
    return model.window(-a - 1.0, a + base - 1.0)


def margin(model: ErrorModel, base: int, confidence: float = CONFIDENCE) -> float:
    """The least margin ``a >= 0`` whose outward-rounded intervals cover every true count
    with probability at least ``confidence``."""
    if coverage(model, 0.0, base) >= confidence:
        return 0.0
    if isinstance(model, Lattice):
        # Coverage steps at integers and is the same for every a in (j, j + 1]: take j + 1.
        a = 1
        while coverage(model, float(a), base) < confidence:
            a += 1
        return float(a)
    low, high = 0.0, max(model.sd, 1.0)
    while coverage(model, high, base) < confidence:
        low, high = high, 2.0 * high
    for _ in range(40):
        middle = (low + high) / 2.0
        if coverage(model, middle, base) >= confidence:
            high = middle
        else:
            low = middle
    return high


def round_to_base(value: float, base: int) -> int:
    """Round to the nearest multiple of ``base``, halves away from zero (GSS practice)."""
    return int(math.copysign(math.floor(abs(value) / base + 0.5) * base, value))


def round_down(value: float, base: int) -> int:
    """The largest multiple of ``base`` at most ``value``."""
    return math.floor(value / base) * base


def round_up(value: float, base: int) -> int:
    """The smallest multiple of ``base`` at least ``value``."""
    return math.ceil(value / base) * base
