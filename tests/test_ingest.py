"""Reading the private inputs: columns, categories, formats, and errors that leak nothing."""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import polars.selectors as cs
import pytest
import yaml

from publisher import ingest
from publisher.errors import InputError
from publisher.spec import ReleaseSpec, parse
from tests.conftest import WARDS, admissions_rows, admissions_spec, write_admissions

HEADER = "patient_ref,ward,outcome\n"
# Unique strings planted in private rows: no error message may ever contain them.
MARKERS = ("LEAKCHECK-7f3a", "LEAKCHECK-id-91c2", "LEAKCHECK-extra-0d5e")


def build_spec(
    folder: Path,
    data: str = "admissions.csv",
    change: Callable[[dict[str, Any]], None] | None = None,
) -> ReleaseSpec:
    """The admissions spec with inputs relative to ``folder``, optionally changed first."""
    raw = copy.deepcopy(admissions_spec(data))
    if change is not None:
        change(raw)
    return parse(yaml.safe_dump(raw, sort_keys=False), base_dir=folder)


def write(folder: Path, content: str | bytes, name: str = "admissions.csv") -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def problems_of(spec: ReleaseSpec) -> list[str]:
    """The problems :func:`ingest.check` reports; fails if the inputs are accepted."""
    with pytest.raises(InputError) as caught:
        ingest.check(spec)
    # load runs the same checks: it must refuse the same inputs with the same problems.
    with pytest.raises(InputError) as loaded:
        loaded_frames(spec)
    assert loaded.value.problems == caught.value.problems
    for problem in caught.value.problems:
        assert "\n" not in problem
        assert "Traceback" not in problem
    return caught.value.problems


def loaded_frames(spec: ReleaseSpec) -> dict[str, pl.DataFrame]:
    """What :func:`ingest.load` gives, collected while its staged files exist, with the
    categorical columns (staged as enums) as text."""
    with ingest.load(spec) as frames:
        return {
            name: frame.collect().with_columns(cs.enum().cast(pl.String))
            for name, frame in frames.items()
        }


def hashed(identifier: str) -> int:
    """An identifier as ingest stages it."""
    return int(pl.select(ingest.identifier_hash(pl.lit(identifier))).item())


def staged(rows: list[tuple[str, str, str]]) -> list[tuple[int, str, str]]:
    return sorted((hashed(ref), ward, outcome) for ref, ward, outcome in rows)


def map_unknown(column: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["columns"][column]["on_unknown"] = "map"

    return change


# --- valid data --------------------------------------------------------------------------


def test_check_counts_the_rows_of_each_input(tmp_path: Path) -> None:
    write_admissions(tmp_path)

    summary = ingest.check(build_spec(tmp_path))

    assert summary == {"admissions": 600}
    assert isinstance(summary, ingest.InputSummary)


def test_load_returns_identifier_and_categorical_columns_only(tmp_path: Path) -> None:
    rows = admissions_rows(40)
    lines = ["name,patient_ref,postcode,ward,outcome,notes"] + [
        f"{MARKERS[1]}-{index},{ref},{MARKERS[2]},{ward},{outcome},free text"
        for index, (ref, ward, outcome) in enumerate(rows)
    ]
    write(tmp_path, "\n".join(lines) + "\n")

    with ingest.load(build_spec(tmp_path)) as frames:
        assert set(frames) == {"admissions"}
        frame = frames["admissions"]
        assert isinstance(frame, pl.LazyFrame)
        # The plan itself selects only the declared columns, not just the collected result.
        assert set(frame.collect_schema().names()) == {"patient_ref", "ward", "outcome"}
        data = frame.collect()
    assert data.height == 40
    # The identifier is staged as its hash, never in clear; categories as enums.
    assert data.schema["patient_ref"] == pl.UInt64
    assert data.schema["ward"] == pl.Enum(WARDS)
    text = data.with_columns(cs.enum().cast(pl.String))
    assert sorted(text.select("patient_ref", "ward", "outcome").rows()) == staged(rows)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, ("\ufeff" + HEADER + "P1,Maternity,Discharged\n").encode("utf-8"))
    spec = build_spec(tmp_path)

    assert ingest.check(spec) == {"admissions": 1}
    data = loaded_frames(spec)["admissions"]
    assert data.columns.count("patient_ref") == 1
    assert data.row(0, named=True) == {
        "patient_ref": hashed("P1"),
        "ward": "Maternity",
        "outcome": "Discharged",
    }


