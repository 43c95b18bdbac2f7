"""Tests of the package model: a package read once, and nothing in it trusted.

Every path a reader takes from a package must be a plain name inside it, never a link,
and every file's bytes must match the checksum the package states for it. The site copies
what the model verified, so a package cannot make it publish a private file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from publisher import model, pipeline
from publisher.errors import PackageError
from publisher.site import generate_pages
from tests.test_site import add_release_files, sha256, write_package

ROOT = Path(__file__).resolve().parents[1]


def _private_file(tmp_path: Path) -> Path:
    secret = tmp_path / "private" / "microdata.csv"
    secret.parent.mkdir()
    secret.write_text("victim_id,force\nV0001,Kent\n", encoding="utf-8")
    return secret


def _resum(package: Path) -> None:
    """Rewrite SHA256SUMS over every file (following links, as a naive tool would)."""
    lines = [
        f"{sha256(path)}  {path.relative_to(package).as_posix()}"
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.name != "SHA256SUMS"
    ]
    (package / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_committed_package_reads_with_every_file_verified() -> None:
    package = model.read(ROOT / "datapackage")
    assert package.version and package.tables
    paths = {item.path for item in package.files}
    assert {"datapackage.json", "SHA256SUMS", "CHANGELOG.md", "README.md"} <= paths
    assert all(table.path in paths for table in package.tables)
    assert any(path.endswith(".zip") for path in paths)
    for item in package.files:
        assert package.read_bytes(item)  # checked again when used
    assert package.unlisted == ()


def test_a_real_release_reads(admissions_release: pipeline.ReleaseResult) -> None:
    package = model.read(admissions_release.package_dir)
    assert [table.name for table in package.tables] == [
        "admissions-by-ward",
        "admissions-by-ward-and-outcome",
    ]
    assert package.unlisted == ()
    assert all(row.keys() >= {"value", "marker"} for row in package.tables[0].rows)


def test_a_link_listed_in_the_checksums_is_refused_and_not_copied(tmp_path: Path) -> None:
    """The symlink of issue 13: SHA256SUMS lists it with the private file's checksum."""
    package = write_package(tmp_path / "package")
    add_release_files(package, archive=False)
    secret = _private_file(tmp_path)
    (package / "notes.csv").symlink_to(secret)
    _resum(package)
    with pytest.raises(PackageError) as raised:
        generate_pages(package, tmp_path / "pages")
    assert any("notes.csv" in p and "symbolic link" in p for p in raised.value.problems)
    assert not (tmp_path / "pages").exists()
    # Nothing of the private file reached an error either.
    assert "V0001" not in str(raised.value)


@pytest.mark.parametrize("where", ["resource", "folder", "descriptor", "checksums"])
def test_links_anywhere_in_the_package_are_refused(tmp_path: Path, where: str) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package, archive=False)
    secret = _private_file(tmp_path)
    if where == "resource":
        target = package / "data" / "crimes-by-environment.csv"
        secret.write_bytes(target.read_bytes())  # the same bytes: the hash would match
        target.unlink()
        target.symlink_to(secret)
    elif where == "folder":
        moved = tmp_path / "elsewhere"
        (package / "data").rename(moved)
        (package / "data").symlink_to(moved)
    elif where == "descriptor":
        moved = tmp_path / "datapackage.json"
        (package / "datapackage.json").rename(moved)
        (package / "datapackage.json").symlink_to(moved)
    else:
        moved = tmp_path / "SHA256SUMS"
        (package / "SHA256SUMS").rename(moved)
        (package / "SHA256SUMS").symlink_to(moved)
    with pytest.raises(PackageError, match="symbolic link"):
        model.read(package)


def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package, archive=False)
    os.mkfifo(package / "pipe.txt")
    sums = package / "SHA256SUMS"
    sums.write_text(sums.read_text("utf-8") + f"{'0' * 64}  pipe.txt\n", encoding="utf-8")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            model.read(package)
        except PackageError as error:
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert outcome and "FIFO" in str(outcome[0])


