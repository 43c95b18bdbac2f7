"""The publisher's own package checks: a real release passes, each kind of tampering is caught.

One release of the admissions fixture is built per module; every test tampers with its own
copy. Where a test changes a file on purpose, ``refresh`` restates the bytes, hashes and
checksums afterwards, so only the rule under test can fire.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import socket
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from publisher import checks, model, package, pipeline
from publisher.errors import PackageError

BY_WARD = "data/admissions-by-ward.csv"
BY_OUTCOME = "data/admissions-by-ward-and-outcome.csv"
SHARES = "data/headline-shares.csv"
PLAIN = (
    "expected a relative path inside the package made of letters, digits, '-', '_' and '.' "
    "(for example 'data/table.csv')"
)
FOLDER = "hospital-admissions-test-0.1.0"  # the zip's one top-level folder
ZIP = f"{FOLDER}.zip"


@pytest.fixture
def released(admissions_release: pipeline.ReleaseResult) -> Path:
    return admissions_release.package_dir


@pytest.fixture
def package_dir(released: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "package"
    shutil.copytree(released, copy)
    return copy


# --- helpers --------------------------------------------------------------------------------


def load(package_dir: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((package_dir / "datapackage.json").read_text("utf-8"))
    return meta


def save(package_dir: Path, meta: dict[str, Any]) -> None:
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    (package_dir / "datapackage.json").write_text(text, encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(package_dir: Path) -> None:
    """A correct SHA256SUMS of every file, as ``sha256sum`` writes it."""
    root = package_dir / "SHA256SUMS"
    files = sorted(p for p in package_dir.rglob("*") if p.is_file() and p != root)
    lines = [f"{sha256(p)}  {p.relative_to(package_dir).as_posix()}" for p in files]
    (package_dir / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


def rezip(package_dir: Path) -> None:
    """Rewrite each zip of the package with the current bytes of its members."""
    for path in package_dir.glob("*.zip"):
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
        folder = path.stem + "/"
        with zipfile.ZipFile(path, "w") as archive:
            for name in names:
                loose = package_dir / name.removeprefix(folder)
                if loose.is_file():
                    archive.write(loose, name)


def refresh(package_dir: Path) -> None:
    """Restate every size, hash, zip and checksum after a deliberate change, as a release
    would."""
    meta = load(package_dir)
    for entry in [*meta["resources"], *meta.get("files", [])]:
        path = package_dir / entry["path"]
        if path.is_file():
            entry["bytes"] = path.stat().st_size
            entry["hash"] = f"sha256:{sha256(path)}"
    save(package_dir, meta)
    rezip(package_dir)
    if (package_dir / "SHA256SUMS").exists():
        write_checksums(package_dir)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def set_cells(package_dir: Path, relative: str, key: tuple[str, ...], **cells: str) -> int:
    """Overwrite cells of the row with ``key``; return its row number (header is row 1)."""
    path = package_dir / relative
    rows = read_rows(path)
    header = rows[0]
    index = next(i for i, row in enumerate(rows) if tuple(row[: len(key)]) == key)
    for column, text in cells.items():
        rows[index][header.index(column)] = text
    write_rows(path, rows)
    refresh(package_dir)
    return index + 1


def only(problems: list[str], prefix: str) -> None:
    """Exactly one problem, and it starts with ``prefix``."""
    assert len(problems) == 1, problems
    assert problems[0].startswith(prefix), problems


def rules(problems: list[str]) -> set[str]:
    """The rule id of each problem: the first part after the file (and row) that is one."""
    found = set()
    for problem in problems:
        parts = problem.split(": ")
        found.add(next(p for p in parts[1:] if not p.startswith(("row ", "line "))))
    return found


# --- a valid package ------------------------------------------------------------------------


def test_a_released_package_passes(package_dir: Path) -> None:
    assert checks.check_package(package_dir) == []


def test_a_package_with_files_an_archive_and_checksums_passes(
    released: Path, package_dir: Path
) -> None:
    shutil.copytree(released, package_dir / "archive" / "0.0.9")
    (package_dir / "NOTES.md").write_text("# Notes\n", encoding="utf-8")
    meta = load(package_dir)
    meta.setdefault("files", []).append(
        {"name": "notes-md", "path": "NOTES.md", "format": "md", "mediatype": "text/markdown"}
    )
    save(package_dir, meta)
    with zipfile.ZipFile(package_dir / "hospital-admissions-test-0.1.0.zip", "a") as archive:
        archive.write(package_dir / "NOTES.md", f"{FOLDER}/NOTES.md")
    refresh(package_dir)
    assert checks.check_package(package_dir) == []


def test_the_profile_is_the_shipped_v2_profile() -> None:
    shipped = Path(checks.__file__).parent / "profiles"
    assert sorted(p.name for p in shipped.iterdir()) == [
        "LICENSE.md",
        "datapackage.json",
        "dataresource.json",
        "tabledialect.json",
        "tableschema.json",
    ]
    assert checks.PROFILE == "https://datapackage.org/profiles/2.0/datapackage.json"


# --- counts ---------------------------------------------------------------------------------


def test_a_value_not_a_multiple_of_the_base(package_dir: Path) -> None:
    row = set_cells(
        package_dir,
        BY_OUTCOME,
        ("Cardiology", "Total"),
        value="142",
        lower_95="100",
        upper_95="200",
    )
    only(checks.check_package(package_dir), f"{package_dir / BY_OUTCOME}: row {row}: not-rounded:")


def test_a_marker_beside_a_value_it_stands_instead_of(package_dir: Path) -> None:
    row = set_cells(package_dir, BY_WARD, ("Maternity",), marker="[low]")
    only(
        checks.check_package(package_dir), f"{package_dir / BY_WARD}: row {row}: marker-with-value:"
    )


def test_an_empty_value_without_a_marker(package_dir: Path) -> None:
    row = set_cells(package_dir, BY_WARD, ("Maternity",), value="")
    only(checks.check_package(package_dir), f"{package_dir / BY_WARD}: row {row}: missing-value:")


def test_markers_must_be_allowed_and_revised_ones_need_a_value(package_dir: Path) -> None:
    meta = load(package_dir)
    marker_field = next(
        f for f in meta["resources"][0]["schema"]["fields"] if f["name"] == "marker"
    )
    marker_field["constraints"]["enum"] = ["[low]", "[r]"]
    save(package_dir, meta)
    revised = set_cells(package_dir, BY_WARD, ("Cardiology",), marker="[r]")
    assert checks.check_package(package_dir) == [], "[r] beside a value is fine"
    emptied = set_cells(package_dir, BY_WARD, ("Maternity",), value="", marker="[r]")
    unknown = set_cells(package_dir, BY_WARD, ("Paediatrics",), marker="[p]")
    problems = checks.check_package(package_dir)
    path = package_dir / BY_WARD
    assert revised != emptied
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}: row {emptied}: marker-without-value: [r] ")
    assert problems[1].startswith(f"{path}: row {unknown}: unknown-marker: '[p]' ")


def test_a_value_below_the_threshold(package_dir: Path) -> None:
    row = set_cells(package_dir, BY_WARD, ("Oncology",), value="5", lower_95="0", upper_95="20")
    only(checks.check_package(package_dir), f"{package_dir / BY_WARD}: row {row}: below-threshold:")


def test_a_value_that_is_not_a_whole_number(package_dir: Path) -> None:
    row = set_cells(package_dir, BY_WARD, ("Oncology",), value="2.5e1")
    only(checks.check_package(package_dir), f"{package_dir / BY_WARD}: row {row}: not-integer:")


def test_a_lower_bound_above_the_value(package_dir: Path) -> None:
    row = set_cells(package_dir, BY_WARD, ("Total",), value="600", lower_95="605", upper_95="650")
    only(checks.check_package(package_dir), f"{package_dir / BY_WARD}: row {row}: interval:")


def test_bounds_are_rounded_and_ordered(package_dir: Path) -> None:
    row = set_cells(package_dir, BY_WARD, ("Total",), value="", marker="[low]", lower_95="7")
    problems = checks.check_package(package_dir)
    assert f"{package_dir / BY_WARD}: row {row}: not-rounded: lower_95 " in problems[0]
    set_cells(package_dir, BY_WARD, ("Total",), lower_95="-5", upper_95="-10")
    problems = checks.check_package(package_dir)
    assert rules(problems) == {"interval"} and len(problems) == 2, problems


def test_a_missing_row(package_dir: Path) -> None:
    path = package_dir / BY_OUTCOME
    rows = read_rows(path)
    write_rows(path, [row for row in rows if row[:2] != ["Oncology", "Total"]])
    refresh(package_dir)
    assert checks.check_package(package_dir) == [
        f"{path}: missing-key: no row for ward='Oncology', outcome='Total'; expected every "
        "combination of the table's categories once"
    ]


def test_a_duplicated_row_and_an_unexpected_key(package_dir: Path) -> None:
    path = package_dir / BY_WARD
    rows = read_rows(path)
    write_rows(path, [*rows, rows[2], ["Surgery", *rows[2][1:]]])
    refresh(package_dir)
    problems = checks.check_package(package_dir)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}: row {len(rows) + 1}: duplicate-key: ward='Maternity' ")
    assert problems[0].endswith("is already in row 3; expected each combination once")
    assert problems[1].startswith(f"{path}: row {len(rows) + 2}: unexpected-key: ward='Surgery' ")


def test_rows_of_the_wrong_shape(package_dir: Path) -> None:
    path = package_dir / BY_WARD
    rows = read_rows(path)
    write_rows(path, [rows[0], rows[1][:3], [], *rows[2:]])
    refresh(package_dir)
    problems = checks.check_package(package_dir)
    assert problems[0].startswith(f"{path}: row 2: columns: the row has 3 cells; expected 6")
    assert f"{path}: row 3: blank-row: the row is empty; remove it" in problems
    # The short row's other cells are still checked: its bounds are missing.
    assert {"columns", "blank-row", "interval"} == rules(problems), problems


def test_a_csv_that_cannot_be_read(package_dir: Path) -> None:
    (package_dir / BY_WARD).write_bytes(b"ward,value\n\xff\xfe,1\n")
    (package_dir / BY_OUTCOME).write_text("ward,outcome,value\nCardiology,Total,5\n", "utf-8")
    refresh(package_dir)
    assert checks.check_package(package_dir) == [
        f"{package_dir / BY_WARD}: csv: not valid utf-8 text; save the file as UTF-8",
        f"{package_dir / BY_OUTCOME}: columns: the header has no column 'marker', 'lower_95', "
        "'upper_95'; expected the columns ward, outcome, value, marker, lower_95, upper_95",
    ]


# --- shares ---------------------------------------------------------------------------------


def test_share_intervals(package_dir: Path) -> None:
    key = ("maternity-share",)
    set_cells(package_dir, SHARES, key, percent="40.0", lower_95="41.5", upper_95="100.5")
    problems = checks.check_package(package_dir)
    path = package_dir / SHARES
    assert [p.split(": ")[2] for p in problems] == ["interval", "interval"], problems
    assert all(p.startswith(f"{path}: row 2: interval: ") for p in problems)
    set_cells(package_dir, SHARES, key, percent="forty", lower_95="", upper_95="50")
    assert rules(checks.check_package(package_dir)) == {"not-number", "interval"}


def test_share_rows_are_unique_and_complete(package_dir: Path) -> None:
    path = package_dir / SHARES
    rows = read_rows(path)
    write_rows(path, [*rows, rows[1]])
    refresh(package_dir)
    only(
        checks.check_package(package_dir), f"{path}: row 3: duplicate-key: share 'maternity-share'"
    )
    write_rows(path, rows[:1])
    refresh(package_dir)
    only(
        checks.check_package(package_dir),
        f"{path}: missing-key: no row for share 'maternity-share'",
    )


# --- bytes, hashes and paths ----------------------------------------------------------------


def test_one_byte_changed_keeping_the_size(package_dir: Path) -> None:
    write_checksums(package_dir)
    path = package_dir / SHARES
    data = path.read_bytes()
    assert b"maternity" in data
    path.write_bytes(data.replace(b"to maternity", b"to maternitY"))
    problems = checks.check_package(package_dir)
    zip_path = package_dir / "hospital-admissions-test-0.1.0.zip"
    assert [p.split(": ")[:2] for p in problems] == [
        [str(path), "hash"],
        [str(path), "checksum"],
        [str(zip_path), "zip"],
    ]
    assert f"member '{FOLDER}/{SHARES}' differs from '{SHARES}' in the package" in problems[2]


def test_one_byte_appended(package_dir: Path) -> None:
    path = package_dir / BY_WARD
    path.write_bytes(path.read_bytes() + b"\n")
    problems = checks.check_package(package_dir)
    assert f"{path}: bytes: the file has {path.stat().st_size} bytes" in problems[0]
    assert {"bytes", "hash", "blank-row"} <= rules(problems)


def test_a_listed_file_that_changed(package_dir: Path) -> None:
    (package_dir / "NOTES.md").write_text("# Notes\n", encoding="utf-8")
    meta = load(package_dir)
    meta.setdefault("files", []).append({"name": "notes-md", "path": "NOTES.md"})
    save(package_dir, meta)
    with zipfile.ZipFile(package_dir / "hospital-admissions-test-0.1.0.zip", "a") as archive:
        archive.write(package_dir / "NOTES.md", f"{FOLDER}/NOTES.md")
    refresh(package_dir)
    assert checks.check_package(package_dir) == []
    (package_dir / "NOTES.md").write_text("# Notes!\n", encoding="utf-8")
    problems = [
        p for p in checks.check_package(package_dir) if "checksum" not in p and ": zip: " not in p
    ]
    assert [p.split(": ")[:2] for p in problems] == [
        [str(package_dir / "NOTES.md"), "bytes"],
        [str(package_dir / "NOTES.md"), "hash"],
    ]


def test_paths_must_stay_inside_the_package(package_dir: Path) -> None:
    (package_dir.parent / "outside.csv").write_text("secret\n", encoding="utf-8")
    meta = load(package_dir)
    meta["resources"][0]["path"] = "data/../../outside.csv"
    meta.setdefault("files", []).extend(
        [{"path": "/etc/hostname", "bytes": 1, "hash": "sha256:0"}, {"path": "gone.md"}]
    )
    save(package_dir, meta)
    descriptor = package_dir / "datapackage.json"
    files = len(meta["files"])
    problems = checks.check_package(package_dir)
    assert f"{descriptor}: profile: $.resources[0].path: does not match the pattern" in problems[0]
    assert f"{descriptor}: path: $.resources[0].path: {PLAIN}" in problems[1]
    assert f"{descriptor}: path: $.files[{files - 2}].path: {PLAIN}" in problems[2]
    assert f"{descriptor}: path: $.files[{files - 1}].path: 'gone.md' is not a file" in problems[3]
    assert not any("outside.csv" in p for p in problems[2:])


def test_a_link_out_of_the_package_is_refused(package_dir: Path) -> None:
    (package_dir.parent / "outside.csv").write_text("secret\n", encoding="utf-8")
    (package_dir / "data" / "link.csv").symlink_to(package_dir.parent / "outside.csv")
    meta = load(package_dir)
    meta.setdefault("files", []).append({"path": "data/link.csv", "bytes": 7, "hash": "x"})
    save(package_dir, meta)
    problems = [
        p
        for p in checks.check_package(package_dir)
        if ": checksum: " not in p and ": zip: " not in p
    ]
    assert len(problems) == 1, problems
    assert "'data/link.csv' is a symbolic link; a package holds plain files only" in problems[0]


# --- the v2 profile and the descriptor ------------------------------------------------------


def test_a_descriptor_missing_a_required_property_or_of_a_wrong_type(package_dir: Path) -> None:
    meta = load(package_dir)
    meta["keywords"] = "hospital"
    del meta["resources"][1]["name"]
    meta["created"] = "yesterday"
    save(package_dir, meta)
    refresh(package_dir)
    descriptor = package_dir / "datapackage.json"
    assert checks.check_package(package_dir) == [
        f"{descriptor}: profile: $.created: is not a valid date-time (Created: The datetime "
        "on which this descriptor was created)",
        f"{descriptor}: profile: $.keywords: expected array, found string",
        f"{descriptor}: profile: $.resources[1]: missing required property: 'name'",
    ]


def test_check_profile_names_the_json_path() -> None:
    assert checks.check_profile({"$schema": checks.PROFILE}) == [
        "$: missing required property: 'resources'"
    ]
    assert checks.check_profile([]) == ["$: expected object, found array"]
    resource = {"name": "a", "path": "a.csv", "schema": {"fields": [{"name": "x", "type": "int"}]}}
    problems = checks.check_profile({"resources": [resource]})
    assert problems[0].startswith("$['$schema']: expected 'https://datapackage.org/profiles/2.0/")
    assert problems[1].startswith(
        "$.resources[0].schema.fields[0].type: expected one of 'string', 'number', 'integer'"
    )
    assert len(problems) == 2


def test_broken_descriptors_are_reported_not_raised(package_dir: Path, tmp_path: Path) -> None:
    descriptor = package_dir / "datapackage.json"
    descriptor.write_text('{"resources": [NaN]}', encoding="utf-8")
    assert checks.check_package(package_dir)[0].startswith(f"{descriptor}: descriptor: not valid")
    descriptor.write_text("[]", encoding="utf-8")
    assert checks.check_package(package_dir)[0] == (
        f"{descriptor}: descriptor: expected a JSON object, found array"
    )
    descriptor.unlink()
    assert checks.check_package(package_dir)[0].startswith(f"{descriptor}: descriptor: not found")
    assert checks.check_package(tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere'}: descriptor: not a directory; give the directory of a package"
    ]


def test_malformed_publisher_keys_are_reported_not_raised(package_dir: Path) -> None:
    meta = load(package_dir)
    meta["disclosure"] = {"rounding_base": 0, "threshold": "ten"}
    meta["resources"][0]["table"]["dimensions"] = [{"name": "ward"}]
    meta["resources"][1]["table"] = "by ward"
    meta["files"] = {"path": "README.md"}
    save(package_dir, meta)
    descriptor = package_dir / "datapackage.json"
    problems = checks.check_package(package_dir)
    assert {p.split(": ")[2] for p in problems if ": descriptor: " in p} == {
        "$.disclosure.rounding_base",
        "$.disclosure.threshold",
        "$.disclosure.total_label",
        "$.resources[0].table.dimensions[0]",
        "$.resources[1].table",
        "$.files",
    }
    assert all(
        p.startswith(f"{descriptor}: ") or ": checksum: " in p or ": zip: " in p for p in problems
    )


# --- SHA256SUMS -----------------------------------------------------------------------------


def test_checksums_wrong_missing_unknown_and_malformed(package_dir: Path) -> None:
    (package_dir / "archive" / "0.0.9").mkdir(parents=True)
    archived = package_dir / "archive" / "0.0.9" / "datapackage.json"
    archived.write_text("{}\n", encoding="utf-8")
    write_checksums(package_dir)
    assert checks.check_package(package_dir) == []
    sums = package_dir / "SHA256SUMS"
    lines = sums.read_text(encoding="utf-8").splitlines()
    listed = [line.split("  ", 1)[1] for line in lines]
    wrong = "0" * 64 + "  " + BY_WARD
    lines[listed.index(BY_WARD)] = wrong
    lines.remove(next(line for line in lines if line.endswith("archive/0.0.9/datapackage.json")))
    lines += ["f" * 64 + "  data/gone.csv", "not a checksum line", "a" * 64 + "  ../escape"]
    sums.write_text("\n".join(lines) + "\n", encoding="utf-8")
    count = len(lines)
    assert checks.check_package(package_dir) == [
        f"{package_dir / BY_WARD}: checksum: the SHA-256 of the file differs from line "
        f"{lines.index(wrong) + 1} of SHA256SUMS; the file changed after release, or "
        "SHA256SUMS is stale",
        f"{sums}: line {count - 2}: checksum: lists 'data/gone.csv', which is not a file in the "
        "package",
        f"{sums}: line {count - 1}: checksum: not in sha256sum format; expected 64 lowercase "
        "hexadecimal digits, two spaces and a path, as `sha256sum` writes them "
        "('<hash>  <path>'): download the package again, or release it again",
        f"{sums}: line {count}: checksum: the path '../escape': {PLAIN}",
        f"{archived}: checksum: not listed in SHA256SUMS; expected every file of the package in it",
    ]


def _second_line(change: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``change`` applied to the second line of SHA256SUMS only."""

    def changed(data: bytes) -> bytes:
        first, second, rest = data.split(b"\n", 2)
        return b"\n".join([first, change(second), rest])

    return changed


