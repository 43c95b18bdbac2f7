"""Every download opened as its users open it: frictionless (validate, describe, extract),
the Data Package v2 JSON Schemas, pandas, polars, DuckDB (with the README's own loading
lines), openpyxl, odfpy, the zip, and LibreOffice headless printing both spreadsheets to
PDF without overlapping text and with every table the width of one page.

sqlite-utils and Datasette are not used: they load the same CSVs as DuckDB does, and would
be two more dependencies for no property the others do not check.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import frictionless
import openpyxl
import pandas as pd
import polars as pl
import pytest
from odf.namespaces import LOEXTNS, STYLENS, TABLENS
from odf.opendocument import load as load_ods
from odf.style import PageLayoutProperties
from odf.table import DatabaseRange, Table, TableHeaderRows

from publisher import checks, package, pipeline
from publisher.disclosure import LOW


@pytest.fixture(scope="module")
def package_dir(
    admissions_release: pipeline.ReleaseResult, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    copy = tmp_path_factory.mktemp("downloads") / "package"
    shutil.copytree(admissions_release.package_dir, copy)
    return copy


@pytest.fixture(scope="module")
def descriptor(package_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((package_dir / "datapackage.json").read_text("utf-8"))
    return data


def tables(descriptor: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (r for r in descriptor["resources"] if "table" in r)


# --- frictionless and the Data Package v2 profile -----------------------------------------


def test_frictionless_validates_every_resource_documents_included(
    package_dir: Path, descriptor: dict[str, Any]
) -> None:
    report = frictionless.validate(str(package_dir / "datapackage.json"))
    assert report.valid, report.flatten(["type", "note"])
    checked = {task.name: task.type for task in report.tasks}
    assert checked["readme-md"] == "text" and checked["changelog-md"] == "text"
    assert checks.check_profile(descriptor) == []


def test_frictionless_catches_a_changed_document(package_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(package_dir, tmp_path / "package"))
    readme = copy / "README.md"
    readme.write_bytes(readme.read_bytes().replace(b"#", b"=", 1))
    report = frictionless.validate(str(copy / "datapackage.json"))
    assert not report.valid
    assert {error_type for (error_type,) in report.flatten(["type"])} == {"hash-count"}


def test_spreadsheets_are_files_with_sizes_and_hashes(
    package_dir: Path, descriptor: dict[str, Any]
) -> None:
    """The v2 profile allows no resource type but table and frictionless reads ODS and XLSX
    resources as tables, so the spreadsheets are under ``files``, checked by checksums."""
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (package_dir / "SHA256SUMS").read_text("utf-8").splitlines()
    )
    for entry in descriptor["files"]:
        data = (package_dir / entry["path"]).read_bytes()
        assert (
            entry["hash"]
            == f"sha256:{hashlib.sha256(data).hexdigest()}"
            == f"sha256:{sums[entry['path']]}"
        )
        assert entry["bytes"] == len(data)
    assert {entry["format"] for entry in descriptor["files"]} == {"ods", "xlsx"}


def test_frictionless_describe_and_extract_read_integers(
    package_dir: Path, descriptor: dict[str, Any]
) -> None:
    for resource in tables(descriptor):
        described = frictionless.describe(str(package_dir / resource["path"]))
        assert isinstance(described, frictionless.Resource)
        inferred = {field.name: field.type for field in described.schema.fields}  # type: ignore[attr-defined]
        assert inferred["lower_95"] == inferred["upper_95"] == "integer"
        assert inferred[package.TOTAL_FLAG] == "boolean"
    bundle = frictionless.Package(str(package_dir / "datapackage.json"))
    for resource in tables(descriptor):
        rows = bundle.get_resource(resource["name"]).read_rows()
        assert rows
        for row in rows:
            assert row["value"] is None or isinstance(row["value"], int)
            assert isinstance(row[package.TOTAL_FLAG], bool)


# --- the README's loading lines, run as written -------------------------------------------


def readme_code(package_dir: Path, tool: str) -> dict[str, str]:
    """The loading line of each table for ``tool``, by table path, from the README."""
    readme = (package_dir / "README.md").read_text("utf-8")
    found = {}
    for code in re.findall(rf"^{re.escape(tool)}:\n\n`{{3,}}\w+\n(.*?)\n`{{3,}}$", readme, re.M):
        path = re.search(r"[\"'](data/[^\"']+\.csv)[\"']", code)
        assert path, code
        found[path.group(1)] = code
    return found


def test_pandas_default_reading_is_the_problem_the_readme_solves(
    package_dir: Path, descriptor: dict[str, Any]
) -> None:
    low = [r for r in tables(descriptor) if LOW in (package_dir / r["path"]).read_text("utf-8")]
    assert low  # the fixture has [low] cells
    plain = pd.read_csv(package_dir / low[0]["path"])
    assert plain["value"].dtype == "float64"


def test_pandas_loads_each_table_with_its_types_in_one_line(
    package_dir: Path, descriptor: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(package_dir)
    lines = readme_code(package_dir, "pandas")
    assert set(lines) == {r["path"] for r in descriptor["resources"] if r.get("format") == "csv"}
    saw_low = False
    for resource in tables(descriptor):
        scope: dict[str, Any] = {"pd": pd}
        exec(lines[resource["path"]], scope)  # noqa: S102 - the README's line, as a reader runs it
        frame = scope["df"]
        for column in resource["table"]["by"]:
            assert frame[column].dtype == "string"
        assert frame["value"].dtype == "Int64"
        assert frame["lower_95"].dtype == frame["upper_95"].dtype == "Int64"
        assert frame["marker"].dtype == "string"
        assert frame[package.TOTAL_FLAG].dtype == "boolean"
        saw_low |= bool((frame["marker"] == LOW).any())
        assert (frame["value"].isna() == (frame["marker"] == LOW).fillna(False)).all()
        exec('df = df[~df["is_total"]]', scope)  # noqa: S102 - the README's filter line
        assert not scope["df"][resource["table"]["by"]].isin(["Total"]).any().any()
    assert saw_low
    shares = next(r for r in descriptor["resources"] if r["name"] == package.SHARES_RESOURCE)
    scope = {"pd": pd}
    exec(lines[shares["path"]], scope)  # noqa: S102
    assert scope["df"]["percent"].dtype == "Float64"
    assert scope["df"]["numerator"].dtype == "string"


def test_polars_loads_each_table_with_its_types_in_one_line(
    package_dir: Path, descriptor: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(package_dir)
    lines = readme_code(package_dir, "polars")
    for resource in tables(descriptor):
        scope: dict[str, Any] = {"pl": pl}
        exec(lines[resource["path"]], scope)  # noqa: S102
        frame = scope["df"]
        assert frame.schema["value"] == pl.Int64 and frame.schema["marker"] == pl.String
        assert frame.schema[package.TOTAL_FLAG] == pl.Boolean
        assert all(frame.schema[column] == pl.String for column in resource["table"]["by"])
        assert (
            frame.filter(pl.col("marker") == LOW)["value"].null_count()
            == frame.filter(pl.col("marker") == LOW).height
        )
        exec('df = df.filter(~pl.col("is_total"))', scope)  # noqa: S102
        assert scope["df"].height == frame.height - frame[package.TOTAL_FLAG].sum()


def test_duckdb_loads_each_table_with_its_types_in_one_query(
    package_dir: Path, descriptor: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(package_dir)
    queries = readme_code(package_dir, "DuckDB")
    with duckdb.connect() as connection:
        for resource in tables(descriptor):
            query = queries[resource["path"]]
            relation = connection.sql(query.rstrip(";"))
            types = dict(zip(relation.columns, map(str, relation.types), strict=True))
            assert types["value"] == "BIGINT" and types["marker"] == "VARCHAR"
            assert types[package.TOTAL_FLAG] == "BOOLEAN"
            rows = relation.fetchall()
            low = [row for row in rows if row[relation.columns.index("marker")] == LOW]
            assert all(row[relation.columns.index("value")] is None for row in low)
            kept = connection.sql(query.rstrip(";") + " WHERE NOT is_total").fetchall()
            assert len(kept) == len(rows) - sum(row[-1] for row in rows)


# --- the zip --------------------------------------------------------------------------------


def test_the_zip_unpacks_into_one_folder_named_after_the_release(
    package_dir: Path, descriptor: dict[str, Any], tmp_path: Path
) -> None:
    folder = f"{descriptor['name']}-{descriptor['version']}"
    with zipfile.ZipFile(package_dir / f"{folder}.zip") as bundle:
        assert {name.split("/", 1)[0] for name in bundle.namelist()} == {folder}
        bundle.extractall(tmp_path)
    unpacked = tmp_path / folder
    for path in unpacked.rglob("*"):
        if path.is_file():
            relative = path.relative_to(unpacked)
            assert path.read_bytes() == (package_dir / relative).read_bytes()
    assert frictionless.validate(str(unpacked / "datapackage.json")).valid


# --- the spreadsheets, as openpyxl and odfpy read them ------------------------------------


def test_xlsx_uses_heading_styles_row_heights_and_a_print_setup(package_dir: Path) -> None:
    book = openpyxl.load_workbook(next(package_dir.glob("*.xlsx")))
    for sheet in book.worksheets:
        assert sheet["A1"].style == "Heading 1", sheet.title
        assert sheet.page_setup.paperSize == 9  # A4
        assert sheet.sheet_properties.pageSetUpPr.fitToPage
        # One page wide (1 is the default, so it may be left out), any number of pages down.
        assert sheet.page_setup.fitToWidth in (None, 1) and sheet.page_setup.fitToHeight == 0
        # XlsxWriter stores each width plus Excel's 0.71 characters of cell padding.
        widths = [
            round(d.width - 0.71) * (d.max - d.min + 1) for d in sheet.column_dimensions.values()
        ]
        wide = sum(widths) > 80
        assert sheet.page_setup.orientation == ("landscape" if wide else "portrait"), sheet.title
        if sheet.tables:
            (table,) = sheet.tables.values()
            header_row = int(re.match(r"[A-Z]+(\d+)", table.ref).group(1))  # type: ignore[union-attr]
            assert sheet.print_title_rows.replace("$", "") == f"{header_row}:{header_row}"
        # Every row of wrapped text is tall enough for its lines.
        for row in sheet.iter_rows():
            for cell in row:
                if cell.alignment.wrap_text and isinstance(cell.value, str):
                    width = sheet.column_dimensions[cell.column_letter].width
                    lines = len(cell.value) / (width * 0.8)
                    if lines > 1.2:
                        assert (sheet.row_dimensions[cell.row].height or 15) >= 12 * lines
    cover = book["Cover"]
    assert any(c.value == "Methodology" and c.style == "Heading 2" for c in cover["A"])


def test_ods_marks_tables_as_database_ranges_and_sets_up_printing(package_dir: Path) -> None:
    document = load_ods(str(next(package_dir.glob("*.ods"))))
    ranges = document.getElementsByType(DatabaseRange)
    sheets = document.getElementsByType(Table)
    with_tables = [s for s in sheets if s.getAttrNS(TABLENS, "name") != "Cover"]
    assert len(ranges) == len(with_tables)
    for database_range in ranges:
        assert database_range.getAttrNS(TABLENS, "contains-header") == "true"
        address = database_range.getAttrNS(TABLENS, "target-range-address")
        assert re.fullmatch(r"'[^']+'\.A\d+:'[^']+'\.[A-Z]+\d+", address)
    for sheet in with_tables:
        headers = sheet.getElementsByType(TableHeaderRows)
        assert len(headers) == 1  # repeated on every printed page
    layouts = document.getElementsByType(PageLayoutProperties)
    assert layouts
    for layout in layouts:
        assert layout.getAttrNS(STYLENS, "scale-to-X") == "1"
        assert layout.getAttrNS(LOEXTNS, "scale-to-X") in (None, "")


# --- LibreOffice: print both to PDF ---------------------------------------------------------

XHTML = "{http://www.w3.org/1999/xhtml}"
_Word = tuple[float, float, float, float, str]


def pdf_pages(pdf: Path) -> list[tuple[float, list[_Word]]]:
    """Each page's width and words with their boxes, as poppler's pdftotext reads them."""
    out = subprocess.run(
        ["pdftotext", "-bbox-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    return [
        (
            float(page.get("width", 0)),
            [
                (
                    float(word.get("xMin", 0)),
                    float(word.get("yMin", 0)),
                    float(word.get("xMax", 0)),
                    float(word.get("yMax", 0)),
                    word.text or "",
                )
                for word in page.iter(f"{XHTML}word")
            ],
        )
        # poppler's own output, not untrusted input
        for page in ET.fromstring(out).iter(f"{XHTML}page")  # noqa: S314
    ]


def overlapping(words: list[_Word]) -> list[tuple[str, str]]:
    """Pairs of words drawn over each other (beyond the touch of adjacent lines)."""
    found = []
    ordered = sorted(words)
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if second[0] >= first[2]:
                break
            across = min(first[2], second[2]) - max(first[0], second[0])
            down = min(first[3], second[3]) - max(first[1], second[1])
            if across > 1 and down > 0.4 * min(first[3] - first[1], second[3] - second[1]):
                found.append((first[4], second[4]))
    return found


@pytest.fixture(scope="module")
def printed(package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both spreadsheets printed to PDF by LibreOffice headless, in one run of it."""
    office = shutil.which("libreoffice") or shutil.which("soffice")
    if office is None or shutil.which("pdftotext") is None:
        pytest.fail(
            "LibreOffice and poppler's pdftotext are needed to print the spreadsheets and are "
            "never skipped. Install them (Debian or Ubuntu: apt-get install -y "
            "libreoffice-calc poppler-utils), as the README's test command does.",
            pytrace=False,
        )
    folder = tmp_path_factory.mktemp("printed")
    sources = []
    for kind in ("ods", "xlsx"):
        source = folder / f"{kind}.{kind}"  # distinct names: one PDF each
        shutil.copy(next(package_dir.glob(f"*.{kind}")), source)
        sources.append(str(source))
    profile = (folder / "profile").as_uri()  # its own profile: never another run's lock
    subprocess.run(
        [
            office,
            f"-env:UserInstallation={profile}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(folder),
            *sources,
        ],
        capture_output=True,
        check=True,
        timeout=180,
    )
    return {kind: folder / f"{kind}.pdf" for kind in ("ods", "xlsx")}


