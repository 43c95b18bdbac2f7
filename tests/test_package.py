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

from publisher import package, pipeline
from publisher.disclosure import LOW
from publisher.errors import PackageError


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
    assert math.fsum(r["privacy"]["rho"] for r in tables) == pytest.approx(measured.total_loss)
    unit = privacy["units"][0]  # type: ignore[index]
    assert (unit["identifier"], unit["max_records_per_person"]) == ("patient_ref", 2)
    assert f"{measured.total_loss:.4g}" in privacy["statement"]  # type: ignore[index]


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
        if resource["name"] == package.SHARES_RESOURCE:
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
        if resource["name"] == package.SHARES_RESOURCE:
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
