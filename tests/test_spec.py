"""The release spec: safe YAML, frozen models, every problem reported at once with its path."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from publisher.errors import SpecError
from publisher.spec import (
    LIMITS,
    PUBLISHED_COLUMNS,
    RESERVED_TABLE_NAMES,
    RESERVED_TABLE_SUFFIX,
    ReleaseSpec,
    load,
    parse,
)
from tests.conftest import OUTCOMES, WARDS, admissions_spec

NAME = "release.yaml"


def spec_dict(data: str = "admissions.csv", **overrides: object) -> dict[str, Any]:
    """A deep copy of the admissions spec, safe to mutate in a test."""
    return copy.deepcopy(admissions_spec(data, **overrides))


def parse_dict(data: dict[str, Any]) -> ReleaseSpec:
    return parse(yaml.safe_dump(data, sort_keys=False), name=NAME)


def problems_of(data: dict[str, Any] | str) -> list[str]:
    """The problems parsing ``data`` reports; fails the test if it parses."""
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(SpecError) as caught:
        parse(text, name=NAME)
    return caught.value.problems


def problem_at(problems: list[str], path: str) -> str:
    """The one problem reported at YAML ``path`` (as ``NAME: path: message``)."""
    found = [p for p in problems if p.startswith(f"{NAME}: {path}: ")]
    assert len(found) == 1, f"expected one problem at {path!r}, got {problems}"
    return found[0]


def assert_readable(problems: list[str]) -> None:
    """One line each, named after the spec, no traceback or library internals."""
    assert problems
    for problem in problems:
        assert "\n" not in problem
        assert problem.startswith(f"{NAME}: ")
        assert "Traceback" not in problem
        assert 'File "' not in problem
        assert "errors.pydantic.dev" not in problem


# --- a valid spec ------------------------------------------------------------------------


def test_admissions_spec_parses_into_models() -> None:
    spec = parse_dict(spec_dict())

    assert spec.release.id == "hospital-admissions-test"
    assert spec.release.version == "0.1.0"
    assert spec.release.licence == "OGL-UK-3.0"
    assert spec.privacy.model == "zcdp"
    assert spec.privacy.loss == 0.5
    assert spec.privacy.loss_name == "rho"
    # Public keys keep the order they were declared in: that is the published order.
    assert spec.categories["ward"].values == WARDS
    assert spec.categories["outcome"].values == OUTCOMES
    assert spec.categories["outcome"].unknown == "Not known"
    assert [table.name for table in spec.tables] == [
        "admissions-by-ward",
        "admissions-by-ward-and-outcome",
    ]
    assert spec.table("admissions-by-ward-and-outcome").by == ["ward", "outcome"]
    assert spec.category_of(spec.tables[1], "outcome").values == OUTCOMES
    assert spec.inputs["admissions"].identifier == "patient_ref"
    assert spec.disclosure.rounding_base == 5
    assert spec.disclosure.threshold == 10


def test_pure_dp_with_epsilon_is_accepted() -> None:
    spec = parse_dict(spec_dict(privacy={"model": "pure", "epsilon": 1.5, "cap": {"epsilon": 3}}))

    assert spec.privacy.loss == 1.5
    assert spec.privacy.loss_name == "epsilon"
    assert spec.privacy.rho is None


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("spec", {"release": None}),
        ("privacy", {"rho": 1.0}),
        ("release", {"version": "9.9.9"}),
        ("disclosure", {"threshold": 0}),
    ],
)
def test_models_are_frozen(where: str, value: dict[str, object]) -> None:
    spec = parse_dict(spec_dict())
    model = spec if where == "spec" else getattr(spec, where)
    ((field, new_value),) = value.items()
    before = getattr(model, field)

    with pytest.raises(pydantic.ValidationError):
        setattr(model, field, new_value)

    assert getattr(model, field) == before


def test_table_and_category_models_are_frozen() -> None:
    spec = parse_dict(spec_dict())

    with pytest.raises(pydantic.ValidationError):
        spec.tables[0].weight = 100
    with pytest.raises(pydantic.ValidationError):
        spec.categories["ward"].unknown = "Cardiology"
    assert spec.tables[0].weight == 2


def test_relative_input_paths_start_from_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_folder = tmp_path / "releases" / "2026"
    spec_folder.mkdir(parents=True)
    spec_path = spec_folder / "release.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict(data="data/admissions.csv")), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    spec = load(Path("..") / "releases" / "2026" / "release.yaml")

    assert spec.input_path("admissions") == (spec_folder / "data" / "admissions.csv").resolve()


@pytest.mark.parametrize("outside", ["/srv/private/admissions.csv", "../admissions.csv"])
def test_input_paths_stay_inside_the_spec_folder(tmp_path: Path, outside: str) -> None:
    spec_path = tmp_path / "release.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict(data=outside)), encoding="utf-8")

    with pytest.raises(SpecError) as caught:
        load(spec_path)
    assert "inputs.admissions.path: must be a path inside the spec's folder" in str(caught.value)


def test_table_loss_splits_the_total_by_weight() -> None:
    spec = parse_dict(spec_dict())  # weights 2 and 1, rho 0.5, 5% for the estimate

    by_ward, by_ward_and_outcome = spec.tables
    tables = 0.5 * 0.95
    assert spec.tables_loss == pytest.approx(tables, rel=1e-12)
    assert spec.table_loss(by_ward) == pytest.approx(tables * 2 / 3, rel=1e-12)
    assert spec.table_loss(by_ward_and_outcome) == pytest.approx(tables * 1 / 3, rel=1e-12)
    assert spec.truncation_inputs == ["admissions"]
    assert spec.truncation_loss("admissions") == pytest.approx(0.5 * 0.05, rel=1e-12)
    parts = [spec.table_loss(t) for t in spec.tables] + [spec.truncation_loss("admissions")]
    assert math.fsum(parts) == pytest.approx(0.5, rel=1e-12)


def test_without_a_truncation_share_the_tables_share_the_whole_loss() -> None:
    data = spec_dict()
    data["privacy"]["truncation_share"] = 0
    spec = parse_dict(data)

    assert spec.truncation_inputs == []
    assert math.fsum(spec.table_loss(t) for t in spec.tables) == pytest.approx(0.5, rel=1e-12)


def test_inputs_with_one_row_per_person_need_no_truncation_estimate() -> None:
    data = spec_dict()
    data["inputs"]["admissions"]["unique_identifier"] = True
    spec = parse_dict(data)

    assert spec.truncation_inputs == []
    assert spec.tables_loss == pytest.approx(0.5, rel=1e-12)


@given(
    weights=st.lists(
        st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=6,
    ),
    rho=st.floats(min_value=1e-4, max_value=10, allow_nan=False, allow_infinity=False),
)
@settings(deadline=None)  # a parse takes milliseconds, but a loaded machine is no deadline
def test_table_losses_sum_to_the_total_and_follow_the_weights(
    weights: list[float], rho: float
) -> None:
    data = spec_dict(
        privacy={"model": "zcdp", "rho": rho, "cap": {"rho": 100}, "truncation_share": 0},
        shares=[],
    )
    template = data["tables"][0]
    data["tables"] = [
        {**template, "name": f"table-{index}", "weight": weight}
        for index, weight in enumerate(weights)
    ]
    # A table's share below the documented floor is refused (tested separately).
    assume(rho * min(weights) / math.fsum(weights) >= LIMITS.min_table_loss["rho"])
    spec = parse_dict(data)

    losses = [spec.table_loss(table) for table in spec.tables]
    assert all(loss > 0 for loss in losses)
    assert math.fsum(losses) == pytest.approx(rho, rel=1e-9)
    for loss, weight in zip(losses, weights, strict=True):
        assert loss / rho == pytest.approx(weight / math.fsum(weights), rel=1e-9)


# --- every problem at once, with its YAML path -------------------------------------------


def test_model_problems_are_all_reported_with_their_paths() -> None:
    data = spec_dict()
    data["colour"] = "blue"  # unknown key at the top level
    del data["release"]["title"]  # missing key
    data["privacy"]["rho"] = -0.5  # negative loss
    data["release"]["version"] = "1.0"  # not SemVer
    data["tables"][1]["name"] = "Admissions_by_ward"  # not a slug
    data["categories"]["ward"]["values"] = [*WARDS, "Maternity"]  # listed twice
    data["inputs"]["admissions"]["columns"]["ward"]["on_unknwn"] = "map"  # misspelt key

    problems = problems_of(data)

    assert_readable(problems)
    assert "unknown key" in problem_at(problems, "colour")
    assert "missing" in problem_at(problems, "release.title")
    assert "greater than 0" in problem_at(problems, "privacy.rho")
    assert "semantic version" in problem_at(problems, "release.version")
    assert "lowercase" in problem_at(problems, "tables[1].name")
    assert "'Maternity' is listed twice" in problem_at(problems, "categories.ward")
    assert "unknown key" in problem_at(problems, "inputs.admissions.columns.ward.on_unknwn")
    assert len(problems) == 7, problems


def test_reference_problems_are_all_reported_with_their_paths() -> None:
    # Cross-references are checked once every model is valid, so this spec is otherwise fine.
    data = spec_dict()
    data["inputs"]["admissions"]["columns"]["ward"]["categories"] = "wards"
    tables = data["tables"]
    tables[0]["input"] = "admission"
    tables.append({**tables[1], "name": "admissions-by-colour", "by": ["outcome", "colour"]})
    tables.append(copy.deepcopy(tables[1]))
    data["shares"] = [
        {
            "name": "not-known-share",
            "table": "admissions-by-ward-and-outcome",
            "title": "Outcome not known",
            "statement": "of admissions have no known outcome",
            "numerator": {"outcome": ["Unknown"]},
        }
    ]

    problems = problems_of(data)

    assert_readable(problems)
    assert "'wards'" in problem_at(problems, "inputs.admissions.columns.ward.categories")
    assert "no input named 'admission'" in problem_at(problems, "tables[0].input")
    assert "'colour'" in problem_at(problems, "tables[2].by[1]")
    assert "used twice" in problem_at(problems, "tables[3].name")
    assert "'Unknown'" in problem_at(problems, "shares[0].numerator.outcome[0]")
    assert len(problems) == 5, problems


def test_share_on_a_table_with_an_unknown_input_is_reported_not_a_crash() -> None:
    data = spec_dict()
    data["tables"][0]["input"] = "admission"  # the table the share is about

    problems = problems_of(data)

    assert "no input named 'admission'" in problem_at(problems, "tables[0].input")


def test_share_on_an_undeclared_column_is_reported_not_a_crash() -> None:
    data = spec_dict()
    data["tables"][0]["by"] = ["colour"]
    data["shares"][0]["numerator"] = {"colour": ["Red"]}

    problems = problems_of(data)

    assert "'colour'" in problem_at(problems, "tables[0].by[0]")


@pytest.mark.parametrize("name", ["value", "is_total"])
def test_a_key_column_named_like_a_published_column_is_refused(name: str) -> None:
    data = spec_dict()
    columns = data["inputs"]["admissions"]["columns"]
    columns[name] = columns.pop("ward")
    data["tables"][0]["by"] = [name]
    data["tables"][1]["by"] = [name, "outcome"]
    data["shares"] = []

    problems = problems_of(data)

    assert "every published table has" in problem_at(problems, "tables[0].by[0]")


# --- YAML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("release:\n  id: x\n  title: [unclosed\nprivacy: 1\n", "line 4, column 8"),
        ("release:\n  id: x\n\ttitle: tab\n", "line 3, column 1"),
        ('release:\n  title: "unterminated\n', "line 3, column 1"),
        ("release:\n  id: *undefined\n", "line 2, column 7"),
    ],
)
def test_invalid_yaml_reports_line_and_column(text: str, where: str) -> None:
    (problem,) = problems_of(text)

    assert problem.startswith(f"{NAME}: {where}: invalid YAML")
    assert_readable([problem])


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("release: 1\nprivacy: 2\nrelease: 3\n", "line 3, column 1", "release"),
        ("release:\n  id: a\n  title: b\n  id: c\n", "line 4, column 3", "id"),
        ("privacy: {model: zcdp, rho: 0.1, rho: 9}\n", "line 1, column 34", "rho"),
    ],
)
def test_duplicate_yaml_keys_are_refused(text: str, where: str, key: str) -> None:
    # A YAML loader would silently keep the last value: a budget could change unnoticed.
    (problem,) = problems_of(text)

    assert problem.startswith(f"{NAME}: {where}: ")
    assert f"'{key}' appears twice" in problem


@pytest.mark.parametrize("text", ["- release\n- privacy\n", "42\n", "just text\n", "", "null\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    (problem,) = problems_of(text)

    assert problem.startswith(f"{NAME}: expected a mapping")


@pytest.mark.parametrize(
    "template",
    [
        "!!python/object/apply:builtins.exec [\"open({marker!r}, 'w').write('x')\"]\n",
        "release: !!python/object/apply:builtins.exec [\"open({marker!r}, 'w').write('x')\"]\n",
        "release: !!python/object/new:builtins.exec [\"open({marker!r}, 'w').write('x')\"]\n",
        "release: !!python/name:os.system\n",
        "release: !!python/object:builtins.object {{}}\n",
    ],
)
def test_python_tags_are_refused_without_running_code(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    text = template.format(marker=str(marker))

    (problem,) = problems_of(text)

    assert "invalid YAML" in problem
    assert "python/" in problem
    assert not marker.exists()


# --- single problems ---------------------------------------------------------------------


def privacy_problems(privacy: dict[str, object]) -> list[str]:
    cap = {"epsilon": 100} if privacy.get("model") == "pure" else {"rho": 100}
    return problems_of(spec_dict(privacy={"cap": cap, **privacy}))


@pytest.mark.parametrize(
    ("privacy", "path", "expected"),
    [
        ({"model": "zcdp", "rho": 0.5}, "privacy.cap", "missing"),
        ({"model": "zcdp", "rho": 0.5, "cap": {"epsilon": 3}}, "privacy", "cap as 'rho' only"),
        ({"model": "pure", "epsilon": 1, "cap": {"rho": 3}}, "privacy", "cap as 'epsilon' only"),
        ({"model": "zcdp", "rho": 0.5, "cap": {"rho": 0.4}}, "privacy", "above the lifetime cap"),
        ({"model": "zcdp", "rho": 0.5, "cap": {"rho": -1}}, "privacy.cap.rho", "greater than 0"),
        ({"model": "zcdp", "rho": 0.5, "cap": {"rho": 1}, "dataset": "A b"}, "privacy.dataset", ""),
    ],
)
def test_the_lifetime_cap_is_required_in_the_models_unit(
    privacy: dict[str, object], path: str, expected: str
) -> None:
    problems = problems_of(spec_dict(privacy=privacy))
    assert expected in problem_at(problems, path)
    assert_readable(problems)


def test_ledger_and_dataset_defaults() -> None:
    spec = parse_dict(spec_dict())
    assert spec.ledger_path == (spec.base_dir / "ledger.sqlite").resolve()
    assert spec.dataset_id == spec.release.id


@pytest.mark.parametrize(
    ("privacy", "path", "expected"),
    [
        ({"model": "zcdp"}, "privacy", "needs 'rho'"),
        ({"model": "zcdp", "epsilon": 1.0}, "privacy", "needs 'rho'"),
        ({"model": "zcdp", "rho": 0.5, "epsilon": 1.0}, "privacy", "not 'epsilon'"),
        ({"model": "pure"}, "privacy", "needs 'epsilon'"),
        ({"model": "pure", "rho": 0.5}, "privacy", "needs 'epsilon'"),
        ({"model": "pure", "epsilon": 1.0, "rho": 0.5}, "privacy", "not 'rho'"),
        ({"model": "approximate", "epsilon": 1.0}, "privacy.model", "'zcdp' or 'pure'"),
        ({"rho": 0.5}, "privacy.model", "missing"),
    ],
)
def test_privacy_model_needs_its_own_loss(
    privacy: dict[str, object], path: str, expected: str
) -> None:
    problems = privacy_problems(privacy)

    assert expected in problem_at(problems, path)
    assert_readable(problems)


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf, 0, 0.0, -0.1, -1e-300])
@pytest.mark.parametrize(("model", "name"), [("zcdp", "rho"), ("pure", "epsilon")])
def test_losses_must_be_positive_and_finite(model: str, name: str, loss: float) -> None:
    problems = privacy_problems({"model": model, name: loss})

    problem_at(problems, f"privacy.{name}")
    assert len(problems) == 1, problems


@pytest.mark.parametrize("weight", [math.nan, math.inf, 0, -2])
def test_table_weights_must_be_positive_and_finite(weight: float) -> None:
    data = spec_dict()
    data["tables"][1]["weight"] = weight

    problem_at(problems_of(data), "tables[1].weight")


@pytest.mark.parametrize(
    ("disclosure", "path"),
    [
        ({"rounding_base": 0}, "disclosure.rounding_base"),
        ({"rounding_base": -5}, "disclosure.rounding_base"),
        ({"rounding_base": 2.5}, "disclosure.rounding_base"),
        ({"threshold": -1}, "disclosure.threshold"),
        ({"threshold": 2.5}, "disclosure.threshold"),
        ({"rounding": 5}, "disclosure.rounding"),
    ],
)
def test_disclosure_rules_are_checked(disclosure: dict[str, object], path: str) -> None:
    problem_at(problems_of(spec_dict(disclosure=disclosure)), path)


def test_zero_threshold_is_allowed() -> None:
    spec = parse_dict(spec_dict(disclosure={"rounding_base": 1, "threshold": 0}))

    assert spec.disclosure.threshold == 0
    assert spec.disclosure.rounding_base == 1


@pytest.mark.parametrize("version", ["1.0", "1", "v1.0.0", "01.0.0", "1.0.0.0", "one", ""])
def test_version_must_be_semver(version: str) -> None:
    data = spec_dict()
    data["release"]["version"] = version

    problem_at(problems_of(data), "release.version")


@pytest.mark.parametrize("version", ["0.1.0", "1.0.0", "10.20.30", "2.0.0-rc.1"])
def test_semver_versions_are_accepted(version: str) -> None:
    data = spec_dict()
    data["release"]["version"] = version

    assert parse_dict(data).release.version == version


@pytest.mark.parametrize("name", ["Admissions", "admissions_by_ward", "a--b", "-a", "a-", "a b"])
def test_names_must_be_slugs(name: str) -> None:
    data = spec_dict()
    data["release"]["id"] = name
    data["tables"][1]["name"] = name
    data["shares"][0]["name"] = name

    problems = problems_of(data)

    for path in ("release.id", "tables[1].name", "shares[0].name"):
        assert "lowercase letters, digits and single hyphens" in problem_at(problems, path)


def test_unknown_category_must_be_one_of_the_values() -> None:
    data = spec_dict()
    data["categories"]["outcome"]["unknown"] = "Unknown"

    problem = problem_at(problems_of(data), "categories.outcome")

    assert "'Unknown' is not one of the values" in problem


def test_category_values_must_be_unique() -> None:
    data = spec_dict()
    data["categories"]["outcome"]["values"] = [*OUTCOMES, "Discharged"]

    assert "'Discharged' is listed twice" in problem_at(problems_of(data), "categories.outcome")


# Lookalike letters are written as escapes, so that the tests' own text shows which.
@pytest.mark.parametrize(
    ("lookalikes", "difference"),
    [
        (
            ["Kent", "K\u0435nt"],
            "character 2 is U+0435 (CYRILLIC SMALL LETTER IE) here, "
            "U+0065 (LATIN SMALL LETTER E) there",
        ),
        (
            ["Ward A", "Ward \u0391"],
            "character 6 is U+0391 (GREEK CAPITAL LETTER ALPHA) here, "
            "U+0041 (LATIN CAPITAL LETTER A) there",
        ),
    ],
)
def test_keys_that_look_the_same_are_refused(lookalikes: list[str], difference: str) -> None:
    # Fails if two keys of one category with equal TR39 skeletons load.
    data = spec_dict()
    data["categories"]["outcome"]["values"] = [*OUTCOMES, *lookalikes]
    where = f"categories.outcome.values[{len(OUTCOMES) + 1}]"
    assert (
        f"{NAME}: {where}: '{lookalikes[1]}' looks the same as '{lookalikes[0]}' "
        f"(values[{len(OUTCOMES)}]) but is another key ({difference}), so readers could not "
        "tell their rows apart: type both keys again in one script, or keep one"
    ) in problems_of(data)


def test_a_word_mixing_scripts_is_refused() -> None:
    # Fails if a key typed with one Cyrillic letter among Latin ones loads.
    data = spec_dict()
    data["categories"]["outcome"]["values"] = [*OUTCOMES, "Lost to f\u043ellow-up"]
    where = f"categories.outcome.values[{len(OUTCOMES)}]"
    assert problem_at(problems_of(data), where) == (
        f"{NAME}: {where}: 'Lost to f\u043ellow-up' mixes Latin, Greek or Cyrillic letters in "
        "the word 'f\u043ellow' (U+043E (CYRILLIC SMALL LETTER O) is of another script than "
        "its first letter), so it can look like another key: type the word again in one script"
    )


def test_real_keys_are_not_taken_for_lookalikes() -> None:
    # Fails if the lookalike rules refuse keys real releases use (accents, Welsh, digits,
    # punctuation, a whole key in Greek or Cyrillic).
    keys = [
        "Avon and Somerset",
        "Devon & Cornwall",
        "Metropolitan Police",
        "Dyfed-Powys",
        "Gw\u0177r",
        "Ynys M\u00f4n",
        "Caf\u00e9",
        "Cafe",
        "0-17",
        "Under 18",
        "18 and over",
        "Mixed/Multiple",
        "Not known",
        "\u0391\u03b8\u03ae\u03bd\u03b1",
        "\u041c\u043e\u0441\u043a\u0432\u0430",
    ]
    data = spec_dict()
    data["categories"]["outcome"]["values"] = keys
    assert parse_dict(data).categories["outcome"].values == keys


def test_category_needs_values() -> None:
    data = spec_dict()
    data["categories"]["ward"]["values"] = []

    problem_at(problems_of(data), "categories.ward.values")


def test_mapping_to_unknown_needs_a_declared_unknown() -> None:
    data = spec_dict()
    data["inputs"]["admissions"]["columns"]["ward"]["on_unknown"] = "map"

    problem = problem_at(problems_of(data), "inputs.admissions.columns.ward.on_unknown")

    assert "categories.ward.unknown" in problem


def test_mapping_to_a_declared_unknown_is_accepted() -> None:
    data = spec_dict()
    data["inputs"]["admissions"]["columns"]["outcome"]["on_unknown"] = "map"

    assert parse_dict(data).inputs["admissions"].columns["outcome"].on_unknown == "map"


def test_numerator_must_be_inside_the_denominator() -> None:
    data = spec_dict()
    data["shares"][0]["numerator"] = {"ward": ["Maternity", "Oncology"]}
    data["shares"][0]["denominator"] = {"ward": ["Maternity", "Cardiology"]}

    problem = problem_at(problems_of(data), "shares[0].numerator.ward")

    assert "denominator" in problem


def test_numerator_inside_the_denominator_is_accepted() -> None:
    data = spec_dict()
    data["shares"][0]["numerator"] = {"ward": ["Maternity"]}
    data["shares"][0]["denominator"] = {"ward": ["Maternity", "Cardiology"]}

    assert parse_dict(data).shares[0].denominator == {"ward": ["Maternity", "Cardiology"]}


def test_share_column_must_be_a_dimension_of_its_table() -> None:
    data = spec_dict()
    data["shares"][0]["numerator"] = {"outcome": ["Discharged"]}  # admissions-by-ward

    assert "'outcome'" in problem_at(problems_of(data), "shares[0].numerator.outcome")


def test_share_must_name_a_table() -> None:
    data = spec_dict()
    data["shares"][0]["table"] = "admissions-by-bed"

    assert "'admissions-by-bed'" in problem_at(problems_of(data), "shares[0].table")


def test_identifier_must_not_be_a_categorical_column() -> None:
    data = spec_dict()
    data["inputs"]["admissions"]["identifier"] = "ward"

    problem_at(problems_of(data), "inputs.admissions.identifier")


def test_table_must_not_list_a_column_twice() -> None:
    data = spec_dict()
    data["tables"][1]["by"] = ["ward", "ward"]

    problem_at(problems_of(data), "tables[1].by")


@pytest.mark.parametrize(
    ("field", "value"),
    [("tables", []), ("inputs", {}), ("categories", {})],
)
def test_a_release_needs_tables_inputs_and_categories(field: str, value: object) -> None:
    data = spec_dict()
    data[field] = value

    problem_at(problems_of(data), field)


# --- messages ----------------------------------------------------------------------------


def broken_specs() -> list[dict[str, Any] | str]:
    bad_types = spec_dict()
    bad_types["release"] = "a title"
    bad_types["tables"] = {"name": "x"}
    bad_types["privacy"]["delta"] = 0.5
    bad_types["release_notes"] = ["x"]
    bad_email = spec_dict()
    bad_email["release"]["contact"]["email"] = "not an address"
    bad_email["release"]["licence"] = "MIT"
    bad_email["inputs"]["admissions"]["max_records_per_person"] = 0
    bad_email["inputs"]["admissions"]["format"] = "xlsx"
    return [
        bad_types,
        bad_email,
        spec_dict(privacy={"model": "zcdp", "rho": "lots", "cap": {"rho": 1}}),
        "release: [\n",
        "release: 1\nrelease: 2\n",
    ]


@pytest.mark.parametrize("data", broken_specs())
def test_problems_are_single_lines_without_tracebacks(data: dict[str, Any] | str) -> None:
    assert_readable(problems_of(data))


def test_a_newline_in_a_spec_value_does_not_split_a_problem() -> None:
    data = spec_dict()
    data["categories"]["ward"]["values"] = ["Ward\nA", "Ward\nA"]

    assert_readable(problems_of(data))


# --- load --------------------------------------------------------------------------------


def test_load_reports_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"

    with pytest.raises(SpecError) as caught:
        load(missing)

    (problem,) = caught.value.problems
    assert problem.startswith(f"{missing}: ")
    assert "does not exist" in problem


def test_load_reports_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load(tmp_path)

    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path}: ")
    assert "directory" in problem


def test_load_reports_non_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_bytes("release:\n  title: Caf\xe9\n".encode("latin-1"))

    with pytest.raises(SpecError) as caught:
        load(path)

    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: ")
    assert "UTF-8" in problem


def test_load_names_the_file_in_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    data = spec_dict()
    data["privacy"]["rho"] = -1
    del data["release"]["title"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    with pytest.raises(SpecError) as caught:
        load(path)

    assert len(caught.value.problems) == 2
    assert all(p.startswith(f"{path}: ") for p in caught.value.problems)


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"privacy": {"model": "zcdp", "rho": True, "cap": {"rho": 1}}}, "privacy.rho"),
        ({"disclosure": {"rounding_base": True}}, "disclosure.rounding_base"),
    ],
)
def test_booleans_are_not_taken_as_numbers(override: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(yaml.safe_dump(admissions_spec(**override)))
    assert any(f": {path}: expected a number, not true/false" in p for p in caught.value.problems)


def test_a_blank_title_is_refused() -> None:
    spec = admissions_spec()
    spec["release"]["title"] = "   "  # type: ignore[index]
    with pytest.raises(SpecError) as caught:
        parse(yaml.safe_dump(spec))
    assert any(": release.title: " in problem for problem in caught.value.problems)


# --- privacy units across linked inputs ----------------------------------------------------


def linked_spec(**suspects: Any) -> dict[str, Any]:
    """Three linked inputs shaped like the police data, with other names: incidents about
    one child each, the children, and the adults linked to incidents."""
    data = spec_dict()
    data["privacy"]["units"] = {
        "child": {"title": "child"},
        "adult": {"title": "adult"},
    }
    ward = {"ward": {"categories": "ward"}}
    data["inputs"] = {
        "incidents": {
            "path": "incidents.csv",
            "identifier": "child_ref",
            "unit": "child",
            "max_records_per_person": 3,
            "columns": ward,
        },
        "children": {
            "path": "children.csv",
            "identifier": "child_ref",
            "unit": "child",
            "unique_identifier": True,
            "max_records_per_person": 1,
            "references": {"child_ref": "incidents.child_ref"},
            "columns": ward,
        },
        "adults": {
            "path": "adults.csv",
            "identifier": "adult_ref",
            "unit": "adult",
            "max_records_per_person": 1,
            "references": {"incident_ref": "incidents.incident_ref"},
            "linked_units": {"child": {"max_records_per_person": 4}},
            "columns": ward,
            **suspects,
        },
    }
    data["tables"] = [
        {
            "name": f"{name}-by-ward",
            "input": name,
            "by": ["ward"],
            "title": f"{name} by ward",
            "description": "Counts.",
        }
        for name in data["inputs"]
    ]
    data["shares"] = []
    return data


def test_each_input_reaches_its_units_by_identifier_or_references() -> None:
    spec = parse_dict(linked_spec())

    (own,) = spec.reaches("incidents")
    assert (own.unit, own.through, own.identifier, own.bound) == ("child", (), "child_ref", 3)
    # children.child_ref -> incidents.child_ref is the same child: not a second path.
    assert [reach.unit for reach in spec.reaches("children")] == ["child"]
    adult, child = spec.reaches("adults")
    assert (adult.unit, adult.through, adult.bound) == ("adult", (), 1)
    assert child.unit == "child" and child.bound == 4
    assert child.path == "incident_ref → incidents.incident_ref, then child_ref"


def test_a_linked_unit_without_a_bound_is_refused_with_what_to_add() -> None:
    data = linked_spec()
    del data["inputs"]["adults"]["linked_units"]

    problem = problem_at(problems_of(data), "inputs.adults.linked_units")

    assert "depend on each child through incident_ref → incidents.incident_ref" in problem
    assert "linked_units: {child: {max_records_per_person: N}}" in problem


def test_units_must_be_declared_and_used() -> None:
    data = linked_spec()
    data["privacy"]["units"]["bystander"] = {"title": "bystander"}
    data["inputs"]["incidents"]["unit"] = "kid"

    problems = problems_of(data)

    assert "no privacy unit named 'kid'" in problem_at(problems, "inputs.incidents.unit")
    assert "no input's identifier names this unit" in problem_at(
        problems, "privacy.units.bystander"
    )


def test_the_privacy_units_are_required() -> None:
    data = spec_dict()
    del data["privacy"]["units"]
    del data["inputs"]["admissions"]["unit"]

    problems = problems_of(data)

    assert "required key is missing" in problem_at(problems, "privacy.units")
    assert "required key is missing" in problem_at(problems, "inputs.admissions.unit")


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        (  # a bound for a unit the records do not reach
            lambda data: data["inputs"]["incidents"].update(
                linked_units={"adult": {"max_records_per_person": 2}}
            ),
            "inputs.incidents.linked_units.adult",
            "do not reach unit 'adult'",
        ),
        (  # a linked input must count each person once
            lambda data: data["inputs"]["adults"].update(max_records_per_person=2),
            "inputs.adults.max_records_per_person",
            "counts each person once",
        ),
        (  # two paths to the children: a record could be about two of them
            lambda data: data["inputs"]["adults"]["references"].update(
                child_ref="children.child_ref"
            ),
            "inputs.adults.references",
            "by 2 paths",
        ),
        (  # a reference to a second person of the input's own unit
            lambda data: data["inputs"]["incidents"].update(
                references={"sibling_ref": "children.child_ref"}
            ),
            "inputs.incidents.references",
            "round in a circle",
        ),
    ],
)
def test_links_the_bounds_cannot_cover_are_refused(change: Any, path: str, expected: str) -> None:
    data = linked_spec()
    change(data)

    assert expected in problem_at(problems_of(data), path)


def test_a_second_person_of_the_own_unit_is_refused() -> None:
    data = linked_spec()
    data["inputs"]["children"]["references"] = {"sibling_ref": "incidents.child_ref"}

    problem = problem_at(problems_of(data), "inputs.children.references.sibling_ref")

    assert "a second child" in problem


def short(number: float) -> str:
    return f"{number:g}".replace("e-0", "e-")


def test_the_documented_limits_are_the_checked_ones() -> None:
    # Fails if docs/spec.md states a limit the code does not check, or the other way round.
    doc = (Path(__file__).resolve().parents[1] / "docs" / "spec.md").read_text(encoding="utf-8")
    section = doc.split("## What every spec must meet", 1)[1].split("\n## ", 1)[0]
    stated = [
        f"| keys in one category (`values`) | {LIMITS.keys_per_category:,} |",
        f"| cells in one table | {LIMITS.cells_per_table:,} |",
        f"| cells of all the tables of one input | {LIMITS.cells_per_input:,} |",
        f"| cells of all the tables of a release | {LIMITS.cells_per_release:,} |",
        f"| tables of a release | {LIMITS.tables_per_release:,} |",
        f"| table `weight` | {LIMITS.weight[0]:g} to {LIMITS.weight[1]:g} |",
        f"at least rho = {short(LIMITS.min_table_loss['rho'])} (zCDP), epsilon = "
        f"{short(LIMITS.min_table_loss['epsilon'])} (pure)",
        f"| `disclosure.threshold` | at most {LIMITS.threshold:,} |",
        f"| one piece of text | {LIMITS.text_chars:,} characters |",
        f"| the spec file | {LIMITS.spec_bytes >> 20} MB, nested at most {LIMITS.yaml_depth} "
        f"levels, at most {LIMITS.yaml_values:,} values",
    ]
    for fragment in stated:
        assert fragment in section, fragment
    assert all(f"`{name}`" in section for name in RESERVED_TABLE_NAMES)
    assert f"`{RESERVED_TABLE_SUFFIX}`" in section


def test_the_reserved_names_are_those_the_package_generates() -> None:
    from publisher import disclosure, package

    assert {*disclosure.COLUMNS, package.TOTAL_FLAG} <= set(PUBLISHED_COLUMNS)
    assert package.SHARES_RESOURCE in RESERVED_TABLE_NAMES
    assert package.NOISY_MEASUREMENTS in RESERVED_TABLE_NAMES
    assert package.UNROUNDED_RESOURCE_SUFFIX == RESERVED_TABLE_SUFFIX
    documents = {package.README, package.CHANGELOG}
    assert {name.lower().replace(".", "-") for name in documents} <= RESERVED_TABLE_NAMES


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("release:\n  published: 2024-02-30\n", "release.published"),
        ("release:\n  title: [" + "[" * 100 + "]" * 101 + "\n", None),
    ],
)
def test_yaml_that_crashed_is_reported_with_where(text: str, path: str | None) -> None:
    with pytest.raises(SpecError) as caught:
        parse(text)
    problems = caught.value.problems
    if path is None:
        assert "line 2" in problems[0] and "nested more than 50 levels" in problems[0]
    else:
        assert any(f": {path}: " in p for p in problems), problems


def test_dates_and_numbers_that_look_alike_stay_what_the_spec_means() -> None:
    spec = admissions_spec()
    spec["release"]["published"] = "2024-02-29"  # type: ignore[index]
    spec["release"]["period"] = "2024-01-01"  # type: ignore[index]
    parsed = parse(yaml.safe_dump(spec).replace("'2024-02-29'", "2024-02-29"))
    assert str(parsed.release.published) == "2024-02-29"
    assert parsed.release.period == "2024-01-01"