@pytest.mark.parametrize("kind", ["ods", "xlsx"])
def test_libreoffice_prints_without_overlap_and_each_table_fits_the_width(
    printed: dict[str, Path], package_dir: Path, kind: str
) -> None:
    pages = pdf_pages(printed[kind])
    book = openpyxl.load_workbook(next(package_dir.glob("*.xlsx")))
    # The first word of each header of each table (headers wrap; their first lines align).
    headers = []
    for sheet in book.worksheets:
        for table in sheet.tables.values():
            start, end = table.ref.split(":")
            row = next(iter(sheet[start:end]))
            headers.append([str(cell.value).split()[0] for cell in row])
    assert headers
    for number, (width, words) in enumerate(pages, 1):
        assert not overlapping(words), f"{kind} page {number}: {overlapping(words)[:5]}"
        assert all(word[0] >= 0 and word[2] <= width for word in words), f"page {number}"
        # A table split sideways across pages prints part of its header row on a page
        # without the rest: every printed header row shows its first and last header.
        lines: list[list[str]] = []
        top = -1.0
        for word in sorted(words, key=lambda word: word[1]):
            if not lines or word[1] - top > 2:
                lines.append([])
                top = word[1]
            lines[-1].append(word[4])
        for line in lines:
            if any(len(set(header) & set(line)) >= 2 for header in headers):
                assert any(set(header) <= set(line) for header in headers), (
                    f"{kind} page {number}: a header row split across pages: {line}"
                )
    assert len(pages) >= len(book.worksheets)
