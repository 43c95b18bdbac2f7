"""A corpus of valid but unusual specs: each is checked, planned, released, validated and
its site built, as a release manager of another dataset would.

Between them they omit every optional key (no keywords, no shares, no disclosure rules,
no titles of inputs...), and take every optional key to its extreme: one table by four
columns, a category with one key and one with hundreds, very long titles and
descriptions, non-ASCII text (and Markdown and HTML characters) everywhere, pure DP and
zCDP, no totals, a Parquet folder input, a DuckDB input with a linked second input and a
derived column. A spec that passes ``check`` must release: a failure here is a failure
after the spend.

Each spec releases once (module-scoped fixtures); the tests then look at the results.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from publisher import package, pipeline, plan, privacy
from publisher import spec as spec_module
from publisher.site import build_site

LONG_TITLE = (
    "Résumé of every admission, transfer and discharge — with its <b>bold</b> *emphasis*, "
    "[links](javascript:alert(1)), pipes | and \\ backslashes — recorded by the service "
) * 3
LONG_DESCRIPTION = (
    "Ce jeu de données synthétique décrit des séjours fictifs. "
    "Το σύνολο δεδομένων είναι συνθετικό. البيانات اصطناعية. 数据是合成的。 "  # noqa: RUF001
) * 40
CITIES = ["Île-de-France", "Łódź", "São Paulo", "القاهرة", "北京", "Αθήνα", "Zürich", "Ærø"]
MANY = [f"Unité {index:03d}" for index in range(1, 401)]
# Table names as long as a name may be, the same for far more than a sheet name holds.
LONG_NAME = "stays-" + "x" * 89


@dataclass(frozen=True)
class Unusual:
    """One spec of the corpus: how to write its data and its spec into a folder."""

    name: str
    write: Callable[[Path], Path]  # returns the spec's path


def rows(count: int, columns: dict[str, list[str]], seed: int) -> dict[str, list[str]]:
    """Deterministic records: an identifier (two records per person) and one key of each
    column, drawn at random with a fixed seed."""
    draw = random.Random(seed)  # noqa: S311 - test data, not secrets
    data = {"id": [f"person-{index // 2:05d}" for index in range(count)]}
    for column, keys in columns.items():
        data[column] = [draw.choice(keys) for _ in range(count)]
    return data


def dump(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "release.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def release_block(identifier: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": identifier,
        "title": f"Unusual release {identifier}",
        "version": "1.0.0",
        "period": "2024",
        "description": "A made-up release of the corpus of unusual specs.",
        "publisher": "Test suite",
        "contact": {"name": "Tests", "email": "tests@example.org"},
        **extra,
    }


def bare(folder: Path) -> Path:
    """Every optional key omitted: no keywords, sources, geography, date, shares,
    disclosure rules, weights, counts, totals key, descriptions or input titles."""
    pl.DataFrame(rows(300, {"colour": ["Red", "Green", "Blue"]}, seed=1)).write_csv(
        folder / "things.csv"
    )
    return dump(
        folder,
        {
            "release": release_block("bare"),
            "privacy": {
                "model": "zcdp",
                "rho": 0.5,
                "cap": {"rho": 1.0},
                "units": {"person": {"title": "person"}},
            },
            "categories": {"colour": {"title": "Colour", "values": ["Red", "Green", "Blue"]}},
            "inputs": {
                "things": {
                    "path": "things.csv",
                    "identifier": "id",
                    "unit": "person",
                    "max_records_per_person": 2,
                    "columns": {"colour": {"categories": "colour"}},
                }
            },
            "tables": [
                {
                    "name": "by-colour",
                    "input": "things",
                    "by": ["colour"],
                    "title": "Things by colour",
                    "description": "Things.",
                }
            ],
        },
    )


def four_columns(folder: Path) -> Path:
    """Pure DP, one table by four columns, one of them a category of one key; no totals,
    no shares; long titles and descriptions and non-ASCII text everywhere (keys, column
    and input names, identifiers), with Markdown and HTML characters in titles."""
    columns = {
        "région": CITIES,
        "année": ["2022", "2023", "2024"],
        "pays": ["France"],
        "état": ["Ouvert", "Fermé", "En cours", "Annulé", "Inconnu"],
    }
    data = rows(500, columns, seed=2)
    data["identifiant"] = data.pop("id")
    pl.DataFrame(data).write_csv(folder / "séjours.csv")
    return dump(
        folder,
        {
            "release": release_block(
                "four-columns",
                title=LONG_TITLE,
                description=LONG_DESCRIPTION,
                keywords=["données", "統計"],
                geography="Europe & ailleurs <i>partout</i>",
                sources=[{"title": "Registre *fictif*", "description": LONG_DESCRIPTION}],
                licence="CC-BY-4.0",
                published="2024-02-29",
                status="provisional",
            ),
            "privacy": {
                "model": "pure",
                "epsilon": 1.0,
                "cap": {"epsilon": 2.0},
                "units": {"personne": {"title": "personne « fictive »"}},
            },
            "categories": {
                "régions": {"title": "Région | lieu", "values": CITIES},
                "années": {"title": "Année", "values": ["2022", "2023", "2024"], "ordered": True},
                "pays": {"title": "Pays", "values": ["France"]},
                "états": {
                    "title": "État",
                    "description": LONG_DESCRIPTION,
                    "values": columns["état"],
                    "unknown": "Inconnu",
                    "definitions": {"Annulé": "Séjour annulé <avant> l'admission."},
                },
            },
            "inputs": {
                "entrées": {
                    "path": "séjours.csv",
                    "title": "Séjours",
                    "description": LONG_DESCRIPTION,
                    "identifier": "identifiant",
                    "unit": "personne",
                    "max_records_per_person": 3,
                    "columns": {
                        "région": {"categories": "régions"},
                        "année": {"categories": "années"},
                        "pays": {"categories": "pays"},
                        "état": {"categories": "états", "on_unknown": "map"},
                    },
                }
            },
            "tables": [
                {
                    "name": "sejours-par-region-annee-pays-etat",
                    "input": "entrées",
                    "by": ["région", "année", "pays", "état"],
                    "title": LONG_TITLE,
                    "description": LONG_DESCRIPTION,
                    "counts": "séjours",
                    "totals": False,
                }
            ],
            "disclosure": {"rounding_base": 1, "threshold": 0, "total_label": "Ensemble"},
        },
    )


def hundreds_of_keys(folder: Path) -> Path:
    """A category of 400 keys, zCDP, shares, totals, weights far apart, table names of 100
    characters alike in their first 95, a Parquet folder of parts as Spark writes one
    table."""
    data = pl.DataFrame(rows(2000, {"unit": MANY, "kind": ["A", "B"]}, seed=3))
    parts = folder / "stays"
    parts.mkdir()
    data.head(1000).write_parquet(parts / "part-00000.parquet")
    data.tail(1000).write_parquet(parts / "part-00001.parquet")
    (parts / "_SUCCESS").write_text("", encoding="utf-8")
    return dump(
        folder,
        {
            "release": release_block("hundreds-of-keys", keywords=["many"]),
            "privacy": {
                "model": "zcdp",
                "rho": 1.0,
                "cap": {"rho": 2.0},
                "units": {"person": {"title": "person"}},
            },
            "categories": {
                "units": {"title": "Unit", "values": MANY, "ordered": True},
                "kinds": {"title": "Kind", "values": ["A", "B"]},
            },
            "inputs": {
                "stays": {
                    "path": "stays",
                    "format": "parquet",
                    "identifier": "id",
                    "unit": "person",
                    "max_records_per_person": 2,
                    "columns": {"unit": {"categories": "units"}, "kind": {"categories": "kinds"}},
                }
            },
            "tables": [
                {
                    "name": LONG_NAME + "-unit",
                    "input": "stays",
                    "by": ["unit"],
                    "title": "Stays by unit",
                    "description": "Stays in each of 400 units.",
                    "weight": 500,
                },
                {
                    "name": LONG_NAME + "-kind",
                    "input": "stays",
                    "by": ["kind"],
                    "title": "Stays by kind",
                    "description": "Stays of each kind.",
                    "weight": 1,
                },
            ],
            "shares": [
                {
                    "name": "kind-a",
                    "table": LONG_NAME + "-kind",
                    "title": "Stays of kind A",
                    "statement": "of stays were of kind A",
                    "numerator": {"kind": ["A"]},
                },
                {
                    "name": "first-unit",
                    "table": LONG_NAME + "-unit",
                    "title": "Stays in the first unit",
                    "statement": "of stays were in the first unit",
                    "numerator": {"unit": [MANY[0]]},
                    "denominator": {"unit": MANY[:10]},
                },
            ],
        },
    )


def duckdb_and_links(folder: Path) -> Path:
    """A DuckDB input and a second input linked to it (references, linked units), a
    derived column (groups), a unique identifier, a dataset name and a ledger path."""
    duckdb = pytest.importorskip("duckdb")
    draw = random.Random(4)  # noqa: S311 - test data, not secrets
    wards = ["North 1", "North 2", "South 1", "South 2"]
    cases = pl.DataFrame(
        {
            "case_id": [f"c{index:04d}" for index in range(400)],
            "child": [f"k{index // 2:04d}" for index in range(400)],
            "ward": [draw.choice(wards) for _ in range(400)],
        }
    )
    children = pl.DataFrame(
        {
            "child": [f"k{index:04d}" for index in range(200)],
            "age": [draw.choice(["0-4", "5-9", "10-17"]) for _ in range(200)],
        }
    )
    with duckdb.connect(str(folder / "cases.duckdb")) as connection:
        connection.register("cases_frame", cases.to_arrow())
        connection.execute("CREATE TABLE cases AS SELECT * FROM cases_frame")
    children.write_csv(folder / "children.csv")
    return dump(
        folder,
        {
            "release": release_block("duckdb-and-links"),
            "privacy": {
                "model": "zcdp",
                "rho": 0.5,
                "cap": {"rho": 1.0},
                "units": {"child": {"title": "child", "description": "A child in the data."}},
                "ledger": "private/budget.sqlite",
                "dataset": "linked-cases",
                "delta": 1e-9,
            },
            "categories": {
                "wards": {"title": "Ward", "values": wards},
                "areas": {
                    "title": "Area",
                    "values": ["North", "South"],
                    "groups": {
                        "of": "wards",
                        "members": {"North": wards[:2], "South": wards[2:]},
                    },
                },
                "ages": {"title": "Age", "values": ["0-4", "5-9", "10-17"], "ordered": True},
            },
            "inputs": {
                "children": {
                    "path": "children.csv",
                    "identifier": "child",
                    "unit": "child",
                    "unique_identifier": True,
                    "max_records_per_person": 1,
                    "columns": {"age": {"categories": "ages"}},
                },
                "cases": {
                    "path": "cases.duckdb",
                    "format": "duckdb",
                    "table": "cases",
                    "identifier": "child",
                    "unit": "child",
                    "max_records_per_person": 3,
                    "columns": {
                        "ward": {"categories": "wards"},
                        "area": {"categories": "areas", "from": "ward"},
                    },
                },
            },
            "tables": [
                {
                    "name": "cases-by-ward",
                    "input": "cases",
                    "by": ["ward"],
                    "title": "Cases by ward",
                    "description": "Cases in each ward.",
                },
                {
                    "name": "cases-by-area",
                    "input": "cases",
                    "by": ["area"],
                    "title": "Cases by area",
                    "description": "Cases in each area.",
                },
                {
                    "name": "children-by-age",
                    "input": "children",
                    "by": ["age"],
                    "title": "Children by age",
                    "description": "Children of each age.",
                    "counts": "children",
                },
            ],
            "disclosure": {"rounding_base": 10, "threshold": 20},
        },
    )


def red_share(**extra: Any) -> dict[str, Any]:
    """A headline share of the bare spec's table: the share of red things."""
    return {
        "name": "red",
        "table": "by-colour",
        "title": "Red things",
        "statement": "of things were red",
        "numerator": {"colour": ["Red"]},
        **extra,
    }