def test_windows_line_endings_are_accepted(tmp_path: Path) -> None:
    write(
        tmp_path,
        (HEADER + "P1,Maternity,Discharged\nP2,Oncology,Not known\n").replace("\n", "\r\n"),
    )
    spec = build_spec(tmp_path)

    assert ingest.check(spec) == {"admissions": 2}
    assert loaded_frames(spec)["admissions"]["outcome"].to_list() == [
        "Discharged",
        "Not known",
    ]


def test_quoted_fields_may_hold_commas_and_line_breaks(tmp_path: Path) -> None:
    # Free text beside the declared columns, as exports from case systems have it.
    write(
        tmp_path,
        "patient_ref,notes,ward,outcome\n"
        'P1,"fell, then\nadmitted",Maternity,Discharged\n'
        'P2,"""quoted"" note",Oncology,Transferred\n',
    )
    spec = build_spec(tmp_path)

    assert ingest.check(spec) == {"admissions": 2}
    assert sorted(loaded_frames(spec)["admissions"].rows()) == staged(
        [("P1", "Maternity", "Discharged"), ("P2", "Oncology", "Transferred")]
    )


def test_parquet_input_is_read(tmp_path: Path) -> None:
    rows = admissions_rows(30)
    frame = pl.DataFrame(rows, schema=["patient_ref", "ward", "outcome"], orient="row")
    frame.with_columns(pl.lit(7).alias("age")).write_parquet(tmp_path / "admissions.parquet")

    def as_parquet(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["format"] = "parquet"

    spec = build_spec(tmp_path, "admissions.parquet", as_parquet)

    assert ingest.check(spec) == {"admissions": 30}
    data = loaded_frames(spec)["admissions"]
    assert set(data.columns) == {"patient_ref", "ward", "outcome"}
    assert sorted(data.select("patient_ref", "ward", "outcome").rows()) == staged(rows)


def test_parquet_columns_that_are_not_text_are_read_as_text(tmp_path: Path) -> None:
    pl.DataFrame(
        {"patient_ref": [101, 102, 102], "ward": ["Oncology"] * 3, "outcome": ["Discharged"] * 3}
    ).write_parquet(tmp_path / "admissions.parquet")

    def as_parquet(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["format"] = "parquet"

    data = loaded_frames(build_spec(tmp_path, "admissions.parquet", as_parquet))["admissions"]

    assert data["patient_ref"].to_list() == [hashed("101"), hashed("102"), hashed("102")]


def test_a_folder_of_parquet_parts_is_read_as_one_table(tmp_path: Path) -> None:
    # As Spark writes a table: part files, a _SUCCESS marker, and a column partitioned
    # into key=value folders (here the ward).
    rows = admissions_rows(60)
    frame = pl.DataFrame(rows, schema=["patient_ref", "ward", "outcome"], orient="row")
    table = tmp_path / "admissions.parquet"
    for (ward,), part in frame.group_by("ward"):
        folder = table / f"ward={ward}"
        folder.mkdir(parents=True)
        for number, chunk in enumerate(part.drop("ward").iter_slices(7)):
            chunk.write_parquet(folder / f"part-{number:05d}.parquet")
    (table / "_SUCCESS").write_bytes(b"")

    def as_parquet(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["format"] = "parquet"

    spec = build_spec(tmp_path, "admissions.parquet", as_parquet)

    assert ingest.check(spec) == {"admissions": 60}
    data = loaded_frames(spec)["admissions"]
    assert sorted(data.select("patient_ref", "ward", "outcome").rows()) == staged(rows)


def test_an_empty_folder_is_not_a_parquet_table(tmp_path: Path) -> None:
    (tmp_path / "admissions.parquet").mkdir()

    def as_parquet(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["format"] = "parquet"

    (problem,) = problems_of(build_spec(tmp_path, "admissions.parquet", as_parquet))
    assert "(inputs.admissions.path): the folder holds no Parquet files" in problem


# --- files that cannot be used -----------------------------------------------------------


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    (problem,) = problems_of(build_spec(tmp_path))

    assert problem.startswith(f"{tmp_path / 'admissions.csv'} (inputs.admissions.path): ")
    assert "does not exist" in problem


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "admissions.csv").mkdir()

    (problem,) = problems_of(build_spec(tmp_path))

    assert problem.startswith(f"{tmp_path / 'admissions.csv'} (inputs.admissions.path): ")
    assert "directory" in problem


def test_an_empty_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "")

    (problem,) = problems_of(build_spec(tmp_path))

    assert "empty" in problem


def test_a_header_without_rows_is_reported(tmp_path: Path) -> None:
    write(tmp_path, HEADER)

    (problem,) = problems_of(build_spec(tmp_path))

    assert problem.startswith(f"{tmp_path / 'admissions.csv'} (inputs.admissions): ")
    assert "no rows" in problem


@pytest.mark.parametrize(
    ("header", "missing", "present"),
    [
        ("patient_ref,colour", ["ward", "outcome"], ["patient_ref"]),
        ("ward,outcome", ["patient_ref"], ["ward", "outcome"]),
        ("Patient_Ref,Ward,outcome", ["patient_ref", "ward"], ["outcome"]),
        ("id,name", ["patient_ref", "ward", "outcome"], []),
    ],
)
def test_every_missing_column_is_named(
    tmp_path: Path, header: str, missing: list[str], present: list[str]
) -> None:
    columns = header.count(",") + 1
    write(tmp_path, header + "\n" + ",".join(["x"] * columns) + "\n")

    (problem,) = problems_of(build_spec(tmp_path))

    assert ("missing columns " if len(missing) > 1 else "missing column ") in problem
    for column in missing:
        assert f"'{column}'" in problem
    for column in present:
        assert f"'{column}'" not in problem
    assert "comma-separated" not in problem


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_another_delimiter_gets_a_hint(tmp_path: Path, delimiter: str) -> None:
    write(
        tmp_path,
        f"patient_ref{delimiter}ward{delimiter}outcome\nP1{delimiter}Maternity{delimiter}Discharged\n",
    )

    (problem,) = problems_of(build_spec(tmp_path))

    assert "comma-separated" in problem
    for column in ("patient_ref", "ward", "outcome"):
        assert f"'{column}'" in problem


def test_non_utf8_bytes_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        (HEADER + "P1,Maternity,Discharged\nP2,Maternit\xe9,Discharged\n").encode("latin-1"),
    )

    (problem,) = problems_of(build_spec(tmp_path))

    assert problem.startswith(f"{tmp_path / 'admissions.csv'} (inputs.admissions")
    assert "UTF-8" in problem


def test_a_malformed_row_is_reported(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "P1,Maternity,Discharged,surplus\nP2,Maternity\n")

    (problem,) = problems_of(build_spec(tmp_path))

    assert "cannot be read" in problem


def test_a_file_that_is_not_parquet_is_reported(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "P1,Maternity,Discharged\n", name="admissions.parquet")

    def as_parquet(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["format"] = "parquet"

    (problem,) = problems_of(build_spec(tmp_path, "admissions.parquet", as_parquet))

    assert "cannot be read as PARQUET" in problem


def test_a_header_repeating_a_declared_column_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "patient_ref,ward,ward,outcome\nP1,Maternity,Oncology,Discharged\n")

    (problem,) = problems_of(build_spec(tmp_path))

    assert "'ward'" in problem


def test_a_trailing_blank_line_is_not_a_record_of_empty_values(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "P1,Maternity,Discharged\n\n")

    try:
        rows = ingest.check(build_spec(tmp_path))
    except InputError as error:
        # Refusing is acceptable too, if the message says what is wrong.
        messages = [problem.replace(str(tmp_path), "<folder>") for problem in error.problems]
        assert any("blank" in message for message in messages), messages
    else:
        assert rows == {"admissions": 1}


# --- values ------------------------------------------------------------------------------


def test_empty_identifiers_are_counted(tmp_path: Path) -> None:
    bad = [("", "Maternity", "Discharged")] * 1234
    lines = [",".join(row) for row in [*admissions_rows(10), *bad]]
    write(tmp_path, HEADER + "\n".join(lines) + "\n")

    (problem,) = problems_of(build_spec(tmp_path))

    assert "column 'patient_ref' (the identifier) has 1,234 empty values" in problem


def test_values_outside_the_categories_are_counted_per_column(tmp_path: Path) -> None:
    rows = [
        *admissions_rows(20),
        ("P9001", "Surgery", "Discharged"),
        ("P9002", "Surgery", "Discharged"),
        ("P9003", "", "Discharged"),  # empty counts as outside
        ("P9004", "maternity", "Discharged"),  # keys are case-sensitive
        ("P9005", "Maternity", "Died"),
    ]
    write(tmp_path, HEADER + "\n".join(",".join(row) for row in rows) + "\n")

    problems = problems_of(build_spec(tmp_path))

    assert len(problems) == 2, problems
    ward = next(p for p in problems if "column 'ward'" in p)
    outcome = next(p for p in problems if "column 'outcome'" in p)
    assert "has 4 values that are empty or outside categories.ward" in ward
    assert "has 1 values that are empty or outside categories.outcome" in outcome
    assert "inputs.admissions.columns.ward.on_unknown: map" in ward
    for problem in problems:
        assert problem.startswith(f"{tmp_path / 'admissions.csv'} (inputs.admissions): ")
        for value in ("Surgery", "maternity", "Died", "P900"):
            assert value not in problem


def test_values_with_surrounding_spaces_are_outside_the_categories(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "P1, Maternity,Discharged\nP2,Maternity ,Discharged\n")

    (problem,) = problems_of(build_spec(tmp_path))

    assert "column 'ward' has 2 values" in problem


def test_map_sends_outside_and_empty_values_to_the_unknown_key(tmp_path: Path) -> None:
    write(
        tmp_path,
        HEADER
        + "P1,Maternity,Discharged\n"
        + "P2,Maternity,Absconded\n"
        + "P3,Oncology,\n"
        + "P4,Oncology,Transferred\n"
        + "P5,Cardiology,Not known\n",
    )
    spec = build_spec(tmp_path, change=map_unknown("outcome"))

    assert ingest.check(spec) == {"admissions": 5}
    data = loaded_frames(spec)["admissions"]
    assert sorted(data.rows()) == staged(
        [
            ("P1", "Maternity", "Discharged"),
            ("P2", "Maternity", "Not known"),
            ("P3", "Oncology", "Not known"),
            ("P4", "Oncology", "Transferred"),
            # A column without 'map' is left exactly as it was.
            ("P5", "Cardiology", "Not known"),
        ]
    )


def test_map_on_one_column_does_not_excuse_another(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "P1,Surgery,Absconded\nP2,Maternity,\n")

    (problem,) = problems_of(build_spec(tmp_path, change=map_unknown("outcome")))

    assert "column 'ward' has 1 values" in problem


def test_map_does_not_excuse_empty_identifiers(tmp_path: Path) -> None:
    write(tmp_path, HEADER + ",Maternity,Absconded\nP2,Maternity,Discharged\n")

    (problem,) = problems_of(build_spec(tmp_path, change=map_unknown("outcome")))

    assert "(the identifier) has 1 empty values" in problem


# --- privacy: raw values never reach an error message -------------------------------------


def leaky_files() -> dict[str, str | bytes]:
    ward, ident, extra = MARKERS
    good = "\n".join(",".join(row) for row in admissions_rows(12))
    return {
        "value outside the categories": (
            f"{HEADER}{good}\n{ident},{ward},Discharged\n{ident}-2,Maternity,{ward}\n"
        ),
        "empty identifier": f"{HEADER}{good}\n,Maternity,Discharged\n,{ward},{extra}\n",
        "extra column": (
            f"patient_ref,ward,outcome,{extra}\nP1,Maternity,Discharged,{ward}\n"
            f"{ident},{ward},Discharged,{extra}\n"
        ),
        "missing column": f"patient_ref,{extra}\n{ident},{ward}\n",
        "other delimiter": f"patient_ref;ward;outcome\n{ident};{ward};{extra}\n",
        "ragged row": f"{HEADER}{good}\n{ident},{ward},Discharged,{extra}\n{ident},{ward}\n",
        "unclosed quote": f'{HEADER}{good}\n{ident},"{ward},{extra}\n',
        "not UTF-8": f"{HEADER}{good}\n{ident},{ward}\xe9,{extra}\n".encode("latin-1"),
        "binary": b"\x00\x01" + ward.encode() + b"\xff\xfe" + ident.encode(),
    }


@pytest.mark.parametrize("case", list(leaky_files()))
@pytest.mark.parametrize("on_unknown", ["error", "map"])
def test_errors_never_contain_raw_values(tmp_path: Path, case: str, on_unknown: str) -> None:
    write(tmp_path, leaky_files()[case])
    spec = build_spec(tmp_path, change=map_unknown("outcome") if on_unknown == "map" else None)

    with pytest.raises(InputError) as caught:
        ingest.check(spec)

    # Not even a traceback (PUBLISHER_DEBUG=1) may show them: check the whole chain.
    texts = [*caught.value.problems, *traceback.format_exception(caught.value)]
    for text in texts:
        for marker in MARKERS:
            assert marker not in text


def test_parquet_errors_never_contain_raw_values(tmp_path: Path) -> None:
    ward, ident, extra = MARKERS
    pl.DataFrame(
        {"patient_ref": [ident, None], "ward": [ward, "Maternity"], "outcome": [extra, "Died"]}
    ).write_parquet(tmp_path / "admissions.parquet")

    def as_parquet(raw: dict[str, Any]) -> None:
        raw["inputs"]["admissions"]["format"] = "parquet"

    problems = problems_of(build_spec(tmp_path, "admissions.parquet", as_parquet))

    assert len(problems) == 3, problems
    for problem in problems:
        for marker in MARKERS:
            assert marker not in problem


# --- several inputs ----------------------------------------------------------------------


def with_transfers(raw: dict[str, Any]) -> None:
    """A second input with its own identifier and file."""
    raw["inputs"]["transfers"] = {
        "path": "transfers.csv",
        "identifier": "transfer_ref",
        "unit": "patient",
        "max_records_per_person": 1,
        "columns": {"to_ward": {"categories": "ward"}},
    }
    raw["tables"].append(
        {
            "name": "transfers-by-ward",
            "input": "transfers",
            "by": ["to_ward"],
            "title": "Transfers by ward",
            "description": "Number of transfers into each ward.",
        }
    )


def test_every_input_is_checked(tmp_path: Path) -> None:
    write_admissions(tmp_path)
    write(
        tmp_path, "transfer_ref,to_ward\nT1,Oncology\nT2,Maternity\nT3,Maternity\n", "transfers.csv"
    )
    spec = build_spec(tmp_path, change=with_transfers)

    assert ingest.check(spec) == {"admissions": 600, "transfers": 3}
    frames = loaded_frames(spec)
    assert set(frames["transfers"].columns) == {"transfer_ref", "to_ward"}


def test_problems_of_all_inputs_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "P1,Surgery,Discharged\n,Maternity,Discharged\n")
    # transfers.csv is missing altogether.
    spec = build_spec(tmp_path, change=with_transfers)

    problems = problems_of(spec)

    assert len(problems) == 3, problems
    assert sum("(inputs.admissions)" in p for p in problems) == 2
    (transfers,) = [p for p in problems if "(inputs.transfers.path)" in p]
    assert transfers.startswith(str(tmp_path / "transfers.csv"))
    assert "does not exist" in transfers


