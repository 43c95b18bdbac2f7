"""Tests of the site generator: pages from a package, escaping, strict MkDocs builds.

The packages are built here, in the shape ``publisher release`` writes (datapackage.json
with the custom ``release``, ``privacy``, ``disclosure``, ``markers`` and ``shares`` keys,
plus tidy CSVs), so the tests depend on nothing outside the repository. Tests that run
MkDocs are marked ``slow``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import json
import math
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.errors import PackageError
from publisher.site import GENERATED_DIR, SITE_MARKER, build_site, generate_pages
from publisher.site.text import bibtex as _bibtex
from publisher.site.text import html as _html
from publisher.site.text import md as _md

REPO = Path(__file__).resolve().parents[1]
EVIL = '<script>alert("pwned")</script> | {: onclick="steal()" } *bold* [link](x.md)'

ENVIRONMENT_ROWS = [
    ["Familial", "1090", "", "1070", "1110"],
    ["Child Sexual Exploitation", "715", "", "695", "735"],
    ["Institutional", "380", "", "360", "400"],
    ["Ritualistic", "", "[low]", "0", "20"],
    ["Other", "1600", "", "1580", "1620"],
    ["Unknown", "380", "", "360", "400"],
    ["Total", "4195", "", "4145", "4245"],
]
SUSPECT_ROWS = [
    ["10 to 17", "Male", "1200", "", "1185", "1215"],
    ["10 to 17", "Female", "45", "", "30", "60"],
    ["10 to 17", "Total", "1245", "", "1225", "1265"],
    ["18 or over", "Male", "1300", "", "1285", "1315"],
    ["18 or over", "Female", "", "[low]", "0", "20"],
    ["18 or over", "Total", "1305", "", "1285", "1325"],
    ["Total", "Male", "2500", "", "2480", "2520"],
    ["Total", "Female", "50", "", "30", "70"],
    ["Total", "Total", "2550", "", "2525", "2575"],
]
ENVIRONMENTS = [row[0] for row in ENVIRONMENT_ROWS[:-1]]


def _dimension(name: str, title: str, values: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "description": f"The {title.lower()} recorded.",
        "values": values,
        "ordered": False,
        "unknown": extra.pop("unknown", None),
        "definitions": extra.pop("definitions", {}),
    }


def _field(name: str, title: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "type": kind, "title": title, "description": f"{title}."}


def _resource(
    name: str, title: str, counts: str, dimensions: list[dict[str, Any]]
) -> dict[str, Any]:
    fields = [_field(d["name"], d["title"]) for d in dimensions]
    titles = [d["title"].lower() for d in dimensions]
    fields += [
        _field("value", f"Number of {counts}", "integer"),
        _field("marker", "Marker"),
        _field("lower_95", "Lower bound of the 95% interval", "integer"),
        _field("upper_95", "Upper bound of the 95% interval", "integer"),
    ]
    return {
        "name": name,
        "type": "table",
        "path": f"data/{name}.csv",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "title": title,
        "description": f"Number of {counts}, by {' and '.join(titles)}.",
        "schema": {
            "fields": fields,
            "missingValues": [""],
            "primaryKey": [d["name"] for d in dimensions],
        },
        "privacy": {
            "rho": 0.1667,
            "epsilon": 2.3,
            "delta": 1e-07,
            "distribution": "Integer Gaussian",
            "scale": 12.2,
            "margin_95": 24,
        },
        "table": {
            "input": counts,
            "counts": counts,
            "by": [d["name"] for d in dimensions],
            "totals": True,
            "dimensions": dimensions,
        },
    }


def sample_descriptor() -> dict[str, Any]:
    """A complete descriptor shaped like the one ``publisher release`` writes."""
    environment = _dimension(
        "environment",
        "Environment",
        ENVIRONMENTS,
        unknown="Unknown",
        definitions={"Familial": "Offending within the family."},
    )
    age = _dimension("age_band", "Age band", ["10 to 17", "18 or over"])
    sex = _dimension("sex", "Sex", ["Male", "Female"])
    return {
        "name": "csae-group-based-demo",
        "id": "csae-group-based-demo-1.0.0",
        "title": "Group-based abuse recorded, England and Wales, 2023 (synthetic demo data)",
        "description": "Plain English description from the spec.",
        "version": "1.0.0",
        "created": "2026-11-25T20:30:00Z",
        "licenses": [
            {
                "name": "OGL-UK-3.0",
                "title": "Open Government Licence v3.0",
                "path": "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
            }
        ],
        "sources": [{"title": "Synthetic microdata", "description": "seed 2023"}],
        "contributors": [
            {"title": "Demonstration publisher", "roles": ["publisher"]},
            {"title": "Demo team", "email": "statistics@example.org", "roles": ["contact"]},
        ],
        "resources": [
            _resource("crimes-by-environment", "Crimes by environment", "crimes", [environment]),
            _resource(
                "suspects-by-age-band-and-sex", "Suspects by age and sex", "suspects", [age, sex]
            ),
        ],
        "release": {
            "tool": "publisher 0.1.0",
            "opendp": "0.16.0",
            "period": "January to December 2023",
            "published": "2026-11-25",
            "geography": "England and Wales",
            "synthetic": True,
            "contact": {"name": "Demo team", "email": "statistics@example.org"},
        },
        "privacy": {
            "model": "zcdp",
            "loss": {"rho": 1.0, "epsilon": 9.1, "delta": 1e-07},
            "units": [
                {
                    "name": "victim",
                    "title": "child victim",
                    "rho": 1.0,
                    "epsilon": 9.1,
                    "reaches": [
                        {
                            "input": "crimes",
                            "input_title": "Crimes",
                            "through": [],
                            "identifier": "victim_id",
                            "bound": 5,
                            "bound_text": "Crimes: at most 5 records per child victim",
                        }
                    ],
                    "tables": {"crimes-by-environment": 0.1667},
                },
                {
                    "name": "suspect",
                    "title": "suspect",
                    "rho": 0.5,
                    "epsilon": 6.2,
                    "reaches": [
                        {
                            "input": "suspects",
                            "input_title": "Suspects",
                            "through": [],
                            "identifier": "suspect_id",
                            "bound": 3,
                        }
                    ],
                    "tables": {"suspects-by-age-band-and-sex": 0.25},
                },
            ],
            "statement": "One sentence privacy statement generated by the tool.",
        },
        "disclosure": {"rounding_base": 5, "threshold": 10, "total_label": "Total"},
        "markers": {"[low]": "Fewer than 10 (the threshold), not published. Not a true zero."},
        "shares": [
            {
                "name": "familial-share",
                "title": "Crimes in the familial environment",
                "statement": "of group-based crimes were in the familial environment",
                "table": "crimes-by-environment",
                "numerator": {"environment": ["Familial"]},
                "denominator": {},
                "estimate": 0.26,
                "lower_95": 0.245,
                "upper_95": 0.275,
            }
        ],
    }


def write_package(
    directory: Path,
    descriptor: dict[str, Any] | None = None,
    *,
    rows: dict[str, list[list[str]]] | None = None,
) -> Path:
    """Write a package (descriptor + CSVs) and return its directory."""
    descriptor = descriptor if descriptor is not None else sample_descriptor()
    (directory / "data").mkdir(parents=True, exist_ok=True)
    rows = {
        "crimes-by-environment": ENVIRONMENT_ROWS,
        "suspects-by-age-band-and-sex": SUSPECT_ROWS,
        **(rows or {}),
    }
    for resource in descriptor["resources"]:
        header = [field["name"] for field in resource["schema"]["fields"]]
        path = directory / resource["path"]
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows[resource["name"]])
        # As `publisher release` states them: the site copies only files it can verify.
        resource.setdefault("bytes", path.stat().st_size)
        resource.setdefault("hash", f"sha256:{sha256(path)}")
    (directory / "datapackage.json").write_text(json.dumps(descriptor, indent=2), encoding="utf-8")
    return directory


CHANGELOG = """# Release history

## 1.0.0 (2026-11-25)

- Final figures for January to December 2023.
- Revises version 0.9.0 for the same period: figures that changed are marked [r]. The
  previous version is kept under archive/.

## 0.9.0 (2026-06-01)

