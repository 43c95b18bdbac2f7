"""Crash safety: a release killed with SIGKILL at any stage leaves the previous package in
place and valid, nothing half-written in it, and a consistent ledger in which the killed
release stays reserved and counted; a later release with a new version still works. And
the budget can be read while releases run.

Each kill runs ``publisher release`` in a subprocess through a small wrapper that patches
one function of the library to kill its own process at that point (so the stage is hit
deterministically, not by timing). If the library renames a patched function the wrapper
fails with an AttributeError instead of being killed, and the test fails: update the hook.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from publisher import ledger, package
from publisher.cli import cli
from tests.conftest import admissions_spec, run_publisher, start_release, write_admissions

PACKAGE = "published"
DATASET = "hospital-admissions-test"
EPSILON = 1.0
CAP = 10.0

# Runs the CLI with one library function patched to SIGKILL the process at a stage.
KILLER = """
import os, pathlib, signal

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def kill_after(owner, name, when=lambda *args: True):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if when(*args):
            die()
        return result
    setattr(owner, name, wrapper)

def kill_before(owner, name):
    getattr(owner, name)  # an AttributeError if the library renamed it
    def wrapper(*args, **kwargs):
        die()
    setattr(owner, name, wrapper)

stage = os.environ["PUBLISHER_TEST_KILL_AT"]
if stage == "after-reserve":
    from publisher import ledger
    kill_after(ledger.Ledger, "reserve")
elif stage == "during-noise":
    # The first table's noise is drawn, the second table's is not.
    from publisher import privacy
    kill_after(privacy, "_noisy")
elif stage == "during-writing":
    # The first CSV of the new package is written in the staging folder (not in the dry
    # run's private scratch folder, before the reserve).
    import polars
    kill_after(polars.DataFrame, "write_csv", lambda frame, path: ".staging-" in str(path))
elif stage == "before-swap":
    # The new package is complete and validated, not yet in place.
    from publisher import package
    kill_before(package, "_swap")
elif stage == "during-swap":
    # Where the system has no atomic exchange, the previous package is moved aside and
    # the new one renamed in: kill between the two renames.
    from publisher import package
    package._exchange = lambda first, second: False
    real_rename = pathlib.Path.rename
    def rename(self, target):
        target = pathlib.Path(target)
        retired = f".{target.name}.previous-"
        if ".staging-" in self.name and any(
            path.name.startswith(retired) for path in target.parent.iterdir()
        ):
            die()
        return real_rename(self, target)
    pathlib.Path.rename = rename
else:
    raise SystemExit(f"unknown stage {stage!r}")

from publisher.cli import cli
cli(prog_name="publisher")
"""


def spec(version: str, epsilon: float = EPSILON) -> dict[str, Any]:
    """The admissions release as pure DP, both tables (the noise is drawn table by table)."""
    return admissions_spec(
        privacy={"model": "pure", "epsilon": epsilon, "cap": {"epsilon": CAP}},
        release={**admissions_spec()["release"], "version": version},  # type: ignore[dict-item]
    )


def write_spec(root: Path, content: dict[str, Any], name: str = "release.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def run_cli(
    *args: str | Path, cwd: Path, stage: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PUBLISHER_TEST_KILL_AT": stage or ""}
    return run_publisher(*args, cwd=cwd, script=KILLER if stage else None, env=env)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after its first release, 0.1.0, which spent epsilon 1 of a cap of 10."""
    root = tmp_path_factory.mktemp("history")
    write_admissions(root)
    first = CliRunner().invoke(
        cli, ["release", str(write_spec(root, spec("0.1.0"))), "--out", str(root / PACKAGE)]
    )
    assert first.exit_code == 0, first.output
    return root