def test_a_file_with_no_checksum_is_refused(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    descriptor = json.loads((package / "datapackage.json").read_text("utf-8"))
    del descriptor["resources"][0]["hash"]
    (package / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    with pytest.raises(PackageError, match=r"resources\[0\]\.path: no SHA-256 is stated"):
        model.read(package)


def test_the_descriptor_must_match_its_checksum(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package, archive=False)
    descriptor = package / "datapackage.json"
    descriptor.write_text(descriptor.read_text("utf-8").replace("Synthetic", "Edited"), "utf-8")
    with pytest.raises(PackageError, match=r"checksum of datapackage\.json differs"):
        model.read(package)


@pytest.mark.parametrize(
    "path",
    [
        "../secret.csv",
        "/etc/passwd",
        "data\\x.csv",
        ".hidden.csv",
        "data/.x",
        "a//b.csv",
        "https://example.org/x.csv",
        "C:/x.csv",
        "data/x y.csv",
        "",
    ],
)
def test_paths_from_a_package_must_be_plain_names(path: str) -> None:
    assert model.path_problem(path) is not None
    with pytest.raises(model.UntrustedFile):
        model.read_file(Path("."), path)


@pytest.mark.parametrize("path", ["data/crimes.csv", "README.md", "archive/1.0.0/x-1.0.0.zip"])
def test_plain_names_are_accepted(path: str) -> None:
    assert model.path_problem(path) is None


def test_a_version_that_is_not_a_folder_name_is_refused(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    descriptor = json.loads((package / "datapackage.json").read_text("utf-8"))
    descriptor["version"] = "../../../x"
    descriptor["archive"] = [{"version": "../y", "path": "archive/y/datapackage.json"}]
    (package / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    with pytest.raises(PackageError) as raised:
        model.read(package)
    assert any(
        p.endswith("version: expected a version such as '1.0.0' (letters, digits, '.')")
        for p in raised.value.problems
    )
    assert any("archive[0].version" in p for p in raised.value.problems)


def test_files_listed_nowhere_are_reported_not_offered(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package)
    (package / "raw-export.csv").write_text("victim_id\nV1\n", encoding="utf-8")
    (package / "archive" / "0.9.0" / "extra.zip").write_bytes(b"unlisted zip")
    read = model.read(package)
    assert read.unlisted == ("archive/0.9.0/extra.zip", "raw-export.csv")
    offered = {item.path for item in read.files}
    offered |= {z.path for version in read.archive for z in version.zips}
    assert "raw-export.csv" not in offered and "archive/0.9.0/extra.zip" not in offered


def test_bytes_are_checked_again_when_used(tmp_path: Path) -> None:
    package_dir = write_package(tmp_path / "package")
    package = model.read(package_dir)
    item = package.file("data/crimes-by-environment.csv")
    assert item is not None
    (package_dir / item.path).write_text("edited after reading\n", encoding="utf-8")
    with pytest.raises(PackageError, match="changed while it was being read"):
        package.read_bytes(item)


def test_per_unit_guarantees_are_read_in_the_new_shape(tmp_path: Path) -> None:
    package_dir = write_package(tmp_path / "package")
    descriptor = json.loads((package_dir / "datapackage.json").read_text("utf-8"))
    descriptor["privacy"]["units"] = [
        {
            "name": "victim",
            "title": "child victim",
            "description": "A child who was the victim of a recorded crime.",
            "rho": 0.5,
            "epsilon": 6.2,
            "delta": 1e-7,
            "reaches": [
                {"input": "crimes", "through": [], "bound": 5, "identifier": "victim_id"},
                {
                    "input": "suspects",
                    "through": ["crime_id -> crimes.crime_id", "victim_id"],
                    "bound": 3,
                    "bound_text": "at most 3 suspect records per victim, kept at random",
                },
            ],
            "tables": {"crimes-by-environment": 0.3, "suspects-by-age-band-and-sex": 0.2},
        }
    ]
    descriptor["truncation"] = [{"input": "crimes", "statement": "Counts are of kept records."}]
    (package_dir / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    package = model.read(package_dir)
    (unit,) = package.units
    assert unit.name == "victim" and unit.rho == 0.5
    assert unit.reaches[1].through == "crime_id -> crimes.crime_id, then victim_id"
    assert dict(unit.tables) == {"crimes-by-environment": 0.3, "suspects-by-age-band-and-sex": 0.2}
    assert package.truncation[0].statement == "Counts are of kept records."
