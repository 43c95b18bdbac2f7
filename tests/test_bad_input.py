"""A corpus of bad input, run through the command line as a release manager would.

Each case breaks one thing in the spec, the data, the destination or the ledger's history,
and runs ``check``, ``plan`` (spec problems only: it never reads the data) and ``release``
(over an earlier release, and into a fresh folder). For every run:

- exit code 1 for a problem (2 for a usage error), and only ``Error: ...`` lines on stderr;
- no traceback, and the message names where (file, YAML path or column) and the fix;
- nothing written: every file of the project (the earlier package, the spec, the data,
  the ledger) is byte-identical afterwards, with no staging folder left beside it;
- no noise drawn and the ledger unchanged;
- no raw data value in any output: every private value planted in the data contains
  ``LEAK-``, and that never appears in stdout or stderr.

Cases the library does not handle yet are strict ``xfail`` tests whose reason says what is
missing. Tests of single modules (``test_spec``, ``test_ingest``) check the wording of
each problem; this corpus checks what the user sees and what is left on disk.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from publisher import demo, ledger, package, privacy
from publisher.cli import cli
from publisher.site import build as site_build
from tests.conftest import WARDS, admissions_rows, admissions_spec

PATIENTS = {"patient": {"title": "patient"}}

LEAK = "LEAK-"  # every private value planted in the data contains it
HEADER = "patient_ref,ward,outcome,notes"
SPEC = "release.yaml"
DATA = "admissions.csv"
LEDGER = "ledger.sqlite"
PACKAGE = "published"
MEASURE = privacy.measure


# --- the project every case starts from ---------------------------------------------------


def private_rows(count: int = 120) -> list[list[str]]:
    """Admissions with private identifiers and a free-text column, all marked ``LEAK-``."""
    return [
        [f"{LEAK}id-{ref}", ward, outcome, f"{LEAK}note-{index:04d}"]
        for index, (ref, ward, outcome) in enumerate(admissions_rows(count))
    ]


def csv_text(rows: list[list[str]], header: str = HEADER, delimiter: str = ",") -> str:
    lines = [header.replace(",", delimiter)] + [delimiter.join(row) for row in rows]
    return "\n".join(lines) + "\n"


def fast_spec(version: str = "0.2.0") -> dict[str, Any]:
    """The admissions spec as pure DP with one table: a release takes about a second."""
    spec = copy.deepcopy(
        admissions_spec(privacy={"model": "pure", "epsilon": 1.0, "cap": {"epsilon": 2.0}})
    )
    spec["tables"] = spec["tables"][:1]
    spec["release"]["version"] = version
    return spec


def invoke(*args: str | Path, **kwargs: Any) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], **kwargs)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after its first release (0.1.0, epsilon 1 of a cap of 2): the private
    data, the spec of the next version (0.2.0), the ledger and the published package."""
    root = tmp_path_factory.mktemp("history")
    (root / DATA).write_text(csv_text(private_rows()), encoding="utf-8")
    spec_path = root / SPEC
    spec_path.write_text(yaml.safe_dump(fast_spec("0.1.0"), sort_keys=False), encoding="utf-8")
    first = invoke("release", spec_path, "--out", root / PACKAGE)
    assert first.exit_code == 0, first.output
    spec_path.write_text(yaml.safe_dump(fast_spec(), sort_keys=False), encoding="utf-8")
    return root


@dataclass
class Project:
    """A copy of the history for one test, with helpers to break it."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    out: Path = field(init=False)
    cwd: Path | None = None
    spec_file: Path | None = None

    def __post_init__(self) -> None:
        self.out = self.root / PACKAGE

    @property
    def spec_path(self) -> Path:
        return self.spec_file or self.root / SPEC

    @property
    def data_path(self) -> Path:
        return self.root / DATA

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER

    def spec(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.spec_path.read_text(encoding="utf-8"))
        return data

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        self.spec_path.write_text(yaml.safe_dump(dict(spec), sort_keys=False), encoding="utf-8")

    def forget_history(self) -> None:
        """No earlier release: no package and no ledger."""
        shutil.rmtree(self.out)
        for path in self.root.glob(f"{LEDGER}*"):
            path.unlink()


@pytest.fixture
def project(history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "project"
    shutil.copytree(history, root)
    return Project(root, monkeypatch)


# --- what every run must leave behind -----------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ``root`` with its bytes (None for folders, the target of a link,
    the kind of a pipe or socket, which are never opened), leaving out SQLite's transient
    -wal and -shm files (the ledger's own file is kept: it must not change)."""

    def state(path: Path) -> bytes | str | None:
        if path.is_symlink():
            return f"link to {os.readlink(path)}"
        if path.is_dir():
            return None
        mode = path.lstat().st_mode
        return path.read_bytes() if stat.S_ISREG(mode) else f"mode {stat.S_IFMT(mode):o}"

    return {
        str(path.relative_to(root)): state(path)
        for path in sorted(root.rglob("*"))
        if not path.name.endswith(("-wal", "-shm"))
    }


def ledger_state(path: Path) -> dict[str, Any] | None:
    return ledger.report(path).to_dict() if path.is_file() else None


def assert_refused(result: Result, code: int, fragments: list[str]) -> None:
    """Exit ``code`` with one ``Error: ...`` line per problem, naming every fragment."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "no error message"
    for line in lines:
        assert line.startswith("Error: "), line
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def assert_no_leak(result: Result) -> None:
    assert LEAK not in result.output, result.output


# --- the corpus -----------------------------------------------------------------------------

Builder = Callable[[Project], list[str]]


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, the exit code of each command, extra options."""

    name: str
    build: Builder
    exits: Mapping[str, int]
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    needs_history: bool = False  # the case is about the ledger or the earlier package


BAD_SPEC = {"check": 1, "plan": 1, "release": 1}
BAD_DATA = {"check": 1, "plan": 0, "release": 1}  # plan never reads the data
BAD_DESTINATION = {"check": 0, "plan": 0, "release": 1}
BAD_HISTORY = {"check": 1, "plan": 0, "release": 1}


