"""The privacy-budget ledger: reserve, commit, fail, the cap, versions, and real races."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import signal
import sqlite3
import time
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from publisher.errors import BudgetError, InputError
from publisher.ledger import (
    SCHEMA_VERSION,
    Ledger,
    Reservation,
    SpendRequest,
    file_hashes,
    fingerprint,
    report,
)

TABLES = {"admissions-by-ward": 0.2, "admissions-by-ward-and-outcome": 0.3}
SHA = "a" * 64
KEY = b"k" * 32  # a ledger's fingerprint key (random in a real ledger)
SPAWN = multiprocessing.get_context("spawn")


def request(**overrides: Any) -> SpendRequest:
    """A spend of 0.5 (rho) of the test dataset, whose cap is 1.5."""
    fields: dict[str, Any] = {
        "dataset": "hospital-admissions",
        "release_id": "hospital-admissions-test",
        "version": "1.0.0",
        "model": "zcdp",
        "loss": 0.5,
        "table_losses": dict(TABLES),
        "cap": 1.5,
        "spec_hash": "e" * 64,
        "publisher_version": "0.1.0",
        "opendp_version": "0.16.0",
    }
    fields.update(overrides)
    # Each dataset its own data, unless a test says otherwise.
    fields.setdefault("inputs", {"admissions": data_of(fields["dataset"])})
    return SpendRequest(**fields)


def data_of(dataset: str) -> str:
    """A stand-in keyed fingerprint of a dataset's input."""
    return hashlib.sha256(dataset.encode("utf-8")).hexdigest()


def commit(book: Ledger, reservation: Reservation, **overrides: Any) -> None:
    arguments: dict[str, Any] = {
        "table_losses": dict(reservation.table_losses),
        "loss": reservation.loss,
        "files": {"datapackage.json": SHA, "data/admissions-by-ward.csv": "b" * 64},
    }
    arguments.update(overrides)
    book.commit(reservation, **arguments)


@pytest.fixture
def book(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "private" / "ledger.sqlite")


# -- reserve, commit, fail ------------------------------------------------------------------


def test_a_new_ledger_is_created_with_its_folders_and_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    book = Ledger(path)
    assert path.is_file()
    assert book.spends() == []
    assert book.summaries() == []
    assert book.spent("hospital-admissions") == 0.0
    # Opening it again keeps it: the schema is created once.
    assert Ledger(path).spends() == []


def test_reserve_then_commit_is_recorded(book: Ledger) -> None:
    reservation = book.reserve(request())
    assert (reservation.dataset, reservation.version, reservation.loss) == (
        "hospital-admissions",
        "1.0.0",
        0.5,
    )
    [reserved] = book.spends()
    assert reserved.status == "reserved"
    assert reserved.committed_at is None
    assert reserved.files == {}

    accounted = {"admissions-by-ward": 0.19, "admissions-by-ward-and-outcome": 0.29}
    files = {"datapackage.json": SHA}
    record = book.commit(reservation, table_losses=accounted, loss=0.48, files=files)

    [stored] = book.spends("hospital-admissions")
    assert stored == record
    assert stored.status == "committed"
    assert stored.loss == 0.48  # what OpenDP accounted is what counts
    assert stored.reserved_loss == 0.5
    assert stored.table_losses == accounted
    assert stored.planned_table_losses == TABLES
    assert stored.files == files
    assert stored.model == "zcdp"
    assert stored.cap == 1.5
    assert stored.inputs == {"admissions": data_of("hospital-admissions")}
    assert stored.spec_hash == "e" * 64
    assert (stored.publisher_version, stored.opendp_version) == ("0.1.0", "0.16.0")
    assert stored.reserved_at.endswith("Z")
    assert stored.committed_at is not None and stored.committed_at >= stored.reserved_at
    assert stored.failed_at is None and stored.failure is None

    summary = book.summary("hospital-admissions")
    assert summary is not None
    assert (summary.model, summary.cap, summary.spent) == ("zcdp", 1.5, 0.48)
    assert summary.remaining == pytest.approx(1.02)
    assert summary.releases == {"reserved": 0, "committed": 1, "failed": 0}
    assert book.spent("hospital-admissions") == 0.48
    assert book.summary("another-dataset") is None


