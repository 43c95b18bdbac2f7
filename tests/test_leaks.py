"""No raw value ever leaves the private data: not in the package, the site, the ledger, the
command output or an error message.

The data is seeded with unique marker strings (``LEAK-...``) in the identifiers, in
categorical columns (values that are mapped to the unknown key, or refused) and in
free-text columns the spec does not declare. Then every command runs, and every byte
written is scanned: the package (its CSVs, datapackage.json, documents, and the members of
its spreadsheets and zip archives), the built site (HTML, JSON search index, SVG, compressed
sitemaps), the ledger, and all stdout and stderr, of successful and of failed runs.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from publisher import demo
from publisher.cli import cli
from tests.conftest import admissions_rows, admissions_spec

LEAK = b"LEAK-"
# The demo's own identifiers, for those left unmarked: they must not appear either.
DEMO_ID = re.compile(rb"\b(?:VI|SU|CR)\d{8}\b")
# The admissions fixture's identifiers (P00000...): none may appear.
ADMISSION_ID = re.compile(rb"\bP\d{5}\b")


def marker(kind: str) -> str:
    return f"LEAK-{kind}-{uuid.uuid4().hex[:12]}"


@dataclass
class Run:
    """Everything a series of commands printed, and the folders they wrote."""

    root: Path
    outputs: dict[str, str] = field(default_factory=dict)

    def cli(self, name: str, *args: str | Path) -> int:
        """Run in-process (click's runner)."""
        result = CliRunner().invoke(cli, [str(arg) for arg in args])
        self.outputs[name] = result.stdout + result.stderr
        return result.exit_code

    def process(self, name: str, *args: str | Path) -> int:
        """Run as a real process: warnings and log lines reach its stderr too."""
        # Temporary files go where the test can check they were removed.
        (self.root / "tmp").mkdir(exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "publisher.cli", *(str(arg) for arg in args)],
            cwd=self.root,
            env={**os.environ, "TMPDIR": str(self.root / "tmp")},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        self.outputs[name] = result.stdout + result.stderr
        return result.returncode


def contents(path: Path, data: bytes | None = None) -> Iterator[tuple[str, bytes]]:
    """The bytes of a file, and of every member of a zip (xlsx, ods, zip) or gzip in it."""
    data = path.read_bytes() if data is None else data
    yield str(path), data
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                yield from contents(path / name, archive.read(name))
    elif data[:2] == b"\x1f\x8b":
        yield from contents(path.with_suffix(""), gzip.decompress(data))


def scanned(*folders: Path) -> Iterator[tuple[str, bytes]]:
    for folder in folders:
        assert folder.exists(), folder
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        for path in paths:
            if path.is_file():
                yield from contents(path)


def leaks(data: bytes, patterns: tuple[re.Pattern[bytes], ...]) -> list[str]:
    found = [LEAK.decode()] if LEAK in data else []
    return found + [match.decode() for p in patterns for match in p.findall(data)]


def assert_clean(run: Run, *folders: Path, patterns: tuple[re.Pattern[bytes], ...] = ()) -> int:
    """No marker in any output or file; returns how many files (and members) were read."""
    for name, output in run.outputs.items():
        assert not leaks(output.encode(), patterns), (name, output)
    count = 0
    for name, data in scanned(*folders):
        assert not leaks(data, patterns), name
        count += 1
    return count


# --- the admissions fixture, marked ---------------------------------------------------------


def marked_admissions(folder: Path) -> None:
    """Admissions whose identifiers, some outcomes and a notes column are all markers."""
    ids: dict[str, str] = {}
    lines = ["patient_ref,ward,outcome,notes"]
    for index, (ref, ward, outcome) in enumerate(admissions_rows()):
        ident = ids.setdefault(ref, marker("id"))
        if index % 11 == 0:
            outcome = marker("outcome")  # mapped to the unknown key
        lines.append(f'{ident},{ward},{outcome},"{marker("note")}, free text"')
    (folder / "admissions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = admissions_spec()
    spec["inputs"]["admissions"]["columns"]["outcome"]["on_unknown"] = "map"  # type: ignore[index]
    (folder / "release.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def admissions_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("admissions")
    marked_admissions(root)
    run = Run(root)
    spec = root / "release.yaml"
    assert run.cli("check", "check", spec) == 0, run.outputs
    assert run.cli("plan", "plan", spec) == 0, run.outputs
    assert run.cli("plan --json", "plan", spec, "--json") == 0, run.outputs
    assert run.process("release", "release", spec, "--out", root / "package") == 0, run.outputs
    assert run.cli("validate", "validate", root / "package") == 0, run.outputs
    assert run.cli("budget", "budget", "--spec", spec) == 0, run.outputs
    assert run.cli("budget --json", "budget", "--spec", spec, "--json") == 0, run.outputs
    assert run.process("site", "site", root / "package", "--out", root / "site") == 0, run.outputs
    return run


def test_admissions_release_site_and_ledger_hold_no_private_value(admissions_run: Run) -> None:
    # Fails if any identifier, mapped category value or free-text value reaches a file or
    # an output: e.g. a value outside the keys published as a new key, an identifier in
    # a log line, or a note copied into the spreadsheets.
    root = admissions_run.root
    files = assert_clean(
        admissions_run,
        root / "package",
        root / "site",
        root / "ledger.sqlite",
        patterns=(ADMISSION_ID,),
    )
    # The scan really read the package, its spreadsheets and the site.
    assert files > 20
    names = [name for name, _ in scanned(root / "package", root / "site")]
    assert any(name.endswith(".html") for name in names)
    assert any(name.endswith("datapackage.json") for name in names)
    assert len(admissions_run.outputs) == 8
    # The private copy of the input staged for OpenDP is gone with its folder.
    assert list((root / "tmp").iterdir()) == []


def test_the_scan_finds_a_planted_marker(admissions_run: Run, tmp_path: Path) -> None:
    # The scanner itself can fail: a marker hidden in a spreadsheet member is found.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/sharedStrings.xml", f"<t>{marker('planted')}</t>")
    (tmp_path / "book.xlsx").write_bytes(buffer.getvalue())
    (tmp_path / "sitemap.xml.gz").write_bytes(gzip.compress(b"<loc>P01234</loc>"))

    found = {name: leaks(data, (ADMISSION_ID,)) for name, data in scanned(tmp_path)}

    assert found[str(tmp_path / "book.xlsx" / "xl/sharedStrings.xml")] == ["LEAK-"]
    assert found[str(tmp_path / "sitemap.xml")] == ["P01234"]


# --- the police demo, marked ------------------------------------------------------------------


def mark_demo(files: demo.DemoFiles) -> None:
    """Replace every other identifier with a marker (consistently across the files), mark
    every crime_id, and give the crimes a free-text column."""
    frames = {
        path: pl.read_csv(path, infer_schema=False)
        for path in (files.crimes, files.victims, files.suspects)
    }
    renamed: dict[str, str] = {}
    for frame in frames.values():
        for column in ("victim_id", "suspect_id", "crime_id"):
            if column in frame.columns:
                for index, value in enumerate(frame[column].unique().sort()):
                    if column == "crime_id" or index % 2 == 0:
                        renamed.setdefault(value, marker(column))
    for path, frame in frames.items():
        ids = [c for c in ("victim_id", "suspect_id", "crime_id") if c in frame.columns]
        frame = frame.with_columns(pl.col(ids).replace(renamed))
        if path == files.crimes:
            frame = frame.with_columns(
                pl.Series("notes", [f"{marker('note')} said so" for _ in range(frame.height)])
            )
        frame.write_csv(path)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("demo")
    files = demo.generate(root / "data", crimes=300, seed=11)
    mark_demo(files)
    spec: dict[str, Any] = yaml.safe_load(files.spec.read_text(encoding="utf-8"))
    # Pure DP releases the demo's eight tables about twice as fast as zCDP; the model does
    # not change what is written.
    spec["privacy"].update({"model": "pure", "epsilon": 1.0, "cap": {"epsilon": 2.0}})
    del spec["privacy"]["rho"]
    files.spec.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    run = Run(root)
    assert run.cli("check", "check", files.spec) == 0, run.outputs
    assert run.cli("plan", "plan", files.spec) == 0, run.outputs
    assert run.process("release", "release", files.spec, "--out", root / "package") == 0, (
        run.outputs
    )
    assert run.cli("budget", "budget", "--spec", files.spec, "--json") == 0, run.outputs
    assert run.process("site", "site", root / "package", "--out", root / "site") == 0, run.outputs
    return run


def test_the_marked_demo_really_holds_markers(demo_run: Run) -> None:
    # Guards the test itself: the private inputs do contain both kinds of identifier.
    data = b"".join(path.read_bytes() for path in (demo_run.root / "data").glob("*.csv"))
    assert data.count(LEAK) > 600
    assert DEMO_ID.search(data)


def test_demo_release_site_and_ledger_hold_no_private_value(demo_run: Run) -> None:
    # Fails if a victim, suspect or crime identifier or a note reaches any file or output.
    root = demo_run.root
    files = assert_clean(
        demo_run,
        root / "package",
        root / "site",
        root / "data" / "ledger.sqlite",
        patterns=(DEMO_ID,),
    )
    assert files > 20


# --- failed runs ---------------------------------------------------------------------------------


def broken_admissions(folder: Path, kind: str) -> Path:
    """The admissions with markers where they break the input, and a valid spec."""
    rows = [[marker("id"), ward, outcome] for _, ward, outcome in admissions_rows(60)]
    header = "patient_ref,ward,outcome"
    if kind == "ward outside the keys":
        rows[5][1] = marker("ward")
        rows[6][1] = marker("ward")
    elif kind == "empty identifiers beside marked values":
        rows[5][0] = ""
        rows[5][2] = marker("outcome")
    elif kind == "marked header":
        header = f"patient_ref,{marker('column')},outcome"
    elif kind == "surplus fields":
        rows[0] = [*rows[0], marker("surplus")]
    elif kind == "unclosed quote":
        rows[3][1] = '"' + marker("quoted")
    text = "\n".join([header] + [",".join(row) for row in rows]) + "\n"
    path = folder / "admissions.csv"
    if kind == "not UTF-8":
        path.write_bytes(text.encode() + f"{marker('latin')},Caf\xe9,x\n".encode("latin-1"))
    else:
        path.write_text(text, encoding="utf-8")
    spec_path = folder / "release.yaml"
    spec_path.write_text(yaml.safe_dump(admissions_spec(), sort_keys=False), encoding="utf-8")
    return spec_path


@pytest.mark.parametrize(
    "kind",
    [
        "ward outside the keys",
        "empty identifiers beside marked values",
        "marked header",
        "surplus fields",
        "unclosed quote",
        "not UTF-8",
    ],
)
def test_failed_runs_name_no_private_value(tmp_path: Path, kind: str) -> None:
    # Fails if an error message quotes the offending value, row or header cell.
    spec_path = broken_admissions(tmp_path, kind)
    run = Run(tmp_path)

    checked = run.cli("check", "check", spec_path)
    released = run.process("release", "release", spec_path, "--out", tmp_path / "package")

    assert (checked, released) == (1, 1), run.outputs
    for output in run.outputs.values():
        assert all(line.startswith("Error: ") for line in output.splitlines()), output
    assert_clean(run)
    assert not (tmp_path / "package").exists()
    assert not (tmp_path / "ledger.sqlite").exists()


def test_a_demo_release_refused_for_marked_forces_names_none(tmp_path: Path) -> None:
    # Fails if the demo's refusal quotes a force that is not one of the 44 keys.
    files = demo.generate(tmp_path / "data", crimes=60, seed=2)
    crimes = pl.read_csv(files.crimes, infer_schema=False)
    crimes.with_columns(
        pl.when(pl.int_range(pl.len()) % 9 == 0)
        .then(pl.lit(marker("force")))
        .otherwise(pl.col("force"))
        .alias("force")
    ).write_csv(files.crimes)
    run = Run(tmp_path)

    assert run.cli("check", "check", files.spec) == 1
    assert run.process("release", "release", files.spec, "--out", tmp_path / "package") == 1

    assert "column 'force'" in run.outputs["release"]
    assert_clean(run)