def _walk(spec: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    for part in parents:
        spec = spec[part]
    return spec, last


def put(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        parent, key = _walk(spec, path)
        parent[key] = value

    return change


def drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        parent, key = _walk(spec, path)
        del parent[key]

    return change


def spec_case(name: str, change: Callable[[dict[str, Any]], None], *fragments: str) -> Case:
    def build(project: Project) -> list[str]:
        spec = project.spec()
        change(spec)
        project.write_spec(spec)
        return [f"{project.spec_path}: ", *fragments]

    return Case(name, build, BAD_SPEC)


def spec_text_case(name: str, text: str | bytes, *fragments: str) -> Case:
    def build(project: Project) -> list[str]:
        if isinstance(text, bytes):
            project.spec_path.write_bytes(text)
        else:
            project.spec_path.write_text(text, encoding="utf-8")
        return [str(project.spec_path), *fragments]

    return Case(name, build, BAD_SPEC)


def data_case(name: str, content: str | bytes, *fragments: str, where: str = "") -> Case:
    def build(project: Project) -> list[str]:
        if isinstance(content, bytes):
            project.data_path.write_bytes(content)
        else:
            project.data_path.write_text(content, encoding="utf-8")
        return [f"{project.data_path} (inputs.admissions{where})", *fragments]

    return Case(name, build, BAD_DATA)


def spec_is_a_directory(project: Project) -> list[str]:
    project.spec_path.unlink()
    project.spec_path.mkdir()
    return [str(project.spec_path), "is a directory", "give the path to a YAML file"]


def data_is_missing(project: Project) -> list[str]:
    project.data_path.unlink()
    return [f"{project.data_path} (inputs.admissions.path)", "does not exist", "check the path"]


def data_is_a_directory(project: Project) -> list[str]:
    project.data_path.unlink()
    project.data_path.mkdir()
    return [f"{project.data_path} (inputs.admissions.path)", "directory", "point it at a file"]


def data_in_parquet_is_not_parquet(project: Project) -> list[str]:
    spec = project.spec()
    spec["inputs"]["admissions"]["format"] = "parquet"
    project.write_spec(spec)
    return [f"{project.data_path} (inputs.admissions.path)", "cannot be read as PARQUET"]


def parquet_with_a_nested_column(project: Project) -> list[str]:
    path = project.root / "admissions.parquet"
    rows = private_rows(40)
    pl.DataFrame(
        {
            "patient_ref": [row[0] for row in rows],
            "ward": [[row[1], LEAK + "nested"] for row in rows],
            "outcome": [row[2] for row in rows],
        }
    ).write_parquet(path)
    spec = project.spec()
    spec["inputs"]["admissions"].update(path=path.name, format="parquet")
    project.write_spec(spec)
    return [f"{path} (inputs.admissions", "cannot be read", "check the file's format"]


def destination_is_a_file_path(project: Project) -> list[str]:
    """The package folder would be inside a regular file: no folder can be made there."""
    blocker = project.root / "notes.txt"
    blocker.write_text("an ordinary file\n", encoding="utf-8")
    project.out = blocker / "package"
    return [str(blocker), "is a file", "choose another path"]


def destination_unwritable(project: Project) -> list[str]:
    """Root can write anywhere, so the permission check itself is told the folder is
    read-only; the folder really is writable, so a release that skipped the check would
    succeed and fail this case."""
    locked = project.root / "read-only"
    locked.mkdir()
    project.out = locked / "package"
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if Path(path).resolve() == locked.resolve() and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    project.monkeypatch.setattr(os, "access", access)
    return [str(locked), "cannot write here", "choose a directory you can write to"]


def destination_holds_the_ledger(project: Project) -> list[str]:
    spec = project.spec()
    spec["privacy"]["ledger"] = f"{PACKAGE}-next/{LEDGER}"
    project.write_spec(spec)
    project.out = project.root / f"{PACKAGE}-next"
    return ["(privacy.ledger)", "must not be inside the published package", "move it"]


def ledger_is_a_directory(project: Project) -> list[str]:
    (project.root / "ledger-folder").mkdir()
    spec = project.spec()
    spec["privacy"]["ledger"] = "ledger-folder"
    project.write_spec(spec)
    return [str(project.root / "ledger-folder"), "is a directory", "set privacy.ledger"]


def ledger_is_not_a_ledger(project: Project) -> list[str]:
    path = project.root / "other.sqlite"
    path.write_bytes(b"not a database " * 300)
    spec = project.spec()
    spec["privacy"]["ledger"] = path.name
    project.write_spec(spec)
    return [str(path), "is not a readable ledger", "restore it from a backup"]


def version_already_released(project: Project) -> list[str]:
    spec = project.spec()
    spec["release"]["version"] = "0.1.0"
    project.write_spec(spec)
    # `check` and `plan` are refused by the ledger; `release` first by the package it
    # would replace, which holds that version (the same words, without the ledger's).
    return ["version 0.1.0", "new release.version"]


def version_held_by_the_package(version: str) -> Builder:
    """A version the package holds already, or an earlier one, with a ledger that does
    not know it (a new or lost ledger): a release would publish it twice or go back."""

    def build(project: Project) -> list[str]:
        for path in project.root.glob(f"{LEDGER}*"):
            path.unlink()
        spec = project.spec()
        spec["release"]["version"] = version
        project.write_spec(spec)
        return [str(project.out), "holds version 0.1.0", f"{version} must come after it"]

    return build


def loss_would_pass_the_cap(project: Project) -> list[str]:
    spec = project.spec()
    spec["privacy"]["epsilon"] = 1.5
    project.write_spec(spec)
    return [str(project.ledger_path), "would pass the cap", "lower privacy.epsilon to at most 1"]


def cap_already_spent(project: Project) -> list[str]:
    """A second release (0.2.0) spends the rest of the cap; then 0.3.0 is attempted."""
    guard = privacy.measure
    project.monkeypatch.setattr(privacy, "measure", MEASURE)
    spent = invoke("release", project.spec_path, "--out", project.root / "second")
    project.monkeypatch.setattr(privacy, "measure", guard)
    assert spent.exit_code == 0, spent.output
    spec = project.spec()
    spec["release"]["version"] = "0.3.0"
    project.write_spec(spec)
    return [str(project.ledger_path), "budget is used up", "cannot be released again"]


def model_differs_from_the_ledger(project: Project) -> list[str]:
    spec = project.spec()
    spec["privacy"] = {
        "model": "zcdp",
        "rho": 0.5,
        "cap": {"rho": 2.0},
        "units": {"patient": {"title": "patient"}},
    }
    project.write_spec(spec)
    return [str(project.ledger_path), "is recorded with model 'pure'", "set privacy.model"]


def wrong_category_values() -> str:
    rows = private_rows(60)
    rows[3][1] = f"{LEAK}ward-0001"
    rows[7][2] = f"{LEAK}outcome-0002"
    rows[9][1] = ""
    return csv_text(rows)


def wrong_value_types() -> str:
    rows = private_rows(60)
    rows[1][1] = "17"  # a number where a ward is expected
    rows[2][1] = "2025-04-01"  # a date
    rows[3][1] = "true"
    return csv_text(rows)


def null_identifiers() -> str:
    rows = private_rows(60)
    rows[0][0] = ""
    rows[5][0] = "   "
    return csv_text(rows)


def ragged_rows() -> str:
    rows = [row[:3] for row in private_rows(30)]
    good = csv_text(rows, "patient_ref,ward,outcome")
    return good + f"{LEAK}id-x,Maternity,Discharged,{LEAK}surplus\n{LEAK}id-y,Maternity\n"


def latin1_data() -> bytes:
    return (csv_text(private_rows(30)) + f"{LEAK}id-\xe9,Maternity,Discharged,caf\xe9\n").encode(
        "latin-1"
    )


# --- hostile input: what an adversarial corpus found ----------------------------------------


def spec_text_change(name: str, change: Callable[[str], str], *fragments: str) -> Case:
    """A case made by editing the spec's YAML text (for what safe_dump cannot write)."""

    def build(project: Project) -> list[str]:
        text = project.spec_path.read_text(encoding="utf-8")
        project.spec_path.write_text(change(text), encoding="utf-8")
        return [str(project.spec_path), *fragments]

    return Case(name, build, BAD_SPEC)


def as_zcdp(rho: float, cap: float) -> Callable[[dict[str, Any]], None]:
    """The spec's privacy as zCDP, its units kept."""

    def change(spec: dict[str, Any]) -> None:
        spec["privacy"].pop("epsilon", None)
        spec["privacy"].update(model="zcdp", rho=rho, cap={"rho": cap})

    return change


def keys(count: int, prefix: str = "K") -> list[str]:
    return [f"{prefix}{index:05d}" for index in range(count)]


def wide_tables(spec: dict[str, Any]) -> None:
    """Four columns of 300 keys, one table by all four: 8.1e9 cells."""
    for column in ("a", "b", "c", "d"):
        spec["categories"][f"set-{column}"] = {"title": column, "values": keys(300, column)}
        spec["inputs"]["admissions"]["columns"][f"col_{column}"] = {"categories": f"set-{column}"}
    spec["tables"][0]["by"] = ["col_a", "col_b", "col_c", "col_d"]


def two_tables_of_3000_cells(spec: dict[str, Any]) -> None:
    spec["categories"]["big"] = {"title": "Big", "values": keys(3000)}
    spec["inputs"]["admissions"]["columns"]["big"] = {"categories": "big"}
    table = spec["tables"][0]
    spec["tables"] = [
        {**table, "name": "first", "by": ["big"]},
        {**table, "name": "second", "by": ["big"]},
    ]
    spec["shares"] = []


def many_tables(spec: dict[str, Any]) -> None:
    """201 small tables: more than a release may have."""
    table = spec["tables"][0]
    spec["tables"] = [{**table, "name": f"table-{index:03d}"} for index in range(201)]
    spec["shares"] = []


def column_named(name: str) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        columns = spec["inputs"]["admissions"]["columns"]
        columns[name] = columns.pop("ward")
        spec["tables"][0]["by"] = [name]
        spec["shares"] = []

    return change


def data_replaced(what: str) -> Builder:
    """The data file replaced by a named pipe or a socket: refused without blocking."""

    def build(project: Project) -> list[str]:
        project.data_path.unlink()
        if what == "fifo":
            os.mkfifo(project.data_path)
        else:
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(project.data_path))
            server.close()
        kind = "a named pipe (FIFO)" if what == "fifo" else "a socket"
        return [f"{project.data_path} (inputs.admissions.path)", f"is {kind}"]

    return build


def data_linked_outside(project: Project) -> list[str]:
    outside = project.root.parent / "elsewhere.csv"
    shutil.move(project.data_path, outside)
    project.data_path.symlink_to(outside)
    return [f"{project.data_path} (inputs.admissions.path)", "leads outside the spec's folder"]


def data_link_loop(project: Project) -> list[str]:
    project.data_path.unlink()
    project.data_path.symlink_to(project.data_path.name)
    return [f"{project.data_path} (inputs.admissions.path)", "symbolic links"]


def table_beside(name: str, **disclosure: object) -> Callable[[dict[str, Any]], None]:
    """A second table, a copy of the first under ``name``, with disclosure options."""

    def change(spec: dict[str, Any]) -> None:
        spec["tables"].append({**spec["tables"][0], "name": name})
        spec["disclosure"].update(disclosure)

    return change


def parquet_folder_with(what: str) -> Builder:
    def build(project: Project) -> list[str]:
        folder = project.root / "parts"
        folder.mkdir()
        pl.read_csv(project.data_path).write_parquet(folder / "part-0.parquet")
        if what == "fifo":
            os.mkfifo(folder / "part-1.parquet")
        else:
            (folder / "part-1.parquet").symlink_to(project.root.parent)
        spec = project.spec()
        spec["inputs"]["admissions"].update(path="parts", format="parquet")
        project.write_spec(spec)
        kind = "a named pipe (FIFO)" if what == "fifo" else "a symbolic link"
        return [f"{folder} (inputs.admissions.path)", f"holds part-1.parquet, which is {kind}"]

    return build


def ledger_is_a_link_loop(project: Project) -> list[str]:
    """A ledger that is a link to itself: check said valid and budget "no ledger", while
    release refused it. (A link to a file not yet made is followed: the ledger is made
    where the operator's link points.)"""
    link = project.root / "ledger-link.sqlite"
    link.symlink_to(link.name)
    spec = project.spec()
    spec["privacy"]["ledger"] = link.name
    project.write_spec(spec)
    return [str(link), "is a link that leads to no file", "set privacy.ledger"]


def ledger_is_a_fifo(project: Project) -> list[str]:
    os.mkfifo(project.root / "ledger-pipe")
    spec = project.spec()
    spec["privacy"]["ledger"] = "ledger-pipe"
    project.write_spec(spec)
    return [str(project.root / "ledger-pipe"), "is a named pipe (FIFO), not a ledger file"]


def destination_holds(what: str) -> Builder:
    """The package folder (an earlier package) also holds the spec or the data."""

    def build(project: Project) -> list[str]:
        spec = project.spec()
        shutil.move(project.data_path, project.out / DATA)
        if what == "spec":
            # A spec's paths stay inside its folder: the data moves in with it.
            spec["privacy"]["ledger"] = f"../{LEDGER}"
            project.spec_file = project.out / SPEC
            project.write_spec(spec)
            return [str(project.out), "holds the release spec"]
        spec["inputs"]["admissions"]["path"] = f"{PACKAGE}/{DATA}"
        project.write_spec(spec)
        return [str(project.out), "holds the input inputs.admissions"]

    return build


def destination_inside_the_input_folder(project: Project) -> list[str]:
    folder = project.root / "parts"
    folder.mkdir()
    pl.read_csv(project.data_path).write_parquet(folder / "part-0.parquet")
    spec = project.spec()
    spec["inputs"]["admissions"].update(path="parts", format="parquet")
    project.write_spec(spec)
    project.out = folder / "package"
    return [str(project.out), "is inside the input inputs.admissions"]


def destination_inside_a_package(project: Project) -> list[str]:
    """A folder inside the earlier package: a release there would break its checksums."""
    package = project.out
    project.out = package / "data" / "nested"
    return [str(project.out), f"is inside the package {package}"]


def another_release_over_the_package(project: Project) -> list[str]:
    """Another release's id: its package would be archived as this release's."""
    spec = project.spec()
    old = spec["release"]["id"]
    spec["release"]["id"] = "another-release"
    spec["release"]["version"] = "0.2.0"
    spec["privacy"]["dataset"] = old  # the same data: the ledger's cap goes on
    project.write_spec(spec)
    return [str(project.out), f"holds the release '{old}', not 'another-release'"]


def destination_is_the_root(project: Project) -> list[str]:
    project.out = Path("/")
    return ["/: is the root of a file system"]


def destination_is_a_fifo(project: Project) -> list[str]:
    project.out = project.root / "pipe"
    os.mkfifo(project.out)
    return [str(project.out), "exists and is a named pipe (FIFO)"]


def destination_link_above(project: Project) -> list[str]:
    """A link on any component of the path, not only the last."""
    (project.root / "real").mkdir()
    (project.root / "link").symlink_to(project.root / "real", target_is_directory=True)
    project.out = project.root / "link" / "deeper" / "package"
    return [str(project.root / "link"), "symlink"]


def restate(package_dir: Path, *, descriptor_too: bool = True) -> None:
    """Restate the descriptor's hashes, the zip and SHA256SUMS after an edit, as someone
    covering their tracks would: the package then validates."""
    descriptor = package_dir / "datapackage.json"
    if descriptor_too:
        meta = json.loads(descriptor.read_text(encoding="utf-8"))
        for entry in [*meta["resources"], *meta.get("files", [])]:
            data = (package_dir / entry["path"]).read_bytes()
            entry["bytes"] = len(data)
            entry["hash"] = "sha256:" + hashlib.sha256(data).hexdigest()
        descriptor.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for archive_path in package_dir.glob("*.zip"):
        with zipfile.ZipFile(archive_path) as archive:
            names = [info.filename for info in archive.infolist()]
        folder = archive_path.stem + "/"
        with zipfile.ZipFile(archive_path, "w") as archive:
            for name in names:
                if not name.endswith("/"):
                    archive.write(package_dir / name.removeprefix(folder), name)
    listed = [
        path
        for path in sorted(package_dir.rglob("*"))
        if path.is_file() and path.name != "SHA256SUMS"
    ]
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(package_dir).as_posix()}"
        for p in listed
    ]
    (package_dir / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


def previous_package(change: str) -> Builder:
    """The earlier package changed after it was published, in one way."""

    def build(project: Project) -> list[str]:
        out = project.out
        by_ward = out / "data" / "admissions-by-ward.csv"
        if change == "stray file":
            (out / "raw-export.csv").write_text(csv_text(private_rows(5)), encoding="utf-8")
            return [str(out / "raw-export.csv"), "not listed in SHA256SUMS"]
        if change == "stray file listed":
            shutil.copy(project.data_path, out / "microdata.csv")
            restate(out)
            return [str(out / "microdata.csv"), "is not a file of the package"]
        if change == "failed checksum":
            by_ward.write_bytes(by_ward.read_bytes().replace(b"Maternity", b"Maternitx"))
            return [str(by_ward), "checksum"]
        if change == "edited figures":
            # A shown value moved to its interval's upper bound: the package stays valid.
            rows = [row.split(",") for row in by_ward.read_text(encoding="utf-8").splitlines()]
            row = next(row for row in rows[1:] if row[1] and row[1] != row[4])
            row[1] = row[4]
            by_ward.write_text("\n".join(map(",".join, rows)) + "\n", encoding="utf-8")
            restate(out)
            return [str(by_ward), "differs from version 0.1.0 as released"]
        if change == "version escapes":
            descriptor = out / "datapackage.json"
            meta = json.loads(descriptor.read_text(encoding="utf-8"))
            meta["version"] = "../../../x"
            descriptor.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            restate(out)
            return [str(descriptor), "version"]
        if change == "link to the data":
            by_ward.unlink()
            by_ward.symlink_to(project.data_path)
            return [str(by_ward), "symbolic link"]
        if change == "pipe":
            os.mkfifo(out / "data" / "pipe.csv")
            return [str(out / "data" / "pipe.csv"), "named pipe"]
        if change == "stray file listed in a folder":
            (out / "exports").mkdir()
            shutil.copy(project.data_path, out / "exports" / "microdata.csv")
            restate(out)
            return [str(out / "exports" / "microdata.csv"), "is not a file of the package"]
        if change == "stray file in the archive":
            (out / "archive" / "0.0.1").mkdir(parents=True)
            shutil.copy(project.data_path, out / "archive" / "0.0.1" / "microdata.csv")
            restate(out)
            return [str(out / "archive" / "0.0.1"), "has no SHA256SUMS of its own"]
        if change == "no zip":
            (zipped,) = out.glob("*.zip")
            zipped.unlink()
            restate(out)
            return [str(zipped), "missing"]
        if change == "a key twice in the descriptor":
            descriptor = out / "datapackage.json"
            text = descriptor.read_text(encoding="utf-8")
            descriptor.write_text(text.replace('"name":', '"name": "x", "name":', 1), "utf-8")
            restate(out, descriptor_too=False)
            return [str(descriptor), "the key 'name' appears twice"]
        (out / "SHA256SUMS").unlink()
        return [str(out / "SHA256SUMS"), "missing"]

    return build


def hostile_cases() -> list[Case]:
    deep = "\nnested: " + "[" * 20_000 + "]" * 20_000 + "\n"
    laughs = "\n".join(
        [
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]",
            *(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)),
        ]
    )
    previous = {"check": 0, "plan": 0, "release": 1}
    return [
        # The YAML itself: each was an "unexpected internal error".
        spec_text_change("list nested 20,000 deep", lambda t: t + deep, "nested more than 50"),
        spec_text_change(
            "complex key", lambda t: t + "? [a, b]\n: 1\n", "a key must be plain text"
        ),
        spec_case("impossible date", put("release.published", "2024-02-30"), "release.published: "),
        spec_text_change(
            "integer of 5,000 digits",
            lambda t: t.replace(
                "max_records_per_person: 2", "max_records_per_person: " + "9" * 5000
            ),
            "inputs.admissions.max_records_per_person: ",
        ),
        spec_text_change(
            "billion laughs", lambda t: t + laughs + "\n", "expands to more than 1,000,000"
        ),
        spec_text_change(
            "alias of itself", lambda t: t + "loop: &loop [*loop]\n", "refers to the node"
        ),
        # Losses and weights: each spent nothing but crashed or hung plan and release.
        spec_case("weight 1e308", put("tables.0.weight", 1e308), "tables[0].weight: "),
        spec_case("weight 5e-324", put("tables.0.weight", 5e-324), "tables[0].weight: "),
        spec_case("weight 1e-300", put("tables.0.weight", 1e-300), "tables[0].weight: "),
        spec_case(
            "rho 1e-300",
            as_zcdp(rho=1e-300, cap=1.0),
            "tables[0].weight: ",
            "below the least a table may get",
        ),
        spec_case(
            "epsilon 1e-300",
            put("privacy.epsilon", 1e-300),
            "tables[0].weight: ",
            "below the least a table may get",
        ),
        spec_case(
            "truncation share 1e-300",
            put("privacy.truncation_share", 1e-300),
            "privacy.truncation_share: ",
            "below the least a measurement may get",
        ),
        spec_case(
            "threshold beyond 64 bits", put("disclosure.threshold", 2**63), "disclosure.threshold: "
        ),
        # Sizes.
        spec_case("four columns of 300 keys", wide_tables, "tables[0].by: ", "8,100,000,000 cells"),
        spec_case(
            "two tables of 3,000 cells", two_tables_of_3000_cells, "inputs.admissions: ", "6,000"
        ),
        spec_case("201 tables", many_tables, "tables: ", "201 tables, more than the 200"),
        spec_case(
            "5,001 keys",
            put("categories.ward.values", keys(5001)),
            "categories.ward.values: ",
            "at most 5,000",
        ),
        # Names that clash with what the package generates.
        spec_case(
            "table named headline-shares",
            put("tables.0.name", "headline-shares"),
            "tables[0].name: ",
            "something the package generates",
        ),
        spec_case("table named index", put("tables.0.name", "index"), "tables[0].name: "),
        spec_case(
            "table named like the README's resource",
            put("tables.0.name", "readme-md"),
            "tables[0].name: ",
            "something the package generates",
        ),
        spec_case(
            "table named like a table's unrounded estimates",
            table_beside("admissions-by-ward-unrounded", unrounded_estimates=True),
            "tables[1].name: ",
            "something the package generates",
        ),
        spec_case(
            "total label is a key",
            put("disclosure.total_label", "Maternity"),
            "disclosure.total_label: ",
            "categories.ward",
        ),
        spec_case("column named value", column_named("value"), "tables[0].by[0]: ", "'value'"),
        # Text a spreadsheet would run, and text a terminal would.
        spec_case(
            "formula as a key",
            put("categories.ward.values", ['=HYPERLINK("http://x")', *WARDS[1:]]),
            "categories.ward.values[0]: ",
            "as a formula",
        ),
        spec_case(
            "negative-looking key",
            put("categories.ward.values", [*WARDS[:3], "-5 to 0"]),
            "categories.ward.values[3]: ",
            "'Minus 5 to 0'",
        ),
        spec_case(
            "formula as the total label",
            put("disclosure.total_label", "@SUM(A1:A9)"),
            "disclosure.total_label: ",
        ),
        spec_case(
            "formula as a share title", put("shares.0.title", "+cmd|' /C calc'!A0"), "shares[0]"
        ),
        spec_case(
            "formula as a column name", column_named("=cmd"), "inputs.admissions.columns.=cmd: "
        ),
        spec_case("formula as what a table counts", put("tables.0.counts", "-1+1"), "tables[0]"),
        spec_case(
            "terminal escape in a title",
            put("release.title", "Admissions\x1b[2J\x1b[1;1HValid"),
            "release.title: ",
            "control character U+001B",
        ),
        spec_case(
            "right-to-left override in a key",
            put("categories.ward.values", [*WARDS[:3], "Oncology\u202e"]),
            "categories.ward.values[3]: ",
            "invisible formatting character U+202E",
        ),
        spec_case(
            "keys that differ by a second space",
            put("categories.ward.values", [*WARDS[:2], "Day case", "Day  case"]),
            "categories.ward.values[3]: ",
            "one line with single spaces",
        ),
        spec_case(
            "keys that look the same in two scripts",
            put("categories.ward.values", [*WARDS, "Ward A", "Ward \u0391"]),
            "categories.ward.values[5]: ",
            "looks the same as 'Ward A'",
            "U+0391 (GREEK CAPITAL LETTER ALPHA)",
        ),
        spec_case(
            "a key with a Cyrillic letter among Latin ones",
            put("categories.ward.values", [*WARDS[:3], "Paedi\u0430trics"]),
            "categories.ward.values[3]: ",
            "U+0430 (CYRILLIC SMALL LETTER A)",
        ),
        spec_case(
            "no-break space in a key column's name",
            column_named("ward\u00a0name"),
            "inputs.admissions.columns.ward\u00a0name: ",
            "one line with single spaces",
        ),
        spec_case(
            "zero-width space in a title",
            put("tables.0.title", "Admissions\u200b by ward"),
            "tables[0].title: ",
            "U+200B",
        ),
        spec_text_change(
            "title tagged as binary",
            lambda t: t.replace("title: Hospital", "title: !!binary G1sySg==\n  old_title: H", 1),
            "release.title: ",
            "remove the tag",
        ),
        spec_case(
            "source path out of the folder",
            put("release.sources", [{"title": "Records", "path": "../../secret.csv"}]),
            "release.sources[0].path: ",
            "without '..'",
        ),
        spec_case(
            "source path as a javascript: address",
            put("release.sources", [{"title": "Records", "path": "javascript:alert(1)"}]),
            "release.sources[0].path: ",
            "https://",
        ),
        spec_text_change("key read as true", lambda t: t + "yes: 1\n", "put it in quotes"),
        spec_text_change("NUL in the spec", lambda t: t + "x: a\x00b\n", "U+0000"),
        spec_case(
            "key typed in two Unicode forms",
            put(
                "categories.ward.values",
                [*WARDS[:3], "Caf\u00e9", unicodedata.normalize("NFD", "Caf\u00e9")],
            ),
            "categories.ward: ",
            "listed twice",
        ),
        spec_text_change(
            "YAML key typed in two Unicode forms",
            lambda t: t + "caf\u00e9: 1\n" + unicodedata.normalize("NFD", "caf\u00e9") + ": 2\n",
            "appears twice",
        ),
        # Files that are not regular files.
        Case("data is a named pipe", data_replaced("fifo"), BAD_DATA),
        Case("data is a socket", data_replaced("socket"), BAD_DATA),
        Case("data linked from outside the spec's folder", data_linked_outside, BAD_DATA),
        Case("data is a link to itself", data_link_loop, BAD_DATA),
        Case("parquet folder holding a pipe", parquet_folder_with("fifo"), BAD_DATA),
        Case("parquet folder holding a link", parquet_folder_with("link"), BAD_DATA),
        Case("ledger is a named pipe", ledger_is_a_fifo, BAD_HISTORY),
        Case("ledger is a link to itself", ledger_is_a_link_loop, BAD_HISTORY),
        # Where the package goes.
        Case(
            "package folder holds the spec",
            destination_holds("spec"),
            BAD_DESTINATION,
            needs_history=True,
        ),
        Case(
            "package folder holds the data",
            destination_holds("data"),
            BAD_DESTINATION,
            needs_history=True,
        ),
        Case(
            "package folder inside a Parquet input",
            destination_inside_the_input_folder,
            BAD_DESTINATION,
        ),
        Case(
            "package folder inside the earlier package",
            destination_inside_a_package,
            BAD_DESTINATION,
            needs_history=True,
        ),
        Case(
            "another release over the package",
            another_release_over_the_package,
            BAD_DESTINATION,
            needs_history=True,
        ),
        Case("package folder is the root", destination_is_the_root, BAD_DESTINATION),
        Case("package folder is a pipe", destination_is_a_fifo, BAD_DESTINATION),
        Case("package folder below a link", destination_link_above, BAD_DESTINATION),
        # The package a release would replace and archive.
        *(
            Case(
                f"version {version} over a package of 0.1.0, with a new ledger",
                version_held_by_the_package(version),
                previous,
                needs_history=True,
            )
            for version in ("0.1.0", "0.1.0-rc.1")
        ),
        *(
            Case(
                f"previous package: {change}",
                previous_package(change),
                previous,
                needs_history=True,
            )
            for change in ("edited figures", *CHANGED_PACKAGES)
        ),
    ]