def test_a_failed_release_stays_spent(book: Ledger) -> None:
    reservation = book.reserve(request())
    book.fail(reservation, "PackageError: the package failed validation\nsecond line")
    [record] = book.spends()
    assert record.status == "failed"
    assert record.loss == 0.5
    assert record.failure == "PackageError: the package failed validation second line"
    assert record.failed_at is not None
    assert book.spent("hospital-admissions") == 0.5
    summary = book.summary("hospital-admissions")
    assert summary is not None
    assert summary.releases == {"reserved": 0, "committed": 0, "failed": 1}


def test_a_long_failure_reason_is_cut(book: Ledger) -> None:
    reservation = book.reserve(request())
    book.fail(reservation, "x" * 1000)
    [record] = book.spends()
    assert record.failure == "x" * 200


def _reserve_then_die(path: str) -> None:
    Ledger(Path(path)).reserve(request())
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_release_killed_after_reserving_stays_spent(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    process = SPAWN.Process(target=_reserve_then_die, args=(str(path),))
    process.start()
    process.join(timeout=30)
    assert process.exitcode == -signal.SIGKILL

    book = Ledger(path)
    [record] = book.spends()
    assert record.status == "reserved"
    assert book.spent("hospital-admissions") == 0.5
    book.reserve(request(version="1.1.0", loss=1.0, table_losses={"t": 1.0}))
    with pytest.raises(BudgetError, match=r"1\.5 is spent"):
        book.reserve(request(version="1.2.0", loss=0.01, table_losses={"t": 0.01}))


# -- the cap --------------------------------------------------------------------------------


def test_a_spend_that_would_pass_the_cap_is_refused_and_records_nothing(book: Ledger) -> None:
    book.reserve(request(version="1.0.0"))
    book.fail(book.reserve(request(version="1.1.0")), "interrupted")
    before = book.spends()
    summaries_before = book.summaries()

    with pytest.raises(BudgetError) as refused:
        book.reserve(request(version="1.2.0", loss=0.6, table_losses={"t": 0.6}))

    message = str(refused.value)
    assert "\n" not in message
    assert "cap of rho = 1.5" in message
    assert "1 is spent" in message
    assert "asks for 0.6" in message
    assert "lower privacy.rho to at most 0.5" in message
    assert book.spends() == before
    assert book.summaries() == summaries_before


def test_a_first_spend_above_the_cap_registers_nothing(book: Ledger) -> None:
    with pytest.raises(BudgetError, match="asks for 2"):
        book.reserve(request(loss=2.0, table_losses={"t": 2.0}))
    assert book.summaries() == []
    assert book.spends() == []
    # The dataset was not registered, so another cap can still be its first.
    book.reserve(request(cap=3.0, loss=2.0, table_losses={"t": 2.0}))


def test_spends_that_fit_the_cap_exactly_are_accepted(book: Ledger) -> None:
    book.reserve(request(version="1.0.0", cap=1.0))
    book.reserve(request(version="2.0.0", cap=1.0))
    assert book.spent("hospital-admissions") == 1.0
    with pytest.raises(BudgetError, match="budget is used up"):
        book.reserve(request(version="3.0.0", cap=1.0, loss=1e-6, table_losses={"t": 1e-6}))


def test_many_small_spends_add_up_without_rounding_drift(book: Ledger) -> None:
    for minor in range(10):
        book.reserve(request(version=f"1.{minor}.0", cap=1.0, loss=0.1, table_losses={"t": 0.1}))
    assert book.spent("hospital-admissions") == 1.0
    with pytest.raises(BudgetError):
        book.reserve(request(version="2.0.0", cap=1.0, loss=0.1, table_losses={"t": 0.1}))


def test_advice_never_rounds_the_remaining_budget_up(book: Ledger) -> None:
    book.reserve(request(cap=1.0, loss=1 / 3, table_losses={"t": 1 / 3}))
    with pytest.raises(BudgetError, match=r"at most 0\.666666 ") as refused:
        book.reserve(request(version="2.0.0", cap=1.0, loss=0.7, table_losses={"t": 0.7}))
    assert "0.666667" not in str(refused.value)
    book.reserve(request(version="3.0.0", cap=1.0, loss=0.666666, table_losses={"t": 0.666666}))


def test_datasets_have_separate_budgets(book: Ledger) -> None:
    book.reserve(request(dataset="first", loss=1.5, table_losses={"t": 1.5}))
    book.reserve(request(dataset="second", loss=1.5, table_losses={"t": 1.5}))
    assert [s.dataset for s in book.summaries()] == ["first", "second"]
    assert [r.dataset for r in book.spends("second")] == ["second"]


# -- versions, model and cap ----------------------------------------------------------------


@pytest.mark.parametrize("status", ["reserved", "committed", "failed"])
def test_a_version_already_in_the_ledger_is_refused(book: Ledger, status: str) -> None:
    reservation = book.reserve(request())
    if status == "committed":
        commit(book, reservation)
    elif status == "failed":
        book.fail(reservation, "interrupted")
    before = book.spends()
    with pytest.raises(BudgetError) as refused:
        book.reserve(request(inputs={"admissions": "0" * 64}, loss=0.1, table_losses={"t": 0.1}))
    message = str(refused.value)
    assert (
        f"version 1.0.0 of dataset 'hospital-admissions' is already in the ledger ({status})"
        in message
    )
    assert "average it away" in message
    assert "new release.version" in message
    assert book.spends() == before


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"model": "pure"}, "the spec says model 'pure' with cap epsilon = 1.5"),
        ({"cap": 3.0}, "the spec says model 'zcdp' with cap rho = 3"),
    ],
    ids=["model", "cap"],
)
def test_the_model_and_cap_are_fixed_by_the_first_release(
    book: Ledger, change: dict[str, Any], found: str
) -> None:
    book.reserve(request())
    with pytest.raises(BudgetError) as refused:
        book.reserve(request(version="2.0.0", **change))
    message = str(refused.value)
    assert "is recorded with model 'zcdp' with cap rho = 1.5" in message
    assert found in message
    assert "fixed by the dataset's first release" in message
    assert len(book.spends()) == 1


