"""publisher plan: public parameters in, the release's own noise and margins out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from publisher import plan as planner
from publisher import privacy
from publisher.cli import cli
from publisher.errors import SpecError
from publisher.postprocess import ESTIMATE, consistent_estimates
from publisher.spec import parse
from tests.conftest import admissions_rows, admissions_spec
from tests.test_postprocess import SPEC, simulated_release, true_cells
from tests.test_privacy import frame


def test_the_plan_has_the_release_s_scales_and_losses() -> None:
    spec = parse(yaml.safe_dump(admissions_spec()))
    planned = planner.plan(spec)
    measured = privacy.measure(spec, frame(admissions_rows()))
    for table in planned.tables:
        released = measured.table(table.name)
        assert table.loss == pytest.approx(released.loss)
        assert table.scale == pytest.approx(released.scale, rel=1e-6)
        assert table.distribution == released.distribution
        assert table.margin_noise == pytest.approx(released.margin_95)
    assert planned.total_loss == pytest.approx(measured.total_loss)
    assert planned.epsilon == pytest.approx(measured.epsilon)


def test_planned_margins_match_those_observed_over_repeated_releases() -> None:
    # 1,500 simulated releases (OpenDP noise at the planned scales). The plan states, per
    # table, the margin of its least precise cell after estimation: that cell's estimate
    # must fall within it 95% of the time (binomial SE 0.56 points: 92.5-97.5% is a band
    # of 4.4 SE each side), and the table's cells together at least as often.
    trials = 1500
    planned = {table.name: table for table in planner.plan(SPEC).tables}
    within: dict[str, list[np.ndarray]] = {name: [] for name in planned}
    for _ in range(trials):
        estimates = consistent_estimates(SPEC, simulated_release())
        for name, estimate in estimates.items():
            error = np.abs(estimate.cells[ESTIMATE].to_numpy() - true_cells(name))
            within[name].append(error <= planned[name].margin_estimate)
    covariances = consistent_estimates(SPEC, simulated_release())
    for name, table in planned.items():
        covered = np.vstack(within[name]).mean(axis=0)
        worst = int(np.argmax(np.diag(covariances[name].covariance)))
        assert 0.925 <= covered[worst] <= 0.975, (name, covered[worst])
        assert covered.mean() >= 0.94, name
        assert table.margin_published >= table.margin_estimate


def test_targets_get_the_least_loss_that_meets_them() -> None:
    spec = parse(yaml.safe_dump(admissions_spec()))
    base = planner.plan(spec)
    targeted = planner.plan(spec, {"admissions-by-ward": 3.0})
    table = next(t for t in targeted.tables if t.name == "admissions-by-ward")
    assert table.margin_noise <= 3.0
    # A little less loss would miss the target: the solution is the least.
    k = spec.inputs["admissions"].max_records_per_person
    distribution, scale = planner._scale(spec.privacy.model, table.loss * 0.97, k)
    assert planner._noise_margin(distribution, scale) > 3.0
    other = "admissions-by-ward-and-outcome"
    assert next(t for t in targeted.tables if t.name == other).loss == pytest.approx(
        next(t for t in base.tables if t.name == other).loss
    )
    assert targeted.total_loss == pytest.approx(math.fsum(t.loss for t in targeted.tables))
    assert targeted.weights[other] == 1.0


def test_the_cli_prints_the_plan_and_refuses_targets_beyond_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(admissions_spec()), encoding="utf-8")
    result = CliRunner().invoke(cli, ["plan", str(path), "--target", "admissions-by-ward=1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "above the lifetime cap" in result.stderr
    ok = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["loss"]["rho"] == pytest.approx(0.5)
    names = [t["name"] for t in data["tables"]]
    assert names == ["admissions-by-ward", "admissions-by-ward-and-outcome"]
    shown = CliRunner().invoke(cli, ["plan", str(path)])
    assert shown.exit_code == 0
    assert "admissions-by-ward" in shown.stdout and "Total: rho = 0.5" in shown.stdout


@pytest.mark.parametrize(
    "text",
    ["nope=3", "admissions-by-ward=-1", "admissions-by-ward=x", "x", "admissions-by-ward=0.5"],
)
def test_bad_targets_are_reported(text: str) -> None:
    spec = parse(yaml.safe_dump(admissions_spec()))
    with pytest.raises(SpecError, match=r"^--target"):
        planner.plan(spec, planner.parse_targets(spec, (text,)))
