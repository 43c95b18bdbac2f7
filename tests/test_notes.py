"""The package's README and CHANGELOG: spec text reads as text, every part is there when it
applies and only then, and the loading lines are right for each table."""

from __future__ import annotations

import copy
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from publisher import notes, pipeline

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    "![pixel](https://tracker.example/p.png)",
    "<https://evil.example/x>",
    "<script>alert(1)</script>",
    "`code` | pipe \\| and *stars* and _under_ and ~~strike~~",
    "# not a heading",
    "- not a list",
    "1. not a list",
    "> not a quote",
    "[ref]: javascript:alert(1)",
    "&lt;b&gt; entity &amp;",
    "[ref]",
    "=== not an underline",
]


def render(markdown: str) -> str:
    """Markdown as GitHub-like renderers show it: raw HTML allowed, tables on."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(rendered: str) -> _Tags:
    parser = _Tags()
    parser.feed(rendered)
    return parser


@pytest.mark.parametrize("hostile", HOSTILE)
def test_markdown_text_shows_any_text_as_typed_and_nothing_live(hostile: str) -> None:
    rendered = render(f"Before {notes.markdown_text(hostile)} after\n")
    parsed = parse(rendered)
    assert [tag for tag, _ in parsed.tags] == ["p"], rendered
    assert "".join(parsed.text).strip() == f"Before {hostile} after"
    # At the start of a line (a paragraph, a list item, a table cell) too.
    for line in (f"{notes.markdown_text(hostile)}\n", f"- {notes.markdown_text(hostile)}\n"):
        parsed = parse(render(line))
        assert {tag for tag, _ in parsed.tags} <= {"p", "ul", "li"}, line
        assert "".join(parsed.text).strip() == hostile
    table = f"| a |\n| --- |\n| {notes.markdown_text(hostile)} |\n"
    parsed = parse(render(table))
    assert {tag for tag, _ in parsed.tags} <= {"table", "thead", "tbody", "tr", "th", "td"}
    assert hostile in "".join(parsed.text)


def test_plain_text_stays_readable() -> None:
    assert notes.markdown_text("victim_id 1.0.0 rho = 0.5") == "victim_id 1.0.0 rho = 0.5"


@pytest.fixture(scope="module")
def descriptor(admissions_release: pipeline.ReleaseResult) -> dict[str, Any]:
    path = admissions_release.package_dir / "datapackage.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def hostile_descriptor(descriptor: dict[str, Any], text: str) -> dict[str, Any]:
    """The descriptor with ``text`` in every piece of text a spec can set."""
    hostile = copy.deepcopy(descriptor)
    hostile["title"] = hostile["description"] = text
    hostile["release"].update(period=text, geography=text)
    hostile["release"]["contact"]["email"] = text
    for resource in hostile["resources"]:
        resource["title"] = resource["description"] = text
        for field in resource.get("schema", {}).get("fields", []):
            field["name"] = field["title"] = field["description"] = text
        for dimension in resource.get("table", {}).get("dimensions", []):
            dimension["name"] = dimension["title"] = text
            dimension["values"] = [text]
            dimension["definitions"] = {text: text}
    for share in hostile["shares"]:
        share["title"] = share["numerator_description"] = share["denominator_description"] = text
    for unit in hostile["privacy"]["units"]:
        unit["title"] = unit["description"] = unit["identifier"] = text
    hostile["privacy"]["statement"] = text
    hostile["truncation"] = [{"input": "admissions", "statement": text}]
    return hostile


# The tags our own template writes; anything else would have come from spec text.
README_TAGS = {"h1", "h2", "h3", "p", "ul", "li", "strong", "code", "pre", "table"}
README_TAGS |= {"thead", "tbody", "tr", "th", "td"}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_readme_escapes_every_piece_of_spec_text(descriptor: dict[str, Any], hostile: str) -> None:
    readme = notes.readme(hostile_descriptor(descriptor, hostile))
    parsed = parse(render(readme))
    assert {tag for tag, _ in parsed.tags} <= README_TAGS
    headings = re.findall(r"<h([1-3])>(.*?)</h\1>", render(readme))
    assert all(html.unescape(text) != "not a heading" for _, text in headings)
    # The column name of a "Values of" line, even in a code span, is text.
    values_lines = [line for line in readme.splitlines() if line.startswith("Values of ")]
    assert values_lines
    for line in values_lines:
        assert {tag for tag, _ in parse(render(line)).tags} <= {"p", "code"}


def test_code_spans_hold_backticks(descriptor: dict[str, Any]) -> None:
    readme = notes.readme(hostile_descriptor(descriptor, "a `b` ``c``"))
    code = re.findall(r"<code>(.*?)</code>", render(readme))
    assert "a `b` ``c``" in [html.unescape(text) for text in code]


def test_readme_leaves_out_what_the_package_does_not_have(descriptor: dict[str, Any]) -> None:
    plain = copy.deepcopy(descriptor)
    plain["release"]["geography"] = ""
    plain["archive"] = []
    readme = notes.readme(plain)
    assert "Geography:" not in readme
    assert "archive/" not in readme
    plain["release"]["geography"] = "Somewhere"
    plain["archive"] = [{"version": "0.0.1", "path": "archive/0.0.1/datapackage.json"}]
    readme = notes.readme(plain)
    assert "- Geography: Somewhere" in readme
    assert "| archive/ |" in readme


def test_readme_says_totals_may_not_add_up_and_how_to_drop_them(descriptor: dict[str, Any]) -> None:
    readme = notes.readme(descriptor)
    assert "sum all keys" not in readme
    assert "may differ from the sum of the rounded figures" in readme
    for line in ('df[~df["is_total"]]', 'df.filter(~pl.col("is_total"))', "WHERE NOT is_total"):
        assert line in readme


def test_readme_prints_the_privacy_statement_units_and_truncation(
    descriptor: dict[str, Any],
) -> None:
    described = copy.deepcopy(descriptor)
    described["privacy"]["units"] = [
        {
            "name": "patient",
            "title": "patient",
            "description": "A person admitted to hospital.",
            "statement": "Each patient's loss is at most rho = 0.25.",
            "reaches": [{"input": "admissions", "bound_text": "at most 2 admissions"}],
        }
    ]
    described["truncation"] = [{"input": "admissions", "statement": "Bounds removed 3 records."}]
    readme = notes.readme(described)
    assert notes.markdown_text(described["privacy"]["statement"]) in readme
    assert (
        "| patient: A person admitted to hospital. | Each patient's loss is at most rho = 0.25. "
        "| at most 2 admissions |" in readme
    )
    assert "Bounds removed 3 records." in readme


def test_every_resource_is_listed_generically(descriptor: dict[str, Any]) -> None:
    extended = copy.deepcopy(descriptor)
    extended["resources"].append(
        {
            "name": "noisy-measurements",
            "path": "data/noisy-measurements.csv",
            "format": "csv",
            "title": "Noisy measurements",
            "description": "Every noisy count as drawn.",
            "schema": {
                "fields": [{"name": "cell", "type": "string"}, {"name": "noisy", "type": "number"}]
            },
        }
    )
    readme = notes.readme(extended)
    assert "| data/noisy-measurements.csv | Noisy measurements |" in readme
    assert "### Noisy measurements" in readme
    schema = '{"cell": pl.String, "noisy": pl.Float64}'
    assert f'pl.read_csv("data/noisy-measurements.csv", schema_overrides={schema})' in readme


def test_changelog_entry_escapes_spec_text(descriptor: dict[str, Any]) -> None:
    hostile = hostile_descriptor(descriptor, "[x](javascript:alert(1)) <img src=x>")
    entry = notes.changelog_entry(hostile, revises=None)
    assert {tag for tag, _ in parse(render(entry)).tags} <= {"h2", "ul", "li", "p"}


def test_the_written_readme_lists_what_is_in_the_folder(
    admissions_release: pipeline.ReleaseResult,
) -> None:
    folder: Path = admissions_release.package_dir
    readme = (folder / "README.md").read_text(encoding="utf-8")
    files = readme.split("## Files", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| ([^|]+?) \| [^|]+ \|$", files, re.M)) - {"File", "---"}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert listed == present | {"archive/"} & listed
    assert "archive/" not in listed  # a first release has no archive
