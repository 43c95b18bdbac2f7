"""End to end, as a release manager runs it: quickstart, then the package and the site."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher import package
from publisher.cli import cli
from publisher.disclosure import LOW

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("quickstart")
    result = CliRunner().invoke(cli, ["quickstart", "--dir", str(work)])
    assert result.exit_code == 0, result.output
    return work, result.output


def test_quickstart_prints_where_each_output_is(quickstart: tuple[Path, str]) -> None:
    work, output = quickstart
    for where in (work / "demo-data", work / "datapackage", work / "site" / "index.html"):
        assert str(where) in output
        assert where.exists()


def test_quickstart_shows_the_guarantee_per_unit_and_what_the_bounds_left_out(
    quickstart: tuple[Path, str],
) -> None:
    work, _ = quickstart
    meta = json.loads((work / "datapackage" / package.DESCRIPTOR).read_text(encoding="utf-8"))
    readme = (work / "datapackage" / "README.md").read_text(encoding="utf-8")
    site = " ".join(
        page.read_text(encoding="utf-8", errors="replace")
        for page in (work / "site").rglob("*.html")
    )
    for unit in meta["privacy"]["units"]:
        said = f"for each {unit['title']}: rho = {unit['rho']:.4g}"
        assert said in meta["privacy"]["statement"] and said in readme and said in site
    assert {entry["input"] for entry in meta["truncation"]} == {"crimes", "suspects"}
    for entry in meta["truncation"]:
        assert entry["statement"] in readme
        assert entry["statement"].split(".")[0] in site


def test_frictionless_reports_the_package_valid(quickstart: tuple[Path, str]) -> None:
    work, _ = quickstart
    descriptor = work / "datapackage" / "datapackage.json"
    result = subprocess.run(
        [sys.executable, "-m", "frictionless", "validate", "--json", str(descriptor)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert json.loads(result.stdout)["valid"] is True


def published_tables(package_dir: Path) -> list[tuple[dict[str, object], list[dict[str, str]]]]:
    meta = json.loads((package_dir / package.DESCRIPTOR).read_text(encoding="utf-8"))
    tables = []
    for resource in meta["resources"]:
        if "table" not in resource:  # the shares, the documents
            continue
        with (package_dir / resource["path"]).open(encoding="utf-8", newline="") as handle:
            tables.append((resource, list(csv.DictReader(handle))))
    return tables


def test_every_cell_is_a_multiple_of_the_base_or_empty_with_a_marker(
    quickstart: tuple[Path, str],
) -> None:
    work, _ = quickstart
    meta = json.loads((work / "datapackage" / package.DESCRIPTOR).read_text(encoding="utf-8"))
    base = meta["disclosure"]["rounding_base"]
    tables = published_tables(work / "datapackage")
    assert len(tables) == 8
    for _, rows in tables:
        for row in rows:
            if row["value"] == "":
                assert row["marker"] == LOW
            else:
                assert int(row["value"]) % base == 0 and int(row["value"]) > 0
                assert row["marker"] == ""


def test_every_public_key_combination_is_in_every_table(quickstart: tuple[Path, str]) -> None:
    work, _ = quickstart
    spec_text = (work / "demo-data" / "release.yaml").read_text(encoding="utf-8")
    from publisher.spec import parse

    spec = parse(spec_text)
    for resource, rows in published_tables(work / "datapackage"):
        table = spec.table(str(resource["name"]))
        keys = [
            [*spec.category_of(table, column).values, spec.disclosure.total_label]
            for column in table.by
        ]
        found = [tuple(row[column] for column in table.by) for row in rows]
        assert sorted(found) == sorted(itertools.product(*keys)), table.name


def test_the_built_site_says_the_data_is_synthetic_on_every_page(
    quickstart: tuple[Path, str],
) -> None:
    work, _ = quickstart
    pages = [p for p in (work / "site").rglob("*.html") if "assets" not in p.parts]
    assert len(pages) >= 10
    for page in pages:
        assert "synthetic" in page.read_text(encoding="utf-8").lower(), page


def test_mkdocs_build_strict_passes_on_the_repository(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "index.html").is_file()


def test_committed_release_pages_are_up_to_date_with_the_package(tmp_path: Path) -> None:
    from publisher import site

    site.generate_pages(ROOT / "datapackage", tmp_path / "release")
    committed = ROOT / "docs" / "release"
    fresh = {
        p.relative_to(tmp_path / "release"): p.read_bytes()
        for p in (tmp_path / "release").rglob("*")
        if p.is_file()
    }
    current = {
        p.relative_to(committed): p.read_bytes() for p in committed.rglob("*") if p.is_file()
    }
    assert sorted(fresh) == sorted(current), "run: publisher site datapackage"
    stale = [str(path) for path in fresh if fresh[path] != current[path]]
    assert not stale, f"out of date with datapackage/, run `publisher site`: {stale}"


def test_the_committed_package_is_valid() -> None:
    assert package.validate(ROOT / "datapackage") == []
