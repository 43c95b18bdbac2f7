"""Interrupts: SIGINT and SIGTERM end any run cleanly, at every stage of a release.

Each run is ``publisher`` in a subprocess through a small wrapper that sends the process
a signal at one stage (deterministically, not by timing), as Ctrl-C or a service manager
would. Whatever the stage:

- the exit code is 130 (SIGINT) or 143 (SIGTERM), with only ``Error: ...`` lines;
- no staging folder is left beside the package and no private working copy in TMPDIR;
- the previous package is untouched, or (when the signal came during the swap) the new
  one is in place and committed: never a package without its record;
- the ledger is final: no row stays ``reserved``.

One stage sends the signal from inside a callback from native code, where Python reports
the exception as "ignored" and carries on (as OpenDP's Rust library once did with a
Ctrl-C): the release must still stop, not commit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from publisher import ledger, package
from tests.conftest import admissions_spec, run_publisher, write_admissions

PACKAGE = "published"

# Runs the CLI with one library function patched to signal its own process at a stage.
WRAPPER = """
import ctypes, os, pathlib, signal, sys

signum = getattr(signal, os.environ["TEST_SIGNAL"])

def send():
    os.kill(os.getpid(), signum)
    for _ in range(1000):  # the handler runs between these bytecodes
        pass

def before(owner, name):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        send()
        return real(*args, **kwargs)
    setattr(owner, name, wrapper)

def after(owner, name, when=lambda *args: True):
    real = getattr(owner, name)
    sent = []
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if not sent and when(*args):
            sent.append(1)
            send()
        return result
    setattr(owner, name, wrapper)

def swallowed_before(owner, name):
    # The signal arrives while native code runs a Python callback: the exception raised
    # there is printed as "ignored" and lost, and the native code carries on.
    real = getattr(owner, name)
    callback = ctypes.CFUNCTYPE(None)(send)
    def wrapper(*args, **kwargs):
        callback()
        # Still running: the interrupt was lost in the callback (the test checks this).
        pathlib.Path(os.environ["TMPDIR"]).parent.joinpath("swallowed").touch()
        return real(*args, **kwargs)
    setattr(owner, name, wrapper)

stage = os.environ["TEST_STAGE"]
from publisher import ingest, ledger, package, pipeline, privacy
import polars
if stage == "reading":
    before(ingest, "_normalised")
elif stage == "opening-ledger":
    before(ledger.Ledger, "__init__")
elif stage == "after-reserve":
    after(ledger.Ledger, "reserve")
elif stage == "noise":
    after(privacy, "measure")
elif stage == "noise-swallowed":
    swallowed_before(privacy, "measure")
elif stage == "rehearsing":
    after(polars.DataFrame, "write_csv")  # the dry run writes first, before the reserve
elif stage == "writing":
    after(polars.DataFrame, "write_csv", lambda frame, path: ".staging-" in str(path))
elif stage == "swap":
    before(package, "_swap")
else:
    raise SystemExit(f"unknown stage {stage!r}")

from publisher.cli import cli
cli(prog_name="publisher")
"""


def write_spec(root: Path, version: str) -> Path:
    spec = admissions_spec(
        privacy={"model": "pure", "epsilon": 1.0, "cap": {"epsilon": 10.0}},
        release={**admissions_spec()["release"], "version": version},  # type: ignore[dict-item]
    )
    path = root / "release.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run(
    root: Path, *args: str | Path, stage: str, signame: str
) -> subprocess.CompletedProcess[str]:
    env = {"TEST_STAGE": stage, "TEST_SIGNAL": signame}
    return run_publisher(*args, cwd=root, script=WRAPPER, env=env)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after its first release, 0.1.0."""
    root = tmp_path_factory.mktemp("history")
    write_admissions(root)
    spec_path = write_spec(root, "0.1.0")
    first = run_publisher("release", spec_path, "--out", PACKAGE, cwd=root)
    assert first.returncode == 0, first.stderr
    write_spec(root, "0.2.0")
    return root


@pytest.fixture
def project(history: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    subprocess.run(["cp", "-a", str(history), str(root)], check=True)
    return root


def releases(root: Path) -> list[tuple[str, str, str | None]]:
    return [
        (r.version, r.status, r.failure) for r in ledger.Ledger(root / "ledger.sqlite").spends()
    ]


def assert_clean(result: subprocess.CompletedProcess[str], root: Path, signame: str) -> None:
    code = 128 + getattr(signal, signame)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert lines, "no message"
    for line in lines:
        assert line.startswith("Error: interrupted by "), result.stderr
    assert "Traceback" not in result.stderr and "ignored" not in result.stderr
    assert not [p.name for p in root.iterdir() if ".staging-" in p.name or ".previous-" in p.name]
    assert list((root / "tmp").iterdir()) == []


# Stage -> the ledger's record of 0.2.0 afterwards (None: nothing was reserved).
STAGES: dict[str, tuple[str, str] | None] = {
    "reading": None,
    "opening-ledger": None,
    "rehearsing": None,
    "after-reserve": ("failed", "interrupted by"),
    "noise": ("failed", "interrupted by"),
    "noise-swallowed": ("failed", "interrupted by"),
    "writing": ("failed", "interrupted by"),
}


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_an_interrupted_release_ends_cleanly(project: Path, stage: str, signame: str) -> None:
    # Fails if a signal leaves a staging folder or a private copy, touches the previous
    # package, leaves the release reserved, or is swallowed and the release commits.
    before = snapshot(project / PACKAGE)

    result = run(project, "release", "release.yaml", "--out", PACKAGE, stage=stage, signame=signame)

    assert_clean(result, project, signame)
    assert snapshot(project / PACKAGE) == before
    if stage == "noise-swallowed":
        assert (project / "swallowed").exists(), "the interrupt was not lost: nothing tested"
    expected = STAGES[stage]
    recorded = releases(project)
    assert recorded[0][:2] == ("0.1.0", "committed")
    if expected is None:
        assert len(recorded) == 1
        assert "nothing new was published" in result.stderr
    else:
        ((version, status, failure),) = recorded[1:]
        assert (version, status) == ("0.2.0", expected[0])
        assert failure is not None and failure.startswith(expected[1])
        assert "recorded as failed" in result.stderr


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_swap_lets_the_swap_and_its_commit_finish(
    project: Path, signame: str
) -> None:
    # Fails if the package can be swapped in without being committed in the ledger.
    result = run(
        project, "release", "release.yaml", "--out", PACKAGE, stage="swap", signame=signame
    )

    assert_clean(result, project, signame)
    assert "already finished" in result.stderr
    assert [status for _, status, _ in releases(project)] == ["committed", "committed"]
    assert package.validate(project / PACKAGE) == []
    meta: dict[str, Any] = yaml.safe_load((project / PACKAGE / "datapackage.json").read_text())
    assert meta["version"] == "0.2.0"


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_check_leaves_no_private_copy(project: Path, signame: str) -> None:
    result = run(project, "check", "release.yaml", stage="reading", signame=signame)

    assert_clean(result, project, signame)
    assert len(releases(project)) == 1


def test_the_staging_folder_of_a_killed_release_is_removed_by_the_next(project: Path) -> None:
    # Fails if a killed release's unpublished figures outlive the next release.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    abandoned = project / f".{PACKAGE}.staging-{dead.stdout.strip()}-x1y2"
    (abandoned / "data").mkdir(parents=True)
    (abandoned / "data" / "table.csv").write_text("unpublished\n", encoding="utf-8")

    result = run_publisher("release", "release.yaml", "--out", PACKAGE, cwd=project)

    assert result.returncode == 0, result.stderr
    assert not abandoned.exists()