def test_a_broken_second_input_blocks_the_whole_load(tmp_path: Path) -> None:
    write_admissions(tmp_path)
    write(tmp_path, "transfer_ref,ward\nT1,Oncology\n", "transfers.csv")

    (problem,) = problems_of(build_spec(tmp_path, change=with_transfers))

    assert "(inputs.transfers)" in problem
    assert "'to_ward'" in problem


def test_a_duckdb_table_is_read_like_a_file(tmp_path: Path) -> None:
    import duckdb

    rows = admissions_rows()
    frame = pl.DataFrame(rows, schema=["patient_ref", "ward", "outcome"], orient="row")
    database = tmp_path / "hospital.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.register("rows", frame.with_columns(pl.lit("private").alias("notes")))
        connection.execute('CREATE TABLE "stays 2025" AS SELECT * FROM rows')
    spec = admissions_spec()
    spec["inputs"]["admissions"].update(  # type: ignore[index]
        {"path": "hospital.duckdb", "format": "duckdb", "table": "stays 2025"}
    )
    loaded = loaded_frames(parse(yaml.safe_dump(spec), base_dir=tmp_path))["admissions"]
    assert sorted(loaded.columns) == ["outcome", "patient_ref", "ward"]
    assert loaded.height == len(rows)
    spec["inputs"]["admissions"]["table"] = "missing"  # type: ignore[index]
    with pytest.raises(InputError, match="has no table 'missing'"):
        loaded_frames(parse(yaml.safe_dump(spec), base_dir=tmp_path))