# The changes to an earlier package that `validate` sees (an edit restated in every hash
# is only seen against the ledger, by the next release).
CHANGED_PACKAGES = (
    "stray file",
    "stray file listed",
    "failed checksum",
    "version escapes",
    "link to the data",
    "pipe",
    "no checksums",
    "stray file listed in a folder",
    "stray file in the archive",
    "no zip",
    "a key twice in the descriptor",
)


CASES: list[Case] = [
    # The spec file itself.
    Case("spec is a directory", spec_is_a_directory, BAD_SPEC),
    spec_text_case("spec is empty", "", "expected a mapping"),
    spec_text_case("spec is a YAML list", "- release\n- tables\n", "expected a mapping"),
    spec_text_case(
        "spec is not UTF-8",
        "release:\n  title: Admissions \xe0 l'h\xf4pital\n".encode("latin-1"),
        "not UTF-8",
        "save the spec as UTF-8",
    ),
    spec_text_case(
        "unclosed quote",
        'release:\n  id: "hospital\nprivacy: {}\n',
        "invalid YAML",
        "line ",
        "fix the syntax",
    ),
    spec_text_case(
        "tab indentation", "release:\n\tid: hospital\n", "invalid YAML", "fix the syntax"
    ),
    spec_text_case(
        "duplicate YAML key",
        "privacy: {model: pure}\nprivacy: {model: zcdp}\n",
        "the key 'privacy' appears twice",
        "keep one",
    ),
    # Keys.
    spec_case("unknown top-level key", put("tabels", []), "tabels: ", "unknown key", "remove it"),
    spec_case(
        "misspelt privacy key", put("privacy.epsilom", 1.0), "privacy.epsilom: ", "unknown key"
    ),
    spec_case("missing section", drop("tables"), "tables: ", "required key is missing: add it"),
    spec_case("missing title", drop("release.title"), "release.title: ", "missing"),
    spec_case(
        "missing identifier",
        drop("inputs.admissions.identifier"),
        "inputs.admissions.identifier: ",
        "missing",
    ),
    # Types.
    spec_case("tables as a mapping", put("tables", {"by": "ward"}), "tables: "),
    spec_case("by as a string", put("tables.0.by", "ward"), "tables[0].by: "),
    spec_case(
        "bound as text",
        put("inputs.admissions.max_records_per_person", "two"),
        "inputs.admissions.max_records_per_person: ",
    ),
    spec_case("loss as yes", put("privacy.epsilon", True), "privacy.epsilon: ", "not true/false"),
    spec_case("loss as text", put("privacy.epsilon", "a lot"), "privacy.epsilon: "),
    spec_case("version as a number", put("release.version", 1.0), "release.version: "),
    spec_case("email without @", put("release.contact.email", "stats"), "release.contact.email: "),
    # The privacy loss.
    spec_case("epsilon zero", put("privacy.epsilon", 0), "privacy.epsilon: ", "greater than 0"),
    spec_case("epsilon negative", put("privacy.epsilon", -1.0), "privacy.epsilon: ", "greater"),
    spec_case("epsilon NaN", put("privacy.epsilon", float("nan")), "privacy.epsilon: "),
    spec_case(
        "epsilon infinite", put("privacy.epsilon", float("inf")), "privacy.epsilon: ", "finite"
    ),
    spec_case(
        "rho zero",
        put("privacy", {"model": "zcdp", "rho": 0.0, "cap": {"rho": 1.0}}),
        "privacy.rho: ",
        "greater than 0",
    ),
    spec_case(
        "rho negative",
        put("privacy", {"model": "zcdp", "rho": -0.5, "cap": {"rho": 1.0}}),
        "privacy.rho: ",
    ),
    spec_case(
        "rho infinite",
        put("privacy", {"model": "zcdp", "rho": float("inf"), "cap": {"rho": float("inf")}}),
        "privacy.rho: ",
        "privacy.cap.rho: ",
    ),
    spec_case(
        "rho given for pure DP",
        put("privacy.rho", 0.5),
        "privacy: ",
        "takes 'epsilon', not 'rho': remove it",
    ),
    spec_case(
        "loss above the cap", put("privacy.epsilon", 3.0), "privacy: ", "above the lifetime cap"
    ),
    spec_case("cap missing", drop("privacy.cap"), "privacy.cap: ", "missing"),
    spec_case("cap zero", put("privacy.cap", {"epsilon": 0}), "privacy.cap.epsilon: "),
    spec_case(
        "cap in the other unit", put("privacy.cap", {"rho": 2.0}), "privacy: ", "cap as 'epsilon'"
    ),
    spec_case("unknown model", put("privacy.model", "approx"), "privacy.model: "),
    spec_case("delta too large", put("privacy.delta", 0.5), "privacy.delta: "),
    spec_case("weight zero", put("tables.0.weight", 0), "tables[0].weight: "),
    spec_case(
        "bound zero",
        put("inputs.admissions.max_records_per_person", 0),
        "inputs.admissions.max_records_per_person: ",
    ),
    # Disclosure rules.
    spec_case(
        "rounding base zero", put("disclosure.rounding_base", 0), "disclosure.rounding_base: "
    ),
    spec_case(
        "rounding base negative", put("disclosure.rounding_base", -5), "disclosure.rounding_base: "
    ),
    spec_case("threshold negative", put("disclosure.threshold", -1), "disclosure.threshold: "),
    # Tables, shares, categories and columns.
    spec_case(
        "duplicate table names",
        lambda spec: spec["tables"].append(copy.deepcopy(spec["tables"][0])),
        "tables[1].name: ",
        "is used twice",
    ),
    spec_case(
        "table of an unknown input",
        put("tables.0.input", "discharges"),
        "tables[0].input: ",
        "no input named 'discharges'",
    ),
    spec_case(
        "table by the identifier",
        put("tables.0.by", ["patient_ref"]),
        "tables[0].by[0]: ",
        "declare it under inputs.admissions.columns",
    ),
    spec_case("table by a column twice", put("tables.0.by", ["ward", "ward"]), "list it once"),
    spec_case("table name not a slug", put("tables.0.name", "Admissions by ward"), "lowercase"),
    spec_case("no tables", put("tables", []), "tables: "),
    spec_case("share of an unknown table", put("shares.0.table", "beds"), "shares[0].table: "),
    spec_case(
        "share of an undeclared key",
        put("shares.0.numerator", {"ward": ["Surgery"]}),
        "shares[0].numerator.ward[0]: ",
        "'Surgery' is not a declared key",
    ),
    spec_case(
        "category key listed twice",
        put("categories.ward.values", ["Maternity", "Maternity"]),
        "categories.ward: ",
        "listed twice",
    ),
    spec_case(
        "column of an unknown category set",
        put("inputs.admissions.columns.ward.categories", "wards"),
        "inputs.admissions.columns.ward.categories: ",
        "declare it under 'categories'",
    ),
    spec_case(
        "map without an unknown key",
        put("inputs.admissions.columns.ward.on_unknown", "map"),
        "inputs.admissions.columns.ward.on_unknown: ",
        "declare the unknown key",
    ),
    spec_case(
        "identifier also a column",
        put("inputs.admissions.columns.patient_ref", {"categories": "ward"}),
        "inputs.admissions.identifier: ",
        "remove it from columns",
    ),
    # The data (the spec is fine, so plan succeeds without reading it).
    Case("data file missing", data_is_missing, BAD_DATA),
    Case("data is a directory", data_is_a_directory, BAD_DATA),
    data_case("data is empty", "", "the file is empty", where=".path"),
    data_case("header only", HEADER + "\n", "no rows"),
    data_case(
        "semicolon delimiter",
        csv_text(private_rows(20), delimiter=";"),
        "comma-separated",
        "'ward'",
    ),
    data_case("not UTF-8", latin1_data(), "UTF-8"),
    data_case(
        "missing column",
        csv_text([row[:2] + row[3:] for row in private_rows(20)], "patient_ref,ward,notes"),
        "missing column 'outcome'",
        "expected the columns declared under inputs.admissions",
    ),
    data_case(
        "empty identifiers",
        null_identifiers(),
        "column 'patient_ref' (the identifier) has 2 empty values",
    ),
    data_case(
        "category outside the keys",
        wrong_category_values(),
        "column 'ward' has 2 values",
        "column 'outcome' has 1 values",
        "on_unknown: map",
    ),
    data_case("wrong value types", wrong_value_types(), "column 'ward' has 3 values"),
    data_case("ragged rows", ragged_rows(), "cannot be read", "check the file's format"),
    data_case(
        "unclosed quote in the data",
        csv_text(private_rows(20)) + f'{LEAK}id-q,"Maternity,Discharged,{LEAK}note\n',
        "cannot be read",
    ),
    data_case(
        "binary garbage",
        b"\x00\x01\x02" + LEAK.encode() + b"\xff\xfe\x00" * 50,
        "cannot be read as CSV (UTF-8, comma-separated, with a header row)",
        where=".path",
    ),
    data_case(
        "repeated header column",
        csv_text(private_rows(20), "patient_ref,ward,ward,notes"),
        "repeats column 'ward'",
    ),
    Case("CSV declared as parquet", data_in_parquet_is_not_parquet, BAD_DATA),
    Case("parquet with a nested column", parquet_with_a_nested_column, BAD_DATA),
    # Where the package goes.
    Case("package folder inside a file", destination_is_a_file_path, BAD_DESTINATION),
    Case("unwritable package folder", destination_unwritable, BAD_DESTINATION),
    Case("ledger inside the package", destination_holds_the_ledger, BAD_DESTINATION),
    # The ledger and the earlier release.
    Case("ledger is a directory", ledger_is_a_directory, BAD_HISTORY),
    Case("ledger is not a ledger", ledger_is_not_a_ledger, BAD_HISTORY),
    Case("version already released", version_already_released, BAD_HISTORY, needs_history=True),
    Case("loss would pass the cap", loss_would_pass_the_cap, BAD_HISTORY, needs_history=True),
    Case("cap already spent", cap_already_spent, BAD_HISTORY, needs_history=True),
    Case(
        "model differs from the ledger",
        model_differs_from_the_ledger,
        BAD_HISTORY,
        needs_history=True,
    ),
    # Options.
    Case(
        "target for an unknown table",
        lambda project: ["--target beds=10", "no table named 'beds'"],
        {"plan": 1},
        options={"plan": ("--target", "beds=10")},
    ),
    Case(
        "target with a negative margin",
        lambda project: ["--target admissions-by-ward=-3", "positive margin"],
        {"plan": 1},
        options={"plan": ("--target", "admissions-by-ward=-3")},
    ),
    *hostile_cases(),
]


