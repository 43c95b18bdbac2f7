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

Linked inputs get the same audit for each unit, with PrivateSQL's neighbours: ``D'``
removes one child victim and every suspect record that hangs on their crimes, or one
suspect and all their records; each bound must stay within the unit's stated loss for the
table, and suspects counted without the bound per victim must be flagged.
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

from publisher import accounting, ingest, privacy
from publisher.spec import ReleaseSpec, parse
from tests.conftest import WARDS, admissions_rows, admissions_spec

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
    """The admissions release as pure DP with one table, by ward, and no estimate."""
    raw = admissions_spec(
        privacy={
            "model": "pure",
            "epsilon": EPSILON,
            "cap": {"epsilon": 10 * EPSILON},
            "truncation_share": 0,
        }
    )
    raw["tables"] = raw["tables"][:1]  # type: ignore[index]
    raw["shares"] = []
    raw["inputs"]["admissions"]["max_records_per_person"] = MAX_RECORDS  # type: ignore[index]
    return parse(yaml.safe_dump(raw, sort_keys=False))


def frames() -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """``D`` and its neighbour ``D'``: the same rows plus one person with many records."""
    columns = ["patient_ref", "ward", "outcome"]
    base = admissions_rows(40)
    added = [("AUDIT-PERSON", CELL, "Discharged")] * (EXCESS * MAX_RECORDS)
    return tuple(  # type: ignore[return-value]
        pl.DataFrame(rows, schema=[(c, pl.String) for c in columns], orient="row").lazy()
        for rows in (base, base + added)
    )


def bounded_counts(
    spec: ReleaseSpec, input_name: str, table: str, data: pl.LazyFrame, engine: str = "polars"
) -> list[int]:
    """The exact counts the library measures for ``table``, after its bounds, on ``engine``.
    Called for several orders: on the audit's datasets the bounds keep the same records
    whatever the order (the chosen records of a person all fall in one cell), so the only
    randomness of the mechanism left is OpenDP's noise, which the audit then samples
    cheaply. (Spark, slow to start each query, is asked for one order.)"""
    seeds = (1,) if engine == "spark" else (1, 2, 3)
    counts = [
        privacy.bound_input(spec, input_name, data, order_seed=seed, engine=engine)
        .tables[table]
        .tolist()
        for seed in seeds
    ]
    assert all(count == counts[0] for count in counts), "the datasets must bound the same way"
    return counts[0]


# The audit runs on every engine: each bounds the records itself (OpenDP's noise is the same).
ENGINES = ["polars", "duckdb", pytest.param("spark", marks=pytest.mark.spark)]


def sample(measurement: Any, counts: list[int], cell: int, runs: int) -> np.ndarray[Any, Any]:
    """The affected cell's noisy count in ``runs`` independent releases of ``counts``."""
    return np.array([measurement(counts)[cell] for _ in range(runs)])


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


@pytest.mark.parametrize("engine", ENGINES)
def test_the_released_counts_keep_their_claimed_epsilon(engine: str) -> None:
    """Fails if truncation to ``max_records_per_person`` stops working, if the noise is
    smaller than OpenDP's calibration for the claim, or if the library claims less loss
    than the mechanism spends (a lower bound above the claim, beyond the 0.1% chance)."""
    spec = audit_spec()
    (table,) = spec.tables
    planned = accounting.account(spec).table(table.name)
    claimed = planned.unit_losses["patient"]
    assert claimed == pytest.approx(EPSILON)
    base, neighbour = (bounded_counts(spec, "admissions", table.name, d, engine) for d in frames())
    cell = WARDS.index(CELL)
    assert neighbour[cell] - base[cell] == MAX_RECORDS  # the bound holds

    measurement = planned.measurement()
    audit = run_audit(
        sample(measurement, base, cell, RUNS_SOUND),
        sample(measurement, neighbour, cell, RUNS_SOUND),
    )

    print(f"sound mechanism on {engine}: claimed epsilon {claimed:g}, audit {audit}")
    assert audit.epsilon_lower_bound <= claimed, audit