# -- commit and fail are checked ------------------------------------------------------------


def test_a_commit_of_more_than_was_reserved_is_refused(book: Ledger) -> None:
    reservation = book.reserve(request())
    with pytest.raises(BudgetError, match=r"accounted rho = 0\.6, more than the 0\.5 reserved"):
        commit(book, reservation, loss=0.6)
    too_much = {**TABLES, "admissions-by-ward": 0.25}
    with pytest.raises(BudgetError, match=r"table 'admissions-by-ward' spent rho = 0\.25"):
        commit(book, reservation, table_losses=too_much)
    with pytest.raises(BudgetError, match="not the reserved tables"):
        commit(book, reservation, table_losses={"another-table": 0.1})
    [record] = book.spends()
    assert record.status == "reserved"
    assert record.files == {}
    # A loss within rounding of the reservation is not "more".
    commit(book, reservation, loss=0.5 * (1 + 1e-12))


def test_a_reservation_checks_accounted_losses_before_anything_is_written(book: Ledger) -> None:
    reservation = book.reserve(request())
    reservation.check(loss=0.49, table_losses={**TABLES, "admissions-by-ward": 0.19})
    with pytest.raises(BudgetError, match=r"release hospital-admissions-test 1\.0\.0: OpenDP"):
        reservation.check(loss=0.51, table_losses=TABLES)
    with pytest.raises(BudgetError, match="not the reserved tables"):
        reservation.check(loss=0.5, table_losses={"admissions-by-ward": 0.2})
    assert book.spends()[0].status == "reserved"