# Each way a SHA256SUMS can differ from what `publisher release` writes (and `sha256sum`
# writes in text mode): how its bytes change, the line reported, and what is said there.
NEAR_MISSES = {
    "CRLF line endings": (lambda data: data.replace(b"\n", b"\r\n"), 1, "carriage return"),
    "a bare CR": (_second_line(lambda line: line + b"\r"), 2, "carriage return"),
    "a byte order mark": (lambda data: b"\xef\xbb\xbf" + data, 1, "byte order mark"),
    "no final newline": (lambda data: data[:-1], -1, "does not end with a newline"),
    "uppercase hexadecimal": (_second_line(bytes.upper), 2, "sha256sum format"),
    "the binary-mode marker": (
        _second_line(lambda line: line.replace(b"  ", b" *", 1)),
        2,
        "sha256sum format",
    ),
    "a trailing space": (_second_line(lambda line: line + b" "), 2, "the path"),
    "a blank line": (_second_line(lambda line: b"\n" + line), 2, "is blank"),
}


@pytest.mark.parametrize("near_miss", NEAR_MISSES)
def test_checksums_are_read_only_as_release_writes_them(package_dir: Path, near_miss: str) -> None:
    # Fails if `validate` or the package model accepts a SHA256SUMS that `publisher
    # release` would never write (both read it with one parser: this keeps them agreeing).
    change, number, said = NEAR_MISSES[near_miss]
    sums = package_dir / "SHA256SUMS"
    data = sums.read_bytes()
    number = number if number > 0 else data.count(b"\n")
    sums.write_bytes(change(data))
    at = f"{sums}: line {number}: "
    assert any(
        p.startswith(f"{at}checksum: ") and said in p for p in checks.check_package(package_dir)
    )
    with pytest.raises(PackageError) as caught:
        model.read(package_dir)
    assert any(p.startswith(at) and said in p for p in caught.value.problems)