def test_the_audit_catches_a_mechanism_without_truncation() -> None:
    """The same audit must flag a broken mechanism: the library's noise, calibrated for
    ``MAX_RECORDS`` records per person, on counts that were not truncated, so the added
    person shifts the cell by ``EXCESS * MAX_RECORDS``: a true epsilon of ``EXCESS *
    EPSILON``. Fails if the audit lacks the power to see a violation."""
    spec = audit_spec()
    (table,) = spec.tables
    planned = accounting.account(spec).table(table.name)
    cell = WARDS.index(CELL)
    base, neighbour = (
        d.group_by("ward").len().collect().sort("ward")["len"].to_list() for d in frames()
    )
    assert neighbour[cell] - base[cell] == EXCESS * MAX_RECORDS

    measurement = planned.measurement()
    audit = run_audit(
        sample(measurement, base, cell, RUNS_BROKEN),
        sample(measurement, neighbour, cell, RUNS_BROKEN),
    )

    print(f"mechanism without truncation: claimed {planned.loss:g}, audit {audit}")
    assert audit.epsilon_lower_bound > planned.loss, audit


# --- linked inputs: one child victim and everything that depends on them ----------------------

VICTIMS_CAP = 2  # suspects counted per victim
LINKED_EXCESS = 4  # the audited victim's suspects, beyond the cap


def linked_spec() -> ReleaseSpec:
    """Crimes about victims and suspects linked to crimes, pure DP, one suspects table."""
    raw = admissions_spec(
        privacy={
            "model": "pure",
            "epsilon": EPSILON,
            "cap": {"epsilon": 10 * EPSILON},
            "truncation_share": 0,
            "units": {"victim": {"title": "child victim"}, "suspect": {"title": "suspect"}},
        }
    )
    raw["inputs"] = {
        "crimes": {
            "path": "crimes.csv",
            "identifier": "victim_id",
            "unit": "victim",
            "max_records_per_person": 1,
            "columns": {"ward": {"categories": "ward"}},
        },
        "suspects": {
            "path": "suspects.csv",
            "identifier": "suspect_id",
            "unit": "suspect",
            "max_records_per_person": 1,
            "references": {"crime_id": "crimes.crime_id"},
            "linked_units": {"victim": {"max_records_per_person": VICTIMS_CAP}},
            "columns": {"ward": {"categories": "ward"}},
        },
    }
    raw["tables"] = [
        {
            "name": "suspects-by-ward",
            "input": "suspects",
            "by": ["ward"],
            "title": "Suspects",
            "description": "Suspects by ward.",
        }
    ]
    raw["shares"] = []
    return parse(yaml.safe_dump(raw, sort_keys=False))


def suspect_records(victims: dict[str, list[tuple[str, str]]]) -> pl.LazyFrame:
    """Suspect records as ingest stages them: each linked to its crime's victim."""
    rows = [
        (suspect, ward, victim)
        for victim, suspects in victims.items()
        for suspect, ward in suspects
    ]
    frame = pl.DataFrame(rows, schema=["suspect_id", "ward", "victim"], orient="row")
    return (
        frame.lazy()
        .with_columns(
            ingest.identifier_hash(pl.col("victim")).alias(ingest.linked_column("victim"))
        )
        .drop("victim")
    )


# Ten ordinary victims with two suspects each, in Maternity; the audited victim has
# VICTIMS_CAP + LINKED_EXCESS suspects of their own, all in Oncology.
ORDINARY = {f"V{v}": [(f"S{v}-{i}", "Maternity") for i in range(2)] for v in range(10)}
AUDITED = {"V-AUDIT": [(f"S-AUDIT-{i}", CELL) for i in range(VICTIMS_CAP + LINKED_EXCESS)]}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_child_victim_s_loss_through_linked_suspects_is_as_stated(engine: str) -> None:
    """Removing the audited victim removes their crimes and every suspect linked only to
    them: the suspects table moves by at most VICTIMS_CAP (the linked bound), and the
    audit's lower bound stays within the victim's stated loss for that table."""
    spec = linked_spec()
    planned = accounting.account(spec).table("suspects-by-ward")
    claimed = planned.unit_losses["victim"]
    assert claimed == pytest.approx(EPSILON)  # the victim is the unit it costs most
    assert planned.unit_losses["suspect"] == pytest.approx(2 * EPSILON / VICTIMS_CAP)
    with_victim = bounded_counts(spec, "suspects", "suspects-by-ward", suspect_records(
        {**ORDINARY, **AUDITED}), engine)  # fmt: skip
    without = bounded_counts(
        spec, "suspects", "suspects-by-ward", suspect_records(ORDINARY), engine
    )
    cell = WARDS.index(CELL)
    assert with_victim[cell] - without[cell] == VICTIMS_CAP

    measurement = planned.measurement()
    audit = run_audit(
        sample(measurement, without, cell, RUNS_SOUND),
        sample(measurement, with_victim, cell, RUNS_SOUND),
    )

    print(f"victim removed, on {engine}: claimed epsilon {claimed:g}, audit {audit}")
    assert audit.epsilon_lower_bound <= claimed, audit


