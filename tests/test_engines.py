"""The engines compute the same exact counts: the order key is the same integers on every
engine, the SQL engines' round-based linked projection is the sequential greedy matching
of ``privacy.linked_projection``, and Polars and DuckDB agree exactly where the bounds do
not bind (whatever the order) and, on the same keyed order, where they do. (Spark, in
``test_spark.py``.)"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher import engines, privacy, staging
from publisher.engines import OrderKey, sql
from publisher.engines.duckdb import DuckDBRunner, connect
from publisher.engines.polars import order_key
from publisher.spec import ReleaseSpec, parse
from tests.conftest import OUTCOMES, WARDS, admissions_spec

ENGINES = ["polars", "duckdb"]


@pytest.fixture(scope="module")
def runner() -> Iterator[DuckDBRunner]:
    with staging.private_folder() as folder:
        connection = connect(folder, "500MB", 1)
        yield DuckDBRunner(connection)
        connection.close()


# --- the keyed order ---------------------------------------------------------------------


def test_the_order_key_is_the_same_integers_in_numpy_polars_and_duckdb(
    runner: DuckDBRunner,
) -> None:
    rng = np.random.default_rng(3)  # test data, not privacy noise
    ids = rng.integers(0, 2**64, size=500, dtype=np.uint64)
    ids[:3] = [0, 2**64 - 1, 2**32]
    codes = rng.integers(0, 50, size=500)
    order = OrderKey(12345)
    expected = order.numpy([ids, codes], split=[True, False])
    frame = pl.DataFrame({"id": pl.Series(ids, dtype=pl.UInt64), "c0": codes})
    by_polars = frame.select(order_key(order, [pl.col("id"), pl.col("c0")], [True, False]))
    assert by_polars.to_series().to_list() == expected.tolist()
    runner.connection.register("keyed", frame.to_arrow())
    key = order.sql(["id", "c0"], split=[True, False], dialect=runner)
    by_duckdb = [row[0] for row in runner.fetch(f"SELECT {key} FROM keyed")]  # noqa: S608
    assert by_duckdb == expected.tolist()
    # Another seed, another order.
    assert OrderKey(54321).numpy([ids, codes], split=[True, False]).tolist() != expected.tolist()


# --- the round-based linked projection ----------------------------------------------------


def sequential(edges: list[tuple[int, int]], cap: int, order: OrderKey) -> set[int]:
    """The own people ``privacy.linked_projection`` counts, edges in the keyed order."""
    own = np.asarray([o for o, _ in edges], dtype=np.uint64)
    linked = np.asarray([link for _, link in edges], dtype=np.uint64)
    key = order.numpy([own, linked], split=[True, True])
    ranked = sorted(range(len(edges)), key=lambda i: (key[i], edges[i][0], edges[i][1]))
    people = sorted({o for o, _ in edges})
    others = sorted({link for _, link in edges})
    own_code = {person: code for code, person in enumerate(people)}
    linked_code = {person: code for code, person in enumerate(others)}
    (counted,) = privacy.linked_projection(
        [own_code[edges[i][0]] for i in ranked],
        [linked_code[edges[i][1]] for i in ranked],
        len(people),
        len(others),
        [cap],
    )
    return {person for person in people if counted[own_code[person]]}


def in_rounds(
    runner: DuckDBRunner, edges: list[tuple[int, int]], cap: int, order: OrderKey
) -> set[int]:
    """The own people the SQL rounds count (the own person carried as a code)."""
    frame = pl.DataFrame(
        {"own": [o for o, _ in edges], "linked": [link for _, link in edges]},
        schema={"own": pl.UInt64, "linked": pl.UInt64},
    )
    runner.connection.register("graph", frame.to_arrow())
    key = order.sql(["own", "linked"], split=[True, True], dialect=runner)
    table = runner.new_name("edges")
    runner.materialize(
        table,
        f"SELECT own, linked, {key} AS key, own AS c0, 0 AS load FROM graph",  # noqa: S608
    )
    firsts = sql.first_edges(runner, table, ["c0"])
    rows = sql.greedy_rounds(runner, table, firsts, cap, ["c0"])
    runner.drop(firsts)
    runner.drop(table)
    runner.connection.unregister("graph")
    assert all(count == 1 for _, count in rows)  # each own person matched once
    return {int(person) for person, _ in rows}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edges=st.lists(
        st.tuples(st.integers(0, 15), st.integers(0, 8)), min_size=1, max_size=60, unique=True
    ),
    cap=st.integers(1, 4),
    seed=st.integers(0, 2**40),
)
def test_the_rounds_give_exactly_the_sequential_greedy_matching(
    runner: DuckDBRunner, edges: list[tuple[int, int]], cap: int, seed: int
) -> None:
    """Fails if the round-based algorithm of ``engines.sql`` ever counts other people than
    the sequential greedy matching, taken in the same keyed order."""
    order = OrderKey(seed)
    assert in_rounds(runner, edges, cap, order) == sequential(edges, cap, order)


def test_the_rounds_on_a_large_random_graph(runner: DuckDBRunner) -> None:
    # Many rounds and bulk rejections: 3,000 edges between 800 own and 300 linked people.
    rng = np.random.default_rng(11)  # test data, not privacy noise
    pairs = {(int(o), int(link)) for o, link in rng.integers(0, [800, 300], size=(3_000, 2))}
    edges = sorted(pairs)
    for cap in (1, 3):
        order = OrderKey(99 + cap)
        assert in_rounds(runner, edges, cap, order) == sequential(edges, cap, order)


# --- the engines agree ---------------------------------------------------------------------


def spec_of(k: int = 2) -> ReleaseSpec:
    raw = admissions_spec()
    raw["inputs"]["admissions"]["max_records_per_person"] = k  # type: ignore[index]
    return parse(yaml.safe_dump(raw, sort_keys=False))


def admissions(records_per_person: list[int], seed: int = 0) -> pl.LazyFrame:
    """Patients with the given numbers of admissions, each to a ward and outcome drawn at
    random (test data), so that which records a bound keeps matters."""
    rng = np.random.default_rng(seed)  # test data, not privacy noise
    rows = [
        (f"P{person:04d}", WARDS[rng.integers(len(WARDS))], OUTCOMES[rng.integers(len(OUTCOMES))])
        for person, count in enumerate(records_per_person)
        for _ in range(count)
    ]
    return pl.DataFrame(rows, schema=["patient_ref", "ward", "outcome"], orient="row").lazy()


def counts(spec: ReleaseSpec, name: str, frame: pl.LazyFrame, engine: str, seed: int) -> Any:
    bounded = privacy.bound_input(spec, name, frame, order_seed=seed, engine=engine)
    return (
        bounded.leaves.dense().tolist(),
        {table: values.tolist() for table, values in bounded.tables.items()},
        None if bounded.truncation is None else bounded.truncation.tolist(),
    )


def test_the_engines_agree_exactly_where_truncation_does_not_bind() -> None:
    spec = spec_of(k=3)
    frame = admissions([1, 2, 3, 3, 1, 2] * 40)
    results = [counts(spec, "admissions", frame, e, s) for e in ENGINES for s in (1, 2)]
    assert all(result == results[0] for result in results)
    leaves, _, histogram = results[0]
    assert int(np.sum(leaves)) == 12 * 40  # every record kept
    assert histogram[:3] == [80, 80, 80]


def test_the_engines_agree_on_the_same_keyed_order_where_truncation_binds() -> None:
    spec = spec_of(k=2)
    frame = admissions([7, 1, 5, 9, 2, 6] * 30, seed=4)
    by_seed = {
        seed: [counts(spec, "admissions", frame, engine, seed) for engine in ENGINES]
        for seed in (5, 6)
    }
    for results in by_seed.values():
        assert results[0] == results[1]
        assert int(np.sum(results[0][0])) == (2 + 1 + 2 + 2 + 2 + 2) * 30
    # The bound binds: another order keeps other records.
    assert by_seed[5][0][0] != by_seed[6][0][0]


def test_a_leaf_is_every_combination_and_the_tables_are_their_sums() -> None:
    spec = spec_of(k=3)
    bounded = privacy.bound_input(spec, "admissions", admissions([1, 2, 3] * 10), order_seed=1)
    dense = bounded.leaves.dense()
    assert bounded.leaves.columns == ("ward", "outcome")
    assert dense.shape == (len(WARDS), len(OUTCOMES))  # zeros included
    assert bounded.tables["admissions-by-ward"].tolist() == dense.sum(axis=1).tolist()
    assert bounded.tables["admissions-by-ward-and-outcome"].tolist() == dense.ravel().tolist()


# --- a linked input -------------------------------------------------------------------------


def linked_spec(cap: int) -> ReleaseSpec:
    from tests.test_audit import linked_spec as audit_linked

    raw = audit_linked().model_dump(exclude={"base_dir"}, exclude_defaults=False, mode="json")
    raw["inputs"]["suspects"]["linked_units"]["victim"]["max_records_per_person"] = cap
    raw["privacy"]["truncation_share"] = 0.1
    return parse(yaml.safe_dump(raw, sort_keys=False))


def suspects(groups: int, seed: int) -> pl.LazyFrame:
    """Suspect records linked to victims: groups of suspects sharing victims, so that a
    bound per victim binds in some groups and not in others."""
    from tests.test_audit import suspect_records

    rng = np.random.default_rng(seed)  # test data, not privacy noise
    victims: dict[str, list[tuple[str, str]]] = {}
    for group in range(groups):
        members = [f"S{group}-{m}" for m in range(int(rng.integers(1, 6)))]
        wards = {member: WARDS[rng.integers(len(WARDS))] for member in members}
        for victim in range(int(rng.integers(1, 4))):
            for member in members:
                if rng.random() < 0.8:
                    victims.setdefault(f"V{group}-{victim}", []).append((member, wards[member]))
    return suspect_records(victims)


@pytest.mark.parametrize("cap", [2, 8])
def test_the_engines_agree_on_a_linked_input(cap: int) -> None:
    """With a cap of 8 (more than any group has) the bound does not bind: every order
    gives the same counts; with 2 it binds, and the same keyed order gives the same."""
    spec = linked_spec(cap)
    frame = suspects(60, seed=cap)
    seeds = (3, 4)
    results = {
        seed: [counts(spec, "suspects", frame, engine, seed) for engine in ENGINES]
        for seed in seeds
    }
    for seed in seeds:
        assert results[seed][0] == results[seed][1]
    if cap == 8:
        assert results[3] == results[4]
        assert results[3][0][2] == [0]  # a bound four times larger counts nobody more


# --- choosing an engine --------------------------------------------------------------------


def test_auto_chooses_by_the_size_of_the_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 records in 1,425 bytes: 22 records by the CSV estimate; a Parquet copy of
    # them: exactly 100, from its footer.
    rows = "P1,Oncology,x\n" * 100
    (tmp_path / "admissions.csv").write_text("patient_ref,ward,outcome\n" + rows)
    pl.read_csv(tmp_path / "admissions.csv").write_parquet(tmp_path / "admissions.parquet")
    spec = parse(yaml.safe_dump(admissions_spec()), base_dir=tmp_path)
    assert engines.choose(spec) == "polars"
    monkeypatch.setattr(engines, "AUTO_DUCKDB_RECORDS", 20)
    assert engines.choose(spec) == "duckdb"
    assert engines.choose(spec, "polars") == "polars"
    raw = admissions_spec()
    raw["inputs"]["admissions"] |= {"path": "admissions.parquet", "format": "parquet"}  # type: ignore[index,operator]
    monkeypatch.setattr(engines, "AUTO_DUCKDB_RECORDS", 99)
    assert engines.choose(parse(yaml.safe_dump(raw), base_dir=tmp_path)) == "duckdb"
    monkeypatch.setattr(engines, "AUTO_DUCKDB_RECORDS", 100)
    assert engines.choose(parse(yaml.safe_dump(raw), base_dir=tmp_path)) == "polars"
    # Without the duckdb package, auto stays on Polars.
    monkeypatch.setattr(engines, "AUTO_DUCKDB_RECORDS", 20)
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    assert engines.choose(spec) == "polars"
    raw = admissions_spec()
    raw["engine"] = {"name": "duckdb"}
    assert engines.choose(parse(yaml.safe_dump(raw), base_dir=tmp_path)) == "duckdb"


def test_a_spark_table_is_read_by_spark() -> None:
    raw = admissions_spec()
    source = raw["inputs"]["admissions"]  # type: ignore[index]
    del source["path"]
    source.update({"format": "spark", "table": "hospital.admissions"})
    assert engines.choose(parse(yaml.safe_dump(raw))) == "spark"
    raw["engine"] = {"name": "duckdb"}
    with pytest.raises(Exception, match=r"inputs\.admissions\.format: a Spark table is read by"):
        parse(yaml.safe_dump(raw))


def test_the_duckdb_engine_works_in_a_private_folder_removed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    seen: list[Path] = []
    real = staging.private_folder

    def watched() -> Any:
        context = real()

        class Watch:
            def __enter__(self) -> Path:
                folder = context.__enter__()
                seen.append(folder)
                assert oct(folder.stat().st_mode & 0o777) == "0o700"
                return folder

            def __exit__(self, *exc: object) -> Any:
                return context.__exit__(*exc)

        return Watch()

    monkeypatch.setattr(staging, "private_folder", watched)
    counts(spec_of(), "admissions", admissions([3, 1] * 20), "duckdb", 1)
    assert seen and all(folder.parent == tmp_path for folder in seen)
    assert (
        list(itertools.chain.from_iterable(folder.rglob("*") for folder in seen if folder.exists()))
        == []
    )
    assert not any(folder.exists() for folder in seen)


# --- the checks, counted by DuckDB --------------------------------------------------------


def _corrupt(folder: Path, kind: str) -> None:
    """One problem in the demo's inputs: a duplicated victim, a suspect record whose crime
    does not exist, or a suspect whose sex differs between their records."""
    import csv

    name = "victims.csv" if kind == "duplicate" else "suspects.csv"
    with (folder / name).open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    if kind == "duplicate":
        rows += [rows[1], rows[2]]
    elif kind == "unmatched":
        rows[3][0] = "CR99999999"
    else:
        suspect = rows[6]
        rows.append([rows[5][0], suspect[1], suspect[2], "Unknown", suspect[4]])
        rows[-1][3] = "Female" if suspect[3] != "Female" else "Male"
    with (folder / name).open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)


@pytest.mark.parametrize("kind", ["duplicate", "unmatched", "differing"])
def test_duckdb_counts_the_checks_across_inputs_as_polars_does(tmp_path: Path, kind: str) -> None:
    from publisher import demo, pipeline
    from publisher.errors import InputError

    files = demo.generate(tmp_path, crimes=300, seed=3)
    _corrupt(tmp_path, kind)
    found = {}
    for engine in ENGINES:
        with pytest.raises(InputError) as error:
            pipeline.check(files.spec, engine=engine)
        found[engine] = error.value.problems
    assert found["polars"] == found["duckdb"]
    (problem,) = found["duckdb"]
    assert {"duplicate": "2 duplicate values", "unmatched": "1 values that match no",
            "differing": "differs between the records of 1 person"}[kind] in problem  # fmt: skip


# --- what the docs say of the engines ------------------------------------------------------


def test_the_readme_and_the_spec_reference_quote_the_engines_benchmark() -> None:
    """Fails when the measured figures the README and docs/spec.md quote are no longer
    those of the committed benchmark (``benchmarks/engines.json``): rerun it and update
    the docs together."""
    root = Path(__file__).resolve().parents[1]
    measured = json.loads((root / "benchmarks" / "engines.json").read_text(encoding="utf-8"))
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    reference = " ".join((root / "docs" / "spec.md").read_text(encoding="utf-8").split())

    def quoted(run: dict[str, Any]) -> str:
        return f"{run['seconds']:.0f} s, {run['peak_rss_mb'] / 1024:.1f} GB"

    one, ten, hundred = measured["1000000"], measured["10000000"], measured["100000000"]
    assert f"| 1 million | {quoted(one['polars'])} | {quoted(one['duckdb'])} |" in readme
    assert one["duckdb"]["seconds"] <= one["polars"]["seconds"] * 1.1  # auto's threshold
    assert f"| 10 million | {quoted(ten['polars'])} | {quoted(ten['duckdb'])} |" in readme
    assert f"{quoted(hundred['duckdb'])} |" in readme
    assert f"{hundred['duckdb']['peak_rss_mb'] / 1024:.1f} GB in all at 100 million" in reference
    for engine in ("duckdb", "polars"):
        run = ten[engine]
        assert f"{run['seconds']:.0f} s and {run['peak_rss_mb'] / 1024:.1f} GB" in reference
    ratio = hundred["duckdb"]["seconds"] / hundred["bounded"]["seconds"]
    assert f"{ratio:.1f} times what DuckDB itself takes" in reference
    plain = hundred["bounded"]["seconds"] / hundred["groupby"]["seconds"]
    assert f"are {plain:.0f} times faster still" in reference
    floor = hundred["people"]["seconds"] / hundred["groupby"]["seconds"]
    assert f"takes DuckDB {floor:.1f} times its group-bys" in reference
    assert engines.AUTO_DUCKDB_RECORDS == 1_000_000
    assert "`auto` chooses above 1 million records" in readme
    assert "which `auto` chooses above 1 million records" in reference
