# ruff: noqa: E402 (the BLAS settings below must come before numpy is imported)
"""Shared fixtures: a small release of a dataset that is NOT the police demo.

It has other columns, other categories and another identifier, so the tests show that
nothing about the demo is hard-coded in the library.
"""

from __future__ import annotations

import os

# The tests' matrices are small: BLAS threads only fight each other (and other processes
# on a loaded machine). Set before numpy is first imported.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from publisher import pipeline, privacy

WARDS = ["Cardiology", "Maternity", "Oncology", "Paediatrics"]
OUTCOMES = ["Discharged", "Transferred", "Not known"]


def admissions_spec(data: str = "admissions.csv", **overrides: object) -> dict[str, object]:
    """A complete release spec for the synthetic hospital admissions fixture."""
    spec: dict[str, object] = {
        "release": {
            "id": "hospital-admissions-test",
            "title": "Hospital admissions by ward (test data)",
            "version": "0.1.0",
            "period": "April 2025 to March 2026",
            "description": "Made-up admissions used by the test suite.",
            "publisher": "Test suite",
            "contact": {"name": "Test team", "email": "tests@example.org"},
            "keywords": ["test"],
            "synthetic": True,
        },
        "privacy": {
            "model": "zcdp",
            "rho": 0.5,
            "cap": {"rho": 2.0},
            "units": {"patient": {"title": "patient"}},
        },
        "categories": {
            "ward": {"title": "Ward", "values": WARDS},
            "outcome": {"title": "Outcome", "values": OUTCOMES, "unknown": "Not known"},
        },
        "inputs": {
            "admissions": {
                "path": data,
                "identifier": "patient_ref",
                "unit": "patient",
                "max_records_per_person": 2,
                "columns": {"ward": {"categories": "ward"}, "outcome": {"categories": "outcome"}},
            }
        },
        "tables": [
            {
                "name": "admissions-by-ward",
                "input": "admissions",
                "by": ["ward"],
                "title": "Admissions by ward",
                "description": "Number of admissions in each ward.",
                "counts": "admissions",
                "weight": 2,
            },
            {
                "name": "admissions-by-ward-and-outcome",
                "input": "admissions",
                "by": ["ward", "outcome"],
                "title": "Admissions by ward and outcome",
                "description": "Number of admissions by ward and outcome.",
                "counts": "admissions",
            },
        ],
        "shares": [
            {
                "name": "maternity-share",
                "table": "admissions-by-ward",
                "title": "Admissions to maternity",
                "statement": "of admissions were to maternity",
                "numerator": {"ward": ["Maternity"]},
            }
        ],
        "disclosure": {"rounding_base": 5, "threshold": 10},
    }
    spec.update(overrides)
    # A test that replaces the privacy section still protects the one unit of the fixture.
    privacy = spec["privacy"]
    if isinstance(privacy, dict):
        privacy.setdefault("units", {"patient": {"title": "patient"}})
    return spec


def admissions_rows(count: int = 600) -> list[tuple[str, str, str]]:
    """Deterministic rows: patient reference, ward, outcome. Oncology is rare on purpose."""
    wards = itertools.cycle(
        ["Cardiology", "Maternity", "Maternity", "Paediatrics"] * 5 + ["Oncology"]
    )
    outcomes = itertools.cycle(OUTCOMES)
    return [(f"P{i // 2:05d}", next(wards), next(outcomes)) for i in range(count)]


def write_admissions(folder: Path, rows: list[tuple[str, str, str]] | None = None) -> Path:
    lines = ["patient_ref,ward,outcome"] + [",".join(row) for row in rows or admissions_rows()]
    path = folder / "admissions.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_release(tmp_path: Path) -> Callable[..., Path]:
    """Write the admissions data and a spec (with overrides) into tmp_path; return the spec path."""

    def make(
        spec: dict[str, object] | None = None, rows: list[tuple[str, str, str]] | None = None
    ) -> Path:
        write_admissions(tmp_path, rows)
        path = tmp_path / "release.yaml"
        path.write_text(
            yaml.safe_dump(spec or admissions_spec(), sort_keys=False), encoding="utf-8"
        )
        return path

    return make


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see errors as users do: without PUBLISHER_DEBUG's tracebacks."""
    monkeypatch.delenv("PUBLISHER_DEBUG", raising=False)


@pytest.fixture
def noise_draws(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every call to ``privacy.measure``: a refused release must never reach it."""
    calls: list[object] = []

    def measure(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise RuntimeError("privacy.measure must not be reached")

    monkeypatch.setattr(privacy, "measure", measure)
    return calls


def run_publisher(
    *args: str | Path, cwd: Path, script: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``publisher ARGS`` in a process of its own (or ``script``, which runs the command
    line after patching the library), without PUBLISHER_DEBUG, with its private temporary
    files in ``cwd/tmp`` where the test can see them."""
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m", "publisher.cli"]
    environment = {k: v for k, v in os.environ.items() if k != "PUBLISHER_DEBUG"}
    (cwd / "tmp").mkdir(exist_ok=True)
    environment.update(TMPDIR=str(cwd / "tmp"), **(env or {}))
    return subprocess.run(
        [*command, *(str(arg) for arg in args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def start_release(spec_path: Path, out_dir: Path, cwd: Path) -> subprocess.Popen[str]:
    """``publisher release`` in a process of its own (for concurrency tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "publisher.cli", "release", str(spec_path), "--out", str(out_dir)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="session")
def admissions_release(tmp_path_factory: pytest.TempPathFactory) -> pipeline.ReleaseResult:
    """One real release of the admissions fixture, shared: copy it before changing it."""
    folder = tmp_path_factory.mktemp("release")
    write_admissions(folder)
    spec_path = folder / "release.yaml"
    spec_path.write_text(yaml.safe_dump(admissions_spec()), encoding="utf-8")
    return pipeline.release(spec_path, folder / "package")


@pytest.fixture(scope="session")
def spark_session() -> Iterator[object]:
    """One local Spark session for every test marked ``spark`` (the engine uses the active
    session). Missing pyspark or Java skip them, except in CI, where they are installed."""
    missing = shutil.which("java") is None
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI"):
            raise RuntimeError("the Spark tests need pyspark and Java: .ci/run installs them")
        pytest.skip("pyspark or Java is not installed (.ci/run installs them)")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("publisher tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("OFF")
    yield spark
    spark.stop()


@pytest.fixture(autouse=True)
def _spark_when_marked(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("spark"):
        request.getfixturevalue("spark_session")