- Provisional figures for January to December 2023.
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_release_files(
    directory: Path, *, changelog: str = CHANGELOG, archive: bool = True
) -> dict[str, Any]:
    """Give a package what ``publisher release`` adds around its tables: spreadsheets, a
    README and a CHANGELOG listed under ``files``, earlier versions under ``archive/``, a
    zip of this version and SHA256SUMS of everything. Returns the descriptor."""
    descriptor = json.loads((directory / "datapackage.json").read_text(encoding="utf-8"))
    documents = {
        "demo.ods": ("ods", "The whole release as a spreadsheet (OpenDocument)", b"ods bytes"),
        "demo.xlsx": ("xlsx", "The whole release as a spreadsheet (Excel)", b"xlsx bytes!"),
        "README.md": ("md", "Data dictionary", b"# Readme\n\nEvery file explained.\n"),
        "CHANGELOG.md": ("md", "Release history", changelog.encode()),
    }
    descriptor["files"] = []
    for name, (kind, title, content) in documents.items():
        (directory / name).write_bytes(content)
        descriptor["files"].append(
            {
                "name": name.lower().replace(".", "-"),
                "path": name,
                "format": kind,
                "mediatype": "application/octet-stream",
                "title": title,
                "description": f"{title}.",
                "bytes": len(content),
                "hash": f"sha256:{hashlib.sha256(content).hexdigest()}",
            }
        )
    descriptor["release"].update(status="final", next_update="June 2027", revises="0.9.0")
    descriptor["markers"]["[r]"] = "Revised: the figure differs from the previous version."
    if archive:
        old = directory / "archive" / "0.9.0"
        old.mkdir(parents=True)
        (old / "datapackage.json").write_text('{"version": "0.9.0"}\n', encoding="utf-8")
        (old / "README.md").write_text("# Old readme\n", encoding="utf-8")
        with zipfile.ZipFile(old / "demo-0.9.0.zip", "w") as archived:
            archived.writestr("datapackage.json", '{"version": "0.9.0"}\n')
        descriptor["archive"] = [{"version": "0.9.0", "path": "archive/0.9.0/datapackage.json"}]
    (directory / "datapackage.json").write_text(json.dumps(descriptor, indent=2), "utf-8")
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    with zipfile.ZipFile(directory / "demo-1.0.0.zip", "w") as bundle:
        for path in files:
            if "archive" not in path.relative_to(directory).parts:
                bundle.write(path, path.relative_to(directory).as_posix())
    lines = [
        f"{sha256(path)}  {path.relative_to(directory).as_posix()}"
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    ]
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return descriptor


@dataclass
class Chart:
    """One inline SVG chart as a browser would see it."""

    attributes: dict[str, str]
    title: str = ""
    desc: str = ""
    texts: list[str] = field(default_factory=list)
    bars: int = 0
    tags: set[str] = field(default_factory=set)


class _Charts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: list[Chart] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "svg":
            self.charts.append(Chart(attributes))
        if not self.charts or not (tag == "svg" or self.open):
            return
        self.charts[-1].tags.add(tag)
        # A bar is a rect of the bar height; legends and backgrounds have other heights.
        if tag == "rect" and attributes.get("height") == "14":
            self.charts[-1].bars += 1
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if not self.open:
            return
        chart = self.charts[-1]
        if self.open[-1] == "title":
            chart.title += data
        elif self.open[-1] == "desc":
            chart.desc += data
        elif self.open[-1] == "text":
            chart.texts.append(data)


def charts(page: str, form: str = "wide") -> list[Chart]:
    """The charts of a page in one of their forms: ``wide`` or ``narrow`` (for phones)."""
    parser = _Charts()
    parser.feed(page)
    return [c for c in parser.charts if f"publisher-chart--{form}" in c.attributes.get("class", "")]


def evil_descriptor() -> dict[str, Any]:
    """Every kind of metadata text carries HTML and Markdown syntax."""
    descriptor = sample_descriptor()
    descriptor["title"] = EVIL
    descriptor["description"] = EVIL
    descriptor["release"]["period"] = EVIL
    descriptor["shares"][0]["title"] = EVIL
    descriptor["shares"][0]["statement"] = EVIL
    table = descriptor["resources"][0]
    table["title"] = EVIL
    table["description"] = EVIL
    table["schema"]["fields"][1]["title"] = EVIL
    table["table"]["dimensions"][0]["title"] = EVIL
    table["table"]["dimensions"][0]["definitions"] = {"Familial": EVIL}
    descriptor["markers"]["[low]"] = EVIL
    return descriptor


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return write_package(tmp_path / "package")


@pytest.fixture
def pages(package: Path, tmp_path: Path) -> Path:
    generate_pages(package, tmp_path / "pages")
    return tmp_path / "pages"


def copy_project(destination: Path) -> Path:
    """A copy of the repository's MkDocs project (config and hand-written docs)."""
    destination.mkdir(parents=True)
    shutil.copyfile(REPO / "mkdocs.yml", destination / "mkdocs.yml")
    shutil.copytree(
        REPO / "docs", destination / "docs", ignore=shutil.ignore_patterns(GENERATED_DIR)
    )
    return destination


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# ---------------------------------------------------------------------------------------
# Generated pages
# ---------------------------------------------------------------------------------------


def test_pages_layout(package: Path, tmp_path: Path) -> None:
    written = generate_pages(package, tmp_path / "pages")
    relative = {str(path.relative_to(tmp_path / "pages")) for path in written}
    assert relative == {
        "README.md",
        "publisher.css",
        "publisher.js",
        "index.md",
        "methodology.md",
        "data-dictionary.md",
        "downloads.md",
        "cite.md",
        "history.md",
        "glossary.md",
        "tables/index.md",
        "tables/crimes-by-environment.md",
        "tables/suspects-by-age-band-and-sex.md",
        "datapackage.json",
        "data/crimes-by-environment.csv",
        "data/suspects-by-age-band-and-sex.csv",
    }
    assert all(path.is_file() for path in written)
    # Downloads are byte-for-byte copies of the package's files.
    for name in ("datapackage.json", "data/crimes-by-environment.csv"):
        assert (tmp_path / "pages" / name).read_bytes() == (package / name).read_bytes()


def test_every_page_is_marked_generated(pages: Path) -> None:
    for page in pages.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "publisher site" in text.splitlines()[1 if page.name != "README.md" else 0]


def test_findings_sentence_has_formatted_interval(pages: Path) -> None:
    home = (pages / "index.md").read_text(encoding="utf-8")
    assert (
        "An estimated 26% (95% interval 24% to 28%) of group-based crimes were in the "
        "familial environment." in home
    )
    # The table totals are findings too, with thousands separators.
    assert "An estimated 4,195 crimes in total (95% interval 4,145 to 4,245)." in home
    assert "25 November 2026" in home


def test_findings_are_inside_the_section_the_home_page_includes(pages: Path) -> None:
    home = (pages / "index.md").read_text(encoding="utf-8")
    section = home.split("[start:summary]")[1].split("[end:summary]")[0]
    assert "26% (95% interval 24% to 28%)" in section
    # Included from docs/index.md, so relative links would point to the wrong folder.
    assert not re.search(r"\]\((?!https://)", section)


