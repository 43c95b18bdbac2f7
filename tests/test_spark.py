"""The spark engine on a local Spark session: the demo release end to end from tables of
the session's catalog (format: spark), its checks run in Spark, and its counts equal to
DuckDB's where the bounds do not bind and, on the same keyed order, where they do.

Spark starts once for all tests marked ``spark`` (``conftest.spark_session``) and each
query costs it a fraction of a second, so this file is kept to a few tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from publisher import demo, engines, package, privacy
from publisher.cli import cli
from publisher.progress import quiet
from publisher.spec import load
from tests.test_engines import admissions, counts, linked_spec, spec_of, suspects

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def demo_tables(spark_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's three inputs as tables of the Spark session (where a cluster keeps them),
    and a spec that reads them with ``format: spark``."""
    folder = tmp_path_factory.mktemp("spark-demo")
    files = demo.generate(folder, crimes=400, seed=7)
    raw = yaml.safe_load(files.spec.read_text(encoding="utf-8"))
    for name, source in raw["inputs"].items():
        table = spark_session.read.csv(str(folder / source.pop("path")), header=True)
        table.createOrReplaceTempView(f"demo_{name}")
        source.update({"format": "spark", "table": f"demo_{name}"})
    raw["engine"] = {"name": "spark"}
    spec_path = folder / "spark.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return spec_path


def test_the_demo_release_runs_end_to_end_on_spark(demo_tables: Path) -> None:
    # (The release runs every check of ``check`` first, in Spark.)
    out = demo_tables.parent / "package"
    released = CliRunner().invoke(cli, ["release", str(demo_tables), "--out", str(out)])
    assert released.exit_code == 0, released.output
    assert package.validate(out) == []
    spec = load(demo_tables)
    for table in spec.tables:
        assert (out / "data" / f"{table.name}.csv").is_file()


def test_spark_counts_the_demo_as_duckdb_does_where_the_bounds_do_not_bind(
    demo_tables: Path,
) -> None:
    """Spark reads the tables and hashes identifiers itself (another hash than the
    staged one), so only counts that no order can change must agree: the victims (one
    record each) and the crimes with a bound no victim reaches."""
    raw = yaml.safe_load(demo_tables.read_text(encoding="utf-8"))
    raw["inputs"]["crimes"]["max_records_per_person"] = 1000
    spec_path = demo_tables.parent / "unbound.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    spark_spec = load(spec_path)
    files_spec = load(demo_tables.parent / "release.yaml")
    files_spec = files_spec.model_copy(
        update={
            "inputs": {
                **files_spec.inputs,
                "crimes": files_spec.inputs["crimes"].model_copy(
                    update={"max_records_per_person": 1000}
                ),
            }
        }
    )
    found = {}
    for name, spec in (("spark", spark_spec), ("duckdb", files_spec)):
        with engines.get(name).load(spec, quiet) as loaded:
            found[name] = {
                input_name: loaded.counts(spec, input_name, estimate=True, seed=1)
                for input_name in ("crimes", "victims")
            }
    for input_name in ("crimes", "victims"):
        spark, duck = found["spark"][input_name], found["duckdb"][input_name]
        assert spark.leaves.dense().tolist() == duck.leaves.dense().tolist()
        assert spark.truncation is not None and duck.truncation is not None
        assert spark.truncation.tolist() == duck.truncation.tolist()


def test_spark_agrees_with_duckdb_on_the_same_keyed_order_where_the_bounds_bind() -> None:
    spec = spec_of(k=2)
    frame = admissions([7, 1, 5, 9, 2, 6] * 10, seed=4)
    assert counts(spec, "admissions", frame, "spark", 5) == counts(
        spec, "admissions", frame, "duckdb", 5
    )
    linked = linked_spec(2)
    graph = suspects(25, seed=2)
    assert counts(linked, "suspects", graph, "spark", 3) == counts(
        linked, "suspects", graph, "duckdb", 3
    )


def test_a_spark_table_s_problems_are_counted_never_quoted(
    spark_session: Any, tmp_path: Path
) -> None:
    from tests.conftest import admissions_spec

    rows = [("P1", "Oncology", "Discharged"), ("P2", "SECRET-WARD", "Discharged"), ("", "", "")]
    spark_session.createDataFrame(rows, ["patient_ref", "ward", "outcome"]).createOrReplaceTempView(
        "bad_admissions"
    )
    raw = admissions_spec()
    source = raw["inputs"]["admissions"]  # type: ignore[index]
    del source["path"]
    source.update({"format": "spark", "table": "bad_admissions"})
    spec_path = tmp_path / "release.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(spec_path)])
    assert result.exit_code == 1
    assert "Spark table bad_admissions (inputs.admissions.table)" in result.output
    assert "1 empty values" in result.output
    assert "column 'ward' has 2 values that are empty or outside categories.ward" in result.output
    assert "SECRET" not in result.output and "P2" not in result.output
    assert privacy  # the engine's counts are measured by privacy.py, as on every engine
