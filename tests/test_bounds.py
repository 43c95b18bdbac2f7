"""publisher bounds: a recorded spend that shows what candidate bounds would leave out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from publisher import ledger, pipeline
from publisher.cli import cli
from publisher.errors import BudgetError, PublisherError
from tests.conftest import WARDS, admissions_spec

# Patients with 1, 2, ... 6 admissions: how many people have more than k records, and
# their records beyond k, are known exactly for every candidate k.
RECORDS = {f"P{n}": n for n in range(1, 7)}


def rows() -> list[tuple[str, str, str]]:
    return [
        (ref, WARDS[i % len(WARDS)], "Discharged")
        for ref, count in RECORDS.items()
        for i in range(count)
    ]


def test_the_report_covers_what_each_bound_leaves_out_and_is_recorded(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    raw = admissions_spec()
    raw["privacy"]["cap"] = {"rho": 20}  # type: ignore[index]
    spec_path = make_release(raw, rows())

    # The largest loss a spec may state: the noise is tiny, so every interval is narrow.
    report = pipeline.bounds(spec_path, 10.0)

    (admissions,) = report.inputs
    assert (admissions.kind, admissions.current, admissions.unit) == ("histogram", 2, "patient")
    for candidate in admissions.candidates:
        over = sum(1 for n in RECORDS.values() if n > candidate.bound)
        beyond = sum(n - candidate.bound for n in RECORDS.values() if n > candidate.bound)
        assert candidate.people_over is not None and candidate.records_left_out is not None
        assert candidate.people_over.lower_95 <= over <= candidate.people_over.upper_95
        assert candidate.records_left_out.lower_95 <= beyond <= candidate.records_left_out.upper_95
    margins = [candidate.margin for candidate in admissions.candidates]
    assert margins == sorted(margins)  # a larger bound, more noise
    (record,) = ledger.Ledger(tmp_path / "ledger.sqlite").spends()
    assert (record.kind, record.status) == ("bounds", "committed")
    assert record.loss == pytest.approx(10.0) and record.loss <= 10.0
    assert record.unit_losses == {"patient": pytest.approx(10.0)}
    spent = ledger.Ledger(tmp_path / "ledger.sqlite").spent("hospital-admissions-test")
    assert spent == pytest.approx(10.0)


def test_a_linked_input_reports_the_people_each_bound_leaves_out(tmp_path: Path) -> None:
    from publisher import demo

    files = demo.generate(tmp_path / "data", crimes=500, seed=3)
    data = yaml.safe_load(files.spec.read_text(encoding="utf-8"))
    data["privacy"]["cap"] = {"rho": 20}
    files.spec.write_text(yaml.safe_dump(data), encoding="utf-8")

    report = pipeline.bounds(files.spec, 5.0)

    crimes, suspects = report.inputs
    assert (crimes.input, suspects.input) == ("crimes", "suspects")
    assert (suspects.kind, suspects.unit, suspects.current) == ("linked", "child victim", 4)
    *left_out, reference = suspects.candidates
    assert reference.left_out is None
    estimates = [candidate.left_out.estimate for candidate in left_out if candidate.left_out]
    assert estimates[0] > estimates[-1]  # a larger bound leaves fewer out
    assert set(report.unit_losses) == {"victim", "suspect"}


@pytest.mark.parametrize("loss", ["0", "-1", "nan", "11"])
def test_a_loss_outside_the_limits_is_refused(
    make_release: Callable[..., Path], tmp_path: Path, loss: str
) -> None:
    spec_path = make_release()
    result = CliRunner().invoke(cli, ["bounds", str(spec_path), "--loss", loss])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: --loss {float(loss):g}: expected a positive rho")
    assert not (tmp_path / "ledger.sqlite").exists()


def test_a_loss_beyond_the_cap_is_refused_and_spends_nothing(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = make_release()  # cap 2
    with pytest.raises(BudgetError, match="would pass the cap"):
        pipeline.bounds(spec_path, 3.0)
    assert ledger.Ledger(tmp_path / "ledger.sqlite").spends() == []


def test_inputs_with_one_row_per_person_have_no_bound_to_choose(
    make_release: Callable[..., Path],
) -> None:
    raw = admissions_spec()
    raw["inputs"]["admissions"]["unique_identifier"] = True  # type: ignore[index]
    unique = [(f"P{i}", ward, outcome) for i, (_, ward, outcome) in enumerate(rows())]
    spec_path = make_release(raw, unique)
    with pytest.raises(PublisherError, match="no input has a bound to choose"):
        pipeline.bounds(spec_path, 0.1)


def test_the_cli_prints_the_report_as_a_table_or_json(
    make_release: Callable[..., Path],
) -> None:
    spec_path = make_release(None, rows())
    shown = CliRunner().invoke(cli, ["bounds", str(spec_path), "--loss", "0.2"])
    assert shown.exit_code == 0, shown.output
    assert "records counted per patient" in shown.stdout
    assert "Spent, recorded in the ledger: rho = 0.2" in shown.stdout
    data = json.loads(
        CliRunner().invoke(cli, ["bounds", str(spec_path), "--loss", "0.2", "--json"]).stdout
    )
    assert data["inputs"][0]["current"] == 2 and data["loss"] == 0.2