def runs() -> Iterator[Any]:
    for case in CASES:
        for command in case.exits:
            yield pytest.param(case, command, id=f"{case.name} / {command}")
            if command == "release" and not case.needs_history:
                yield pytest.param(case, "release-fresh", id=f"{case.name} / release-fresh")


def test_the_corpus_is_large_and_named_uniquely() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 40


def command_line(project: Project, case: Case, command: str) -> list[str | Path]:
    name = command.removesuffix("-fresh")
    args: list[str | Path] = [name, project.spec_path, *case.options.get(name, ())]
    if name == "release":
        args += ["--out", project.out]
    return args


@pytest.mark.parametrize(("case", "command"), list(runs()))
def test_bad_input(project: Project, case: Case, command: str, noise_draws: list[object]) -> None:
    # Fails when a command accepts the bad input, crashes, shows a traceback or a private
    # value, writes anything, draws noise or changes the ledger.
    if command == "release-fresh":
        project.forget_history()
    fragments = case.build(project)
    before, ledger_before = snapshot(project.root), ledger_state(project.ledger_path)

    result = invoke(*command_line(project, case, command))

    expected = case.exits[command.removesuffix("-fresh")]
    if expected == 0:
        assert result.exit_code == 0, result.output
        assert "Error" not in result.stderr
    else:
        assert_refused(result, expected, fragments)
    assert_no_leak(result)
    assert snapshot(project.root) == before
    assert ledger_state(project.ledger_path) == ledger_before
    assert noise_draws == []


