"""The release with its ledger: reserve before noise, commit after publishing, refuse
what would pass the cap or re-draw a version, even under concurrent releases."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from publisher import checks, ledger, package, pipeline
from publisher.errors import BudgetError
from tests.conftest import admissions_spec, start_release


def spec_with(make_release: Callable[..., Path], **privacy: object) -> Path:
    spec = admissions_spec()
    spec["privacy"] = {
        "model": "zcdp",
        "rho": 0.5,
        "cap": {"rho": 0.75},
        "units": {"patient": {"title": "patient"}},
        **privacy,
    }
    return make_release(spec)


def set_version(spec_path: Path, version: str) -> None:
    data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    data["release"]["version"] = version
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_release_is_recorded_with_its_files(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release)
    result = pipeline.release(spec_path, tmp_path / "out")
    (record,) = ledger.Ledger(tmp_path / "ledger.sqlite").spends()
    assert (record.status, record.version) == ("committed", "0.1.0")
    assert record.dataset == "hospital-admissions-test"
    assert record.loss == pytest.approx(result.measurements.total_loss)
    assert record.table_losses == {
        name: pytest.approx(loss)
        for name, loss in pipeline.measured_losses(result.measurements).items()
    }
    assert "admissions (truncation estimate)" in record.table_losses
    assert record.files == ledger.file_hashes(result.package_dir)
    meta = json.loads((result.package_dir / package.DESCRIPTOR).read_text(encoding="utf-8"))
    assert meta["privacy"]["loss"]["rho"] == record.loss


def test_a_release_past_the_cap_is_refused_writes_nothing_and_spends_nothing(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release)
    first = pipeline.release(spec_path, tmp_path / "out")
    before = snapshot(first.package_dir)
    set_version(spec_path, "0.2.0")
    with pytest.raises(BudgetError, match=r"cap of rho = 0\.75, 0\.5 is spent .* asks for 0\.5"):
        pipeline.release(spec_path, tmp_path / "out")
    assert snapshot(first.package_dir) == before
    records = ledger.Ledger(tmp_path / "ledger.sqlite").spends()
    assert [(r.version, r.status) for r in records] == [("0.1.0", "committed")]


def test_a_version_is_never_released_twice(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release, cap={"rho": 5})
    pipeline.release(spec_path, tmp_path / "out")
    with pytest.raises(BudgetError, match="already in the ledger"):
        pipeline.release(spec_path, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_check_reports_what_the_ledger_would_refuse_and_spends_nothing(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release)
    pipeline.check(spec_path)  # no ledger yet: fine, and none is created
    assert not (tmp_path / "ledger.sqlite").exists()
    pipeline.release(spec_path, tmp_path / "out")
    before = ledger.Ledger(tmp_path / "ledger.sqlite").spends()
    with pytest.raises(BudgetError, match="already in the ledger"):
        pipeline.check(spec_path)
    set_version(spec_path, "0.2.0")
    with pytest.raises(BudgetError, match="would pass the cap"):
        pipeline.check(spec_path)
    assert ledger.Ledger(tmp_path / "ledger.sqlite").spends() == before


def test_a_failure_after_noise_is_recorded_as_spent_and_keeps_the_old_package(
    make_release: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = spec_with(make_release, cap={"rho": 5})
    first = pipeline.release(spec_path, tmp_path / "out")
    before = snapshot(first.package_dir)
    set_version(spec_path, "0.2.0")

    def full_disk(content: package.ReleaseContent, out_dir: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(package, "stage", full_disk)
    with pytest.raises(package.PackageError, match="No space left on device while the package"):
        pipeline.release(spec_path, tmp_path / "out")
    assert snapshot(first.package_dir) == before
    book = ledger.Ledger(tmp_path / "ledger.sqlite")
    statuses = [(r.version, r.status, r.failure) for r in book.spends()]
    assert statuses == [("0.1.0", "committed", None), ("0.2.0", "failed", "OSError")]
    assert book.spent("hospital-admissions-test") == pytest.approx(1.0)


def test_the_ledger_must_not_be_inside_the_package(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release, ledger="out/ledger.sqlite")
    with pytest.raises(pipeline.PublisherError, match="must not be inside the published package"):
        pipeline.release(spec_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_eight_concurrent_releases_with_room_for_three(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release, cap={"rho": 1.5})
    specs = []
    for index in range(8):
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        data["release"]["version"] = f"1.{index}.0"
        path = tmp_path / f"release-{index}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        specs.append(path)
    processes = [
        start_release(path, tmp_path / f"out-{index}", tmp_path) for index, path in enumerate(specs)
    ]
    outcomes = []
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        outcomes.append((process.returncode, stderr))
    assert sorted(code for code, _ in outcomes) == [0, 0, 0, 1, 1, 1, 1, 1]
    refused = [err for code, err in outcomes if code == 1]
    assert all(err.startswith("Error: ") and "would pass the cap" in err for err in refused)
    assert all("Traceback" not in err and "locked" not in err for _, err in outcomes)
    book = ledger.Ledger(tmp_path / "ledger.sqlite")
    assert [r.status for r in book.spends()] == ["committed"] * 3
    assert book.spent("hospital-admissions-test") == pytest.approx(1.5)
    published = [index for index in range(8) if (tmp_path / f"out-{index}").exists()]
    assert len(published) == 3


def test_the_package_carries_documents_spreadsheets_zip_and_checksums(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    result = pipeline.release(spec_with(make_release), tmp_path / "out")
    folder = result.package_dir
    meta = json.loads((folder / package.DESCRIPTOR).read_text(encoding="utf-8"))
    listed = {item["path"]: item for item in meta["files"]}
    stem = meta["name"]
    assert set(listed) == {f"{stem}.ods", f"{stem}.xlsx"}
    documents = {r["path"]: r for r in meta["resources"] if "schema" not in r}
    assert set(documents) == {"README.md", "CHANGELOG.md"}
    for path, item in [*listed.items(), *documents.items()]:
        data = (folder / path).read_bytes()
        assert item["bytes"] == len(data)
        assert item["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for resource in meta["resources"]:
        assert resource["path"] in readme
        for field in resource.get("schema", {}).get("fields", []):
            assert f"`{field['name']}`" in readme
    with zipfile.ZipFile(folder / f"{stem}-{meta['version']}.zip") as archive:
        names = set(archive.namelist())
    expected = {"datapackage.json", f"{stem}.ods", f"{stem}.xlsx"}
    expected |= {resource["path"] for resource in meta["resources"]}
    # One top-level folder named after the release and version.
    assert names == {f"{stem}-{meta['version']}/{name}" for name in expected}
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    )
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(sums) == files - {"SHA256SUMS"}
    for path, digest in sums.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest


def test_a_new_version_archives_the_previous_one_and_marks_revisions(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release, cap={"rho": 5})
    first = pipeline.release(spec_path, tmp_path / "out")
    before = snapshot(first.package_dir)
    set_version(spec_path, "0.2.0")
    second = pipeline.release(spec_path, tmp_path / "out")
    folder = second.package_dir
    archived = folder / "archive" / "0.1.0"
    assert snapshot(archived) == before, "the previous version is kept as it was published"
    assert package.validate(archived) == []
    meta = json.loads((folder / package.DESCRIPTOR).read_text(encoding="utf-8"))
    assert meta["archive"] == [{"version": "0.1.0", "path": "archive/0.1.0/datapackage.json"}]
    assert meta["release"]["revises"] == "0.1.0"
    assert "[r]" in meta["markers"]
    changelog = (folder / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.index("## 0.2.0") < changelog.index("## 0.1.0")
    old = {name: read_table(archived, name) for name in ("admissions-by-ward",)}
    new = read_table(folder, "admissions-by-ward")
    for key, (value, marker) in new.items():
        if marker == "[low]":
            continue
        assert (marker == "[r]") == (value != old["admissions-by-ward"][key][0]), key


def test_provisional_figures_are_marked(make_release: Callable[..., Path], tmp_path: Path) -> None:
    spec = admissions_spec()
    spec["release"]["status"] = "provisional"  # type: ignore[index]
    result = pipeline.release(make_release(spec), tmp_path / "out")
    for value, marker in read_table(result.package_dir, "admissions-by-ward-and-outcome").values():
        assert marker == ("[p]" if value else "[low]")


def read_table(folder: Path, name: str) -> dict[tuple[str, ...], tuple[str, str]]:
    with (folder / "data" / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by = [c for c in rows[0] if c not in ("value", "marker", "lower_95", "upper_95")]
    return {tuple(row[c] for c in by): (row["value"], row["marker"]) for row in rows}


def test_an_unreadable_package_to_replace_is_refused_before_any_spend(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "datapackage.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(package.PackageError, match="the package there is not valid"):
        pipeline.release(spec_with(make_release), out)
    assert not (tmp_path / "ledger.sqlite").exists()
    assert (out / "datapackage.json").read_text(encoding="utf-8") == "{not json"


def test_a_release_reports_its_stages_and_how_far_each_has_gone(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    # Fails if a long stage stops reporting, if a fraction leaves [0, 1] or goes back
    # within a stage, or if a report names anything but stages, inputs and tables.
    reports: list[tuple[str, float | None]] = []
    pipeline.release(
        spec_with(make_release),
        tmp_path / "package",
        lambda step, fraction: reports.append((step, fraction)),
    )
    steps = list(dict.fromkeys(step for step, _ in reports))
    # The dry run runs beside the reading: the release waits for it (and says so) only if
    # it is still running once the inputs are checked.
    rehearsing = "Rehearsing the package with placeholder figures"
    assert [step for step in steps if step != rehearsing] == [
        "Reading and checking admissions",
        "Checking references between inputs",
        "Reserving the privacy loss",
        "Bounding admissions",
        "Measuring the admissions tables",
        "Estimating consistent tables",
        "Writing and validating the package",
    ]
    for step in steps:
        fractions = [fraction for name, fraction in reports if name == step]
        known = [fraction for fraction in fractions if fraction is not None]
        assert known == sorted(known), step
        assert all(0.0 <= fraction <= 1.0 for fraction in known), step
    reading = [fraction for step, fraction in reports if step.startswith("Reading")]
    assert reading[0] == 0.0
    assert reading[-1] == 1.0
    measuring = [fraction for step, fraction in reports if step.startswith("Measuring")]
    # Before the strategy's measurement of both tables and before the estimate of what the
    # bound left out.
    assert measuring == pytest.approx([0.0, 1 / 2])


def test_a_failure_after_the_spend_names_the_package_folder_not_its_staging(
    make_release: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fails if a message (or the ledger's record of the failure) names the hidden staging
    # folder, which is gone by the time the message is read.
    spec_path = spec_with(make_release)
    real = checks.check_package

    def one_more_problem(package_dir: Path) -> list[str]:
        if ".staging-" not in package_dir.name:  # the dry run, before the spend, passes
            return real(package_dir)
        return [*real(package_dir), f"{package_dir / 'data'}: rule: a problem found late"]

    monkeypatch.setattr(checks, "check_package", one_more_problem)
    out = tmp_path / "out"
    with pytest.raises(package.PackageError) as caught:
        pipeline.release(spec_path, out)

    assert caught.value.problems == [
        "the new package is not valid, nothing was published: "
        f"{out / 'data'}: rule: a problem found late"
    ]
    (record,) = ledger.Ledger(tmp_path / "ledger.sqlite").spends()
    assert record.status == "failed" and ".staging-" not in (record.failure or "")
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


# --- the cap belongs to the data ---------------------------------------------------------


def edit_spec(spec_path: Path, change: Callable[[dict[str, object]], None]) -> None:
    data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    change(data)
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.mark.parametrize(
    "rename",
    [
        lambda data: data["privacy"].update(dataset="another-name"),
        lambda data: data["release"].update(id="a-new-release-id"),
    ],
)
def test_the_same_inputs_cannot_escape_their_cap_under_another_name(
    make_release: Callable[..., Path], tmp_path: Path, rename: Callable[[dict[str, object]], None]
) -> None:
    spec_path = spec_with(make_release)
    pipeline.release(spec_path, tmp_path / "first")
    set_version(spec_path, "0.2.0")
    edit_spec(spec_path, rename)
    book = ledger.Ledger(tmp_path / "ledger.sqlite")
    before = book.spends()

    with pytest.raises(BudgetError) as refused:
        pipeline.release(spec_path, tmp_path / "second")
    with pytest.raises(BudgetError) as checked:
        pipeline.check(spec_path)

    for error in (refused, checked):
        message = str(error.value)
        released = "input 'admissions' was released before under dataset"
        assert f"{released} 'hospital-admissions-test'" in message
        assert "privacy.new_dataset_reason" in message
    assert book.spends() == before
    assert not (tmp_path / "second").exists()


def test_a_deliberate_new_dataset_on_the_same_inputs_is_recorded_with_its_reason(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release)
    pipeline.release(spec_path, tmp_path / "first")
    reason = "Approved by the data governance board on 2026-11-20 (minute 14)."
    edit_spec(
        spec_path,
        lambda data: data["privacy"].update(dataset="reanalysis", new_dataset_reason=reason),
    )

    pipeline.release(spec_path, tmp_path / "second")

    report = ledger.report(tmp_path / "ledger.sqlite")
    summaries = {summary.dataset: summary for summary, _ in report.datasets}
    assert summaries["reanalysis"].reason == reason
    (record,) = [r for _, records in report.datasets for r in records if r.dataset == "reanalysis"]
    assert record.reason == reason
    assert reason in json.dumps(report.to_dict())


def test_the_ledger_keeps_keyed_fingerprints_only(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = spec_with(make_release)
    pipeline.release(spec_path, tmp_path / "first")
    data = (tmp_path / "admissions.csv").read_bytes()
    stored = (tmp_path / "ledger.sqlite").read_bytes()
    plain = hashlib.sha256(data).hexdigest()
    (record,) = ledger.Ledger(tmp_path / "ledger.sqlite").spends()
    (keyed,) = record.inputs.values()
    assert keyed != plain and plain.encode() not in stored
    # The report never prints them.
    printed = ledger.report(tmp_path / "ledger.sqlite").to_json()
    assert keyed not in printed and record.inputs and "fingerprint" not in printed


# --- the dry run: check and release share it, before anything is reserved --------------------


def test_the_dry_run_builds_the_package_the_release_builds(
    make_release: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fails if the dry run and the release stop sharing one path: the package built from
    # placeholder figures must have every file, resource and column the real one has.
    built: list[tuple[list[str], list[tuple[str, list[str]]]]] = []
    real_build = package.build

    def build(content: package.ReleaseContent, folder: Path) -> None:
        real_build(content, folder)
        meta = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
        resources = [
            (r["name"], [f["name"] for f in r.get("schema", {}).get("fields", [])])
            for r in meta["resources"]
        ]
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        built.append((files, resources))

    monkeypatch.setattr(package, "build", build)
    spec_path = spec_with(make_release)
    pipeline.check(spec_path)
    pipeline.release(spec_path, tmp_path / "out")

    checked, rehearsed, released = built
    assert checked == rehearsed == released


def test_a_package_the_spec_cannot_make_is_refused_before_the_reserve(
    make_release: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    noise_draws: list[object],
) -> None:
    # Fails if a spec whose package would not validate can reach the reserve: whatever
    # makes it invalid (here a descriptor the profile refuses, as an empty keywords list
    # once was), check and release must both say so, with nothing spent.
    real_descriptor = package._descriptor

    def descriptor(content: package.ReleaseContent, resources: list[Any]) -> dict[str, Any]:
        return {**real_descriptor(content, resources), "keywords": []}

    monkeypatch.setattr(package, "_descriptor", descriptor)
    spec_path = spec_with(make_release)
    for run in (
        lambda: pipeline.check(spec_path),
        lambda: pipeline.release(spec_path, tmp_path / "out"),
    ):
        with pytest.raises(package.PackageError) as caught:
            run()
        assert caught.value.problems == [
            f"{spec_path}: a dry run with placeholder figures (nothing was spent) found the "
            "package this spec makes would fail: datapackage.json: profile: $.keywords: [] "
            "should be non-empty"
        ]
    assert noise_draws == []
    assert not (tmp_path / "ledger.sqlite").exists()
    assert not (tmp_path / "out").exists()