def test_only_a_reserved_release_can_be_committed(book: Ledger) -> None:
    reservation = book.reserve(request())
    commit(book, reservation)
    with pytest.raises(BudgetError, match="already committed; only a reserved release"):
        commit(book, reservation)
    with pytest.raises(BudgetError, match="already committed"):
        book.fail(reservation, "late failure")
    assert book.spends()[0].status == "committed"

    failed = book.reserve(request(version="2.0.0"))
    book.fail(failed, "interrupted")
    book.fail(failed, "second call changes nothing")
    with pytest.raises(BudgetError, match="already failed"):
        commit(book, failed)
    assert book.spends()[1].failure == "interrupted"


def test_a_reservation_from_another_ledger_is_refused(tmp_path: Path, book: Ledger) -> None:
    reservation = book.reserve(request())
    other = Ledger(tmp_path / "other.sqlite")
    with pytest.raises(BudgetError, match=r"holds no reservation for version 1\.0\.0"):
        commit(other, reservation)


def test_a_commit_needs_real_hashes(book: Ledger) -> None:
    reservation = book.reserve(request())
    with pytest.raises(ValueError, match="sha256"):
        commit(book, reservation, files={"datapackage.json": "not-a-hash"})


@pytest.mark.parametrize("loss", [math.nan, math.inf, -0.1, 0.0])
def test_a_spend_request_refuses_impossible_losses(loss: float) -> None:
    with pytest.raises(ValueError, match="finite positive"):
        request(loss=loss)
    with pytest.raises(ValueError, match="finite"):
        request(table_losses={"t": loss if loss != 0 else math.nan})


def test_a_spend_request_refuses_tables_above_its_total() -> None:
    with pytest.raises(ValueError, match="add up to more than the total"):
        request(table_losses={"a": 0.4, "b": 0.4})
    with pytest.raises(ValueError, match="model"):
        request(model="approx")


# -- processes racing on one file -----------------------------------------------------------


def _race(path: str, index: int, barrier: Barrier, results: Any, then_commit: bool) -> None:
    barrier.wait(timeout=60)
    try:
        # Opening races too: the file does not exist until one of them creates it.
        book = Ledger(Path(path))
        reservation = book.reserve(request(version=f"1.{index}.0"))
        if then_commit:
            commit(book, reservation)
        results.put(("reserved", index, ""))
    except BudgetError as error:
        results.put(("refused", index, str(error)))
    except BaseException as error:  # reported to the test, which fails on it
        results.put(("crashed", index, repr(error)))


def _run_race(path: Path, then_commit: bool, processes: int = 8) -> list[tuple[str, int, str]]:
    barrier = SPAWN.Barrier(processes)
    results = SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_race, args=(str(path), index, barrier, results, then_commit))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return outcomes


@pytest.mark.parametrize("then_commit", [False, True], ids=["reserve", "reserve-and-commit"])
def test_eight_racing_releases_with_room_for_three(tmp_path: Path, then_commit: bool) -> None:
    path = tmp_path / "ledger.sqlite"
    outcomes = _run_race(path, then_commit)

    kinds = sorted(kind for kind, _, _ in outcomes)
    assert kinds == ["refused"] * 5 + ["reserved"] * 3, outcomes
    for kind, _, message in outcomes:
        if kind == "refused":
            assert "cap of rho = 1.5, 1.5 is spent and this release asks for 0.5" in message

    book = Ledger(path)
    records = book.spends()
    assert len(records) == 3
    assert {r.status for r in records} == {"committed" if then_commit else "reserved"}
    winners = {f"1.{index}.0" for kind, index, _ in outcomes if kind == "reserved"}
    assert {r.version for r in records} == winners
    assert book.spent("hospital-admissions") == 1.5


def _read_until(path: str, stop: Event, results: Any) -> None:
    reads, worst = 0, 0.0
    try:
        while not stop.is_set() or reads == 0:
            for summary, _ in report(Path(path)).datasets:
                worst = max(worst, summary.spent)
            reads += 1
        results.put(("ok", reads, worst))
    except BaseException as error:
        results.put(("crashed", reads, repr(error)))