@pytest.mark.parametrize("change", CHANGED_PACKAGES)
def test_validate_refuses_a_package_the_next_release_would_refuse(
    project: Project, change: str
) -> None:
    # Fails if `validate` calls valid a package that the next release refuses to replace
    # or archive (a stray file listed in SHA256SUMS only, a version that is a path, ...).
    fragments = previous_package(change)(project)

    result = invoke("validate", project.out)

    assert_refused(result, 1, fragments)
    assert_no_leak(result)


def site_below_a_link(project: Project) -> tuple[Path, list[str]]:
    (project.root / "real").mkdir()
    (project.root / "link").symlink_to(project.root / "real", target_is_directory=True)
    return project.root / "link" / "site", [str(project.root / "link"), "symbolic link"]


def site_inside_the_package(project: Project) -> tuple[Path, list[str]]:
    return project.out / "site", [str(project.out / "site"), "is inside the package"]


def site_around_the_package(project: Project) -> tuple[Path, list[str]]:
    """A folder an earlier `site` built, into which a package was later released."""
    site = project.root / "site"
    site.mkdir()
    (site / ".publisher-site").write_text(site_build.SITE_MARKER_TEXT, encoding="utf-8")
    shutil.move(project.out, site / PACKAGE)
    project.out = site / PACKAGE
    return site, [str(site), "holds the package"]