class _HtmlTable(HTMLParser):
    """The caption and cells (tag, scope, text) of the raw HTML tables in a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.captions: list[str] = []
        self.rows: list[list[tuple[str, str, str]]] = []
        self.in_caption = False
        self.in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "caption":
            self.in_caption = True
            self.captions.append("")
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("th", "td"):
            self.rows[-1].append((tag, dict(attrs).get("scope") or "", ""))
            self.in_cell = True

    def handle_endtag(self, tag: str) -> None:
        self.in_caption = self.in_caption and tag != "caption"
        self.in_cell = self.in_cell and tag not in ("th", "td")

    def handle_data(self, data: str) -> None:
        if self.in_caption:
            self.captions[-1] += data
        elif self.in_cell:
            tag, scope, text = self.rows[-1][-1]
            self.rows[-1][-1] = (tag, scope, text + data)


def html_table(page: str) -> _HtmlTable:
    start, end = page.index("<table>"), page.index("</table>") + len("</table>")
    parser = _HtmlTable()
    parser.feed(page[start:end])
    return parser


@pytest.mark.parametrize(
    ("name", "rows", "width"),
    [
        ("crimes-by-environment", ENVIRONMENT_ROWS, 1),
        ("suspects-by-age-band-and-sex", SUSPECT_ROWS, 2),
    ],
)
def test_table_page_has_every_row_with_header_cells(
    pages: Path, name: str, rows: list[list[str]], width: int
) -> None:
    page = (pages / "tables" / f"{name}.md").read_text(encoding="utf-8")
    table = html_table(page)
    header, body = table.rows[0], table.rows[1:]
    # Column headers, then row headers (the categories) and data cells: what a screen
    # reader announces with each cell.
    assert all(tag == "th" and scope == "col" for tag, scope, _ in header)
    assert len(header) == width + 3
    assert len(body) == len(rows)  # one row per CSV row, in order
    for cells, row in zip(body, rows, strict=True):
        keys, (value, marker, lower, upper) = row[:width], row[width:]
        assert [(tag, scope) for tag, scope, _ in cells] == [("th", "row")] * width + [
            ("td", "")
        ] * 3
        shown = f"{int(value):,}" if value else marker
        assert [text for _, _, text in cells] == [
            *keys,
            shown,
            f"{int(lower):,}",
            f"{int(upper):,}",
        ]
    assert table.captions == [
        next(t for t in ("Crimes by environment", "Suspects by age and sex") if t in page)
        + ", England and Wales, January to December 2023. Number of "
        + ("crimes" if width == 1 else "suspects")
        + ", rounded to the nearest 5."
    ]
    assert f"](../data/{name}.csv)" in page


def test_markers_are_shown_and_explained(pages: Path) -> None:
    page = (pages / "tables" / "crimes-by-environment.md").read_text(encoding="utf-8")
    ritualistic = next(row for row in html_table(page).rows if row[0][2] == "Ritualistic")
    assert [text for _, _, text in ritualistic] == ["Ritualistic", "[low]", "0", "20"]
    assert "**\\[low\\]**: Fewer than 10 (the threshold), not published. Not a true zero." in page
    assert "A 0 is never published" in page


def test_a_marker_beside_a_value_is_shown_beside_it(package: Path, tmp_path: Path) -> None:
    rows = [row[:] for row in ENVIRONMENT_ROWS]
    rows[0][2] = "[r]"
    write_package(package, rows={"crimes-by-environment": rows})
    generate_pages(package, tmp_path / "pages")
    page = (tmp_path / "pages" / "tables" / "crimes-by-environment.md").read_text("utf-8")
    familial = html_table(page).rows[1]
    assert familial[1][2] == "1,090 [r]"
    chart = charts(page)[0]
    assert "1,090 [r]" in chart.texts


def test_methodology_states_the_losses_from_the_metadata(pages: Path) -> None:
    page = (pages / "methodology.md").read_text(encoding="utf-8")
    assert "zero-concentrated differential privacy (zCDP)" in page
    assert "The person who loses most loses \N{GREEK SMALL LETTER RHO} = 1" in page
    assert "ε = 9.1 and δ = 10⁻⁷" in page
    rho, dash = "\N{GREEK SMALL LETTER RHO}", "\N{EN DASH}"
    victims = "Crimes: at most 5 records per child victim"
    assert f"| child victim | {rho} = 1 | 9.1 | {victims} |" in page
    assert f"| suspect | {rho} = 0.5 | 6.2 | `suspects`: at most 3 records per person |" in page
    # Table, counts, its sensitivity (here implied by its scale and loss: the package does
    # not state it), then its loss for each unit.
    implied = f"{12.2 * math.sqrt(2 * 0.1667):g}"
    assert (
        f"| [Crimes by environment](tables/crimes-by-environment.md) | crimes | {implied} "
        f"| 0.1667 | {dash} |" in page
    )
    assert "A published 0 never appears" in page


@pytest.mark.parametrize(
    ("estimate", "lower", "upper", "sentence"),
    [
        (0.26, 0.245, 0.275, "26% (95% interval 24% to 28%)"),
        # The interval is widened outwards to the precision shown, never narrowed.
        (0.29, 0.271, 0.301, "29% (95% interval 27% to 31%)"),
        # Decimal arithmetic: 0.29 * 100 is 28.999... in floating point.
        (0.29, 0.28, 0.30, "29% (95% interval 28% to 30%)"),
        # A narrow interval gets a decimal place, so it does not collapse to one number.
        (0.012, 0.011, 0.0135, "1.2% (95% interval 1.1% to 1.4%)"),
    ],
)
def test_share_precision_follows_the_interval(
    package: Path, tmp_path: Path, estimate: float, lower: float, upper: float, sentence: str
) -> None:
    descriptor = sample_descriptor()
    descriptor["shares"][0].update(estimate=estimate, lower_95=lower, upper_95=upper)
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "pages")
    assert f"An estimated {sentence} of group-based" in (tmp_path / "pages" / "index.md").read_text(
        encoding="utf-8"
    )


def test_pure_dp_methodology(package: Path, tmp_path: Path) -> None:
    descriptor = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    descriptor["privacy"]["model"] = "pure"
    descriptor["privacy"]["loss"] = {"epsilon": 2.0}
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "pages")
    page = (tmp_path / "pages" / "methodology.md").read_text(encoding="utf-8")
    assert "The person who loses most loses ε = 2 in pure differential privacy (δ = 0)" in page
    assert "zCDP" not in page.split("## Who is protected")[0]


def test_data_dictionary_defines_every_column_and_category(pages: Path) -> None:
    page = (pages / "data-dictionary.md").read_text(encoding="utf-8")
    for column in ("environment", "age_band", "sex", "value", "marker", "lower_95", "upper_95"):
        assert f"| `{column}` |" in page
    for value in [*ENVIRONMENTS, "10 to 17", "18 or over", "Male", "Female"]:
        assert f"| {value} |" in page
    assert "| Familial | Offending within the family. |" in page


def test_synthetic_notice_on_every_generated_page(package: Path, tmp_path: Path) -> None:
    generate_pages(package, tmp_path / "synthetic")
    descriptor = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    descriptor["release"]["synthetic"] = False
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "real")
    for page in (tmp_path / "synthetic").rglob("*.md"):
        if page.name != "README.md":
            assert '!!! warning "Synthetic data"' in page.read_text(encoding="utf-8"), page
    for page in (tmp_path / "real").rglob("*.md"):
        assert "Synthetic data" not in page.read_text(encoding="utf-8"), page


def test_generation_is_deterministic(package: Path, tmp_path: Path) -> None:
    generate_pages(package, tmp_path / "first")
    generate_pages(package, tmp_path / "second")
    generate_pages(package, tmp_path / "second")  # regenerating in place changes nothing
    assert tree_digest(tmp_path / "first") == tree_digest(tmp_path / "second")


def test_regeneration_replaces_stale_pages(package: Path, tmp_path: Path) -> None:
    generate_pages(package, tmp_path / "pages")
    stale = tmp_path / "pages" / "tables" / "old-table.md"
    stale.write_text("# Old\n", encoding="utf-8")
    generate_pages(package, tmp_path / "pages")
    assert not stale.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


SVG_TAGS = {"svg", "title", "desc", "defs", "pattern", "rect", "path", "text"}


def test_metadata_is_escaped_in_markdown(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package", evil_descriptor())
    add_release_files(package, changelog=f"# History\n\n## {EVIL}\n\n- {EVIL}\n\n{EVIL}\n")
    generate_pages(package, tmp_path / "pages")
    for page in (tmp_path / "pages").rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        # The front matter title and description are plain text, markup characters removed.
        for line in text.split("\n")[2:4]:
            assert "<" not in line and ">" not in line, page
        text = text.split("\n---\n", 1)[-1]
        # The only script is the release's JSON-LD, in which nothing can end the element.
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", text, re.S)
        assert len(scripts) == (1 if page == tmp_path / "pages" / "index.md" else 0), page
        assert not [script for script in scripts if "<" in script or ">" in script]
        text = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)
        assert "<script" not in text, page
        # The only attribute lists are the download links the generator itself writes.
        assert not re.search(r"(?<![\\)])\{:", text), page
        assert "[link](x.md)" not in text, page
    table = (tmp_path / "pages" / "tables" / "crimes-by-environment.md").read_text(encoding="utf-8")
    header = html_table(table).rows[0]
    # The dimension title is one header cell, shown as the text it is.
    assert len(header) == 4
    assert header[0][2] == EVIL


@pytest.mark.parametrize("page", ["index.md", "tables/crimes-by-environment.md"])
def test_metadata_is_escaped_in_charts_and_their_text_alternatives(
    tmp_path: Path, page: str
) -> None:
    package = write_package(tmp_path / "package", evil_descriptor())
    generate_pages(package, tmp_path / "pages")
    found = charts((tmp_path / "pages" / page).read_text(encoding="utf-8"))
    assert found
    for chart in found:
        # Nothing but drawing: no script, no foreignObject, no link can come from metadata.
        assert chart.tags <= SVG_TAGS, chart.tags
        assert "onclick" not in " ".join(chart.attributes)
    # The metadata text is there, as text, in the text alternative (titles may lower-case
    # a dimension's title, as sentences do).
    alternatives = " ".join(f"{chart.title} {chart.desc}" for chart in found)
    assert EVIL.lower() in alternatives.lower()


# Characters that mean something to Markdown, HTML or the extensions in mkdocs.yml.
SYNTAX = [*"\\`*_{}[]()#+-.!|&<>~^=:;?\"' \t\n", "--8<--", "!!! ", "1. ", "&amp;", "<!--"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SYNTAX) | st.text(max_size=3), min_size=1, max_size=12))
def test_escaped_text_renders_as_itself(parts: list[str]) -> None:
    """Whatever the metadata says, Python-Markdown shows exactly that text, as text."""
    text = "".join(parts)
    # Control characters are dropped and whitespace runs become one space.
    expected = " ".join(re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text).split())
    if not expected:
        return
    extensions = [
        "admonition",
        "tables",
        "attr_list",
        "md_in_html",
        "toc",
        "pymdownx.blocks.caption",
    ]
    for source, tags in [
        (_md(text), {"p"}),
        (f"- {_md(text)}", {"ul", "li"}),
        (f"## {_md(text)}", {"h2"}),
        (
            f"| {_md(text)} | b |\n| --- | --- |\n| {_md(text)} | b |",
            {"table", "thead", "tbody", "tr", "th", "td"},
        ),
    ]:
        html = markdown.markdown(source, extensions=extensions)
        parser = _TextAndTags()
        parser.feed(html)
        assert parser.tags <= tags, (text, html)
        if "table" in tags:
            assert parser.cells[0] == expected and parser.cells[2] == expected, (text, html)
        else:
            assert " ".join(parser.text.split()) == expected, (text, html)


class _TextAndTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.text = ""
        self.cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag in ("td", "th"):
            self.cells.append("")

    def handle_data(self, data: str) -> None:
        self.text += data
        if self.cells:
            self.cells[-1] += data.strip()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SYNTAX) | st.text(max_size=3), min_size=1, max_size=12))
def test_escaped_text_in_raw_html_renders_as_itself(parts: list[str]) -> None:
    """Text in the raw HTML tables and charts shows as exactly that text, as text."""
    text = "".join(parts)
    expected = " ".join(re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text).split())
    if not expected:
        return
    escaped = _html(text)
    source = (
        f'<table>\n<caption>{escaped}</caption>\n<tr><th scope="row">{escaped}</th></tr>\n</table>'
    )
    rendered = markdown.markdown(source, extensions=["md_in_html", "attr_list", "tables"])
    parser = _TextAndTags()
    parser.feed(rendered)
    assert parser.tags <= {"table", "caption", "tr", "th"}, (text, rendered)
    assert parser.cells == [expected], (text, rendered)
    assert " ".join(parser.text.split()) == f"{expected} {expected}", (text, rendered)


def test_bibtex_escapes_its_special_characters() -> None:
    assert _bibtex("50% of {x} & y_z #1 ~ ^ $ \\") == (
        r"50\% of \{x\} \& y\_z \#1 \textasciitilde{} \textasciicircum{} \$ \textbackslash{}"
    )


# ---------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------


def test_one_way_table_has_one_chart_with_a_text_alternative(pages: Path) -> None:
    page = (pages / "tables" / "crimes-by-environment.md").read_text(encoding="utf-8")
    (chart,) = charts(page)
    assert chart.attributes["role"] == "img"
    title_id, desc_id = chart.attributes["aria-labelledby"], chart.attributes["aria-describedby"]
    assert f'<title id="{title_id}">' in page and f'<desc id="{desc_id}">' in page
    assert chart.title == "Bar chart of the number of crimes by environment, with 95% intervals"
    # Every figure in words, with its interval; the marker instead of a number.
    assert "Familial: 1,090 (95% interval 1,070 to 1,110)" in chart.desc
    assert "Ritualistic: [low], no number published" in chart.desc
    assert "Total: 4,195 (95% interval 4,145 to 4,245)." in chart.desc
    # Six categories, one without a number: five bars, and "[low]" written where it stands.
    assert chart.bars == 5
    assert "[low]" in chart.texts
    for label in [*ENVIRONMENTS, "1,090", "715", "Estimate", "95% interval"]:
        assert label in chart.texts
    # The unknown category is hatched and the legend says so in words.
    assert "Not recorded or not known" in chart.texts
    # The Unknown bar and its legend key, in each form of the chart.
    assert page.count("-hatch)") == 4
    (narrow,) = charts(page, "narrow")
    assert narrow.title == chart.title and narrow.desc == chart.desc and narrow.bars == 5
    # The total is in the caption, not a bar that would dwarf the others.
    assert "Total: 4,195 (95% interval 4,145 to 4,245).</figcaption>" in page


def test_two_way_table_has_both_breakdowns_and_small_multiples(pages: Path) -> None:
    page = (pages / "tables" / "suspects-by-age-band-and-sex.md").read_text(encoding="utf-8")
    by_age, by_sex, within = charts(page)
    assert by_age.title.endswith("by age band, with 95% intervals")
    assert by_sex.title.endswith("by sex, with 95% intervals")
    assert within.title.endswith("by sex, for each age band, with 95% intervals")
    assert by_age.bars == 2 and by_sex.bars == 2
    # Within each age band: Male and Female, one of them [low] (no bar).
    assert within.bars == 3
    assert "10 to 17. Total: 1,245 (95% interval 1,225 to 1,265)." in within.texts
    assert "[low]" in within.texts
    assert page.count("<figure") == 3
    assert "Figure 3: Number of suspects by sex within each age band" in page
    # One scale for all groups, so their bars compare: the axis reaches the largest bound.
    assert "1,400" in within.texts or "1,500" in within.texts


def test_home_page_has_the_shares_chart_in_the_included_summary(pages: Path) -> None:
    home = (pages / "index.md").read_text(encoding="utf-8")
    section = home.split("[start:summary]")[1].split("[end:summary]")[0]
    (chart,) = charts(section)
    assert chart.title == "Bar chart of the headline shares in percent, with 95% intervals"
    assert chart.desc == "Crimes in the familial environment: 26% (95% interval 24% to 28%)."
    assert "26%" in chart.texts and chart.bars == 1
    assert "0%" in chart.texts


def test_a_share_that_was_not_estimated_has_no_bar(package: Path, tmp_path: Path) -> None:
    descriptor = sample_descriptor()
    descriptor["shares"][0].update(estimate=None, lower_95=None, upper_95=None)
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "pages")
    (chart,) = charts((tmp_path / "pages" / "index.md").read_text(encoding="utf-8"))
    assert chart.bars == 0 and "not estimated" in chart.texts


def test_charts_are_byte_stable_and_single_html_blocks(pages: Path) -> None:
    page = (pages / "tables" / "suspects-by-age-band-and-sex.md").read_text(encoding="utf-8")
    for block in re.findall(r"<figure.*?</figure>", page, re.S):
        # A blank line would end Markdown's raw HTML block and expose the rest to Markdown.
        assert "\n\n" not in block
        assert not re.search(r"\d\.\d{2,}", block)  # coordinates rounded to 0.1


# ---------------------------------------------------------------------------------------
# Downloads, citation and release history
# ---------------------------------------------------------------------------------------


def test_downloads_page_lists_every_file_with_size_and_checksum(pages: Path, package: Path) -> None:
    page = (pages / "downloads.md").read_text(encoding="utf-8")
    for name in ("data/crimes-by-environment.csv", "data/suspects-by-age-band-and-sex.csv"):
        file = package / name
        assert f"[{Path(name).name}]({name})" in page
        assert f"`{sha256(file)}`" in page
        assert f"{file.stat().st_size} bytes" in page
    assert f"`{sha256(package / 'datapackage.json')}`" in page
    # Without SHA256SUMS there is nothing to check against, so no such instruction.
    assert "SHA256SUMS" not in page
    assert "## The whole release" not in page


def test_a_package_with_release_files_offers_them_all(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package)
    written = generate_pages(package, tmp_path / "pages")
    relative = {path.relative_to(tmp_path / "pages").as_posix() for path in written}
    # Markdown files are copied as text (MkDocs would make pages of them), saved by name.
    copies = {
        "demo.ods": "demo.ods",
        "demo.xlsx": "demo.xlsx",
        "README.md.txt": "README.md",
        "CHANGELOG.md.txt": "CHANGELOG.md",
        "demo-1.0.0.zip": "demo-1.0.0.zip",
        "SHA256SUMS": "SHA256SUMS",
        "archive/0.9.0/demo-0.9.0.zip": "archive/0.9.0/demo-0.9.0.zip",
        "archive/0.9.0/datapackage.json": "archive/0.9.0/datapackage.json",
    }
    for copy, source in copies.items():
        assert copy in relative
        assert (tmp_path / "pages" / copy).read_bytes() == (package / source).read_bytes()
    assert "archive/0.9.0/README.md" not in relative
    assert "archive/0.9.0/README.md.txt" not in relative

    page = (tmp_path / "pages" / "downloads.md").read_text(encoding="utf-8")
    assert "## The whole release" in page
    assert page.index("[demo-1.0.0.zip](demo-1.0.0.zip)") < page.index("[demo.ods](demo.ods)")
    assert '[README.md](README.md.txt){: download="README.md" }' in page
    for name in ("demo.ods", "demo.xlsx", "README.md", "CHANGELOG.md", "demo-1.0.0.zip"):
        assert f"`{sha256(package / name)}`" in page
    assert "`sha256sum --check --ignore-missing SHA256SUMS`" in page
    assert "[release history](history.md)" in page

    table = (tmp_path / "pages" / "tables" / "crimes-by-environment.md").read_text("utf-8")
    assert "[demo.ods](../demo.ods)" not in table  # the table page names files by title
    assert "(../demo-1.0.0.zip)" in table and "(../demo.xlsx)" in table
    home = (tmp_path / "pages" / "index.md").read_text(encoding="utf-8")
    assert "(demo-1.0.0.zip)" in home
    assert "- **Version:** 1.0.0, final" in home
    assert "## Next release\n\nJune 2027.\n" in home
    assert "This version revises version 0.9.0 of the same release." in home
    assert "Figures that changed are marked \\[r\\]." in home


def test_release_history_from_the_changelog_and_the_archive(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package)
    generate_pages(package, tmp_path / "pages")
    page = (tmp_path / "pages" / "history.md").read_text(encoding="utf-8")
    assert "This is version 1.0.0, published on 25 November 2026. Status: Final." in page
    assert "### 1.0.0 (2026-11-25)" in page and "### 0.9.0 (2026-06-01)" in page
    # A list item continued on the next line stays one item; brackets are escaped.
    assert (
        "- Revises version 0.9.0 for the same period: figures that changed are marked "
        "\\[r\\]. The previous version is kept under archive/." in page
    )
    assert page.count("\n# Release history\n") == 1  # the changelog's own title is dropped
    assert "### Version 0.9.0" in page
    assert "[demo-0.9.0.zip](archive/0.9.0/demo-0.9.0.zip)" in page
    assert "## Revisions policy" in page


def test_release_history_without_a_changelog(pages: Path) -> None:
    page = (pages / "history.md").read_text(encoding="utf-8")
    assert "This is version 1.0.0, published on 25 November 2026." in page
    assert "### 1.0.0 (25 November 2026)" in page
    assert "- Figures for January to December 2023." in page
    assert "Earlier versions" not in page


def test_changelog_markup_is_text(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package, changelog="# H\n\n## 2.0 <b>x</b> &amp; y\n\n* [a](b.md) `c`\n")
    generate_pages(package, tmp_path / "pages")
    page = (tmp_path / "pages" / "history.md").read_text(encoding="utf-8")
    html = markdown.markdown(page.split("## Versions", 1)[1].split("## Earlier")[0])
    assert "<h3>2.0 &lt;b&gt;x&lt;/b&gt; &amp; y</h3>" in html
    assert "<li>[a](b.md) `c`</li>" in html


def test_cite_page_gives_text_and_bibtex(pages: Path) -> None:
    page = (pages / "cite.md").read_text(encoding="utf-8")
    assert (
        "Demonstration publisher (2026). *Group-based abuse recorded, England and Wales, 2023 "
        "(synthetic demo data)* (version 1.0.0) \\[Data set\\]." in page
    )
    bibtex = re.search(r"<pre><code[^>]*>(.*?)</code></pre>", page, re.S)
    assert bibtex is not None
    entry = html.unescape(bibtex.group(1))
    assert entry.startswith("@misc{csae-group-based-demo-1-0-0,\n")
    assert "  author = {{Demonstration publisher}},\n" in entry
    assert "  year = {2026},\n" in entry and "  version = {1.0.0},\n" in entry
    assert "Synthetic demonstration data" in entry
    assert "url = " not in entry  # the package has no homepage


def test_cite_page_gives_the_homepage_and_escapes_bibtex(package: Path, tmp_path: Path) -> None:
    descriptor = evil_descriptor()
    descriptor["homepage"] = "https://example.org/statistics"
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "pages")
    page = (tmp_path / "pages" / "cite.md").read_text(encoding="utf-8")
    entry = re.search(r"<pre><code[^>]*>(.*?)</code></pre>", page, re.S)
    assert entry is not None
    parser = _TextAndTags()
    parser.feed(entry.group(1))
    assert not parser.tags  # the title's markup is text
    assert r'\{: onclick="steal()" \}' in parser.text
    assert "  url = {https://example.org/statistics},\n" in parser.text
    assert "https://example.org/statistics" in page.split("## BibTeX")[0]


def test_methodology_explains_how_to_compare_two_figures(pages: Path) -> None:
    page = (pages / "methodology.md").read_text(encoding="utf-8")
    section = page.split("## How to compare two figures")[1].split("\n## ")[0]
    assert "m = (upper bound \N{MINUS SIGN} lower bound) / 2" in section
    assert (
        "\N{SQUARE ROOT}(m<sub>1</sub>\N{SUPERSCRIPT TWO} + m<sub>2</sub>\N{SUPERSCRIPT TWO})"
        in section
    )
    assert "m<sub>1</sub> + m<sub>2</sub>" in section
    assert "correlated" in section
    for heading in ("## Coverage and sources", "## Comparability", "## References"):
        assert heading in page
    assert "Canonne, C. L., Kamath, G. and Steinke, T. (2020)" in page


def test_findings_give_a_total_shared_by_tables_once(package: Path, tmp_path: Path) -> None:
    descriptor = sample_descriptor()
    twin = json.loads(json.dumps(descriptor["resources"][0]))
    twin.update(name="crimes-by-environment-again", path="data/crimes-by-environment-again.csv")
    twin["title"] = "Crimes by environment, again"
    descriptor["resources"].insert(1, twin)
    write_package(package, descriptor, rows={"crimes-by-environment-again": ENVIRONMENT_ROWS})
    generate_pages(package, tmp_path / "pages")
    home = (tmp_path / "pages" / "index.md").read_text(encoding="utf-8")
    findings = home.split("## Main points")[1].split("<figure")[0]
    assert findings.count("4,195 crimes in total") == 1
    assert "- **Crimes:** An estimated 4,195 crimes in total" in findings
    assert "The same total is in both tables of crimes." in findings


def test_citation_file_of_the_software() -> None:
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert citation["cff-version"] == "1.2.0"
    assert citation["type"] == "software"
    assert citation["version"] == project["version"]
    assert citation["license"] == "MIT"
    assert citation["title"] and citation["message"] and citation["authors"]


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_missing_package_directory(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"no such package directory.*publisher release"):
        generate_pages(tmp_path / "nowhere", tmp_path / "pages")
    assert not (tmp_path / "pages").exists()


def test_missing_descriptor(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackageError, match=r"datapackage\.json: not found"):
        build_site(tmp_path / "empty", out_dir=tmp_path / "site", project_dir=tmp_path)
    assert not (tmp_path / "site").exists()


def test_invalid_json(package: Path, tmp_path: Path) -> None:
    (package / "datapackage.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PackageError, match=r"not valid JSON \(line 1"):
        generate_pages(package, tmp_path / "pages")


def test_incomplete_metadata_lists_every_problem(package: Path, tmp_path: Path) -> None:
    descriptor = sample_descriptor()
    del descriptor["release"]["synthetic"]
    del descriptor["disclosure"]["total_label"]
    descriptor["resources"][1]["table"]["dimensions"][0]["title"] = 3
    write_package(package, descriptor)
    with pytest.raises(PackageError) as raised:
        generate_pages(package, tmp_path / "pages")
    problems = raised.value.problems
    assert any("release.synthetic: expected true or false" in p for p in problems)
    assert any("disclosure.total_label: expected a non-empty text" in p for p in problems)
    assert any("resources[1].table.dimensions[0].title" in p for p in problems)
    assert "publisher validate" in problems[-1]


def test_resource_paths_must_stay_inside_the_package(package: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("private\n", encoding="utf-8")
    descriptor = sample_descriptor()
    descriptor["resources"][0]["path"] = "../secret.csv"
    (package / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    with pytest.raises(PackageError, match=r"resources\[0\]\.path: expected a relative path"):
        generate_pages(package, tmp_path / "pages")


def test_csv_must_match_its_schema(package: Path, tmp_path: Path) -> None:
    (package / "data" / "crimes-by-environment.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(PackageError, match="does not match the schema fields"):
        generate_pages(package, tmp_path / "pages")


def test_a_file_changed_after_the_release_is_refused(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    add_release_files(package)
    (package / "demo.ods").write_bytes(b"tampered")
    with pytest.raises(PackageError) as raised:
        generate_pages(package, tmp_path / "pages")
    problems = raised.value.problems
    assert any("files[0].hash: the SHA-256 checksum" in p for p in problems)
    assert any("files[0].bytes" in p for p in problems)
    assert any("SHA256SUMS: the checksum of demo.ods differs from the file" in p for p in problems)
    assert not (tmp_path / "pages").exists()


def test_checksums_and_files_are_checked_for_shape_and_place(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package")
    descriptor = add_release_files(package)
    descriptor["files"][0]["path"] = "../outside.ods"
    (package / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    with (package / "SHA256SUMS").open("a", encoding="utf-8") as sums:
        sums.write("not a checksum line\n")
    with pytest.raises(PackageError) as raised:
        generate_pages(package, tmp_path / "pages")
    problems = raised.value.problems
    assert any("files[0].path: expected a relative path inside the package" in p for p in problems)
    assert any(
        re.search(r"SHA256SUMS: line \d+: not in sha256sum format; expected 64 lowercase", p)
        for p in problems
    )


def test_refuses_to_replace_a_folder_it_did_not_write(package: Path, tmp_path: Path) -> None:
    hand_written = tmp_path / "docs"
    hand_written.mkdir()
    (hand_written / "index.md").write_text("# Mine\n", encoding="utf-8")
    with pytest.raises(PackageError, match="was not written by `publisher site`"):
        generate_pages(package, hand_written)
    assert (hand_written / "index.md").read_text(encoding="utf-8") == "# Mine\n"


# ---------------------------------------------------------------------------------------
# Strict MkDocs builds
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evil_site(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The repository's project, copied, built into out_dir from a package full of markup."""
    root = tmp_path_factory.mktemp("evil")
    package = write_package(root / "package", evil_descriptor())
    project = copy_project(root / "project")
    before = tree_digest(project)
    site = build_site(package, out_dir=root / "out", project_dir=project)
    return site, before, tree_digest(project)