# --- records linked to the people of another unit --------------------------------------


def with_reviews(raw: dict[str, Any]) -> None:
    """Reviewers' records of admissions: each review hangs on one admission (and so on its
    patient), each reviewer is a person of their own unit."""
    raw["privacy"]["units"]["reviewer"] = {"title": "reviewer"}
    raw["inputs"]["admissions"]["references"] = {}
    raw["inputs"]["reviews"] = {
        "path": "reviews.csv",
        "identifier": "reviewer_ref",
        "unit": "reviewer",
        "max_records_per_person": 1,
        "references": {"admission_ref": "admissions.admission_ref"},
        "linked_units": {"patient": {"max_records_per_person": 2}},
        "columns": {"grade": {"categories": "ward"}},
    }
    raw["tables"].append(
        {
            "name": "reviewers-by-grade",
            "input": "reviews",
            "by": ["grade"],
            "title": "Reviewers",
            "description": "Reviewers by grade.",
        }
    )


def write_linked(folder: Path, admissions: str, reviews: str) -> None:
    write(folder, "patient_ref,admission_ref,ward,outcome\n" + admissions)
    write(folder, "reviewer_ref,admission_ref,grade\n" + reviews, "reviews.csv")


def test_each_record_carries_the_linked_person_it_depends_on(tmp_path: Path) -> None:
    write_linked(
        tmp_path,
        "P1,A1,Oncology,Discharged\nP1,A2,Maternity,Discharged\nP2,A3,Oncology,Discharged\n",
        "R1,A3,Oncology\nR1,A1,Oncology\nR2,A2,Maternity\n",
    )

    frames = loaded_frames(build_spec(tmp_path, change=with_reviews))

    reviews = frames["reviews"]
    assert reviews[ingest.linked_column("patient")].to_list() == [
        hashed("P2"),
        hashed("P1"),
        hashed("P1"),
    ]
    assert "admission_ref" not in reviews.columns  # keys were for the links only


def test_a_referenced_column_must_be_a_key(tmp_path: Path) -> None:
    write_linked(
        tmp_path,
        "P1,A1,Oncology,Discharged\nP2,A1,Oncology,Discharged\n",
        "R1,A1,Oncology\n",
    )

    (problem,) = problems_of(build_spec(tmp_path, change=with_reviews))

    assert "(inputs.admissions): column 'admission_ref'" in problem
    assert "1 repeated values" in problem and "make the column a key" in problem


def test_a_person_counted_once_needs_the_same_columns_on_every_record(tmp_path: Path) -> None:
    write_linked(
        tmp_path,
        "P1,A1,Oncology,Discharged\nP2,A2,Oncology,Discharged\n",
        "R1,A1,Oncology\nR1,A2,Maternity\nR2,A2,Maternity\n",
    )

    (problem,) = problems_of(build_spec(tmp_path, change=with_reviews))

    assert "(inputs.reviews): column 'grade' differs between the records of 1 person" in problem
    for value in ("R1", "Oncology", "Maternity"):
        assert value not in problem
