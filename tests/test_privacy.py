"""OpenDP wiring: person-level truncation, every public key measured, OpenDP's accounting."""

from __future__ import annotations

import math

import polars as pl
import pytest
import yaml

from publisher import privacy
from publisher.spec import ReleaseSpec, parse
from tests.conftest import WARDS, admissions_rows, admissions_spec


def spec_with(**overrides: object) -> ReleaseSpec:
    return parse(yaml.safe_dump(admissions_spec(**overrides)))


def frame(rows: list[tuple[str, str, str]]) -> dict[str, pl.LazyFrame]:
    data = pl.DataFrame(rows, schema=["patient_ref", "ward", "outcome"], orient="row")
    return {"admissions": data.lazy()}


@pytest.fixture(scope="module")
def released() -> tuple[ReleaseSpec, privacy.Measurements]:
    # "Burns" is a declared ward with no admissions at all: it must still be measured.
    spec = admissions_spec()
    spec["categories"]["ward"]["values"] = [*WARDS, "Burns"]  # type: ignore[index]
    release_spec = parse(yaml.safe_dump(spec))
    return release_spec, privacy.measure(release_spec, frame(admissions_rows()))


def test_every_public_key_combination_is_measured_in_spec_order(
    released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    spec, measured = released
    for table in spec.tables:
        keys = privacy.keys_of(spec, table)
        noisy = measured.table(table.name).noisy_counts
        assert noisy.select(table.by).equals(keys)
        assert noisy[privacy.NOISY_COUNT].null_count() == 0
        assert noisy[privacy.NOISY_COUNT].dtype == pl.Int64
    burns = measured.table("admissions-by-ward").noisy_counts.filter(pl.col("ward") == "Burns")
    assert burns.height == 1


def test_losses_come_from_opendp_and_add_up_to_the_spec(
    released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    spec, measured = released
    for table in spec.tables:
        assert measured.table(table.name).loss == pytest.approx(spec.table_loss(table))
    assert math.fsum(t.loss for t in measured.tables) == pytest.approx(spec.privacy.loss)
    assert measured.total_loss == pytest.approx(spec.privacy.loss)
    assert measured.input_loss == {"admissions": pytest.approx(spec.privacy.loss)}


def test_gaussian_scale_follows_from_the_per_person_bound(
    released: tuple[ReleaseSpec, privacy.Measurements],
) -> None:
    # One person keeps at most k records, so the L2 sensitivity of a count table is k and
    # zCDP gives sigma = k / sqrt(2 rho). OpenDP derives this; we check the wiring.
    spec, measured = released
    k = spec.inputs["admissions"].max_records_per_person
    for table in spec.tables:
        noisy = measured.table(table.name)
        assert noisy.distribution == "Integer Gaussian"
        assert noisy.scale == pytest.approx(k / math.sqrt(2 * spec.table_loss(table)), rel=1e-6)
        assert noisy.margin_95 == pytest.approx(1.96 * noisy.scale, abs=1.5)


def test_pure_dp_uses_laplace_with_the_l1_bound() -> None:
    spec = spec_with(privacy={"model": "pure", "epsilon": 1.0, "cap": {"epsilon": 2.0}})
    measured = privacy.measure(spec, frame(admissions_rows(200)))
    k = spec.inputs["admissions"].max_records_per_person
    for table in spec.tables:
        noisy = measured.table(table.name)
        assert noisy.distribution == "Integer Laplace"
        assert noisy.scale == pytest.approx(k / spec.table_loss(table), rel=1e-6)
    assert (measured.epsilon, measured.delta) == (pytest.approx(1.0), 0.0)


def test_truncation_bounds_what_one_person_adds() -> None:
    # One patient with 300 admissions to Oncology and nobody else there: after truncation
    # to k = 2 records, the Oncology count is about 2, far from 300. The tolerance is
    # 8 sigma of OpenDP's noise (failure probability about 1e-15).
    rows = [r for r in admissions_rows() if r[1] != "Oncology"]
    rows += [("P99999", "Oncology", "Discharged")] * 300
    spec = spec_with(privacy={"model": "zcdp", "rho": 0.5, "cap": {"rho": 1.0}})
    measured = privacy.measure(spec, frame(rows))
    table = measured.table("admissions-by-ward")
    oncology = table.noisy_counts.filter(pl.col("ward") == "Oncology")[privacy.NOISY_COUNT][0]
    assert abs(oncology - 2) <= 8 * table.scale


def test_counts_are_signed_so_empty_cells_can_go_negative() -> None:
    # 4 empty wards x 3 outcomes, twice over: the chance that none of 24 independent
    # zero-centred noisy zeros is negative is below 0.62**24, about 1e-5.
    spec = admissions_spec(privacy={"model": "zcdp", "rho": 0.01, "cap": {"rho": 1.0}})
    spec["categories"]["ward"]["values"] = [*WARDS, "W1", "W2", "W3", "W4"]  # type: ignore[index]
    measured = privacy.measure(parse(yaml.safe_dump(spec)), frame(admissions_rows()))
    empty = pl.concat(
        t.noisy_counts.filter(pl.col("ward").str.starts_with("W")).select(privacy.NOISY_COUNT)
        for t in measured.tables
        if t.name == "admissions-by-ward-and-outcome"
    )
    assert empty.height == 12
    one_way = measured.table("admissions-by-ward").noisy_counts
    empties = [
        *empty[privacy.NOISY_COUNT],
        *one_way.filter(pl.col("ward").str.starts_with("W"))[privacy.NOISY_COUNT],
    ]
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