@pytest.mark.parametrize(
    "destination",
    [site_below_a_link, site_inside_the_package, site_around_the_package],
    ids=["below a link", "inside the package", "around the package"],
)
def test_site_refuses_a_folder_it_must_not_write(
    project: Project, destination: Callable[[Project], tuple[Path, list[str]]]
) -> None:
    # Fails if `site --out` writes through a link, adds files to the package it reads
    # (which then fails validation), or would replace a folder holding that package.
    out, fragments = destination(project)
    before = snapshot(project.root)

    result = invoke("site", project.out, "--out", out)

    assert_refused(result, 1, fragments)
    assert snapshot(project.root) == before


# --- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["release"],
        ["release", "{spec}", "--out"],
        ["release", "{spec}", "--bogus"],
        ["release", "{spec}", "{spec}"],
        ["check", "{spec}", "--out", "{package}"],
        ["plan", "{spec}", "--target"],
        ["budget", "--ledger"],
        ["validate", "{package}", "--strict"],
        ["site", "{package}", "--out"],
    ],
    ids=" ".join,
)
def test_usage_errors_exit_2_and_change_nothing(
    project: Project, args: list[str], noise_draws: list[object]
) -> None:
    # Fails if a mistyped command line releases, or is reported as anything but usage.
    before, ledger_before = snapshot(project.root), ledger_state(project.ledger_path)
    filled = [arg.format(spec=project.spec_path, package=project.out) for arg in args]

    result = invoke(*filled)

    assert result.exit_code == 2, result.output
    assert "Error: " in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(project.root) == before
    assert ledger_state(project.ledger_path) == ledger_before
    assert noise_draws == []