@pytest.mark.parametrize("engine", ENGINES)
def test_a_suspect_s_loss_is_as_stated(engine: str) -> None:
    """Removing one suspect (every record of theirs) moves the table by at most two: the
    suspect leaves and at most one other suspect takes their place under the bound."""
    spec = linked_spec()
    planned = accounting.account(spec).table("suspects-by-ward")
    claimed = planned.unit_losses["suspect"]
    victims = {**ORDINARY, **AUDITED}
    removed = victims["V0"][0][0]  # counted, and no other suspect of V0 is left out
    less = {v: [(s, w) for s, w in suspects if s != removed] for v, suspects in victims.items()}
    with_suspect = bounded_counts(
        spec, "suspects", "suspects-by-ward", suspect_records(victims), engine
    )
    without = bounded_counts(spec, "suspects", "suspects-by-ward", suspect_records(less), engine)
    assert sum(abs(a - b) for a, b in zip(with_suspect, without, strict=True)) <= 2
    cell = WARDS.index("Maternity")
    assert with_suspect[cell] - without[cell] == 1

    measurement = planned.measurement()
    audit = run_audit(
        sample(measurement, without, cell, RUNS_SOUND),
        sample(measurement, with_suspect, cell, RUNS_SOUND),
    )

    print(f"suspect removed, on {engine}: claimed epsilon {claimed:g}, audit {audit}")
    assert audit.epsilon_lower_bound <= claimed, audit


def test_the_audit_catches_suspects_counted_without_the_victim_bound() -> None:
    """Flagged: suspects counted once each but NOT bounded per victim, with noise calibrated
    as if they were. Removing the audited victim then moves the cell by VICTIMS_CAP +
    LINKED_EXCESS, beyond the claim (which the spec's earlier releases made, for
    each child victim, before units were bounded across inputs)."""
    spec = linked_spec()
    planned = accounting.account(spec).table("suspects-by-ward")
    cell = WARDS.index(CELL)

    def unbounded(victims: dict[str, list[tuple[str, str]]]) -> list[int]:
        counted = suspect_records(victims).group_by("ward").len().collect()
        by_ward = dict(zip(counted["ward"], counted["len"], strict=True))
        return [int(by_ward.get(ward, 0)) for ward in WARDS]

    with_victim, without = unbounded({**ORDINARY, **AUDITED}), unbounded(ORDINARY)
    assert with_victim[cell] - without[cell] == VICTIMS_CAP + LINKED_EXCESS

    measurement = planned.measurement()
    audit = run_audit(
        sample(measurement, without, cell, RUNS_BROKEN),
        sample(measurement, with_victim, cell, RUNS_BROKEN),
    )

    print(f"no victim bound: claimed {planned.loss:g}, audit {audit}")
    assert audit.epsilon_lower_bound > planned.loss, audit


# --- zCDP: an input's tables measured together by their strategy ---------------------------

RHO = 0.5
RUNS_GAUSSIAN = 4_000
Z_AUDIT = 3.29  # one-sided normal quantile at ALPHA / 2


