"""What a release says about its privacy and its bounds is what OpenDP accounted.

A small demo release (linked inputs: crimes about child victims, suspects linked to the
crimes) is made once; every number and sentence the package prints about the guarantee
and what the bounds left out is checked against the measurements and the spec.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from publisher import demo, pipeline, postprocess, privacy, spec
from publisher.site import generate_pages


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> pipeline.ReleaseResult:
    folder = tmp_path_factory.mktemp("demo")
    files = demo.generate(folder / "data", crimes=600, seed=5)
    return pipeline.release(files.spec, folder / "package")


@pytest.fixture(scope="module")
def descriptor(released: pipeline.ReleaseResult) -> dict[str, Any]:
    return json.loads((released.package_dir / "datapackage.json").read_text(encoding="utf-8"))


def test_each_unit_s_loss_is_the_sum_of_opendp_s_maps(
    released: pipeline.ReleaseResult, descriptor: dict[str, Any]
) -> None:
    measured = released.measurements
    units = {unit["name"]: unit for unit in descriptor["privacy"]["units"]}
    assert set(units) == {"victim", "suspect"}
    for name, unit in units.items():
        parts = [*unit["tables"].values(), *unit["inputs"].values(), *unit["truncation"].values()]
        assert unit["rho"] == pytest.approx(math.fsum(parts), rel=1e-12)
        assert unit["rho"] == measured.unit_losses[name]
        epsilon, delta = privacy.epsilon_delta("zcdp", unit["rho"], 1e-7)
        assert (unit["epsilon"], unit["delta"]) == (epsilon, delta)
        assert unit["tables"] == {}  # under zCDP every input's tables are measured together
        for input_name, loss in unit["inputs"].items():
            design = measured.design(input_name)
            assert design is not None
            assert loss == math.fsum(q.unit_losses[name] for q in design.queries)
    # Every input concerns the victims; only the suspects input concerns suspects.
    assert set(units["victim"]["inputs"]) == {"crimes", "victims", "suspects"}
    assert set(units["suspect"]["inputs"]) == {"suspects"}
    # The release's loss is the largest of any person, and no more than the spec's.
    assert descriptor["privacy"]["loss"]["rho"] == max(measured.unit_losses.values())
    assert measured.total_loss <= 0.5 * (1 + 1e-9)


def test_each_input_says_how_it_reaches_each_unit(descriptor: dict[str, Any]) -> None:
    units = {unit["name"]: unit for unit in descriptor["privacy"]["units"]}
    victim = {reach["input"]: reach for reach in units["victim"]["reaches"]}
    assert victim["crimes"]["bound"] == 5 and victim["crimes"]["through"] == []
    assert victim["suspects"]["bound"] == 4
    assert victim["suspects"]["through"] == ["crime_id \N{RIGHTWARDS ARROW} crimes.crime_id"]
    assert (
        "at most 4 of them per child victim, chosen at random" in victim["suspects"]["bound_text"]
    )
    # Which records are kept is random (tests/test_privacy.py checks it).
    assert victim["crimes"]["bound_text"].endswith("per child victim, chosen at random")
    (suspect,) = units["suspect"]["reaches"]
    assert suspect["bound_text"] == "Suspects: each suspect counted once"


def test_the_statement_gives_each_unit_s_loss(
    released: pipeline.ReleaseResult, descriptor: dict[str, Any]
) -> None:
    statement = descriptor["privacy"]["statement"]
    for unit in descriptor["privacy"]["units"]:
        loss = released.measurements.unit_losses[unit["name"]]
        epsilon, _ = privacy.epsilon_delta("zcdp", loss, 1e-7)
        expected = f"for each {unit['title']}: rho = {loss:.4g} (epsilon = {epsilon:.4g}"
        assert expected in statement
    assert "PrivateSQL" in statement
    assert "Counts are of the records kept" in statement


def test_what_the_bounds_left_out_is_estimated_from_the_noisy_measurement(
    released: pipeline.ReleaseResult, descriptor: dict[str, Any]
) -> None:
    entries = {entry["input"]: entry for entry in descriptor["truncation"]}
    assert set(entries) == {"crimes", "suspects"}  # victims have one row each
    release_spec = spec.load(released.package_dir.parent / "data" / "release.yaml")

    crimes = entries["crimes"]
    counts = np.asarray(crimes["noisy_counts"])
    k = release_spec.inputs["crimes"].max_records_per_person
    assert crimes["bins"][-1] == f"{2 * k + 1} or more" and len(counts) == 2 * k + 1
    people, records = crimes["people_over_bound"], crimes["records_left_out"]
    over = float(counts[k:].sum())
    assert people["estimate"] == max(0, postprocess.intervals.round_to_base(over, 5))
    weights = np.arange(1, k + 2)
    raw = float(weights @ counts[k:])
    assert records["estimate"] == max(0, postprocess.intervals.round_to_base(raw, 5))
    for figure in (people, records):
        assert figure["lower_95"] <= figure["estimate"] <= figure["upper_95"]
    assert f"An estimated {records['estimate']:,} records" in crimes["statement"]
    assert f"of an estimated {people['estimate']:,} people" in crimes["statement"]

    suspects = entries["suspects"]
    (noisy,) = suspects["noisy_counts"]
    left_out = suspects["people_left_out"]
    assert left_out["estimate"] == max(0, postprocess.intervals.round_to_base(noisy, 5))
    assert (suspects["bound"], suspects["reference_bound"]) == (4, 16)
    assert f"An estimated {left_out['estimate']:,} people" in suspects["statement"]
    # Its loss is declared in each unit's accounting: the victim's is its part of 5%.
    for unit in descriptor["privacy"]["units"]:
        assert "suspects" in unit["truncation"]
    assert suspects["units"]["victim"]["rho"] == pytest.approx(0.5 * 0.05 / 2)


def test_every_document_states_the_guarantee_and_what_was_left_out(
    released: pipeline.ReleaseResult, descriptor: dict[str, Any], tmp_path: Path
) -> None:
    package = released.package_dir
    statements = [descriptor["privacy"]["statement"]] + [
        entry["statement"] for entry in descriptor["truncation"]
    ]
    readme = (package / "README.md").read_text(encoding="utf-8")
    with zipfile.ZipFile(next(package.glob("*.xlsx"))) as book:
        sheets = " ".join(
            book.read(name).decode("utf-8") for name in book.namelist() if name.endswith(".xml")
        )
    pages = generate_pages(package, tmp_path / "pages")
    site = " ".join(page.read_text(encoding="utf-8") for page in pages if page.suffix == ".md")
    for statement in statements:
        words = statement.replace("'", "&apos;")
        assert statement in readme
        assert statement in sheets or words in sheets
    # The site gives each unit's loss and what the bounds left out.
    for unit in descriptor["privacy"]["units"]:
        assert f"for each {unit['title']}: rho = " in site


def test_the_plus_or_minus_on_a_table_page_is_the_published_intervals_half_width(
    released: pipeline.ReleaseResult, tmp_path: Path
) -> None:
    import csv
    import re

    generate_pages(released.package_dir, tmp_path / "pages")
    for page in (tmp_path / "pages" / "tables").glob("*.md"):
        if page.name == "index.md":
            continue
        text = page.read_text(encoding="utf-8")
        quoted = re.search(r"reaches about \N{PLUS-MINUS SIGN}([\d,]+) either side", text)
        assert quoted, page.name
        with (released.package_dir / "data" / f"{page.stem}.csv").open(encoding="utf-8") as f:
            cells = [row for row in csv.DictReader(f) if row["is_total"] == "false"]
        widths = sorted((int(r["upper_95"]) - int(r["lower_95"])) / 2 for r in cells)
        assert int(quoted.group(1).replace(",", "")) == int(widths[len(widths) // 2])
