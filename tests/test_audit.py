"""A statistical privacy audit of the released counts, in the manner of DP-Auditorium and
StatDP: run the mechanism many times on two neighbouring datasets and bound its privacy
loss from below with a hypothesis test. A sound mechanism never has a lower bound above
the loss it claims; a broken one (no per-person truncation) is caught.

The statistics, for both tests:

- ``D`` is a small admissions dataset; ``D'`` is ``D`` plus one person with
  ``5 * max_records_per_person`` records, all in one cell (the "Oncology" ward). Real data
  does not obey the spec's bound: truncation inside the query enforces it.
- The mechanism releases the whole count table; the audit looks at the affected cell
  only, through the events ``S_t = {noisy count >= t}``.
- Each dataset gets ``N`` independent runs, split in halves. On the first half the audit
  picks the threshold ``t`` that gives the largest bound below; on the second, independent
  half it computes the bound for that ``t`` alone, so the choice costs no confidence.
- For counts ``x'`` (on ``D'``) and ``x`` (on ``D``) of runs in ``S_t`` out of ``n``, the
  one-sided Clopper-Pearson bounds ``p'_lo <= P_D'(S_t)`` and ``P_D(S_t) <= p_hi``, each at
  confidence ``1 - ALPHA / 2``, give ``epsilon_lb = ln(p'_lo / p_hi)``. Pure DP says
  ``P_D'(S) <= exp(epsilon) P_D(S)`` for every event, so ``epsilon_lb > epsilon`` happens
  with probability at most ``ALPHA`` (0.1%) when the claim holds.

The mechanism is pure DP (discrete Laplace), where the claim is a single epsilon and the
threshold test is tight: the bound of a correct mechanism lands just below its epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from opendp.context import Context, loss_of, unit_of
from opendp.extras.polars import dp_len

from publisher import privacy
from publisher.spec import ReleaseSpec, parse
from tests.conftest import admissions_rows, admissions_spec

ALPHA = 1e-3  # the audit's false-alarm probability for a mechanism that keeps its claim
EPSILON = 1.0
MAX_RECORDS = 2
EXCESS = 5  # the added person really has EXCESS * MAX_RECORDS records
CELL = "Oncology"
# Runs per dataset. The sound mechanism needs many for a tight bound (about 1.5 ms each);
# the broken one is caught with far fewer.
RUNS_SOUND = 6_000
RUNS_BROKEN = 1_000


@dataclass(frozen=True)
class Audit:
    threshold: int
    epsilon_lower_bound: float
    selection_bound: float
    hits_neighbour: int
    hits_base: int
    runs: int


def audit_spec() -> ReleaseSpec:
    """The admissions release as pure DP with one table, by ward."""
    raw = admissions_spec(
        privacy={"model": "pure", "epsilon": EPSILON, "cap": {"epsilon": 10 * EPSILON}}
    )
    raw["tables"] = raw["tables"][:1]  # type: ignore[index]
    raw["shares"] = []
    raw["inputs"]["admissions"]["max_records_per_person"] = MAX_RECORDS  # type: ignore[index]
    return parse(yaml.safe_dump(raw, sort_keys=False))


def frames(spec: ReleaseSpec | None = None) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """``D`` and its neighbour ``D'``: the same rows plus one person with many records,
    as text or, given the spec, as the library stages them for its measurements."""
    columns = ["patient_ref", "ward", "outcome"]
    base = admissions_rows(40)
    added = [("AUDIT-PERSON", CELL, "Discharged")] * (EXCESS * MAX_RECORDS)
    pair = []
    for rows in (base, base + added):
        frame = pl.DataFrame(rows, schema=[(c, pl.String) for c in columns], orient="row")
        lazy = frame.lazy()
        pair.append(privacy.prepare(spec, "admissions", lazy) if spec else lazy)
    return pair[0], pair[1]


def library_measurement(
    monkeypatch: pytest.MonkeyPatch, spec: ReleaseSpec
) -> tuple[Any, float, pl.Schema]:
    """The mechanism that ``privacy.measure`` runs for the table (OpenDP's truncation of
    the input chained with the table's measurement), the loss the library claims for it
    (what the package and the ledger record), and the schema of the data it takes.

    Caught as ``privacy.measure`` builds them, so the audit runs the library's own
    truncation and query, not copies of them.
    """
    caught: list[Any] = []
    schemas: list[pl.Schema] = []
    build, truncation = privacy.table_measurement, privacy.truncation

    def catch_truncation(spec: ReleaseSpec, input_name: str, schema: pl.Schema) -> Any:
        schemas.append(schema)
        return truncation(spec, input_name, schema)

    def catch(spec: ReleaseSpec, table: Any, truncate: Any, *args: Any) -> Any:
        measurement = build(spec, table, truncate, *args)
        caught.append(truncate >> measurement)
        return measurement

    monkeypatch.setattr(privacy, "truncation", catch_truncation)
    monkeypatch.setattr(privacy, "table_measurement", catch)
    base, _ = frames()
    measured = privacy.measure(spec, {"admissions": base})
    assert len(caught) == 1, "privacy.measure no longer builds its table with table_measurement"
    assert len(schemas) == 1, "privacy.measure no longer truncates with privacy.truncation"
    (table,) = measured.tables
    assert measured.total_loss == pytest.approx(table.loss)
    assert caught[0].map(privacy.ONE_PERSON) == pytest.approx(table.loss)
    return caught[0], table.loss, schemas[0]


def untruncated_measurement(spec: ReleaseSpec, data: pl.LazyFrame) -> tuple[Any, float]:
    """TEST ONLY, deliberately broken: the same count table without per-person truncation,
    its noise calibrated as if every person had at most ``MAX_RECORDS`` records."""
    context = Context.compositor(
        data=data,
        privacy_unit=unit_of(contributions=MAX_RECORDS),
        privacy_loss=loss_of(epsilon=EPSILON),
        split_evenly_over=1,
    )
    table = spec.tables[0]
    measurement = (
        context.query()
        .group_by(list(table.by))
        .agg(dp_len(signed=True).alias(privacy.NOISY_COUNT))
        .with_keys(privacy.keys_of(spec, table))
        .resolve()
    )
    return measurement, float(measurement.map(MAX_RECORDS))


def sample(measurement: Any, data: pl.LazyFrame, runs: int) -> np.ndarray[Any, Any]:
    """The affected cell's noisy count in ``runs`` independent releases."""
    cell = pl.col("ward") == CELL
    return np.array(
        [measurement(data).collect().filter(cell)[privacy.NOISY_COUNT].item() for _ in range(runs)]
    )


def _log_binomial_cdf(successes: int, trials: int, p: float, log_factorial: Any) -> float:
    """ln P(Binomial(trials, p) <= successes), summed in log space."""
    if successes < 0:
        return -math.inf
    if successes >= trials or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return -math.inf
    j = np.arange(successes + 1)
    terms = (
        log_factorial[trials]
        - log_factorial[j]
        - log_factorial[trials - j]
        + j * math.log(p)
        + (trials - j) * math.log1p(-p)
    )
    peak = float(terms.max())
    return peak + math.log(float(np.exp(terms - peak).sum()))


def _solve(decreasing: Callable[[float], float], level: float) -> float:
    """The p in [0, 1] where a function decreasing in p crosses ``level`` (bisection)."""
    low, high = 0.0, 1.0
    for _ in range(80):
        middle = (low + high) / 2
        if decreasing(middle) > level:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds, each holding with probability >= 1 - alpha."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, trials + 1)))])
    # upper: P(X <= successes; p) = alpha.   lower: P(X <= successes - 1; p) = 1 - alpha.
    upper = (
        1.0
        if successes == trials
        else _solve(
            lambda p: _log_binomial_cdf(successes, trials, p, log_factorial), math.log(alpha)
        )
    )
    lower = (
        0.0
        if successes == 0
        else _solve(
            lambda p: _log_binomial_cdf(successes - 1, trials, p, log_factorial),
            math.log1p(-alpha),
        )
    )
    return lower, upper


def epsilon_bound(hits_neighbour: int, hits_base: int, runs: int) -> float:
    neighbour_low, _ = clopper_pearson(hits_neighbour, runs, ALPHA / 2)
    _, base_high = clopper_pearson(hits_base, runs, ALPHA / 2)
    return math.log(neighbour_low / base_high) if neighbour_low > 0 else -math.inf


def run_audit(on_base: np.ndarray[Any, Any], on_neighbour: np.ndarray[Any, Any]) -> Audit:
    half = len(on_base) // 2
    select_base, test_base = on_base[:half], on_base[half:]
    select_neighbour, test_neighbour = on_neighbour[:half], on_neighbour[half:]
    values = np.concatenate([select_base, select_neighbour])
    best_bound, best_threshold = -math.inf, int(values.max())
    for threshold in range(int(values.min()), int(values.max()) + 1):
        bound = epsilon_bound(
            int((select_neighbour >= threshold).sum()), int((select_base >= threshold).sum()), half
        )
        if bound > best_bound:
            best_bound, best_threshold = bound, threshold
    hits_neighbour = int((test_neighbour >= best_threshold).sum())
    hits_base = int((test_base >= best_threshold).sum())
    runs = len(test_base)
    return Audit(
        threshold=best_threshold,
        epsilon_lower_bound=epsilon_bound(hits_neighbour, hits_base, runs),
        selection_bound=best_bound,
        hits_neighbour=hits_neighbour,
        hits_base=hits_base,
        runs=runs,
    )


# --- the statistics themselves -------------------------------------------------------------


def test_clopper_pearson_matches_known_values() -> None:
    # Exact cases: P(X = 0) = (1 - p)^n = alpha, and P(X = n) = p^n = alpha.
    lower, upper = clopper_pearson(0, 100, 0.05)
    assert lower == 0.0
    assert upper == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    lower, upper = clopper_pearson(100, 100, 0.05)
    assert lower == pytest.approx(0.05 ** (1 / 100), rel=1e-9)
    assert upper == 1.0
    # 50 of 100: the interval contains 0.5 and is about 0.5 +- 1.64 * 0.05 wide.
    lower, upper = clopper_pearson(50, 100, 0.05)
    assert 0.40 < lower < 0.42 < 0.58 < upper < 0.60


def test_the_bound_of_identical_distributions_is_not_positive() -> None:
    # Fails if the audit's arithmetic inflated bounds: the same samples for D and D'.
    rng = np.random.default_rng(7)  # test data for the statistics, not privacy noise
    same = rng.integers(0, 30, size=4_000)
    assert run_audit(same, same.copy()).epsilon_lower_bound <= 0.0


# --- the audit -----------------------------------------------------------------------------


def test_the_released_counts_keep_their_claimed_epsilon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if truncation to ``max_records_per_person`` stops working, if the noise is
    smaller than OpenDP's calibration for the claim, or if the library claims less loss
    than the mechanism spends (a lower bound above the claim, beyond the 0.1% chance)."""
    spec = audit_spec()
    measurement, claimed, schema = library_measurement(monkeypatch, spec)
    assert claimed == pytest.approx(EPSILON)
    assert privacy.prepare(spec, "admissions", frames()[0]).collect_schema() == schema
    base, neighbour = frames(spec)

    audit = run_audit(
        sample(measurement, base, RUNS_SOUND), sample(measurement, neighbour, RUNS_SOUND)
    )

    print(f"sound mechanism: claimed epsilon {claimed:g}, audit {audit}")
    assert audit.epsilon_lower_bound <= claimed, audit


def test_the_audit_catches_a_mechanism_without_truncation() -> None:
    """The same audit must flag the broken mechanism: its noise is calibrated for
    ``MAX_RECORDS`` records per person, but the added person shifts the cell by
    ``EXCESS * MAX_RECORDS``, a true epsilon of ``EXCESS * EPSILON``. Fails if the audit
    lacks the power to see a violation (too few runs, or a broken test statistic)."""
    base, neighbour = frames()
    measurement, claimed = untruncated_measurement(audit_spec(), base)
    assert claimed == pytest.approx(EPSILON)

    audit = run_audit(
        sample(measurement, base, RUNS_BROKEN), sample(measurement, neighbour, RUNS_BROKEN)
    )

    print(f"mechanism without truncation: claimed epsilon {claimed:g}, audit {audit}")
    assert audit.epsilon_lower_bound > claimed, audit
