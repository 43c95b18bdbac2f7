"""The ODS and XLSX spreadsheets: same numbers and markers as the CSVs, GSS layout, metadata."""

from __future__ import annotations

import csv
import json
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime
from numbers import Number
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest

from publisher import pipeline
from publisher.errors import PackageError
from publisher.spreadsheet import MEDIATYPES, write_spreadsheets

ENGINES = {"ods": "odf", "xlsx": "openpyxl"}
ODF_NAMESPACES = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
}


@pytest.fixture(scope="module")
def package_dir(
    admissions_release: pipeline.ReleaseResult, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    # A copy: the spreadsheets are written again into it.
    copy = tmp_path_factory.mktemp("release") / "package"
    shutil.copytree(admissions_release.package_dir, copy)
    return copy


@pytest.fixture(scope="module")
def written(package_dir: Path) -> dict[str, Path]:
    paths = write_spreadsheets(package_dir)
    return {path.suffix[1:]: path for path in paths}


def copy_package(package_dir: Path, folder: Path) -> Path:
    """A copy of the package without the spreadsheets, to change and write again."""
    ignore = shutil.ignore_patterns("*.ods", "*.xlsx")
    return Path(shutil.copytree(package_dir, folder / "package", ignore=ignore))


@pytest.fixture(scope="module")
def descriptor(package_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((package_dir / "datapackage.json").read_text("utf-8"))
    return data


def read_book(path: Path) -> dict[str, pd.DataFrame]:
    engine = ENGINES[path.suffix[1:]]
    book: dict[str, pd.DataFrame] = pd.read_excel(path, sheet_name=None, header=None, engine=engine)
    return book


def read_csv(package_dir: Path, resource: dict[str, Any]) -> list[dict[str, str]]:
    with (package_dir / resource["path"]).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def table_rows(sheet: pd.DataFrame, first_header: str) -> tuple[list[object], list[list[object]]]:
    """The header row and data rows of the one table on a sheet."""
    column = sheet[0].tolist()
    start = column.index(first_header)
    rows = [[cell for cell in row if not pd.isna(cell)] for row in sheet.values.tolist()]
    return rows[start], rows[start + 1 :]


def sheet_of(book: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Table title -> sheet name, from the Contents sheet."""
    _, rows = table_rows(book["Contents"], "Sheet name")
    return {str(title): str(name) for name, title, _ in rows}


def is_number(cell: object) -> bool:
    return isinstance(cell, Number) and not isinstance(cell, bool)


def test_writes_ods_and_xlsx_named_after_the_package(
    package_dir: Path, written: dict[str, Path]
) -> None:
    assert written == {
        "ods": package_dir / "hospital-admissions-test.ods",
        "xlsx": package_dir / "hospital-admissions-test.xlsx",
    }
    assert all(path.is_file() for path in written.values())
    assert set(MEDIATYPES) == set(written)
    assert not list(package_dir.glob(".*partial"))


@pytest.mark.parametrize("kind", ENGINES)
def test_sheets_are_cover_contents_notes_then_one_per_table(
    written: dict[str, Path], descriptor: dict[str, Any], kind: str
) -> None:
    names = list(read_book(written[kind]))
    tables = [r for r in descriptor["resources"] if r["path"].endswith(".csv")]
    assert names[:3] == ["Cover", "Contents", "Notes"]
    assert len(names) == 3 + len(tables)
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[^\[\]:*?/\\']{1,31}", name) for name in names)


@pytest.mark.parametrize("kind", ENGINES)
def test_every_table_has_the_csvs_numbers_and_markers(
    package_dir: Path, written: dict[str, Path], descriptor: dict[str, Any], kind: str
) -> None:
    book = read_book(written[kind])
    sheets = sheet_of(book)
    checked = 0
    for resource in descriptor["resources"]:
        if resource["format"] != "csv":
            continue
        sheet = book[sheets[resource["title"]]]
        assert sheet.iloc[0, 0] == resource["title"]  # A1 is the title
        rows = read_csv(package_dir, resource)
        if "table" in resource:
            dimensions = [d["name"] for d in resource["table"]["dimensions"]]
            titles = [d["title"] for d in resource["table"]["dimensions"]]
            header, cells = table_rows(sheet, titles[0])
            assert header[: len(titles)] == titles
            assert len(cells) == len(rows)
            for row, shown in zip(rows, cells, strict=True):
                labels, value, lower, upper = (
                    shown[: len(dimensions)],
                    *shown[len(dimensions) :],
                )
                assert labels == [row[d] for d in dimensions]
                if row["value"]:
                    assert is_number(value) and value == int(row["value"])
                else:
                    assert value == row["marker"]
                assert is_number(lower) and lower == int(row["lower_95"])
                assert is_number(upper) and upper == int(row["upper_95"])
        else:
            header, cells = table_rows(sheet, "Headline share")
            assert len(cells) == len(rows)
            assert header[1:3] == ["Numerator", "Denominator"]
            for row, shown in zip(rows, cells, strict=True):
                assert shown[:3] == [row["description"], row["numerator"], row["denominator"]]
                for cell, column in zip(
                    shown[3:6], ("percent", "lower_95", "upper_95"), strict=True
                ):
                    assert is_number(cell) and cell == pytest.approx(float(row[column]))
        checked += 1
    assert checked == len([r for r in descriptor["resources"] if r["format"] == "csv"])


def test_the_fixture_has_suppressed_cells(package_dir: Path, descriptor: dict[str, Any]) -> None:
    # Otherwise the marker branch above would go untested.
    markers = [
        row["marker"]
        for resource in descriptor["resources"]
        if "table" in resource
        for row in read_csv(package_dir, resource)
    ]
    assert any(markers)


def test_xlsx_has_no_merged_cells_and_stores_numbers_with_separators(
    written: dict[str, Path],
) -> None:
    book = openpyxl.load_workbook(written["xlsx"])
    numbers = 0
    for sheet in book.worksheets:
        assert not sheet.merged_cells.ranges, sheet.title
        for row in sheet.iter_rows():
            for cell in row:
                if cell.data_type == "n" and cell.value is not None:
                    assert cell.number_format in {"#,##0", "#,##0.0"}
                    numbers += 1
        if sheet.title.startswith("Table_"):
            assert len(sheet.tables) == 1  # marked up as a table, with a header row
    assert numbers > 0


def test_ods_has_no_merged_cells_and_stores_numbers_as_floats(written: dict[str, Path]) -> None:
    content = zipfile.ZipFile(written["ods"]).read("content.xml").decode("utf-8")
    assert "number-columns-spanned" not in content
    assert "number-rows-spanned" not in content
    assert 'office:value-type="float"' in content
    assert 'number:grouping="true"' in content


def test_document_title_language_and_keywords(
    written: dict[str, Path], descriptor: dict[str, Any]
) -> None:
    properties = openpyxl.load_workbook(written["xlsx"]).properties
    assert properties.title == descriptor["title"]
    assert properties.language == "en-GB"
    assert properties.keywords == ", ".join(descriptor["keywords"])
    created = datetime.fromisoformat(descriptor["created"]).replace(tzinfo=None)
    assert properties.created == created

    # The file was written by this test run, not received from outside.
    meta = ET.fromstring(zipfile.ZipFile(written["ods"]).read("meta.xml"))  # noqa: S314
    assert meta.findtext(".//dc:title", namespaces=ODF_NAMESPACES) == descriptor["title"]
    assert meta.findtext(".//dc:language", namespaces=ODF_NAMESPACES) == "en-GB"
    assert (
        meta.findtext(".//meta:creation-date", namespaces=ODF_NAMESPACES) == (descriptor["created"])
    )
    keywords = [k.text for k in meta.findall(".//meta:keyword", namespaces=ODF_NAMESPACES)]
    assert keywords == descriptor["keywords"]


@pytest.mark.parametrize("kind", ENGINES)
def test_cover_says_what_when_who_how_and_under_what_licence(
    written: dict[str, Path], descriptor: dict[str, Any], kind: str
) -> None:
    cover = read_book(written[kind])["Cover"]
    text = "\n".join(str(cell) for cell in cover[0].tolist())
    release = descriptor["release"]
    assert cover.iloc[0, 0] == descriptor["title"]
    licence = descriptor["licenses"][0]
    for expected in (
        descriptor["description"],
        descriptor["privacy"]["statement"],
        licence["title"],
        licence["path"],
        release["period"],
        "Next update: To be announced.",
        release["contact"]["name"],
        release["contact"]["email"],
        "synthetic",
        f"nearest {descriptor['disclosure']['rounding_base']}",
        f"below {descriptor['disclosure']['threshold']}",
        *descriptor["markers"],
    ):
        assert expected in text, expected
    if "estimation" in descriptor:
        assert descriptor["estimation"]["description"] in text


@pytest.mark.parametrize("kind", ENGINES)
def test_tables_refer_to_notes_that_exist(
    written: dict[str, Path], descriptor: dict[str, Any], kind: str
) -> None:
    book = read_book(written[kind])
    _, notes = table_rows(book["Notes"], "Note number")
    numbers = {str(row[0]) for row in notes}
    texts = " ".join(str(row[1]) for row in notes)
    for marker in descriptor["markers"]:
        assert marker in texts
    for phrase in ("rounded to the nearest", "A 0 is never shown", "95% interval"):
        assert phrase in texts
    # What the per-person bounds left out, as the package states it.
    assert descriptor["truncation"]
    for estimate in descriptor["truncation"]:
        assert estimate["statement"] in texts
    # The privacy unit's note, on every table it concerns (under zCDP the tables of an
    # input are measured together: the unit's tables come from its inputs).
    (unit_note,) = [str(row[0]) for row in notes if "Privacy unit: patient" in str(row[1])]
    for name in [n for n in book if n.startswith("Table_")]:
        lines = " ".join(str(cell) for cell in book[name][0].tolist())
        referenced = set(re.findall(r"\[(note \d+)\]", lines))
        assert referenced, name
        assert referenced <= numbers, name
    titles = sheet_of(book)
    for resource in descriptor["resources"]:
        if "table" in resource:  # a table of counts
            lines = " ".join(str(cell) for cell in book[titles[resource["title"]]][0].tolist())
            assert f"[{unit_note}]" in lines, resource["name"]


def test_the_same_package_gives_the_same_bytes(
    package_dir: Path, written: dict[str, Path], descriptor: dict[str, Any]
) -> None:
    before = {kind: path.read_bytes() for kind, path in written.items()}
    write_spreadsheets(package_dir)
    assert {kind: path.read_bytes() for kind, path in written.items()} == before
    stamp = datetime.fromisoformat(descriptor["created"])
    for path in written.values():
        for entry in zipfile.ZipFile(path).infolist():
            assert entry.date_time[:5] == (
                stamp.year,
                stamp.month,
                stamp.day,
                stamp.hour,
                stamp.minute,
            )


def test_stem_names_the_files(package_dir: Path, tmp_path: Path) -> None:
    copy = copy_package(package_dir, tmp_path)
    paths = write_spreadsheets(copy, stem="admissions-2025")
    assert [p.name for p in paths] == ["admissions-2025.ods", "admissions-2025.xlsx"]
    with pytest.raises(PackageError, match="lowercase letters, digits and single hyphens"):
        write_spreadsheets(copy, stem="Admissions 2025")


def test_a_marker_beside_a_number_gets_its_own_column(package_dir: Path, tmp_path: Path) -> None:
    copy = copy_package(package_dir, tmp_path)
    path = copy / "data" / "admissions-by-ward.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(","), strict=True))
    first["marker"] = "[low]"
    lines[1] = ",".join(first[column] for column in header)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    for written in write_spreadsheets(copy):
        sheet = sheet_of(read_book(written))["Admissions by ward"]
        columns, cells = table_rows(read_book(written)[sheet], "Ward")
        assert columns[1:3] == ["Number of admissions", "Marker"]
        assert is_number(cells[0][1]) and cells[0][1] == int(first["value"])
        assert cells[0][2] == "[low]"


def test_a_share_that_cannot_be_estimated_shows_x(package_dir: Path, tmp_path: Path) -> None:
    copy = copy_package(package_dir, tmp_path)
    path = copy / "data" / "headline-shares.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerow({**rows[0], "percent": "", "lower_95": "", "upper_95": ""})

    for written in write_spreadsheets(copy):
        book = read_book(written)
        _, cells = table_rows(book[sheet_of(book)["Headline shares"]], "Headline share")
        assert cells[0][3:6] == ["[x]", "[x]", "[x]"]
        _, notes = table_rows(book["Notes"], "Note number")
        assert any(str(note[1]).startswith("[x]") for note in notes)


def test_errors_name_the_file_and_never_quote_data(package_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"datapackage\.json: not found"):
        write_spreadsheets(tmp_path)

    copy = copy_package(package_dir, tmp_path)
    (copy / "data" / "admissions-by-ward.csv").unlink()
    with pytest.raises(PackageError, match=r"admissions-by-ward\.csv: not found"):
        write_spreadsheets(copy)

    copy = copy_package(package_dir, tmp_path / "again")
    path = copy / "data" / "admissions-by-ward-and-outcome.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[2]["upper_95"] = "secret-42"  # line 4
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(PackageError) as raised:
        write_spreadsheets(copy)
    message = str(raised.value)
    assert "admissions-by-ward-and-outcome.csv: line 4, column 'upper_95'" in message
    assert "secret" not in message
    assert not list(copy.glob("*.ods")) and not list(copy.glob("*.xlsx"))

    descriptor = json.loads((copy / "datapackage.json").read_text(encoding="utf-8"))
    del descriptor["release"]["period"], descriptor["privacy"]["statement"]
    (copy / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    with pytest.raises(PackageError) as raised:
        write_spreadsheets(copy)
    assert raised.value.problems == [
        f"{copy / 'datapackage.json'}: 'release.period' is missing or not text; "
        "rebuild the package with `publisher release`",
        f"{copy / 'datapackage.json'}: 'privacy.statement' is missing or not text; "
        "rebuild the package with `publisher release`",
    ]