def strategy_spec() -> ReleaseSpec:
    """The admissions release under zCDP: both tables measured by one strategy."""
    raw = admissions_spec(
        privacy={"model": "zcdp", "rho": RHO, "cap": {"rho": 2.0}, "truncation_share": 0}
    )
    raw["shares"] = []
    raw["inputs"]["admissions"]["max_records_per_person"] = MAX_RECORDS  # type: ignore[index]
    return parse(yaml.safe_dump(raw, sort_keys=False))


def strategy_answers(spec: ReleaseSpec, data: pl.LazyFrame, *, bounded: bool = True) -> np.ndarray:
    """The exact integer answers the release adds noise to, through the release's own
    path (bounds, counts by key, the design's queries); ``bounded=False`` skips the bound
    on records per person (the broken mechanism)."""
    design = accounting.account(spec).designs["admissions"]
    if bounded:
        kept = privacy.bound_input(spec, "admissions", data, order_seed=1)
        leaves = kept.workload_leaves(spec, "admissions")
    else:
        counted = data.group_by("ward", "outcome").len().collect()
        leaves = np.zeros((len(WARDS), len(spec.categories["outcome"].values)), dtype=np.int64)
        wards = spec.categories["ward"].values
        outcomes = spec.categories["outcome"].values
        for ward, outcome, count in counted.iter_rows():
            leaves[wards.index(ward), outcomes.index(outcome)] += count
    assert leaves is not None
    (answers,) = design.answers(design.leaf_counts(leaves))
    return answers


def gaussian_audit(
    planned: accounting.Planned, base: np.ndarray, neighbour: np.ndarray, runs: int
) -> float:
    """A lower confidence bound (1 - ALPHA) on mu, the shift between the two output
    distributions in noise standard deviations along the direction that separates them
    best (the difference of the exact answers): Gaussian noise whose loss is rho has
    mu = sqrt(2 rho) at most. Both the shift and the standard deviation are estimated from
    OpenDP's releases; the bound takes the shift's sampling error at Z_AUDIT."""
    direction = (neighbour - base).astype(float)
    direction /= np.linalg.norm(direction)
    measurement = planned.measurement()
    on_base = np.array(
        [direction @ np.asarray(measurement(base.tolist()), float) for _ in range(runs)]
    )
    on_neighbour = np.array(
        [direction @ np.asarray(measurement(neighbour.tolist()), float) for _ in range(runs)]
    )
    deviation = math.sqrt((on_base.var(ddof=1) + on_neighbour.var(ddof=1)) / 2)
    shift = on_neighbour.mean() - on_base.mean()
    return float((shift - Z_AUDIT * deviation * math.sqrt(2 / runs)) / deviation)


def test_the_strategy_s_measurement_keeps_its_claimed_rho() -> None:
    """The exact answers of the design's queries move by at most the distance the
    accounting states when one patient with many records joins (truncation holds through
    the strategy), and OpenDP's noisy answers show no more than the claimed rho."""
    spec = strategy_spec()
    plan = accounting.account(spec)
    (planned,) = [item for item in plan.measurements if item.kind == "design"]
    claimed = planned.unit_losses["patient"]
    assert claimed == pytest.approx(RHO)
    base, neighbour = (strategy_answers(spec, d) for d in frames())
    moved = float(np.linalg.norm((neighbour - base).astype(float)))
    assert 0 < moved <= planned.sensitivity["patient"]

    mu = gaussian_audit(planned, base, neighbour, RUNS_GAUSSIAN)

    print(f"strategy: claimed rho {claimed:g} (mu {math.sqrt(2 * claimed):.3f}), audit mu {mu:.3f}")
    assert mu <= math.sqrt(2 * claimed)


def test_the_audit_catches_a_strategy_without_truncation() -> None:
    """Flagged: the same queries and noise on counts that were not bounded per patient
    (the added patient moves EXCESS times the bound)."""
    spec = strategy_spec()
    (planned,) = [p for p in accounting.account(spec).measurements if p.kind == "design"]
    base, neighbour = (strategy_answers(spec, d, bounded=False) for d in frames())

    mu = gaussian_audit(planned, base, neighbour, RUNS_BROKEN)

    print(f"strategy without truncation: claimed rho {planned.loss:g}, audit mu {mu:.3f}")
    assert mu > math.sqrt(2 * planned.loss)
