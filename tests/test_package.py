"""The data package: metadata, integrity, validation and the atomic swap."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher import package, pipeline
from publisher.disclosure import LOW, publish_cell
from publisher.errors import PackageError
from publisher.spec import PUBLISHED_COLUMNS, ReleaseSpec
from tests.conftest import admissions_spec


@pytest.fixture
def released(admissions_release: pipeline.ReleaseResult) -> pipeline.ReleaseResult:
    return admissions_release


def descriptor(package_dir: Path) -> dict[str, object]:
    return json.loads((package_dir / package.DESCRIPTOR).read_text(encoding="utf-8"))


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_package_is_valid(released: pipeline.ReleaseResult) -> None:
    assert package.validate(released.package_dir) == []


def test_metadata_is_complete(released: pipeline.ReleaseResult) -> None:
    meta = descriptor(released.package_dir)
    for key in ("name", "id", "title", "description", "version", "created", "keywords"):
        assert meta[key], key
    assert meta["$schema"] == package.PROFILE
    assert meta["licenses"] == [
        {
            "name": "OGL-UK-3.0",
            "title": "Open Government Licence v3.0",
            "path": "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
        }
    ]
    roles = {role for person in meta["contributors"] for role in person["roles"]}  # type: ignore[attr-defined]
    assert {"publisher", "contact"} <= roles
    assert meta["release"]["synthetic"] is True  # type: ignore[index]


def test_privacy_statement_matches_opendp_accounting(released: pipeline.ReleaseResult) -> None:
    meta = descriptor(released.package_dir)
    privacy = meta["privacy"]
    measured = released.measurements
    assert privacy["model"] == "zcdp"  # type: ignore[index]
    assert privacy["loss"]["rho"] == measured.total_loss  # type: ignore[index]
    assert privacy["loss"]["epsilon"] == measured.epsilon  # type: ignore[index]
    tables = [r for r in meta["resources"] if "privacy" in r]  # type: ignore[attr-defined]
    # Both tables measured together by the input's strategy: each names that measurement
    # and its loss, which they share (counted once).
    (measurement,) = privacy["measurements"]  # type: ignore[index]
    assert measurement["input"] == "admissions"
    assert measurement["tables"] == [r["name"] for r in tables]
    for resource in tables:
        assert resource["privacy"]["measured"] == "with its input's tables"
        assert resource["privacy"]["method"] == measurement["method"] == "optimum"
        assert resource["privacy"]["units"] == measurement["units"]
    (estimate,) = meta["truncation"]  # type: ignore[misc]
    spent = [measurement["units"]["patient"]["rho"], estimate["units"]["patient"]["rho"]]
    assert math.fsum(spent) == pytest.approx(measured.total_loss)
    design = measured.design("admissions")
    assert design is not None
    assert [
        (q["name"], q["size"], q["scale"], q["sensitivity"]) for q in measurement["queries"]
    ] == [(q.name, len(q.noisy), q.scale, q.sensitivity) for q in design.queries]
    (unit,) = privacy["units"]  # type: ignore[index]
    assert (unit["name"], unit["rho"]) == ("patient", measured.unit_losses["patient"])
    (reach,) = unit["reaches"]
    assert (reach["identifier"], reach["bound"], reach["through"]) == ("patient_ref", 2, [])
    assert f"for each patient: rho = {measured.total_loss:.4g}" in privacy["statement"]  # type: ignore[index]


def test_bytes_and_hashes_match_the_files(released: pipeline.ReleaseResult) -> None:
    for resource in descriptor(released.package_dir)["resources"]:  # type: ignore[attr-defined]
        data = (released.package_dir / resource["path"]).read_bytes()
        assert resource["bytes"] == len(data)
        assert resource["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_every_cell_is_a_rounded_count_or_a_marker(released: pipeline.ReleaseResult) -> None:
    meta = descriptor(released.package_dir)
    base = meta["disclosure"]["rounding_base"]  # type: ignore[index]
    threshold = meta["disclosure"]["threshold"]  # type: ignore[index]
    for resource in meta["resources"]:  # type: ignore[attr-defined]
        if "table" not in resource:  # the shares, the documents
            continue
        for row in read_rows(released.package_dir / resource["path"]):
            if row["value"]:
                assert int(row["value"]) % base == 0 and int(row["value"]) >= threshold
                assert row["marker"] == ""
                assert int(row["lower_95"]) <= int(row["value"]) <= int(row["upper_95"])
            else:
                assert row["marker"] == LOW


def test_every_public_key_combination_is_present(released: pipeline.ReleaseResult) -> None:
    meta = descriptor(released.package_dir)
    for resource in meta["resources"]:  # type: ignore[attr-defined]
        if "table" not in resource:  # the shares, the documents
            continue
        by = resource["table"]["by"]
        keys = [field["constraints"]["enum"] for field in resource["schema"]["fields"][: len(by)]]
        rows = read_rows(released.package_dir / resource["path"])
        assert sorted(tuple(row[c] for c in by) for row in rows) == sorted(itertools.product(*keys))


def test_shares_are_published_with_intervals(released: pipeline.ReleaseResult) -> None:
    rows = read_rows(released.package_dir / "data" / f"{package.SHARES_RESOURCE}.csv")
    assert [row["share"] for row in rows] == ["maternity-share"]
    lower, percent, upper = (float(rows[0][k]) for k in ("lower_95", "percent", "upper_95"))
    assert 0 <= lower <= percent <= upper <= 100


def test_tampering_with_a_cell_fails_validation(
    released: pipeline.ReleaseResult, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(released.package_dir, copy)
    path = copy / "data" / "admissions-by-ward.csv"
    text = path.read_text(encoding="utf-8").splitlines()
    header, first = text[0], text[1].split(",")
    first[1] = "abc"
    path.write_text("\n".join([header, ",".join(first), *text[2:]]) + "\n", encoding="utf-8")
    problems = package.validate(copy)
    assert problems
    assert all(str(copy) in problem for problem in problems)


def test_a_failed_build_leaves_the_previous_package_intact(
    released: pipeline.ReleaseResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "datapackage"
    shutil.copytree(released.package_dir, target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def broken_build(content: package.ReleaseContent, staging: Path) -> None:
        (staging / "data").mkdir()
        (staging / "data" / "half.csv").write_text("a,b\n", encoding="utf-8")
        raise OSError("disk full")

    monkeypatch.setattr(package, "_build", broken_build)
    content = package.ReleaseContent(
        pipeline.spec.load(released.package_dir.parent / "release.yaml"),
        released.measurements,
        {},
        released.shares,
    )
    with pytest.raises(OSError, match="disk full"):
        package.write(content, target)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datapackage"], "no staging left"


def test_an_invalid_new_package_is_not_published(
    released: pipeline.ReleaseResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package, "validate", lambda _: ["data/x.csv: a problem"])
    content = package.ReleaseContent(
        pipeline.spec.load(released.package_dir.parent / "release.yaml"),
        released.measurements,
        {},
        released.shares,
    )
    monkeypatch.setattr(package, "_build", lambda content, staging: None)
    with pytest.raises(PackageError, match="nothing was published"):
        package.write(content, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_destination_checks(tmp_path: Path) -> None:
    package.check_destination(tmp_path / "new")  # a new directory is fine
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(PackageError, match="is a file"):
        package.check_destination(tmp_path / "file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(PackageError, match=r"holds no datapackage\.json"):
        package.check_destination(tmp_path / "notes")


def test_validate_reports_a_missing_descriptor(tmp_path: Path) -> None:
    assert package.validate(tmp_path) == [
        f"{tmp_path / 'datapackage.json'}: not found; give the directory of a data package"
    ]


@given(
    base=st.integers(min_value=1, max_value=1000),
    threshold=st.integers(min_value=0, max_value=5000),
    estimate=st.floats(min_value=-100, max_value=10_000, allow_nan=False),
)
def test_value_minimum_is_the_least_count_a_table_can_show(
    base: int, threshold: int, estimate: float
) -> None:
    least = package.least_shown_count(base, threshold)
    cell = publish_cell(estimate, 1.0, base=base, threshold=threshold)
    assert cell.value is None or cell.value >= least
    # ... and it is shown: a count just above it is published as it.
    assert publish_cell(least, 1.0, base=base, threshold=threshold).value == least


def test_columns_are_described_without_repeating_their_titles(
    released: pipeline.ReleaseResult,
) -> None:
    meta = descriptor(released.package_dir)
    for resource in meta["resources"]:  # type: ignore[attr-defined]
        for field in resource.get("schema", {}).get("fields", []):
            assert field["description"], field["name"]
            assert not field["description"].lower().startswith(field["title"].lower())
            assert "sum all keys" not in field["description"]
        if "table" in resource:
            value = next(f for f in resource["schema"]["fields"] if f["name"] == "value")
            assert value["constraints"]["minimum"] == 10  # the fixture's threshold, base 5


def test_every_table_says_which_rows_are_totals(released: pipeline.ReleaseResult) -> None:
    meta = descriptor(released.package_dir)
    label = meta["disclosure"]["total_label"]  # type: ignore[index]
    for resource in meta["resources"]:  # type: ignore[attr-defined]
        if "table" not in resource:
            continue
        by = resource["table"]["by"]
        names = [field["name"] for field in resource["schema"]["fields"]]
        assert names[len(by) :] == list(PUBLISHED_COLUMNS)
        for row in read_rows(released.package_dir / resource["path"]):
            total = any(row[column] == label for column in by)
            assert row[package.TOTAL_FLAG] == ("true" if total else "false")


def spec_with_shares(**share: object) -> ReleaseSpec:
    raw = admissions_spec(
        shares=[
            {
                "name": "s",
                "table": "admissions-by-ward-and-outcome",
                "title": "A share",
                "statement": "of admissions",
                **share,
            }
        ]
    )
    return ReleaseSpec.model_validate(raw)


@pytest.mark.parametrize(
    ("share", "numerator", "denominator"),
    [
        (
            {"numerator": {"ward": ["Maternity"]}},
            "admissions whose ward is Maternity",
            "all admissions",
        ),
        (
            {"numerator": {"outcome": ["Discharged"]}},
            "admissions whose outcome is Discharged",
            "all admissions, including those whose outcome is Not known",
        ),
        (
            {
                "numerator": {"outcome": ["Discharged"]},
                "denominator": {"outcome": ["Discharged", "Transferred"]},
            },
            "admissions whose outcome is Discharged",
            "admissions whose outcome is known (those whose outcome is Not known are left out)",
        ),
        (
            {
                "numerator": {"ward": ["Maternity", "Oncology"]},
                "denominator": {"outcome": ["Transferred"]},
            },
            "admissions whose outcome is Transferred and whose ward is Maternity or Oncology",
            "admissions whose outcome is Transferred (those whose outcome is Not known are "
            "left out)",
        ),
    ],
)
def test_shares_say_their_numerator_and_denominator_in_words(
    share: dict[str, object], numerator: str, denominator: str
) -> None:
    spec = spec_with_shares(**share)
    assert package.share_descriptions(spec, spec.shares[0]) == (numerator, denominator)


def test_shares_descriptions_are_in_the_descriptor_and_the_csv(
    released: pipeline.ReleaseResult,
) -> None:
    meta = descriptor(released.package_dir)
    (share,) = meta["shares"]  # type: ignore[misc]
    assert share["numerator_description"] == "admissions whose ward is Maternity"
    assert share["denominator_description"] == "all admissions"
    (row,) = read_rows(released.package_dir / "data" / f"{package.SHARES_RESOURCE}.csv")
    assert row["numerator"] == share["numerator_description"]
    assert row["denominator"] == share["denominator_description"]
    assert row["table"] == "admissions-by-ward"