@pytest.mark.slow
def test_out_dir_build_leaves_the_project_untouched(
    evil_site: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    site, before, after = evil_site
    assert before == after
    assert (site / "index.html").is_file()
    assert (site / GENERATED_DIR / "tables" / "crimes-by-environment.html").is_file()
    assert (site / GENERATED_DIR / "data" / "crimes-by-environment.csv").is_file()


class _LiveMarkup(HTMLParser):
    """Collects what a browser would act on: attributes, link targets, script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attributes: set[str] = set()
        self.links: set[str] = set()
        self.scripts: list[str] = []  # bodies of scripts the browser runs
        self.data: list[str] = []  # bodies of data blocks (JSON-LD), which it does not run
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.update(name for name, _ in attrs)
        self.links.update(value or "" for name, value in attrs if name == "href")
        self.in_script = tag == "script"
        if self.in_script:
            data = dict(attrs).get("type") == "application/ld+json"
            (self.data if data else self.scripts).append("")
            self.current = self.data if data else self.scripts

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.current[-1] += data


@pytest.mark.slow
def test_metadata_markup_is_text_in_the_built_html(
    evil_site: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    site = evil_site[0]
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 8
    for page in pages:
        live = _LiveMarkup()
        live.feed(page.read_text(encoding="utf-8"))
        assert not [script for script in live.scripts if "pwned" in script], page
        # The JSON-LD holds the title as data: valid JSON, nothing that could end it.
        for block in live.data:
            assert "<" not in block and json.loads(block)["name"] == EVIL, page
        assert "onclick" not in live.attributes, page
        assert not {"x.md", "x.html"} & live.links, page
    table = (site / GENERATED_DIR / "tables" / "crimes-by-environment.html").read_text(
        encoding="utf-8"
    )
    assert '&lt;script&gt;alert("pwned")&lt;/script&gt;' in table
    title = re.search(r"<title>(.*?)</title>", table, re.S)
    assert title is not None and "<" not in title.group(1)
    # The charts of the built pages: drawing only, with the markup in their text alternatives
    # as text.
    for page in (
        site / "index.html",
        site / GENERATED_DIR / "tables" / "crimes-by-environment.html",
    ):
        found = charts(page.read_text(encoding="utf-8"))
        assert found, page
        assert all(chart.tags <= SVG_TAGS for chart in found), page
        assert EVIL.lower() in " ".join(c.title + c.desc for c in found).lower(), page


@pytest.mark.slow
def test_built_site_loads_nothing_from_the_network(
    evil_site: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    for page in evil_site[0].rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"""<(script|img|iframe)[^>]+src=["']?(https?:)?//""", html), page
        assert not re.search(r"""<link[^>]+href=["']?(https?:)?//""", html), page


@pytest.mark.slow
def test_every_built_page_says_the_data_are_synthetic(
    evil_site: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    for page in evil_site[0].rglob("*.html"):
        assert "synthetic data" in page.read_text(encoding="utf-8"), page


@pytest.mark.slow
def test_a_package_with_release_files_builds_strictly(package: Path, tmp_path: Path) -> None:
    add_release_files(package)
    project = copy_project(tmp_path / "project")
    site = build_site(package, out_dir=tmp_path / "out", project_dir=project)
    release = site / GENERATED_DIR
    for name in ("README.md.txt", "CHANGELOG.md.txt", "demo.ods", "demo-1.0.0.zip", "SHA256SUMS"):
        assert (release / name).read_bytes() == (package / name.removesuffix(".txt")).read_bytes()
    # The package's README is a download, not a page (nor the marker of the folder).
    assert not (release / "README.html").exists()
    downloads = (release / "downloads.html").read_text(encoding="utf-8")
    assert 'href="README.md.txt"' in downloads and 'download="README.md"' in downloads
    history = (release / "history.html").read_text(encoding="utf-8")
    assert 'href="archive/0.9.0/demo-0.9.0.zip"' in history


@pytest.mark.slow
def test_home_page_shows_the_findings(package: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    site = build_site(package, out_dir=tmp_path / "out", project_dir=project)
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "An estimated 26% (95% interval 24% to 28%)" in home
    assert "Group-based abuse recorded" in home
    assert "[start:summary]" not in home


@pytest.mark.slow
def test_in_place_build_regenerates_docs_and_builds_site_dir(package: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    site = build_site(package, project_dir=project)
    assert site == project / "site"
    assert (site / "index.html").is_file()
    generated = project / "docs" / GENERATED_DIR
    generate_pages(package, tmp_path / "fresh")
    assert tree_digest(generated) == tree_digest(tmp_path / "fresh")
    assert not [path for path in project.iterdir() if path.name.startswith(".")]


def test_in_place_build_refuses_a_banner_that_disagrees(package: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    config = project / "mkdocs.yml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("synthetic_data: true", "synthetic_data: false"),
        encoding="utf-8",
    )
    with pytest.raises(PackageError, match=r"extra\.synthetic_data is false"):
        build_site(package, project_dir=project)
    assert not (project / "site").exists()


def previous_site(folder: Path) -> Path:
    """A folder as an earlier `publisher site` left it: its marker and a page."""
    folder.mkdir()
    (folder / SITE_MARKER).write_text(
        "Built by `publisher site`. The next build replaces this whole folder: keep nothing "
        "else here.\n",
        encoding="utf-8",
    )
    (folder / "index.html").write_text("previous site", encoding="utf-8")
    return folder


@pytest.mark.slow
def test_failed_build_raises_one_line_and_keeps_out_dir(package: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    (project / "docs" / "index.md").write_text("# Home\n\n[broken](missing.md)\n", encoding="utf-8")
    out = previous_site(tmp_path / "out")
    with pytest.raises(PackageError) as raised:
        build_site(package, out_dir=out, project_dir=project)
    assert len(raised.value.problems) == 1
    assert "mkdocs build --strict" in str(raised.value)
    assert "missing.md" in str(raised.value)
    assert sorted(path.name for path in out.iterdir()) == [SITE_MARKER, "index.html"]
    assert (out / "index.html").read_text(encoding="utf-8") == "previous site"
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def _folder_with_a_site_and_more(folder: Path) -> Path:
    """What the old guard let through: an index.html beside someone's own files."""
    folder.mkdir()
    (folder / "index.html").write_text("<p>my web server's home page</p>", encoding="utf-8")
    (folder / "reports").mkdir()
    (folder / "reports" / "budget.xlsx").write_bytes(b"not ours")
    return folder


@pytest.mark.parametrize("kind", ["someone's site", "package", "file", "link to our site"])
def test_out_dir_not_written_by_the_publisher_is_refused_untouched(
    package: Path, tmp_path: Path, kind: str
) -> None:
    if kind == "someone's site":
        out = _folder_with_a_site_and_more(tmp_path / "www")
        expected = f"has no {SITE_MARKER} marker"
    elif kind == "package":
        out = package
        expected = f"has no {SITE_MARKER} marker"
    elif kind == "file":
        out = tmp_path / "notes.txt"
        out.write_text("mine", encoding="utf-8")
        expected = "is not a folder"
    else:
        out = tmp_path / "link"
        out.symlink_to(previous_site(tmp_path / "ours"))
        expected = "is a symbolic link"
    before = tree_digest(tmp_path)
    with pytest.raises(PackageError) as raised:
        build_site(package, out_dir=out, project_dir=tmp_path)
    assert len(raised.value.problems) == 1
    assert expected in str(raised.value) and str(out) in str(raised.value)
    assert tree_digest(tmp_path) == before  # nothing written, nothing removed
    assert out.is_symlink() or out.exists()


def test_a_marker_that_is_a_link_does_not_make_a_folder_ours(package: Path, tmp_path: Path) -> None:
    out = _folder_with_a_site_and_more(tmp_path / "www")
    marker = previous_site(tmp_path / "ours") / SITE_MARKER
    (out / SITE_MARKER).symlink_to(marker)
    with pytest.raises(PackageError, match=r"has no \.publisher-site marker"):
        build_site(package, out_dir=out, project_dir=tmp_path)
    assert (out / "reports" / "budget.xlsx").read_bytes() == b"not ours"


@pytest.mark.slow
def test_a_site_the_publisher_built_is_replaced_with_a_new_marker(
    package: Path, tmp_path: Path
) -> None:
    out = previous_site(tmp_path / "out")
    (out / "stale.html").write_text("old page", encoding="utf-8")
    (tmp_path / "empty-project").mkdir()
    build_site(package, out_dir=out, project_dir=tmp_path / "empty-project")
    assert not (out / "stale.html").exists()
    assert (out / SITE_MARKER).is_file() and (out / "index.html").is_file()
    # So the next build may replace it again.
    build_site(package, out_dir=out, project_dir=tmp_path / "empty-project")


@pytest.mark.slow
def test_standalone_build_without_a_project(package: Path, tmp_path: Path) -> None:
    descriptor = sample_descriptor()
    descriptor["resources"][0]["title"] = EVIL
    write_package(package, descriptor)
    (tmp_path / "empty-project").mkdir()
    site = build_site(package, out_dir=tmp_path / "out", project_dir=tmp_path / "empty-project")
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "An estimated 26% (95% interval 24% to 28%)" in home
    assert '<script>alert("pwned")' not in home
    assert (site / "tables" / "suspects-by-age-band-and-sex.html").is_file()
    assert (site / "data" / "suspects-by-age-band-and-sex.csv").is_file()
    assert not (site / "README.html").exists()


# ---------------------------------------------------------------------------------------
# Every sentence comes from a template (or from the package)
# ---------------------------------------------------------------------------------------

TEMPLATES = REPO / "publisher" / "site" / "templates"
_WORD = re.compile("[A-Za-z][A-Za-z'\u2019]*")


def _words(text: str) -> list[str]:
    """The words of Markdown/HTML text as a reader sees them, lower-cased."""
    text = re.sub(r"\]\([^)\s]*\)|https?://\S+|[0-9a-f]{64}", " ", re.sub(r"<[^>]*>", " ", text))
    text = html.unescape(text)
    return [word.lower() for word in _WORD.findall(re.sub(r"\\(.)", r"\1", text))]


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def template_trigrams() -> set[tuple[str, ...]]:
    """Runs of three words a line of a template can print (not its comments).

    Values (``{{ ... }}``) are taken out. Block tags (``{% ... %}``) split a line into
    segments of which any may be left out (``{% if %}``): a word may be followed by the
    next word of its segment or, at the end of its segment, by the first word of any later
    segment.
    """
    found: set[tuple[str, ...]] = set()
    for template in TEMPLATES.glob("*.j2"):
        source = re.sub(r"\{#.*?#\}", "\n", template.read_text("utf-8"), flags=re.S)
        # Text a template passes to a macro or a filter is the template's own words.
        for tag in re.findall(r"\{[{%].*?[%}]\}", source, flags=re.S):
            for literal in re.findall(r'"([^"]*)"', tag):
                found |= _trigrams(_words(literal))
        source = re.sub(r"\{\{.*?\}\}", " ", source, flags=re.S)
        for line in source.splitlines():
            segments = [_words(part) for part in re.split(r"\{%.*?%\}", line)]
            words = [(index, word) for index, part in enumerate(segments) for word in part]
            starts = [i for i, (index, _) in enumerate(words) if i == 0 or words[i - 1][0] != index]
            follow = [
                [i + 1]
                if i + 1 < len(words) and words[i + 1][0] == words[i][0]
                else [start for start in starts if start > i]
                for i in range(len(words))
            ]
            for a in range(len(words)):
                for b in follow[a]:
                    for c in follow[b]:
                        found.add((words[a][1], words[b][1], words[c][1]))
    return found


def package_trigrams(package_dir: Path) -> set[tuple[str, ...]]:
    """Runs of three words in the package's own texts (its metadata and changelog)."""
    texts: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                texts.append(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads((package_dir / "datapackage.json").read_text("utf-8")))
    for name in ("CHANGELOG.md", "SHA256SUMS"):  # the history; the names of the files
        if (package_dir / name).is_file():
            texts.append((package_dir / name).read_text("utf-8"))
    found: set[tuple[str, ...]] = set()
    for text in texts:
        # As the filters may print it: escaped (read back as itself), or as a plain page
        # title (markup characters dropped, '&' as 'and').
        plain = text.replace("<", "").replace(">", "").replace("&", "and")
        for variant in (text, plain):
            found |= _trigrams([word.lower() for word in _WORD.findall(variant)])
    return found


def sentences_not_from_templates(
    pages: dict[str, str], templates: set[tuple[str, ...]], package: set[tuple[str, ...]]
) -> list[str]:
    """Words on traced pages that neither a template nor the package wrote.

    Text outside every traced value was written by a template: each run of three words
    must be in one. A traced value that holds no other traced value was printed from the
    package by a filter: each run of three words must be in the package's texts. (A value
    that holds others was composed by a template, as the chart words are: its own text is
    template text.)
    """
    from publisher.site.render import BREAK, CLOSE, OPEN

    problems = []
    for page, traced in pages.items():
        # Tags (with the values in their attributes) and the JSON-LD data are not text; a
        # macro's output and the end of a sentence break a run of words.
        text = re.sub(r'<script type="application/ld\+json">.*?</script>', " ", traced, flags=re.S)
        text = re.sub(r"<[^<>]*>|\]\([^()\s]*\)", " ", text)
        text = re.sub(r"(?<=[.;:!?])\s", "\n", text)
        literal: list[list[str]] = [[]]  # pieces of template text, split where data stood
        data: list[str] = []
        stack: list[tuple[int, bool]] = []  # (where a value starts, whether it holds others)
        position = 0
        for match in re.finditer(f"[{OPEN}{CLOSE}{BREAK}]", text):
            piece = text[position : match.start()]
            position = match.end()
            if match.group() == BREAK:  # a macro's words: template text, not the package's
                if stack:
                    stack[-1] = (stack[-1][0], True)
                if not stack or stack[-1][1]:
                    literal[-1].append(piece + "\n")
            elif match.group() == OPEN:
                literal[-1].append(piece)
                if stack:
                    stack[-1] = (stack[-1][0], True)
                stack.append((match.end(), False))
            else:
                start, composed = stack.pop()
                if composed:
                    literal[-1].append(piece)
                else:
                    data.append(text[start : match.start()])
                    literal.append([])
        literal[-1].append(text[position:])
        lines = [line for pieces in literal for line in " ".join(pieces).splitlines()]
        for line in lines:
            for trigram in _trigrams(_words(line)) - templates:
                problems.append(f"{page}: '{' '.join(trigram)}' is in no template")
        for value in data:
            for trigram in _trigrams(_words(value)) - package - templates:
                problems.append(f"{page}: '{' '.join(trigram)}' (a value) is in no template")
    return problems


@pytest.mark.parametrize("which", ["demo", "sample", "evil"])
def test_every_sentence_on_every_page_is_in_a_template(tmp_path: Path, which: str) -> None:
    from publisher import model
    from publisher.site.render import render_pages

    if which == "demo":
        package_dir = REPO / "datapackage"
    else:
        descriptor = sample_descriptor() if which == "sample" else evil_descriptor()
        package_dir = write_package(tmp_path / "package", descriptor)
        add_release_files(package_dir)
    pages = render_pages(model.read(package_dir), trace=True)
    problems = sentences_not_from_templates(
        pages, template_trigrams(), package_trigrams(package_dir)
    )
    assert not problems, problems[:20]


def test_the_sentence_check_finds_prose_written_in_python(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher import model
    from publisher.site import views
    from publisher.site.render import render_pages

    made_up = "was written in Python by someone"
    original = views._share_view

    def share_view(package: Any, share: Any) -> Any:
        return dataclasses.replace(original(package, share), statement=made_up)

    monkeypatch.setattr(views, "_share_view", share_view)
    pages = render_pages(model.read(package), trace=True)
    problems = sentences_not_from_templates(pages, template_trigrams(), package_trigrams(package))
    assert any("written in python" in problem for problem in problems)


# ---------------------------------------------------------------------------------------
# What a reader needs, on the demo release (issue 14)
# ---------------------------------------------------------------------------------------

DEMO_PAGES = REPO / "docs" / "release"


def demo_page(name: str) -> str:
    return (DEMO_PAGES / name).read_text(encoding="utf-8")


def demo_descriptor() -> dict[str, Any]:
    return json.loads((REPO / "datapackage" / "datapackage.json").read_text("utf-8"))


def section(page: str, heading: str) -> str:
    """The text of a ``## heading`` section of a page (up to the next ``## ``)."""
    assert f"\n## {heading}\n" in page, heading
    return page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_release_page_has_the_sections_of_a_bulletin() -> None:
    page = demo_page("index.md")
    headings = re.findall(r"^## (.+)$", page, re.M)
    assert headings == [
        "Main points",
        "Things you need to know",
        "The tables",
        "Data downloads",
        "Quality and methodology",
        "Revisions policy",
        "Next release",
        "Statistics status",
        "Related links",
        "Glossary",
        "How to cite",
        "Contact",
    ]
    release = demo_descriptor()["release"]
    know = section(page, "Things you need to know")
    assert "**What the figures cover.**" in know
    assert "**What “Group-based” means.** " + _md(release["glossary"]["Group-based"]) in know
    # Counts are of the records kept for each person, and what the bounds left out.
    descriptor = demo_descriptor()
    for unit in descriptor["privacy"]["units"]:
        for reach in unit["reaches"]:
            assert _md(reach["bound_text"]) in know
    for item in descriptor["truncation"]:
        assert _md(item["statement"]) in know
    assert f"**How to read \\[low\\]**: {_md(descriptor['markers']['[low]'])}" in know
    assert "(methodology.md)" in section(page, "Quality and methodology")
    assert "(history.md)" in section(page, "Revisions policy")
    assert _md(release["next_update"]) in section(page, "Next release")
    for link in release["related"]:
        assert f"[{_md(link['title'])}]({link['url']})" in section(page, "Related links")
    assert "[glossary](glossary.md)" in section(page, "Glossary")
    contact = section(page, "Contact")
    assert f"[{release['contact']['name']}](mailto:{release['contact']['email']})" in contact
    assert f"Responsible statistician: {_md(release['contact']['statistician'])}." in contact
    assert f"Press enquiries: [{_md(release['press']['name'])}](mailto:" in contact
    assert (DEMO_PAGES / "glossary.md").is_file()


def test_the_status_is_said_once_and_consistently() -> None:
    """The release page says what the statistics are, once; nothing says otherwise."""
    status = section(demo_page("index.md"), "Statistics status")
    assert status.strip().startswith("These are not official statistics")
    assert demo_descriptor()["release"]["statistics_status"] == "not-official"
    pages = [*DEMO_PAGES.rglob("*.md"), *(REPO / "docs").glob("*.md")]
    claims = [page for page in pages if "are official statistics" in page.read_text("utf-8")]
    assert claims == []
    saying = [p for p in pages if "not official statistics" in p.read_text("utf-8").lower()]
    assert saying == [DEMO_PAGES / "index.md"]


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("accredited-official", "These are accredited official statistics"),
        ("official", "These are official statistics, produced to the standards"),
        ("official-in-development", "These are official statistics in development"),
        ("management-information", "These are management information"),
        ("not-official", "These are not official statistics: they are computed from synthetic"),
        (None, "The publisher has not declared the status of these statistics."),
    ],
)
def test_each_statistics_status_is_explained(
    package: Path, tmp_path: Path, status: str | None, words: str
) -> None:
    descriptor = sample_descriptor()
    descriptor["release"]["statistics_status"] = status
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "pages")
    home = (tmp_path / "pages" / "index.md").read_text(encoding="utf-8")
    assert section(home, "Statistics status").strip().startswith(words)


def test_both_headline_shares_state_their_denominators() -> None:
    page = demo_page("index.md")
    for share in demo_descriptor()["shares"]:
        assert (
            f"Numerator: {_md(share['numerator_description'])}. "
            f"Denominator: {_md(share['denominator_description'])}." in page
        )
    # The familial share is of all crimes, unknown environment included; the suspects'
    # share leaves out unknown ages.
    assert "including those whose environment is Unknown" in page
    assert "(those whose suspect age band is Unknown are left out)" in page


def test_shares_without_descriptions_say_their_selections(package: Path, tmp_path: Path) -> None:
    descriptor = sample_descriptor()
    known = {**descriptor["shares"][0], "name": "known", "title": "Familial of known"}
    known["denominator"] = {"environment": [key for key in ENVIRONMENTS if key != "Unknown"]}
    descriptor["shares"].append(known)
    write_package(package, descriptor)
    generate_pages(package, tmp_path / "pages")
    home = (tmp_path / "pages" / "index.md").read_text(encoding="utf-8")
    assert (
        "Numerator: crimes whose environment is Familial. Denominator: all crimes, including "
        "those whose environment is Unknown." in home
    )
    assert (
        "Denominator: crimes whose environment is known (those whose environment is Unknown "
        "are left out)." in home
    )


def test_every_category_with_a_definition_shows_it() -> None:
    page = demo_page("data-dictionary.md")
    defined = 0
    for resource in demo_descriptor()["resources"]:
        for dimension in resource.get("table", {}).get("dimensions", []):
            for key, definition in dimension["definitions"].items():
                row = f"| {_md(key)} | {_md(definition)}"
                assert row in page, row
                defined += 1
    assert defined >= 44  # the demo defines every key of every category


def test_the_citation_gives_the_url_version_access_date_and_earlier_versions() -> None:
    release = demo_descriptor()
    for page in (demo_page("index.md"), demo_page("cite.md")):
        assert f"(version {release['version']}) \\[Data set\\]" in page
        assert f"Available at: {release['homepage']} (accessed: the date you used it)." in page
        assert release["release"]["versions_url"] in page
    assert f"url = &#123;{release['homepage']}&#125;" in demo_page("cite.md")


def test_wording_glitches_are_gone() -> None:
    pages = {page.name: page.read_text("utf-8") for page in DEMO_PAGES.rglob("*.md")}
    text = "\n".join(pages.values())
    assert "1 record per person are" not in text
    assert not re.search(r"\*\*\\\[low\\\]\*\*: Low:", text)
    assert "the largest group is" not in text
    assert "all give this total" not in text
    assert "\\`" not in pages["downloads.md"]  # no literal backticks


def test_the_privacy_statement_is_printed_once() -> None:
    statement = _md(demo_descriptor()["privacy"]["statement"])
    text = "\n".join(page.read_text("utf-8") for page in DEMO_PAGES.rglob("*.md"))
    assert text.count(statement) == 1
    assert statement in section(demo_page("index.md"), "Things you need to know")


def _cks20_epsilon(rho: float, delta: float) -> float:
    """Canonne, Kamath and Steinke (2020), section 2.3, as the methodology states it."""
    alpha = 1 + np.arange(1, 400_000) / 1000
    bound = alpha * rho + (
        np.log(1 / delta) + (alpha - 1) * np.log(1 - 1 / alpha) - np.log(alpha)
    ) / (alpha - 1)
    return float(bound.min())


def test_the_stated_conversion_from_rho_gives_the_published_epsilon() -> None:
    """The methodology names the bound OpenDP uses; it reproduces every published epsilon."""
    descriptor = demo_descriptor()
    page = demo_page("methodology.md")
    assert "Canonne, Kamath and Steinke (2020, section 2.3)" in page
    losses = [descriptor["privacy"]["loss"], *descriptor["privacy"]["units"]]
    losses += [resource["privacy"] for resource in descriptor["resources"] if "table" in resource]
    for loss in losses:
        assert _cks20_epsilon(loss["rho"], loss["delta"]) == pytest.approx(loss["epsilon"], 1e-6)


def test_the_sensitivity_and_noise_reproduce_each_measurement_s_loss() -> None:
    """For each measurement and each unit it concerns, rho = sensitivity^2 / (2 scale^2),
    as the methodology says (summed over a measurement's queries); the sensitivity it
    shows is the one the package states. Tables measured alone have a row of their own,
    tables measured together share their input's."""
    descriptor = demo_descriptor()
    privacy_section = descriptor["privacy"]
    titles = {unit["name"]: unit["title"] for unit in privacy_section["units"]}
    page = demo_page("methodology.md")
    rows = [line for line in page.splitlines() if line.startswith("| [")]
    joint = privacy_section.get("measurements", [])
    assert joint, "the demo is zCDP: its inputs' tables are measured together"
    for item in joint:
        title = _md(item["title"])
        (row,) = [line for line in rows if line.startswith(f"| [{title}: ")]
        for unit, loss in item["units"].items():
            rho = math.fsum(
                q["sensitivity"][unit] ** 2 / (2 * q["scale"] ** 2) for q in item["queries"]
            )
            assert rho == pytest.approx(loss["rho"], 1e-9)
            for query in item["queries"]:
                assert f"{_md(titles[unit])}: {query['sensitivity'][unit]:,}" in row
        for name in item["tables"]:
            assert not [line for line in rows if f"(tables/{name}.md)" in line]
            table_page = demo_page(f"tables/{name}.md")
            assert "this table was measured together with" in table_page
            assert "(../methodology.md#how-the-tables-are-measured)" in table_page
    for resource in descriptor["resources"]:
        if "table" not in resource or resource["privacy"].get("measured") != "alone":
            continue
        privacy = resource["privacy"]
        row = next(line for line in rows if f"(tables/{resource['name']}.md)" in line)
        for unit, loss in privacy["units"].items():
            sensitivity = privacy["sensitivity"][unit]
            assert sensitivity**2 / (2 * privacy["scale"] ** 2) == pytest.approx(loss["rho"], 1e-9)
            assert f"{_md(titles[unit])}: {sensitivity:g}" in row


@pytest.mark.parametrize(
    ("estimate", "shown"),
    [(9.6, False), (10.0, True), (12.4, True), (7.6, False)],  # base 5, threshold 10
)
def test_the_threshold_applies_as_the_methodology_says(estimate: float, shown: bool) -> None:
    """'Published only if both its estimate before rounding and its rounded value are at
    least the threshold': 9.6 rounds to 10 but is not shown."""
    from publisher.disclosure import publish_cell

    page = demo_page("methodology.md")
    assert "both its estimate before rounding and its rounded value are at least 10" in page
    cell = publish_cell(estimate, 5.0, base=5, threshold=10)
    assert (cell.value is not None) is shown


def test_the_navigation_lists_every_table_page_of_the_demo() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    release = next(item["Release"] for item in config["nav"] if "Release" in item)
    tables = next(item["Tables"] for item in release if isinstance(item, dict) and "Tables" in item)
    listed = [next(iter(item.values())) for item in tables if isinstance(item, dict)]
    pages = sorted(f"release/tables/{page.name}" for page in (DEMO_PAGES / "tables").glob("*.md"))
    assert sorted([*listed, "release/tables/index.md"]) == pages
    assert tables[0] == "release/tables/index.md"


@pytest.mark.slow
def test_the_site_builds_with_zensical(tmp_path: Path) -> None:
    """Material for MkDocs is in maintenance mode; its successor reads the same mkdocs.yml."""
    pytest.importorskip("zensical", reason="Zensical is a test dependency; install '.[test]'")
    project = copy_project(tmp_path / "project")
    shutil.copytree(DEMO_PAGES, project / "docs" / GENERATED_DIR)
    result = subprocess.run(
        [sys.executable, "-m", "zensical", "build", "--strict"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    site = project / "site"
    for page in DEMO_PAGES.rglob("*.md"):
        if page.name != "README.md":
            built = site / GENERATED_DIR / page.relative_to(DEMO_PAGES).with_suffix(".html")
            assert built.is_file(), built
    home = (site / "index.html").read_text("utf-8")
    assert "Numerator: " in home  # the main points, included from the release page
    assert 'role="dialog" aria-label="Search"' in home  # the theme overrides apply
    assert "publisher-chart--narrow" in home
    assert (site / "cli-reference.html").is_file()