# --- bad input that must be accepted ----------------------------------------------------------


def bom(project: Project) -> None:
    project.data_path.write_bytes(b"\xef\xbb\xbf" + project.data_path.read_bytes())


def extra_columns(project: Project) -> None:
    rows = [[*row, f"{LEAK}postcode-{index}"] for index, row in enumerate(private_rows())]
    project.data_path.write_text(csv_text(rows, HEADER + ",postcode"), encoding="utf-8")


def mapped_outcomes(project: Project) -> None:
    rows = private_rows()
    for index in range(0, len(rows), 7):
        rows[index][2] = f"{LEAK}outcome-{index}"
    rows[1][2] = ""
    project.data_path.write_text(csv_text(rows), encoding="utf-8")
    spec = project.spec()
    spec["inputs"]["admissions"]["columns"]["outcome"]["on_unknown"] = "map"
    project.write_spec(spec)


def header_over_a_megabyte(project: Project) -> None:
    """130,000 undeclared columns first (a 2 MB header), the declared ones at its end."""
    padding = [f"{LEAK}unused_column_{index}" for index in range(130_000)]
    lines = [",".join([*padding, HEADER])]
    lines += [",".join([""] * len(padding) + row) for row in private_rows()]
    project.data_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def keys_in_another_unicode_form(project: Project) -> None:
    """The spec's key "Maternité" in NFC, the data's in NFD: one key, not an unknown one."""
    composed = "Maternit\u00e9"
    spec = project.spec()
    wards = spec["categories"]["ward"]["values"]
    wards[wards.index("Maternity")] = composed
    spec["shares"][0]["numerator"]["ward"] = [composed]
    project.write_spec(spec)
    decomposed = unicodedata.normalize("NFD", composed)
    rows = [
        [ref, decomposed if ward == "Maternity" else ward, *rest]
        for ref, ward, *rest in private_rows()
    ]
    project.data_path.write_text(csv_text(rows), encoding="utf-8")


def yaml_merge_keys(project: Project) -> None:
    """A second table written as the first merged in (`<<: *first`) with its own name."""
    text = project.spec_path.read_text(encoding="utf-8")
    text = text.replace("tables:\n- name:", "tables:\n- &first\n  name:", 1)
    text = text.replace("shares:", "- <<: *first\n  name: by-outcome\n  by: [outcome]\nshares:", 1)
    project.spec_path.write_text(text, encoding="utf-8")


def plain_negative_number_as_key(project: Project) -> None:
    """A key that is a plain number is not a formula, even with a minus sign."""
    spec = project.spec()
    spec["categories"]["ward"]["values"] = ["-5", *WARDS[1:]]
    project.write_spec(spec)
    rows = [[ref, "-5" if ward == WARDS[0] else ward, *rest] for ref, ward, *rest in private_rows()]
    project.data_path.write_text(csv_text(rows), encoding="utf-8")


@pytest.mark.parametrize(
    "change",
    [
        bom,
        extra_columns,
        mapped_outcomes,
        header_over_a_megabyte,
        keys_in_another_unicode_form,
        plain_negative_number_as_key,
        yaml_merge_keys,
    ],
    ids=[
        "byte order mark",
        "extra columns",
        "outside values mapped to the unknown key",
        "header over a megabyte",
        "keys in another Unicode form",
        "a plain negative number as a key",
        "YAML merge keys",
    ],
)
def test_accepted_input_releases_without_a_trace_of_private_values(
    project: Project, change: Callable[[Project], None]
) -> None:
    # Fails if a harmless difference is refused, or a private value reaches the package.
    project.forget_history()
    change(project)

    checked = invoke("check", project.spec_path)
    released = invoke("release", project.spec_path, "--out", project.out)

    assert checked.exit_code == 0, checked.output
    assert released.exit_code == 0, released.output
    assert released.stderr == ""
    for result in (checked, released):
        assert_no_leak(result)
    assert package.validate(project.out) == []
    for path in project.out.rglob("*"):
        if path.is_file():
            assert LEAK.encode() not in path.read_bytes(), path
    (record,) = ledger.Ledger(project.ledger_path).spends()
    assert record.status == "committed"


def test_a_revision_that_breaks_a_table_down_anew_releases(project: Project) -> None:
    # Fails if a new version of the same period, whose table keeps its name but is broken
    # down by another column, cannot be compared with the version it revises (it stopped
    # with an internal error: `check`, which has no package to compare with, passed).
    spec = project.spec()
    spec["tables"][0]["by"] = ["outcome"]
    spec["shares"] = []
    project.write_spec(spec)

    result = invoke("release", project.spec_path, "--out", project.out)

    assert result.exit_code == 0, result.output
    assert package.validate(project.out) == []
    table = pl.read_csv(project.out / "data" / "admissions-by-ward.csv", infer_schema=False)
    shown = table.filter(pl.col("value").is_not_null())
    assert shown.height and shown["marker"].to_list() == ["[r]"] * shown.height


# --- a failure after the noise was drawn -------------------------------------------------------


@pytest.fixture
def full_disk(project: Project) -> Iterator[list[Path]]:
    """The disk fills up while the package is written, after the loss was reserved and the
    noise drawn: the first CSV is half written, then ENOSPC."""
    written: list[Path] = []
    real_write_csv = pl.DataFrame.write_csv

    def write_csv(self: pl.DataFrame, file: Any = None, **kwargs: Any) -> Any:
        if ".staging-" not in str(file):  # the dry run, before the spend: a disk with room
            return real_write_csv(self, file, **kwargs)
        written.append(Path(file))
        Path(file).write_text(real_write_csv(self.head(1), **kwargs), encoding="utf-8")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    project.monkeypatch.setattr(pl.DataFrame, "write_csv", write_csv)
    yield written
    project.monkeypatch.setattr(pl.DataFrame, "write_csv", real_write_csv)


