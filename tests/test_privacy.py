"""OpenDP wiring: person-level truncation, every public key measured, OpenDP's accounting."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from publisher import postprocess, privacy, strategy
from publisher.spec import ReleaseSpec, parse
from tests.conftest import WARDS, admissions_rows, admissions_spec


def spec_with(**overrides: object) -> ReleaseSpec:
    return parse(yaml.safe_dump(admissions_spec(**overrides)))


def frame(rows: list[tuple[str, str, str]]) -> dict[str, pl.LazyFrame]:
    data = pl.DataFrame(rows, schema=["patient_ref", "ward", "outcome"], orient="row")
    return {"admissions": data.lazy()}


PURE = {"model": "pure", "epsilon": 1.0, "cap": {"epsilon": 2.0}}


def with_burns(**overrides: object) -> ReleaseSpec:
    # "Burns" is a declared ward with no admissions at all: it must still be measured.
    spec = admissions_spec(**overrides)
    spec["categories"]["ward"]["values"] = [*WARDS, "Burns"]  # type: ignore[index]
    return parse(yaml.safe_dump(spec))


@pytest.fixture(scope="module")
def released() -> tuple[ReleaseSpec, privacy.Measurements]:
    """Pure DP: each table measured alone."""
    release_spec = with_burns(privacy=PURE)
    return release_spec, privacy.measure(release_spec, frame(admissions_rows()))


@pytest.fixture(scope="module")
def strategy_released() -> tuple[ReleaseSpec, privacy.Measurements]:
    """zCDP: the tables measured together by their strategy."""
    release_spec = with_burns()
    return release_spec, privacy.measure(release_spec, frame(admissions_rows()))


def test_every_public_key_combination_is_measured_in_spec_order(
    released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    spec, measured = released
    for table in spec.tables:
        keys = privacy.keys_of(spec, table)
        noisy = measured.table(table.name)
        assert noisy is not None
        assert noisy.noisy_counts.select(table.by).equals(keys)
        assert noisy.noisy_counts[privacy.NOISY_COUNT].null_count() == 0
        assert noisy.noisy_counts[privacy.NOISY_COUNT].dtype == pl.Int64
    one_way = measured.table("admissions-by-ward")
    assert one_way is not None
    assert one_way.noisy_counts.filter(pl.col("ward") == "Burns").height == 1


def test_the_strategy_counts_every_public_key_combination_in_spec_order() -> None:
    # The strategy's queries combine the exact counts by every key combination of the
    # columns the tables use, empty ones (Burns) included, in the categories' order.
    spec = with_burns()
    bounded = privacy.bound_input(spec, "admissions", frame(admissions_rows())["admissions"])
    attributes = strategy.workload_from_spec(spec, "admissions").attributes
    assert [name for name, _ in attributes] == ["outcome", "ward"]
    outcomes = spec.categories["outcome"].values
    wards = spec.categories["ward"].values
    leaves = bounded.workload_leaves(spec, "admissions")
    assert leaves.shape == (len(outcomes), len(wards))
    assert leaves[:, wards.index("Burns")].sum() == 0
    by_ward_and_outcome = bounded.tables["admissions-by-ward-and-outcome"]
    assert (leaves.T.ravel() == by_ward_and_outcome).all()


def test_losses_come_from_opendp_and_add_up_to_the_spec(
    released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    spec, measured = released
    plan = privacy.accounting.account(spec)
    for table in spec.tables:
        noisy = measured.table(table.name)
        planned = plan.table(table.name)
        assert noisy is not None and planned is not None
        assert noisy.unit_losses == {"patient": pytest.approx(spec.table_loss(table))}
        assert noisy.loss == pytest.approx(planned.measurement().map(2))  # OpenDP's map, k = 2
    (estimate,) = measured.truncation
    assert estimate.unit_losses == {"patient": pytest.approx(spec.truncation_loss("admissions"))}
    tables = math.fsum(t.loss for t in measured.tables)
    assert tables + estimate.unit_losses["patient"] == pytest.approx(spec.privacy.loss)
    assert measured.unit_losses == {"patient": pytest.approx(spec.privacy.loss)}
    assert measured.total_loss == pytest.approx(spec.privacy.loss)


def test_the_strategy_s_losses_come_from_opendp_and_add_up_to_the_spec(
    strategy_released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    spec, measured = strategy_released
    assert measured.tables == ()
    design = measured.design("admissions")
    assert design is not None
    plan = privacy.accounting.account(spec)
    tables = math.fsum(spec.table_loss(table) for table in spec.tables)
    for query in design.queries:
        (planned,) = [p for p in plan.measurements if p.name == query.name]
        # Its share of the tables' loss, by OpenDP's map at the query's sensitivity.
        share = next(q.share for q in design.design.queries if query.name.endswith(q.name))
        assert query.unit_losses == {"patient": pytest.approx(tables * share)}
        assert query.unit_losses["patient"] == planned.measurement().map(
            query.sensitivity["patient"]
        )
    (estimate,) = measured.truncation
    assert design.unit_losses["patient"] + estimate.unit_losses["patient"] == pytest.approx(
        spec.privacy.loss
    )
    assert measured.total_loss == pytest.approx(spec.privacy.loss)


def test_the_strategy_s_gaussian_scale_follows_from_the_per_person_bound(
    strategy_released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    # One person keeps at most k records; a query vector whose columns have squared norm
    # at most n moves by at most k sqrt(n) (rounded up to OpenDP's integer distance), and
    # zCDP gives sigma = distance / sqrt(2 rho_query). OpenDP derives rho; we check wiring.
    spec, measured = strategy_released
    k = spec.inputs["admissions"].max_records_per_person
    design = measured.design("admissions")
    assert design is not None
    tables = math.fsum(spec.table_loss(table) for table in spec.tables)
    for noisy, query in zip(design.queries, design.design.queries, strict=True):
        assert noisy.distribution == "Integer Gaussian"
        distance = math.isqrt(k * k * query.norm - 1) + 1
        assert noisy.sensitivity == {"patient": distance}
        assert noisy.scale == pytest.approx(
            distance / math.sqrt(2 * tables * query.share), rel=1e-6
        )


def test_pure_dp_uses_laplace_with_the_l1_bound() -> None:
    spec = spec_with(privacy=PURE)
    measured = privacy.measure(spec, frame(admissions_rows(200)))
    k = spec.inputs["admissions"].max_records_per_person
    for table in spec.tables:
        noisy = measured.table(table.name)
        assert noisy is not None
        assert noisy.distribution == "Integer Laplace"
        assert noisy.scale == pytest.approx(k / spec.table_loss(table), rel=1e-6)
    assert measured.epsilon == pytest.approx(1.0)


def test_truncation_bounds_what_one_person_adds() -> None:
    # One patient with 300 admissions to Oncology and nobody else there: after truncation
    # to k = 2 records, the estimated Oncology count is about 2, far from 300. The
    # tolerance is 8 standard errors of the estimate (failure probability about 1e-15).
    rows = [r for r in admissions_rows() if r[1] != "Oncology"]
    rows += [("P99999", "Oncology", "Discharged")] * 300
    spec = spec_with(privacy={"model": "zcdp", "rho": 0.5, "cap": {"rho": 1.0}})
    measured = privacy.measure(spec, frame(rows))
    estimates = postprocess.consistent_estimates(spec, measured)["admissions-by-ward"]
    oncology = WARDS.index("Oncology")
    estimate = estimates.cells[postprocess.ESTIMATE][oncology]
    assert abs(estimate - 2) <= 8 * math.sqrt(estimates.covariance[oncology, oncology])


def test_counts_are_signed_so_empty_cells_can_go_negative() -> None:
    # 4 empty wards x 3 outcomes, twice over, each measured alone (pure DP): the chance
    # that none of 24 independent zero-centred noisy zeros is negative is below 0.62**24,
    # about 1e-5.
    spec = admissions_spec(privacy={"model": "pure", "epsilon": 0.02, "cap": {"epsilon": 1.0}})
    spec["categories"]["ward"]["values"] = [*WARDS, "W1", "W2", "W3", "W4"]  # type: ignore[index]
    measured = privacy.measure(parse(yaml.safe_dump(spec)), frame(admissions_rows()))
    empties = [
        value
        for table in measured.tables
        for value in table.noisy_counts.filter(pl.col("ward").str.starts_with("W"))[
            privacy.NOISY_COUNT
        ]
    ]
    assert len(empties) == 16
    assert min(empties) < 0


@pytest.mark.parametrize("rho", [0.01, 0.5, 2.0])
def test_zcdp_statement_is_tighter_than_the_classic_bound(rho: float) -> None:
    epsilon, delta = privacy.epsilon_delta("zcdp", rho, 1e-7)
    classic = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    assert rho < epsilon <= classic
    assert delta == 1e-7


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_truncation_keeps_at_most_k_records_of_each_person(k: int) -> None:
    # Patients with 1, 2, 5 and 9 admissions: each keeps min(records, k), and OpenDP's
    # stability map says one person moves the truncated records by at most k (one record
    # per person is a group-by on the identifier, more is a filter: both are OpenDP's).
    raw = admissions_spec()
    raw["inputs"]["admissions"]["max_records_per_person"] = k  # type: ignore[index]
    spec = parse(yaml.safe_dump(raw))
    records = {"A": 1, "B": 2, "C": 5, "D": 9}
    rows = [
        (ref, WARDS[i % len(WARDS)], "Discharged") for ref, n in records.items() for i in range(n)
    ]
    prepared = privacy.prepare(spec, "admissions", frame(rows)["admissions"]).collect()
    truncate = privacy.truncation(spec, "admissions", prepared.schema)
    kept = truncate(prepared.lazy()).collect()
    per_person = kept.group_by("patient_ref").len()["len"].sort().to_list()
    assert per_person == sorted(min(n, k) for n in records.values())
    assert kept.columns == prepared.columns
    (bound,) = truncate.map(privacy.ONE_PERSON)
    assert bound.per_group == k


# --- bounded counts -----------------------------------------------------------------------


def test_the_exact_counts_are_of_the_kept_records_and_the_histogram_of_all() -> None:
    # Patients with 1, 2, 3 and 7 admissions, all to Oncology; k = 2.
    records = {"A": 1, "B": 2, "C": 3, "D": 7}
    rows = [(ref, "Oncology", "Discharged") for ref, n in records.items() for _ in range(n)]
    spec = spec_with()

    bounded = privacy.bound_input(spec, "admissions", frame(rows)["admissions"])

    by_ward = dict(zip(WARDS, bounded.tables["admissions-by-ward"].tolist(), strict=True))
    assert by_ward == {"Cardiology": 0, "Maternity": 0, "Oncology": 7, "Paediatrics": 0}
    assert bounded.tables["admissions-by-ward-and-outcome"].sum() == 7
    # People by number of records: 1, 2, 3, 4, and "5 or more".
    assert privacy.histogram_bins(2) == ["1", "2", "3", "4", "5 or more"]
    assert bounded.truncation is not None
    assert bounded.truncation.tolist() == [1, 1, 1, 0, 1]


def _projection(edges: list[tuple[int, int]], cap: int) -> dict[int, bool]:
    """Which own people the linked projection counts, by their own number."""
    own = sorted({o for o, _ in edges})
    linked = sorted({link for _, link in edges})
    own_code = {person: code for code, person in enumerate(own)}
    linked_code = {person: code for code, person in enumerate(linked)}
    (counted,) = privacy.linked_projection(
        [own_code[o] for o, _ in edges],
        [linked_code[link] for _, link in edges],
        len(own),
        len(linked),
        [cap],
    )
    return {person: bool(counted[own_code[person]]) for person in own}


@given(
    edges=st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 6)), min_size=1, max_size=40, unique=True
    ),
    cap=st.integers(1, 4),
    removed=st.integers(0, 12),
)
def test_the_linked_projection_keeps_its_bounds_when_a_person_is_removed(
    edges: list[tuple[int, int]], cap: int, removed: int
) -> None:
    """The lemma of ``privacy.linked_projection`` on small random graphs, in a fixed
    order: removing a linked person stops at most ``cap`` own people being counted and
    starts none; removing an own person starts at most one other."""
    counted = _projection(edges, cap)

    without_linked = [(o, link) for o, link in edges if link != removed]
    after = _projection(without_linked, cap) if without_linked else {}
    stopped = [o for o in counted if counted[o] and not after.get(o, False)]
    started = [o for o in after if after[o] and not counted[o]]
    assert len(stopped) <= cap and not started

    without_own = [(o, link) for o, link in edges if o != removed]
    after = _projection(without_own, cap) if without_own else {}
    others_stopped = [o for o in after if counted[o] and not after[o]]
    others_started = [o for o in after if after[o] and not counted[o]]
    assert not others_stopped and len(others_started) <= 1


def test_a_strategy_that_cannot_be_built_falls_back_to_each_table_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unbuildable(*_: object, **__: object) -> None:
        raise ValueError("the design's integer queries would need more than 64 bits")

    monkeypatch.setattr(strategy, "plan", unbuildable)
    privacy.accounting._design.cache_clear()
    try:
        spec = spec_with()
        measured = privacy.measure(spec, frame(admissions_rows()))
    finally:
        privacy.accounting._design.cache_clear()
    design = measured.design("admissions")
    assert design is not None
    assert design.design.method == privacy.accounting.ALONE
    # Each table alone, at its part of the loss, with the counts' own sensitivity.
    k = spec.inputs["admissions"].max_records_per_person
    for query, table in zip(design.queries, spec.tables, strict=True):
        assert query.sensitivity == {"patient": k}
        assert query.unit_losses["patient"] == pytest.approx(spec.table_loss(table))
    estimates = postprocess.consistent_estimates(spec, measured)
    assert set(estimates) == {table.name for table in spec.tables}


def test_the_records_a_person_keeps_are_chosen_at_random() -> None:
    # One patient with 8 records in 8 different cells, k = 2: over 40 releases every one
    # of the 8 is kept at least once (a given record is never kept with probability
    # (3/4)^40, about 1e-5; for any of the 8, below 1e-4), and each time exactly 2 are.
    spec = spec_with()
    cells = [(ward, outcome) for ward in WARDS for outcome in ("Discharged", "Transferred")]
    rows = [("P-MANY", ward, outcome) for ward, outcome in cells]
    others = admissions_rows(60)
    base = privacy.bound_input(spec, "admissions", frame(others)["admissions"]).workload_leaves(
        spec, "admissions"
    )
    seen = np.zeros_like(base)
    for _ in range(40):
        bounded = privacy.bound_input(spec, "admissions", frame(others + rows)["admissions"])
        leaves = bounded.workload_leaves(spec, "admissions")
        kept = leaves - base
        assert kept.sum() == 2 and kept.max() == 1
        seen += kept
    attributes = [name for name, _ in strategy.workload_from_spec(spec, "admissions").attributes]
    outcomes = spec.categories["outcome"].values
    for ward, outcome in cells:
        index = {"ward": WARDS.index(ward), "outcome": outcomes.index(outcome)}
        assert seen[tuple(index[name] for name in attributes)] > 0, (ward, outcome)


def test_the_people_a_linked_person_keeps_are_chosen_at_random() -> None:
    # One child victim with a suspect in each of the 4 wards, at most 2 counted per
    # victim: over 30 releases (a fresh random order each) every ward's suspect is counted
    # at least once; a greedy matching in the data's order would always pick the same two.
    from tests.test_audit import VICTIMS_CAP, linked_spec, suspect_records

    spec = linked_spec()
    victims = {"V-MANY": [(f"S-{ward}", ward) for ward in WARDS]}
    seen = np.zeros(len(WARDS), dtype=np.int64)
    for _ in range(30):
        counts = privacy.bound_input(spec, "suspects", suspect_records(victims)).tables
        kept = counts["suspects-by-ward"]
        assert kept.sum() == VICTIMS_CAP
        seen += kept
    assert (seen > 0).all(), seen
