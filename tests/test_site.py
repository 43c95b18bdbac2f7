"""Tests of the site generator: pages from a package, escaping, strict MkDocs builds.

The packages are built here, in the shape ``publisher release`` writes (datapackage.json
with the custom ``release``, ``privacy``, ``disclosure``, ``markers`` and ``shares`` keys,
plus tidy CSVs), so the tests depend on nothing outside the repository. Tests that run
MkDocs are marked ``slow``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import markdown
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.errors import PackageError
from publisher.site import GENERATED_DIR, _md, build_site, generate_pages

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
                    "input": "crimes",
                    "title": "Crimes",
                    "identifier": "victim_id",
                    "max_records_per_person": 5,
                    "rho": 0.5,
                    "epsilon": 6.2,
                },
                {
                    "input": "suspects",
                    "title": "Suspects",
                    "identifier": "suspect_id",
                    "max_records_per_person": 3,
                    "rho": 0.5,
                    "epsilon": 6.2,
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


def write_package(directory: Path, descriptor: dict[str, Any] | None = None) -> Path:
    """Write a package (descriptor + CSVs) and return its directory."""
    descriptor = descriptor if descriptor is not None else sample_descriptor()
    (directory / "data").mkdir(parents=True, exist_ok=True)
    rows = {"crimes-by-environment": ENVIRONMENT_ROWS, "suspects-by-age-band-and-sex": SUSPECT_ROWS}
    for resource in descriptor["resources"]:
        header = [field["name"] for field in resource["schema"]["fields"]]
        with (directory / resource["path"]).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows[resource["name"]])
    (directory / "datapackage.json").write_text(json.dumps(descriptor, indent=2), encoding="utf-8")
    return directory


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
        "index.md",
        "methodology.md",
        "data-dictionary.md",
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


@pytest.mark.parametrize(
    ("name", "rows", "width"),
    [
        ("crimes-by-environment", ENVIRONMENT_ROWS, 1),
        ("suspects-by-age-band-and-sex", SUSPECT_ROWS, 2),
    ],
)
def test_table_page_has_every_row(
    pages: Path, name: str, rows: list[list[str]], width: int
) -> None:
    page = (pages / "tables" / f"{name}.md").read_text(encoding="utf-8")
    table_lines = [line for line in page.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 2 + len(rows)  # header, alignment, one line per CSV row
    for row in rows:
        keys, (value, marker, lower, upper) = row[:width], row[width:]
        shown = f"{int(value):,}" if value else marker.replace("[", "\\[").replace("]", "\\]")
        expected = "| " + " | ".join([*keys, shown, f"{int(lower):,}", f"{int(upper):,}"]) + " |"
        assert expected in table_lines
    assert f"](../data/{name}.csv)" in page
    assert "/// table-caption" in page


def test_markers_are_shown_and_explained(pages: Path) -> None:
    page = (pages / "tables" / "crimes-by-environment.md").read_text(encoding="utf-8")
    assert "| Ritualistic | \\[low\\] | 0 | 20 |" in page
    assert "**\\[low\\]**: Fewer than 10 (the threshold), not published. Not a true zero." in page
    assert "A 0 is never published" in page


def test_methodology_states_the_losses_from_the_metadata(pages: Path) -> None:
    page = (pages / "methodology.md").read_text(encoding="utf-8")
    assert (
        "zero-concentrated differential privacy (zCDP) with \N{GREEK SMALL LETTER RHO} = 1" in page
    )
    assert "ε = 9.1 and δ = 10⁻⁷" in page
    assert "`victim_id`; at most 5 records per person" in page
    assert (
        "| [Crimes by environment](tables/crimes-by-environment.md) | crimes | 0.1667 | 2.3 |"
        in page
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
    assert "pure ε-differential privacy with ε = 2 (δ = 0)" in page
    assert "zCDP" not in page.split("## The privacy unit")[0]


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


def test_metadata_is_escaped_in_markdown(tmp_path: Path) -> None:
    package = write_package(tmp_path / "package", evil_descriptor())
    generate_pages(package, tmp_path / "pages")
    for page in (tmp_path / "pages").rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        # The front matter title is plain text with the markup characters removed.
        assert "<" not in text.split("\n")[2] and ">" not in text.split("\n")[2]
        text = text.split("\n---\n", 1)[-1]
        assert "<script" not in text, page
        assert not re.search(r"(?<!\\)\{:", text), page
        assert "[link](x.md)" not in text, page
    table = (tmp_path / "pages" / "tables" / "crimes-by-environment.md").read_text(encoding="utf-8")
    header = next(line for line in table.splitlines() if line.startswith("| "))
    # The pipe in the dimension title is escaped: the header still has four columns.
    assert len(re.split(r"(?<!\\)\|", header)) == 6


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


def test_refuses_to_replace_a_folder_it_did_not_write(package: Path, tmp_path: Path) -> None:
    hand_written = tmp_path / "docs"
    hand_written.mkdir()
    (hand_written / "index.md").write_text("# Mine\n", encoding="utf-8")
    with pytest.raises(PackageError, match="not generated by `publisher site`"):
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
        self.scripts: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.update(name for name, _ in attrs)
        self.links.update(value or "" for name, value in attrs if name == "href")
        self.in_script = tag == "script"
        if self.in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.scripts[-1] += data


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
        assert "onclick" not in live.attributes, page
        assert not {"x.md", "x.html"} & live.links, page
    table = (site / GENERATED_DIR / "tables" / "crimes-by-environment.html").read_text(
        encoding="utf-8"
    )
    assert '&lt;script&gt;alert("pwned")&lt;/script&gt;' in table
    title = re.search(r"<title>(.*?)</title>", table, re.S)
    assert title is not None and "<" not in title.group(1)


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


@pytest.mark.slow
def test_failed_build_raises_one_line_and_keeps_out_dir(package: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    (project / "docs" / "index.md").write_text("# Home\n\n[broken](missing.md)\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("previous site", encoding="utf-8")
    with pytest.raises(PackageError) as raised:
        build_site(package, out_dir=out, project_dir=project)
    assert len(raised.value.problems) == 1
    assert "mkdocs build --strict" in str(raised.value)
    assert "missing.md" in str(raised.value)
    assert [path.name for path in out.iterdir()] == ["index.html"]
    assert (out / "index.html").read_text(encoding="utf-8") == "previous site"
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_out_dir_must_be_a_site_or_empty(package: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="is not a built site"):
        build_site(package, out_dir=package, project_dir=tmp_path)
    assert (package / "datapackage.json").is_file()


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