def test_reading_the_budget_while_releases_race(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path)  # readers need the file; writers race on it
    stop = SPAWN.Event()
    read_results = SPAWN.Queue()
    readers = [
        SPAWN.Process(target=_read_until, args=(str(path), stop, read_results)) for _ in range(3)
    ]
    for reader in readers:
        reader.start()
    try:
        outcomes = _run_race(path, then_commit=True)
    finally:
        stop.set()
    reads = [read_results.get(timeout=60) for _ in readers]
    for reader in readers:
        reader.join(timeout=30)

    assert sorted(kind for kind, _, _ in outcomes) == ["refused"] * 5 + ["reserved"] * 3
    for kind, count, worst in reads:
        assert kind == "ok", worst
        assert count >= 1
        assert worst <= 1.5


def test_a_writer_gives_up_on_a_held_ledger_with_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        book = Ledger(path, busy_seconds=0.5)
        started = time.monotonic()
        with pytest.raises(BudgetError) as busy:
            book.reserve(request())
        assert time.monotonic() - started < 5
        assert str(busy.value) == (
            f"{path}: the ledger is busy (another release held it for more than 0.5 s); try "
            "again when it has finished"
        )
        # Reading does not wait for the writer.
        assert report(path).datasets == ()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    book.reserve(request())


# -- files that are not a ledger ------------------------------------------------------------


def test_a_file_of_random_bytes_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(hashlib.sha256(b"seed").digest() * 256)
    for opening in (lambda: Ledger(path), lambda: report(path)):
        with pytest.raises(BudgetError) as refused:
            opening()
        assert str(refused.value) == (
            f"{path}: is not a readable ledger (not an SQLite database, or damaged); restore it "
            "from a backup or point privacy.ledger at the right file"
        )


def test_a_directory_at_the_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="is a directory, not a ledger file") as refused:
        Ledger(tmp_path)
    assert "\n" not in str(refused.value)
    with pytest.raises(BudgetError, match="is a directory"):
        report(tmp_path)


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE things (name TEXT)")
    other.close()
    with pytest.raises(BudgetError, match="is an SQLite database but not a publisher ledger"):
        Ledger(path)


def test_a_ledger_from_a_newer_publisher_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    newer = sqlite3.connect(path)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    with pytest.raises(BudgetError, match=r"schema version 99, newer .* upgrade publisher"):
        Ledger(path)


def test_reporting_a_missing_ledger_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "ledger.sqlite"
    with pytest.raises(BudgetError) as missing:
        report(path)
    assert str(missing.value) == f"no ledger at {path}; it is created by the first release"
    assert not path.exists()
    assert not path.parent.exists()


def test_reporting_never_writes_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    book = Ledger(path)
    commit(book, book.reserve(request()))
    before = path.read_bytes()
    report(path)
    assert path.read_bytes() == before
    with pytest.raises(BudgetError, match="opened read-only; it records nothing"):
        Ledger(path, read_only=True).reserve(request(version="2.0.0"))


# -- the report -----------------------------------------------------------------------------


