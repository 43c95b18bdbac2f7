"""Tests for the synthetic microdata generator: structure, realism, determinism, errors.

Statistical checks use a fixed seed and tolerances of a few standard errors derived from the
sample size, so they are deterministic and would still pass for almost every other seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from publisher import demo
from publisher.errors import InputError
from publisher.spec import ReleaseSpec, load

# Standard errors allowed either side of an expected share: at 4, a correct generator fails
# one check in about 16,000 seeds.
Z = 4.0

ENVIRONMENT_SHARES = {
    "Familial": 0.26,
    "Child Sexual Exploitation": 0.17,
    "Institutional": 0.09,
    "Ritualistic": 0.01,
    "Other": 0.38,
    "Unknown": 0.09,
}


def _share(mask: pl.Series) -> float:
    """The share of True in a boolean column."""
    return float(mask.to_numpy().mean())


def _read(path: Path) -> pl.DataFrame:
    # Everything as text, as the publisher reads inputs: "Yes" must stay "Yes".
    return pl.read_csv(path, infer_schema=False)


@pytest.fixture(scope="module")
def default_files(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoFiles:
    return demo.generate(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def large_files(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoFiles:
    return demo.generate(tmp_path_factory.mktemp("large"), crimes=50_000)


@pytest.fixture(scope="module")
def large(large_files: demo.DemoFiles) -> dict[str, pl.DataFrame]:
    return {
        "crimes": _read(large_files.crimes),
        "victims": _read(large_files.victims),
        "suspects": _read(large_files.suspects),
    }


def test_writes_the_four_files_into_a_new_folder(tmp_path: Path) -> None:
    out_dir = tmp_path / "new" / "demo"
    files = demo.generate(out_dir, crimes=300)
    assert files == demo.DemoFiles(
        crimes=out_dir / "crimes.csv",
        victims=out_dir / "victims.csv",
        suspects=out_dir / "suspects.csv",
        spec=out_dir / "release.yaml",
    )
    # Nothing else is left behind (no staging folder or temp files).
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "crimes.csv",
        "release.yaml",
        "suspects.csv",
        "victims.csv",
    ]


def test_csv_layout_is_utf8_comma_lf_with_header(default_files: demo.DemoFiles) -> None:
    headers = {
        default_files.crimes: "crime_id,force,offence_type,environment,online_element,victim_id",
        default_files.victims: "victim_id,age_band,sex,ethnicity",
        default_files.suspects: "crime_id,suspect_id,age_band,sex,ethnicity",
    }
    for path, header in headers.items():
        data = path.read_bytes()
        data.decode("utf-8")
        assert b"\r" not in data
        assert data.endswith(b"\n")
        assert data.split(b"\n", 1)[0].decode() == header


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = demo.generate(tmp_path / "a", crimes=2000, seed=7)
    second = demo.generate(tmp_path / "b", crimes=2000, seed=7)
    for name in ("crimes", "victims", "suspects", "spec"):
        assert getattr(first, name).read_bytes() == getattr(second, name).read_bytes(), name


def test_different_seeds_give_different_data(tmp_path: Path) -> None:
    first = demo.generate(tmp_path / "a", crimes=2000, seed=1)
    second = demo.generate(tmp_path / "b", crimes=2000, seed=2)
    for name in ("crimes", "victims", "suspects"):
        assert getattr(first, name).read_bytes() != getattr(second, name).read_bytes(), name


def test_exact_number_of_crimes(tmp_path: Path) -> None:
    for crimes in (1, 2, 43, 44, 45, 777):
        files = demo.generate(tmp_path / str(crimes), crimes=crimes)
        assert _read(files.crimes).height == crimes


def test_a_single_crime_still_has_a_group_of_suspects(tmp_path: Path) -> None:
    files = demo.generate(tmp_path, crimes=1)
    suspects = _read(files.suspects)
    assert suspects.height >= 2
    assert suspects["crime_id"].n_unique() == 1
    assert _read(files.victims).height == 1


def test_spec_loads_and_declares_the_release(default_files: demo.DemoFiles) -> None:
    spec = load(default_files.spec)
    assert spec.release.id == "csae-group-based-demo"
    assert spec.release.synthetic is True
    assert "synthetic" in spec.release.title.lower()
    assert "synthetic" in spec.release.description.lower()
    assert spec.release.version == "1.0.0"
    assert spec.release.licence == "OGL-UK-3.0"
    assert spec.release.contact.email == "statistics@example.org"
    assert "seed 2023" in spec.release.sources[0].description
    assert "4,200 crimes" in spec.release.sources[0].description
    assert (spec.privacy.model, spec.privacy.rho, spec.privacy.delta) == ("zcdp", 0.5, 1e-7)
    assert (spec.disclosure.rounding_base, spec.disclosure.threshold) == (5, 10)
    # Relative paths resolve to the files written beside the spec.
    assert spec.input_path("crimes") == default_files.crimes.resolve()
    assert spec.input_path("victims") == default_files.victims.resolve()
    assert spec.input_path("suspects") == default_files.suspects.resolve()
    identifiers = {
        name: (i.identifier, i.max_records_per_person) for name, i in spec.inputs.items()
    }
    assert identifiers == {
        "crimes": ("victim_id", 5),
        "victims": ("victim_id", 1),
        "suspects": ("suspect_id", 1),
    }
    assert {t.name: t.weight for t in spec.tables} == {
        "crimes-by-force": 2,
        "crimes-by-region": 1,
        "crimes-by-environment": 2,
        "crimes-by-offence-type-and-environment": 1,
        "crimes-by-online-element": 1,
        "victims-by-age-band-and-sex": 1,
        "suspects-by-age-band-and-sex": 2,
        "suspects-by-ethnicity": 1,
    }
    assert {t.counts for t in spec.tables if t.input == "suspects"} == {"suspects"}
    shares = {share.name: share for share in spec.shares}
    assert shares["familial-share"].numerator == {"environment": ["Familial"]}
    assert shares["familial-share"].denominator == {}
    known_ages = shares["suspects-aged-10-to-17"].denominator["age_band"]
    assert "Unknown" not in known_ages
    assert len(known_ages) == len(spec.categories["suspect_age_band"].values) - 1


def test_forces_are_the_44_in_domain_order_with_regions(default_files: demo.DemoFiles) -> None:
    force = load(default_files.spec).categories["force"]
    assert len(force.values) == 44
    assert force.values[:3] == ["Cleveland", "Durham", "Northumbria"]
    assert force.values[-1] == "British Transport Police"
    assert force.definitions["Cleveland"] == "A territorial police force in the North East region."
    assert force.definitions["British Transport Police"].startswith("A national police force")
    assert set(force.definitions) == set(force.values)


def test_every_key_of_every_category_is_defined(default_files: demo.DemoFiles) -> None:
    """The data dictionary defines every category of the demo (issue 14)."""
    categories = load(default_files.spec).categories
    for name, category in categories.items():
        assert set(category.definitions) == set(category.values), name
        assert all(text.strip().endswith(".") for text in category.definitions.values()), name
    assert categories["region"].definitions["London"] == (
        "The area policed by City of London and Metropolitan Police."
    )
    assert categories["suspect_age_band"].definitions["55 and over"] == (
        "Aged 55 or over when the offence took place."
    )


def test_the_demo_fills_the_release_page_keys(default_files: demo.DemoFiles) -> None:
    release = load(default_files.spec).release
    assert release.statistics_status == "not-official"
    assert release.contact.statistician and release.press is not None
    assert release.url and release.versions_url and release.related
    assert "Group-based" in release.glossary


def _spec_and_frames(
    files: demo.DemoFiles,
) -> tuple[ReleaseSpec, dict[str, pl.DataFrame]]:
    spec = load(files.spec)
    frames = {name: _read(spec.input_path(name)) for name in spec.inputs}
    return spec, frames


def test_every_value_is_a_declared_key(default_files: demo.DemoFiles) -> None:
    spec, frames = _spec_and_frames(default_files)
    for name, source in spec.inputs.items():
        frame = frames[name]
        assert frame[source.identifier].null_count() == 0
        for column, declared in source.columns.items():
            if declared.derived_from is not None:
                continue  # computed from another column, not read from the file
            keys = set(spec.categories[declared.categories].values)
            found = set(frame[column].to_list())
            assert found <= keys, (name, column, found - keys)


def test_ids_are_unique_opaque_and_consistent(default_files: demo.DemoFiles) -> None:
    _, frames = _spec_and_frames(default_files)
    crimes, victims, suspects = frames["crimes"], frames["victims"], frames["suspects"]
    assert crimes["crime_id"].is_unique().all()
    assert victims["victim_id"].is_unique().all()
    assert suspects.select("crime_id", "suspect_id").is_unique().all()
    assert crimes["crime_id"].str.contains(r"^CR\d{8}$").all()
    assert victims["victim_id"].str.contains(r"^VI\d{8}$").all()
    assert suspects["suspect_id"].str.contains(r"^SU\d{8}$").all()
    # Every victim has a crime and every crime a victim; suspects link to real crimes.
    assert set(crimes["victim_id"]) == set(victims["victim_id"])
    assert set(suspects["crime_id"]) == set(crimes["crime_id"])


def test_row_order_does_not_follow_force(large: dict[str, pl.DataFrame]) -> None:
    # Rows are sorted by crime id; if ids were numbered force by force the force would
    # rarely change between neighbours. With random ids it changes as often as by chance.
    force = large["crimes"]["force"]
    changes = int((force != force.shift(1)).sum()) - 1
    shares = force.value_counts(normalize=True)["proportion"]
    expected = (force.len() - 1) * (1 - float((shares**2).sum()))
    assert changes > 0.95 * expected


def test_every_crime_has_two_or_more_suspects(large: dict[str, pl.DataFrame]) -> None:
    per_crime = large["suspects"].group_by("crime_id").len()
    assert per_crime.height == large["crimes"].height
    assert per_crime["len"].min() == 2
    assert (per_crime["len"] > 2).any()


def test_suspect_attributes_are_the_same_on_every_record(large: dict[str, pl.DataFrame]) -> None:
    distinct = (
        large["suspects"]
        .group_by("suspect_id")
        .agg(pl.col("age_band", "sex", "ethnicity").n_unique())
    )
    assert distinct.select(pl.max_horizontal("age_band", "sex", "ethnicity").max()).item() == 1


def test_suspects_are_linked_to_several_crimes_in_one_force(
    large: dict[str, pl.DataFrame],
) -> None:
    suspects = large["suspects"].join(large["crimes"].select("crime_id", "force"), on="crime_id")
    per_suspect = suspects.group_by("suspect_id").agg(
        pl.len().alias("crimes"), pl.col("force").n_unique().alias("forces")
    )
    assert (per_suspect["crimes"] >= 2).sum() > 0
    # Beyond the suspects cap of 3, so truncation matters.
    assert (per_suspect["crimes"] > 3).sum() > 0
    assert per_suspect["forces"].max() == 1


def test_crimes_per_victim_goes_beyond_the_cap(default_files: demo.DemoFiles) -> None:
    per_victim = _read(default_files.crimes).group_by("victim_id").len()["len"]
    assert _share(per_victim == 1) > 0.5
    assert (per_victim > 1).sum() > 0
    assert (per_victim > 5).sum() > 0


def test_environment_shares_match_2023(large: dict[str, pl.DataFrame]) -> None:
    crimes = large["crimes"]
    n_crimes = crimes.height
    # Environment is drawn once per victim, so a victim's crimes move together: the variance
    # of a share is p(1-p) * sum(k_v^2) / N^2, with k_v the crimes of victim v (the binomial
    # standard error when every victim has one crime).
    sum_k_squared = float((crimes.group_by("victim_id").len()["len"].cast(pl.Float64) ** 2).sum())
    counts = dict(crimes.group_by("environment").len().iter_rows())
    for environment, expected in ENVIRONMENT_SHARES.items():
        share = counts.get(environment, 0) / n_crimes
        standard_error = math.sqrt(expected * (1 - expected) * sum_k_squared) / n_crimes
        assert abs(share - expected) < Z * standard_error, (environment, share)


def test_offence_mix_depends_on_environment(large: dict[str, pl.DataFrame]) -> None:
    crimes = large["crimes"]
    online_offences = ["Sexual grooming", "Indecent images of children"]

    def online_offence_share(environment: str) -> float:
        rows = crimes.filter(pl.col("environment") == environment)
        return _share(rows["offence_type"].is_in(online_offences))

    assert online_offence_share("Child Sexual Exploitation") > 1.5 * online_offence_share(
        "Familial"
    )
    online = crimes.group_by("offence_type").agg((pl.col("online_element") == "Yes").mean())
    by_offence = dict(online.iter_rows())
    assert by_offence["Indecent images of children"] > 3 * by_offence["Rape of a child"]


def test_about_48_percent_of_suspects_with_known_age_are_10_to_17(
    large: dict[str, pl.DataFrame],
) -> None:
    suspects = large["suspects"].unique("suspect_id")
    known = suspects.filter(pl.col("age_band") != "Unknown")
    # Ages are drawn independently per suspect: a plain binomial standard error.
    standard_error = math.sqrt(0.48 * 0.52 / known.height)
    share = _share(known["age_band"] == "10 to 17")
    assert abs(share - 0.48) < Z * standard_error
    # A sizeable share of ages is unknown, and about two thirds of ethnicities not recorded.
    assert 0.2 < 1 - known.height / suspects.height < 0.4
    not_recorded = _share(suspects["ethnicity"] == "Not recorded")
    assert 0.6 < not_recorded < 0.75


def test_people_are_mostly_female_victims_and_male_suspects(
    large: dict[str, pl.DataFrame],
) -> None:
    assert _share(large["victims"]["sex"] == "Female") > 0.7
    suspects = large["suspects"].unique("suspect_id")
    assert _share(suspects["sex"] == "Male") > 0.8
    victims_not_recorded = _share(large["victims"]["ethnicity"] == "Not recorded")
    assert 0.25 < victims_not_recorded < 0.5


def test_all_44_forces_present_and_very_uneven(default_files: demo.DemoFiles) -> None:
    per_force = dict(_read(default_files.crimes).group_by("force").len().iter_rows())
    assert len(per_force) == 44
    assert max(per_force, key=lambda force: per_force[force]) == "Metropolitan Police"
    assert max(per_force.values()) / min(per_force.values()) > 50
    assert per_force["City of London"] < 10
    assert per_force["British Transport Police"] < per_force["Cumbria"]


@pytest.mark.parametrize("crimes", [0, -5, demo.MAX_CRIMES + 1])
def test_refuses_a_number_of_crimes_out_of_range(tmp_path: Path, crimes: int) -> None:
    with pytest.raises(InputError, match=r"crimes must be between 1 and 50,000,000"):
        demo.generate(tmp_path / "out", crimes=crimes)
    assert not (tmp_path / "out").exists()


def test_refuses_a_negative_seed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"seed must be 0 or more"):
        demo.generate(tmp_path, crimes=10, seed=-1)


def test_refuses_a_file_as_the_output_folder(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    target.write_text("not a folder", encoding="utf-8")
    with pytest.raises(InputError, match=r"exists and is not a folder"):
        demo.generate(target, crimes=10)
    assert target.read_text(encoding="utf-8") == "not a folder"


def test_regenerating_replaces_the_files(tmp_path: Path) -> None:
    demo.generate(tmp_path, crimes=50, seed=1)
    files = demo.generate(tmp_path, crimes=80, seed=1)
    assert _read(files.crimes).height == 80
    assert "80 crimes" in files.spec.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crimes.csv",
        "release.yaml",
        "suspects.csv",
        "victims.csv",
    ]


# --- Parquet, in parts ----------------------------------------------------------------------


def test_parquet_demo_is_written_in_parts_with_unique_linked_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three parts of 700 crimes: ids number on from part to part, references hold across
    # parts, and the spec reads the folders. (Memory is bounded by the part's size.)
    monkeypatch.setattr(demo, "PART_CRIMES", 700)
    files = demo.generate(tmp_path, crimes=2_000, seed=5, format="parquet")
    assert sorted(p.name for p in files.crimes.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    crimes, victims, suspects = (
        pl.read_parquet(folder / "*.parquet")
        for folder in (files.crimes, files.victims, files.suspects)
    )
    assert crimes.height == 2_000 and crimes["crime_id"].n_unique() == 2_000
    assert victims["victim_id"].n_unique() == victims.height
    assert set(crimes["victim_id"]) == set(victims["victim_id"])
    assert set(suspects["crime_id"]) <= set(crimes["crime_id"])
    assert {len(value) for value in crimes["crime_id"]} == {len("CR") + 8}
    # A suspect belongs to one part: their attributes agree on every record.
    assert suspects.group_by("suspect_id").agg(pl.col("sex").n_unique())["sex"].max() == 1
    spec = load(files.spec)
    assert {name: source.format for name, source in spec.inputs.items()} == dict.fromkeys(
        ("crimes", "victims", "suspects"), "parquet"
    )
    assert spec.input_path("crimes") == files.crimes.resolve()
    # Regenerating replaces the folders.
    again = demo.generate(tmp_path, crimes=700, seed=5, format="parquet")
    assert len(list(again.crimes.iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