def test_a_full_disk_fails_cleanly_and_the_drawn_noise_stays_spent(
    project: Project, full_disk: list[Path]
) -> None:
    # Fails if the half-written package replaces the earlier one, if anything is left in
    # it, or if the ledger forgets a release whose noise was drawn.
    before = snapshot(project.out)
    siblings = set(project.root.iterdir())

    result = invoke("release", project.spec_path, "--out", project.out)

    assert full_disk, "the package was never written: the simulation did not happen"
    assert result.exit_code == 1, result.output
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    assert_no_leak(result)
    assert snapshot(project.out) == before
    assert package.validate(project.out) == []
    assert set(project.root.iterdir()) == siblings  # the staging folder is gone
    book = ledger.Ledger(project.ledger_path)
    records = [(r.version, r.status, r.failure) for r in book.spends()]
    assert records == [("0.1.0", "committed", None), ("0.2.0", "failed", "OSError")]
    assert book.spent("hospital-admissions-test") == pytest.approx(2.0)


def test_a_full_disk_is_explained(project: Project, full_disk: list[Path]) -> None:
    result = invoke("release", project.spec_path, "--out", project.out)

    assert_refused(result, 1, [str(project.out.parent), "space", "new release.version"])
    assert "unexpected internal error" not in result.stderr


# --- what the library does not refuse yet -------------------------------------------------------


def _refused_before_anything_is_spent(project: Project, result: Result, *fragments: str) -> None:
    assert_refused(result, 1, list(fragments))
    assert_no_leak(result)
    assert not project.out.exists() or package.validate(project.out) == []


def test_an_absurd_rho_is_refused_before_anything_is_spent(project: Project) -> None:
    project.forget_history()
    spec = project.spec()
    spec["privacy"] = {
        "model": "zcdp",
        "rho": 1e9,
        "cap": {"rho": 1e10},
        "units": {"patient": {"title": "patient"}},
    }
    project.write_spec(spec)

    checked = invoke("check", project.spec_path)
    released = invoke("release", project.spec_path, "--out", project.out)

    _refused_before_anything_is_spent(project, checked, "privacy.rho")
    _refused_before_anything_is_spent(project, released, "privacy.rho")
    assert not project.ledger_path.exists()


def test_an_absurd_epsilon_is_refused_before_anything_is_spent(project: Project) -> None:
    project.forget_history()
    spec = project.spec()
    spec["privacy"] = {
        "model": "pure",
        "epsilon": 1e6,
        "cap": {"epsilon": 1e7},
        "units": {"patient": {"title": "patient"}},
    }
    project.write_spec(spec)

    checked = invoke("check", project.spec_path)
    released = invoke("release", project.spec_path, "--out", project.out)

    _refused_before_anything_is_spent(project, checked, "privacy.epsilon")
    _refused_before_anything_is_spent(project, released, "privacy.epsilon")
    assert not project.ledger_path.exists()


def test_a_large_loss_release_prints_no_foreign_lines(project: Project) -> None:
    # In a subprocess: pytest's own log handlers would swallow the line in-process.
    project.forget_history()
    spec = project.spec()
    spec["privacy"] = {
        "model": "zcdp",
        "rho": 1.0,
        "cap": {"rho": 2.0},
        "units": {"patient": {"title": "patient"}},
    }
    project.write_spec(spec)

    released = subprocess.run(
        [
            sys.executable,
            "-m",
            "publisher.cli",
            "release",
            str(project.spec_path),
            "--out",
            str(project.out),
        ],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert released.returncode == 0, released.stderr
    assert released.stderr == ""


def test_a_row_with_surplus_fields_is_refused_beside_undeclared_columns(
    project: Project,
) -> None:
    rows = private_rows(30)
    rows[4] = [*rows[4], f"{LEAK}surplus"]
    project.data_path.write_text(csv_text(rows), encoding="utf-8")

    result = invoke("check", project.spec_path)

    assert_refused(result, 1, [str(project.data_path), "cannot be read"])
    assert_no_leak(result)


def test_a_package_folder_inside_an_executable_file_is_refused_before_spending(
    project: Project,
) -> None:
    blocker = project.root / "run.sh"
    blocker.write_text("#!/bin/sh\n", encoding="utf-8")
    blocker.chmod(0o755)
    ledger_before = ledger_state(project.ledger_path)

    result = invoke("release", project.spec_path, "--out", blocker / "package")

    assert_refused(result, 1, [str(blocker)])
    assert ledger_state(project.ledger_path) == ledger_before


def test_a_package_folder_outside_the_project_is_the_operators_choice(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fails if --out is confined to the working directory or the spec's folder: publishing
    # into a web server's folder or a shared drive is normal work.
    project.forget_history()
    work = project.root / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    result = invoke("release", project.spec_path, "--out", "../../elsewhere/package")

    assert result.exit_code == 0, result.output
    assert package.validate(project.root.parent / "elsewhere" / "package") == []


def test_a_package_folder_through_a_symlink_is_refused(project: Project) -> None:
    elsewhere = project.root / "elsewhere"
    link = project.root / "link"
    link.symlink_to(elsewhere, target_is_directory=True)

    result = invoke("release", project.spec_path, "--out", link / "package")

    assert_refused(result, 1, [str(link), "symlink"])
    assert not elsewhere.exists()


def test_an_input_path_outside_the_project_is_refused(project: Project) -> None:
    specs = project.root / "specs"
    specs.mkdir()
    spec = project.spec()
    spec["inputs"]["admissions"]["path"] = f"../{DATA}"
    spec_path = specs / SPEC
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    result = invoke("check", spec_path)

    assert_refused(result, 1, ["inputs.admissions.path"])


def test_duplicate_identifiers_are_refused_where_they_must_be_unique(project: Project) -> None:
    rows = private_rows(60)
    rows[10][0] = rows[11][0] = f"{LEAK}id-twice"
    project.data_path.write_text(csv_text(rows), encoding="utf-8")
    spec = project.spec()
    spec["inputs"]["admissions"]["max_records_per_person"] = 1
    spec["inputs"]["admissions"]["unique_identifier"] = True
    project.write_spec(spec)

    result = invoke("check", project.spec_path)

    assert_refused(result, 1, [str(project.data_path), "'patient_ref'", "duplicate"])
    assert_no_leak(result)


def test_suspects_of_unknown_crimes_are_refused(tmp_path: Path) -> None:
    files = demo.generate(tmp_path / "demo", crimes=60, seed=3)
    suspects = pl.read_csv(files.suspects, infer_schema=False)
    suspects = suspects.with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(pl.lit(f"{LEAK}crime-unknown"))
        .otherwise(pl.col("crime_id"))
        .alias("crime_id")
    )
    suspects.write_csv(files.suspects)
    spec = yaml.safe_load(files.spec.read_text(encoding="utf-8"))
    spec["inputs"]["suspects"]["references"] = {"crime_id": "crimes.crime_id"}
    files.spec.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    result = invoke("check", files.spec)

    assert_refused(result, 1, [str(files.suspects), "'crime_id'", "3 "])
    assert_no_leak(result)


def test_json_plan_of_a_broken_data_file_reads_no_data(project: Project) -> None:
    # plan uses public parameters only: even unreadable data does not change its output.
    clean = invoke("plan", project.spec_path, "--json")
    project.data_path.write_bytes(b"\x00" + LEAK.encode())

    broken = invoke("plan", project.spec_path, "--json")

    assert clean.exit_code == broken.exit_code == 0, broken.output
    assert json.loads(clean.stdout) == json.loads(broken.stdout)
    assert_no_leak(broken)