def test_the_report_as_json_has_the_documented_keys(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    book = Ledger(path)
    commit(book, book.reserve(request()))
    book.fail(book.reserve(request(version="1.1.0")), "interrupted")
    book.reserve(request(dataset="another", model="pure", cap=4.0))

    data = json.loads(report(path).to_json())
    assert set(data) == {"ledger", "schema_version", "datasets"}
    assert data["ledger"] == str(path)
    assert [d["dataset"] for d in data["datasets"]] == ["another", "hospital-admissions"]
    another, admissions = data["datasets"]
    assert set(admissions) == {
        "dataset",
        "model",
        "unit",
        "cap",
        "spent",
        "remaining",
        "registered_at",
        "reason",
        "releases_by_status",
        "releases",
    }
    assert (another["model"], another["unit"], another["cap"]) == ("pure", "epsilon", 4.0)
    assert (admissions["spent"], admissions["remaining"]) == (1.0, 0.5)
    assert admissions["releases_by_status"] == {"reserved": 0, "committed": 1, "failed": 1}
    committed, failed = admissions["releases"]
    assert set(committed) == {
        "id",
        "release_id",
        "version",
        "kind",
        "status",
        "loss",
        "reserved_loss",
        "unit_losses",
        "strategies",
        "table_losses",
        "planned_table_losses",
        "reserved_at",
        "committed_at",
        "failed_at",
        "failure",
        "reason",
        "spec_hash",
        "publisher_version",
        "opendp_version",
        "files",
    }
    assert (committed["version"], committed["status"], committed["loss"]) == (
        "1.0.0",
        "committed",
        0.5,
    )
    assert committed["table_losses"] == TABLES
    assert committed["files"]["datapackage.json"] == SHA
    assert (failed["status"], failed["failure"], failed["committed_at"]) == (
        "failed",
        "interrupted",
        None,
    )


def test_the_report_renders_as_tables(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    book = Ledger(path)
    commit(book, book.reserve(request()))
    book.fail(book.reserve(request(version="1.1.0")), "interrupted")

    console = Console(record=True, width=120)
    console.print(report(path).to_table())
    text = console.export_text()
    for expected in (
        "Dataset hospital-admissions (zcdp)",
        "Release",
        "Version",
        "Status",
        "Loss (rho)",
        "Reserved at",
        "Committed at",
        "1.0.0",
        "committed",
        "1.1.0",
        "failed: interrupted",
        "Cap rho = 1.5, spent 1, remaining 0.5",
    ):
        assert expected in text, expected


def test_an_empty_ledger_reports_no_releases(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    console = Console(record=True, width=120)
    console.print(report(path).to_table())
    assert "holds no releases yet" in console.export_text()
    assert json.loads(report(path).to_json())["datasets"] == []


# -- fingerprints and hashes ----------------------------------------------------------------


def test_the_fingerprint_covers_names_and_bytes_in_any_order(tmp_path: Path) -> None:
    first, second = tmp_path / "crimes.csv", tmp_path / "victims.csv"
    first.write_bytes(b"a,b\n1,2\n")
    second.write_bytes(b"c\n3\n")
    value = fingerprint([first, second], KEY)
    assert len(value) == 64
    assert fingerprint([second, first], KEY) == value

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "crimes.csv").write_bytes(first.read_bytes())
    (moved / "victims.csv").write_bytes(second.read_bytes())
    assert fingerprint([moved / "victims.csv", moved / "crimes.csv"], KEY) == value

    # Moving a byte from one file to the next is a different input.
    first.write_bytes(b"a,b\n1,2\nc")
    second.write_bytes(b"\n3\n")
    assert fingerprint([first, second], KEY) != value
    renamed = tmp_path / "suspects.csv"
    first.rename(renamed)
    assert fingerprint([renamed, second], KEY) != fingerprint([second], KEY)


def test_the_fingerprint_reads_large_files_in_chunks(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_bytes(b"0123456789" * 300_000)  # three megabytes: more than one chunk
    other = tmp_path / "big2.csv"
    other.write_bytes(b"0123456789" * 300_000 + b"!")
    assert fingerprint([big], KEY) != fingerprint([other], KEY)


def test_the_fingerprint_of_a_folder_input_covers_every_part(tmp_path: Path) -> None:
    # A table written by Spark: part files and a _SUCCESS marker in one folder.
    table = tmp_path / "crimes.parquet"
    table.mkdir()
    (table / "part-0.parquet").write_bytes(b"first part")
    (table / "part-1.parquet").write_bytes(b"second part")
    (table / "_SUCCESS").write_bytes(b"")
    value = fingerprint([table], KEY)
    assert value != fingerprint([tmp_path / "crimes.parquet" / "part-0.parquet"], KEY)
    (table / "part-1.parquet").write_bytes(b"second part, changed")
    assert fingerprint([table], KEY) != value
    (table / "part-1.parquet").write_bytes(b"second part")
    assert fingerprint([table], KEY) == value
    (table / "part-2.parquet").write_bytes(b"")
    assert fingerprint([table], KEY) != value


def test_the_fingerprint_of_a_missing_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        fingerprint([tmp_path / "missing.csv"], KEY)


def test_file_hashes_cover_every_file_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "datapackage.json").write_bytes(b"{}")
    (tmp_path / "data" / "table.csv").write_bytes(b"a\n1\n")
    assert file_hashes(tmp_path) == {
        "data/table.csv": hashlib.sha256(b"a\n1\n").hexdigest(),
        "datapackage.json": hashlib.sha256(b"{}").hexdigest(),
    }


# -- keys, abandoned reservations and older ledgers -----------------------------------------


def test_each_ledger_has_its_own_fingerprint_key(tmp_path: Path) -> None:
    data = tmp_path / "admissions.csv"
    data.write_bytes(b"patient_ref,ward\nP1,Oncology\n")
    first = Ledger(tmp_path / "first.sqlite").fingerprints({"admissions": data})
    again = Ledger(tmp_path / "first.sqlite").fingerprints({"admissions": data})
    other = Ledger(tmp_path / "other.sqlite").fingerprints({"admissions": data})
    assert first == again
    assert first != other
    assert hashlib.sha256(data.read_bytes()).hexdigest() not in first.values()


def test_a_reservation_whose_process_is_gone_is_marked_failed_by_the_next(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    book = Ledger(path)
    abandoned = book.reserve(request())
    # The process that reserved it was killed: point the row at a process that has ended.
    ended = SPAWN.Process(target=time.sleep, args=(0,))
    ended.start()
    ended.join()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE releases SET pid = ? WHERE id = ?", (ended.pid, abandoned.id))

    book.reserve(request(version="1.1.0"))

    first, second = book.spends()
    assert (first.status, second.status) == ("failed", "reserved")
    assert first.failure is not None and "process ended" in first.failure
    assert book.spent("hospital-admissions") == pytest.approx(1.0)  # still counted


def test_a_ledger_of_schema_1_is_upgraded_and_its_plain_fingerprints_blanked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).reserve(request())
    with sqlite3.connect(path) as connection:  # make it what an earlier publisher wrote
        for table in ("meta", "release_units", "release_inputs"):
            connection.execute(f"DROP TABLE {table}")
        for table, column in (
            ("datasets", "reason"),
            ("releases", "kind"),
            ("releases", "pid"),
            ("releases", "host"),
            ("releases", "reason"),
        ):
            connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.execute("UPDATE releases SET fingerprint = ?", ("9" * 64,))
        connection.execute("PRAGMA user_version = 1")

    with pytest.raises(BudgetError, match=r"schema version 1\).*upgrades it"):
        Ledger(path, read_only=True)
    book = Ledger(path)

    (record,) = book.spends()
    assert (record.version, record.kind, record.inputs) == ("1.0.0", "release", {})
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("SELECT fingerprint FROM releases").fetchone()[0] == ""
    book.reserve(request(version="1.1.0"))


def test_the_ledger_records_how_each_input_was_measured(tmp_path: Path) -> None:
    book = Ledger(tmp_path / "ledger.sqlite")
    book.reserve(request(strategies={"admissions": "optimum"}))
    (record,) = book.spends()
    assert record.strategies == {"admissions": "optimum"}
    (dataset,) = json.loads(report(book.path).to_json())["datasets"]
    assert dataset["releases"][0]["strategies"] == {"admissions": "optimum"}


def test_a_ledger_of_schema_2_gains_the_strategy_column(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).reserve(request())
    with sqlite3.connect(path) as connection:  # make it what the previous publisher wrote
        connection.execute("ALTER TABLE release_inputs DROP COLUMN strategy")
        connection.execute("PRAGMA user_version = 2")

    (record,) = Ledger(path, read_only=True).spends()  # readable as it is
    assert record.strategies == {}
    book = Ledger(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    book.reserve(request(version="1.1.0", strategies={"admissions": "residual planner"}))
    assert [r.strategies for r in book.spends()] == [{}, {"admissions": "residual planner"}]