@pytest.fixture
def project(history: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(history, root)
    return root


def statuses(root: Path) -> list[tuple[str, str]]:
    return [(r.version, r.status) for r in ledger.Ledger(root / "ledger.sqlite").spends()]


def private_copies(root: Path) -> list[str]:
    """Files a release staged in its temporary folder (copies of the private data)."""
    files = (path for path in (root / "tmp").rglob("*") if path.is_file())
    return sorted(str(path.relative_to(root)) for path in files)


def leftovers(root: Path) -> list[str]:
    """What a killed release left beside the package (hidden staging or retired folders)."""
    return sorted(path.name for path in root.iterdir() if path.name.startswith(f".{PACKAGE}."))


STAGES = [
    "after-reserve",
    "during-noise",
    "during-writing",
    "before-swap",
]


@pytest.mark.parametrize("stage", STAGES)
def test_a_killed_release_leaves_the_previous_package_and_a_consistent_ledger(
    project: Path, stage: str
) -> None:
    # Fails if a kill at this stage changes or removes the published package, leaves
    # partial files in it, loses the reservation, breaks the ledger, or blocks the next
    # release.
    out = project / PACKAGE
    published = snapshot(out)
    spec_path = write_spec(project, spec("0.2.0"))

    killed = run_cli("release", spec_path, "--out", out, cwd=project, stage=stage)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(out) == published
    assert package.validate(out) == []
    # Leftovers of the killed run may stay beside the package, hidden, never inside it.
    stale = leftovers(project)
    print(f"{stage}: leftovers beside the package: {stale}")
    assert all(name.startswith(f".{PACKAGE}.staging-") for name in stale), stale
    # A killed process cannot clean up: what it staged (hashed identifiers and categories,
    # in a folder only its user can read) stays until the next run, which removes it,
    # even a check that spends nothing.
    assert run_cli("check", spec_path, cwd=project).returncode in (0, 1)
    assert private_copies(project) == []
    # The killed release reserved its loss before any noise: it stays counted.
    assert statuses(project) == [("0.1.0", "committed"), ("0.2.0", "reserved")]
    book = ledger.Ledger(project / "ledger.sqlite")
    assert book.spent(DATASET) == pytest.approx(2 * EPSILON)
    with sqlite3.connect(project / "ledger.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    budget = run_cli("budget", "--ledger", project / "ledger.sqlite", "--json", cwd=project)
    assert budget.returncode == 0, budget.stderr
    (dataset,) = json.loads(budget.stdout)["datasets"]
    assert dataset["releases_by_status"] == {"reserved": 1, "committed": 1, "failed": 0}

    # The same version is refused (its noise may have been drawn); the next release marks
    # the killed one failed, since its process is gone, and still counts it.
    again = CliRunner().invoke(cli, ["release", str(spec_path), "--out", str(out)])
    assert again.exit_code == 1
    assert "already in the ledger (failed)" in again.stderr
    killed_record = next(r for r in book.spends() if r.version == "0.2.0")
    assert killed_record.failure == ledger.ABANDONED
    later = CliRunner().invoke(
        cli, ["release", str(write_spec(project, spec("0.3.0"))), "--out", str(out)]
    )
    assert later.exit_code == 0, later.output
    assert package.validate(out) == []
    descriptor = json.loads((out / package.DESCRIPTOR).read_text(encoding="utf-8"))
    assert descriptor["version"] == "0.3.0"
    assert statuses(project)[-1] == ("0.3.0", "committed")
    assert book.spent(DATASET) == pytest.approx(3 * EPSILON)
    # What the killed run left is still outside the package.
    assert not any(".staging-" in str(path) for path in out.rglob("*"))


def test_a_swap_killed_between_its_two_renames_is_repaired_by_the_next_release(
    project: Path,
) -> None:
    # With an atomic exchange (Linux renameat2) there is no such moment; without one, a kill
    # between the renames leaves the previous package aside under a hidden name. Fails if
    # the next release does not put it back (and archive it) before publishing.
    out = project / PACKAGE
    published = snapshot(out)
    killed = run_cli(
        "release",
        write_spec(project, spec("0.2.0")),
        "--out",
        out,
        cwd=project,
        stage="during-swap",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    later = CliRunner().invoke(
        cli, ["release", str(write_spec(project, spec("0.3.0"))), "--out", str(out)]
    )
    assert later.exit_code == 0, later.output
    assert snapshot(out / "archive" / "0.1.0") == published
    assert package.validate(out) == []
    assert not any(name.startswith(f".{PACKAGE}.previous-") for name in leftovers(project))


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_a_release_killed_while_measuring_leaves_no_copy_of_the_private_data(
    project: Path, engine: str
) -> None:
    # DuckDB keeps its own copy of the staged inputs and spills beside it, in the same
    # private folder: the next run removes them all.
    spec_path = write_spec(project, spec("0.2.0"))

    killed = run_cli(
        "release",
        spec_path,
        "--out",
        project / PACKAGE,
        "--engine",
        engine,
        cwd=project,
        stage="during-noise",
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert private_copies(project) != []  # the killed run's copies, until the next run
    later = run_cli(
        "release", write_spec(project, spec("0.3.0")), "--out", project / PACKAGE, cwd=project
    )
    assert later.returncode == 0, later.stderr
    assert private_copies(project) == []


def test_a_killed_first_release_publishes_nothing(tmp_path: Path) -> None:
    # Fails if a release killed before its swap leaves a visible (unhidden) package folder.
    write_admissions(tmp_path)
    spec_path = write_spec(tmp_path, spec("0.1.0"))

    killed = run_cli(
        "release", spec_path, "--out", tmp_path / PACKAGE, cwd=tmp_path, stage="before-swap"
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / PACKAGE).exists()
    visible = sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith("."))
    assert visible == ["admissions.csv", "ledger.sqlite", "release.yaml", "tmp"]
    assert statuses(tmp_path) == [("0.1.0", "reserved")]


# --- reading the budget while releases run ---------------------------------------------------


def test_budget_reads_while_releases_run(project: Path) -> None:
    # Fails if a reader sees an error, "database is locked", a traceback, invalid JSON or a
    # spend above the cap, or if the racing releases overspend.
    big = 4.0  # 1 spent + two of these fit the cap of 10; a third does not
    specs = [
        write_spec(project, spec(f"0.{index}.0", big), f"release-{index}.yaml")
        for index in (2, 3, 4)
    ]
    releases = [
        start_release(path, project / f"out-{index}", project) for index, path in enumerate(specs)
    ]
    reads: list[tuple[bool, subprocess.CompletedProcess[str]]] = []

    def read_until_done() -> None:
        while True:
            running = any(process.poll() is None for process in releases)
            read = run_cli("budget", "--ledger", project / "ledger.sqlite", "--json", cwd=project)
            reads.append((running, read))
            if not running:
                return

    readers = [threading.Thread(target=read_until_done) for _ in range(2)]
    for reader in readers:
        reader.start()
    outcomes = [(process.wait(timeout=300), process.communicate()) for process in releases]
    for reader in readers:
        reader.join(timeout=300)

    assert any(running for running, _ in reads), "no read overlapped a release"
    for _, read in reads:
        assert read.returncode == 0, read.stderr
        assert read.stderr == ""
        (dataset,) = json.loads(read.stdout)["datasets"]
        assert dataset["spent"] <= CAP
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 0, 1], outcomes
    for code, (_, stderr) in outcomes:
        assert "Traceback" not in stderr
        assert "locked" not in stderr
        if code == 1:
            assert stderr.startswith("Error: ") and "would pass the cap" in stderr
    book = ledger.Ledger(project / "ledger.sqlite")
    assert [status for _, status in statuses(project)] == ["committed"] * 3
    assert book.spent(DATASET) == pytest.approx(EPSILON + 2 * big)