def test_missing_checksums_are_an_error(package_dir: Path) -> None:
    # Fails if a package whose SHA256SUMS was deleted still validates.
    (package_dir / "SHA256SUMS").unlink()
    sums = package_dir / "SHA256SUMS"
    assert checks.check_package(package_dir) == [
        f"{sums}: checksum: missing; every package lists the SHA-256 of each of its files in "
        "SHA256SUMS (restore it, or release the package again)"
    ]


# --- every problem at once ------------------------------------------------------------------


def test_every_problem_is_reported_at_once(package_dir: Path) -> None:
    write_checksums(package_dir)
    rounded = set_cells(
        package_dir, BY_OUTCOME, ("Maternity", "Total"), value="291", lower_95="200", upper_95="300"
    )
    low = set_cells(package_dir, BY_WARD, ("Cardiology",), marker="[low]")
    below = set_cells(package_dir, BY_WARD, ("Oncology",), value="5", lower_95="0", upper_95="50")
    path = package_dir / BY_OUTCOME
    rows = read_rows(path)
    write_rows(path, [row for row in rows if row[:2] != ["Total", "Total"]] + [rows[1]])
    refresh(package_dir)
    meta = load(package_dir)
    meta["keywords"] = 3
    save(package_dir, meta)
    shares = package_dir / SHARES
    shares.write_bytes(shares.read_bytes().replace(b"to maternity", b"to Maternity"))
    problems = checks.check_package(package_dir)
    descriptor = package_dir / "datapackage.json"
    expected = [
        f"{descriptor}: profile: $.keywords: ",
        f"{path}: row {rounded}: not-rounded: ",
        f"{path}: row {len(rows)}: duplicate-key: ",
        f"{path}: missing-key: no row for ward='Total', outcome='Total'",
        f"{package_dir / BY_WARD}: row {low}: marker-with-value: ",
        f"{package_dir / BY_WARD}: row {below}: below-threshold: ",
        f"{shares}: hash: ",
        f"{shares}: checksum: ",
        f"{descriptor}: checksum: ",
        f"{package_dir / ZIP}: zip: member '{FOLDER}/datapackage.json'",
        f"{package_dir / ZIP}: zip: member '{FOLDER}/{SHARES}'",
    ]
    for prefix in expected:
        assert sum(p.startswith(prefix) for p in problems) == 1, (prefix, problems)
    assert len(problems) == len(expected), problems