def nothing_shown(folder: Path) -> Path:
    """Rules under which no count can be shown: every cell and every total is [low], and
    a share's denominator may be estimated at or below zero."""
    spec = yaml.safe_load(bare(folder).read_text(encoding="utf-8"))
    spec["release"]["id"] = "nothing-shown"
    spec["privacy"]["rho"] = 0.01
    spec["shares"] = [red_share(denominator={"colour": ["Red", "Green"]})]
    spec["disclosure"] = {"rounding_base": 1000, "threshold": 1_000_000}
    return dump(folder, spec)


CORPUS = [
    Unusual("every optional key omitted", bare),
    Unusual("four columns, one key, long non-ASCII text, pure DP, no totals", four_columns),
    Unusual("hundreds of keys, shares, Parquet folder", hundreds_of_keys),
    Unusual("DuckDB, linked inputs, a derived column", duckdb_and_links),
    Unusual("nothing can be shown", nothing_shown),
]


@dataclass(frozen=True)
class Released:
    spec_path: Path
    checked: pipeline.CheckResult
    result: pipeline.ReleaseResult
    site: Path


@pytest.fixture(scope="module", params=CORPUS, ids=[unusual.name for unusual in CORPUS])
def released(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Released:
    unusual: Unusual = request.param
    folder = tmp_path_factory.mktemp("unusual")
    spec_path = unusual.write(folder)
    checked = pipeline.check(spec_path)
    result = pipeline.release(spec_path, folder / "package")
    site = build_site(result.package_dir, out_dir=folder / "site", project_dir=folder)
    return Released(spec_path, checked, result, site)


def test_it_checks_releases_and_validates(released: Released) -> None:
    # Fails if a spec that passes check fails after the spend, or publishes an invalid
    # package.
    assert package.validate(released.result.package_dir) == []


def test_its_plan_covers_every_table(released: Released) -> None:
    release_spec = spec_module.load(released.spec_path)
    planned = plan.plan(release_spec)
    assert [table.name for table in planned.tables] == [t.name for t in release_spec.tables]


def test_every_key_of_every_table_is_published(released: Released) -> None:
    release_spec = released.checked.spec
    for table in release_spec.tables:
        published = pl.read_csv(
            released.result.package_dir / "data" / f"{table.name}.csv", infer_schema=False
        )
        keys = [release_spec.category_of(table, column).values for column in table.by]
        if table.totals:
            keys = [[*values, release_spec.disclosure.total_label] for values in keys]
        expected = set(itertools.product(*keys))
        assert set(published.select(table.by).iter_rows()) == expected, table.name


def test_its_site_is_built(released: Released) -> None:
    pages = sorted(path.name for path in released.site.rglob("*.html"))
    assert "index.html" in pages
    tables = released.checked.spec.tables
    assert all(f"{table.name}.html" in pages for table in tables)


def test_figures_at_their_extreme_still_make_a_valid_package_and_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dry run's figures show some cells and hide others; noise can make every count
    # zero, so that every cell is [low] and no share can be estimated (its denominator is
    # not above zero). Fails if such figures, which no spec can rule out, would fail after
    # the spend.
    spec_path = bare(tmp_path)
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["shares"] = [red_share()]
    spec_path = dump(tmp_path, spec)
    monkeypatch.setattr(
        privacy, "measure", lambda release_spec, frames, progress: privacy.placeholder(release_spec)
    )

    result = pipeline.release(spec_path, tmp_path / "package")

    assert result.shares[0].estimate is None
    assert package.validate(result.package_dir) == []
    build_site(result.package_dir, out_dir=tmp_path / "site", project_dir=tmp_path)
    assert (tmp_path / "site" / "index.html").is_file()