# --- untrusted paths, links, pipes and the zip -----------------------------------------------

PRIVATE = "LEAKCHECK-private-row"


def test_the_zip_must_hold_the_same_bytes_as_the_loose_files(package_dir: Path) -> None:
    # Fails if a zip whose CSV was changed (with SHA256SUMS restated) still validates.
    with zipfile.ZipFile(package_dir / ZIP) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    member = f"{FOLDER}/{BY_WARD}"
    members[member] = members[member].replace(b"Maternity", b"Maternitx")
    with zipfile.ZipFile(package_dir / ZIP, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    write_checksums(package_dir)
    assert checks.check_package(package_dir) == [
        f"{package_dir / ZIP}: zip: member '{FOLDER}/{BY_WARD}' differs from '{BY_WARD}' in the "
        "package; "
        "expected the same bytes (rebuild the zip, or release again)"
    ]


def test_the_zip_holds_nothing_else_and_nothing_unsafe(package_dir: Path) -> None:
    with zipfile.ZipFile(package_dir / ZIP, "a") as archive:
        archive.writestr(f"{FOLDER}/microdata.csv", PRIVATE)
        archive.writestr(f"{FOLDER}/../escape.csv", PRIVATE)
        link = zipfile.ZipInfo(f"{FOLDER}/data/link.csv")
        link.external_attr = (0o120777) << 16
        archive.writestr(link, "/etc/passwd")
    write_checksums(package_dir)
    problems = checks.check_package(package_dir)
    where = f"{package_dir / ZIP}: zip: member"
    assert problems == [
        f"{where} '{FOLDER}/microdata.csv' is not a file of the package; expected the zip to "
        "hold the package's own files only",
        f"{where} '{FOLDER}/../escape.csv': {PLAIN}",
        f"{where} '{FOLDER}/data/link.csv' is a symbolic link",
    ]


def test_a_symlink_listed_in_the_checksums_is_refused_and_never_quoted(
    package_dir: Path, tmp_path: Path
) -> None:
    # Fails if a link in the package passes, or if validate quotes what it points at.
    outside = tmp_path / "private.csv"
    outside.write_text(f"ward,value\n{PRIVATE},1\n", encoding="utf-8")
    target = package_dir / BY_WARD
    target.unlink()
    target.symlink_to(outside)
    write_checksums(package_dir)  # as an attacker would: the link's target hashed

    problems = package.validate(package_dir)

    assert problems
    assert not any(PRIVATE in problem for problem in problems)
    assert f"{target}: checksum: is a symbolic link; a package holds only regular files" in (
        "\n".join(problems)
    )
    assert any("'data/admissions-by-ward.csv' is a symbolic link" in p for p in problems), problems


@pytest.mark.parametrize("what", ["fifo", "socket"])
def test_a_pipe_or_socket_in_a_package_is_reported_without_blocking(
    package_dir: Path, what: str
) -> None:
    target = package_dir / BY_WARD
    target.unlink()
    if what == "fifo":
        os.mkfifo(target)
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
        server.close()
    kind = "a named pipe (FIFO)" if what == "fifo" else "a socket"

    problems = package.validate(package_dir)
    with pytest.raises(PackageError) as refused:
        package.check_plain(package_dir)

    assert f"{target}: checksum: is {kind}; a package holds only regular files (remove it)" in (
        problems
    )
    assert refused.value.problems == [
        f"{target}: is {kind}; a package holds only regular files (remove it and check the "
        "package with `publisher validate`)"
    ]


def test_a_descriptor_that_is_a_pipe_is_reported(package_dir: Path) -> None:
    descriptor = package_dir / "datapackage.json"
    descriptor.unlink()
    os.mkfifo(descriptor)
    assert checks.check_package(package_dir)[0] == (
        f"{descriptor}: descriptor: is a named pipe (FIFO), not a regular file; expected the "
        "package's JSON file"
    )
