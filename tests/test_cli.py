"""The command line: exit codes, one-line errors, nothing written on failure, documented."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from publisher import pipeline
from publisher.cli import cli
from publisher.errors import printable
from tests.conftest import admissions_rows, admissions_spec, write_admissions

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
PRIVATE_MESSAGE = "secret-value"


def invoke(*args: str | Path, **kwargs: Any) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], **kwargs)


def assert_error(result: Result, *fragments: str) -> None:
    """Exit 1 with only ``Error: ...`` lines on stderr, naming every fragment."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines
    for line in lines:
        assert line.startswith("Error: "), line
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for directories)."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def write_spec(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "release.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def previous_package(folder: Path, released: pipeline.ReleaseResult) -> Path:
    """An earlier release: what a failed release must leave alone."""
    package = folder / "published"
    shutil.copytree(released.package_dir, package)
    return package


# --- bad input: one factory per case, each returns the spec and what the error must name ---


def missing_spec(folder: Path) -> tuple[Path, list[str]]:
    path = folder / "no-such-release.yaml"
    return path, [str(path), "does not exist"]


def invalid_yaml(folder: Path) -> tuple[Path, list[str]]:
    path = folder / "release.yaml"
    path.write_text("release:\n  id: x\n  title: [unclosed\nprivacy: 1\n", encoding="utf-8")
    return path, [str(path), "line 4, column 8", "invalid YAML"]


def unknown_column(folder: Path) -> tuple[Path, list[str]]:
    write_admissions(folder)
    spec = copy.deepcopy(admissions_spec())
    spec["tables"][1]["by"] = ["ward", "colour"]  # type: ignore[index]
    path = write_spec(folder, spec)
    return path, [f"{path}: tables[1].by[1]: ", "'colour'"]


def value_outside_categories(folder: Path) -> tuple[Path, list[str]]:
    data = write_admissions(folder, [*admissions_rows(100), ("P9999", "LEAKCHECK-7f3a", "Died")])
    path = write_spec(folder, admissions_spec())
    return path, [f"{data} (inputs.admissions)", "column 'ward' has 1 values", "column 'outcome'"]


def missing_data(folder: Path) -> tuple[Path, list[str]]:
    path = write_spec(folder, admissions_spec("private/admissions.csv"))
    data = folder / "private" / "admissions.csv"
    return path, [f"{data} (inputs.admissions.path)", "does not exist"]


BAD_INPUTS: dict[str, Callable[[Path], tuple[Path, list[str]]]] = {
    "missing spec": missing_spec,
    "invalid YAML": invalid_yaml,
    "unknown column": unknown_column,
    "value outside the categories": value_outside_categories,
    "missing data file": missing_data,
}


# --- check -------------------------------------------------------------------------------


def test_check_reports_a_valid_spec_and_spends_nothing(
    make_release: Callable[..., Path],
) -> None:
    spec_path = make_release()

    result = invoke("check", spec_path)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{spec_path}: valid.")
    assert "no privacy budget was spent" in result.stdout
    assert result.stderr == ""


def test_check_cautions_about_a_large_loss_but_passes(make_release: Callable[..., Path]) -> None:
    spec_path = make_release(
        admissions_spec(privacy={"model": "zcdp", "rho": 5, "cap": {"rho": 10}})
    )

    result = invoke("check", spec_path)

    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout
    assert result.stderr.startswith("Caution: ")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_check_refuses_bad_input(tmp_path: Path, case: str) -> None:
    spec_path, fragments = BAD_INPUTS[case](tmp_path)

    result = invoke("check", spec_path)

    assert_error(result, *fragments)
    assert "LEAKCHECK" not in result.output


def test_every_spec_problem_is_its_own_error_line(make_release: Callable[..., Path]) -> None:
    spec = copy.deepcopy(admissions_spec())
    spec["privacy"]["rho"] = -1  # type: ignore[index]
    spec["release"]["version"] = "one"  # type: ignore[index]
    spec["colour"] = "blue"
    spec_path = make_release(spec)

    result = invoke("check", spec_path)

    assert_error(result, "privacy.rho", "release.version", "colour")
    assert len(result.stderr.splitlines()) == 3


# --- release that must not happen --------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_failed_release_creates_no_output(
    tmp_path: Path, case: str, noise_draws: list[object]
) -> None:
    spec_path, fragments = BAD_INPUTS[case](tmp_path)
    before = set(tmp_path.iterdir())
    out_dir = tmp_path / "out"

    result = invoke("release", spec_path, "--out", out_dir)

    assert_error(result, *fragments)
    assert not out_dir.exists()
    # No staging or retired directories are left beside it either.
    assert set(tmp_path.iterdir()) == before
    assert noise_draws == []


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_failed_release_leaves_the_previous_package_intact(
    tmp_path: Path,
    case: str,
    admissions_release: pipeline.ReleaseResult,
    noise_draws: list[object],
) -> None:
    spec_path, fragments = BAD_INPUTS[case](tmp_path)
    package = previous_package(tmp_path, admissions_release)
    before = snapshot(tmp_path)

    result = invoke("release", spec_path, "--out", package)

    assert_error(result, *fragments)
    assert snapshot(tmp_path) == before
    assert noise_draws == []


def test_failed_release_does_not_create_the_default_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noise_draws: list[object]
) -> None:
    spec_path, fragments = value_outside_categories(tmp_path)
    monkeypatch.chdir(tmp_path)

    result = invoke("release", spec_path.name)

    assert_error(result, *fragments)
    assert not (tmp_path / "datapackage").exists()
    assert noise_draws == []


def test_release_refuses_a_non_empty_folder_that_is_not_a_package(
    make_release: Callable[..., Path], tmp_path: Path, noise_draws: list[object]
) -> None:
    spec_path = make_release()
    out_dir = tmp_path / "my-documents"
    (out_dir / "notes").mkdir(parents=True)
    (out_dir / "notes" / "thesis.txt").write_text("years of work\n", encoding="utf-8")
    before = snapshot(tmp_path)

    result = invoke("release", spec_path, "--out", out_dir)

    assert_error(result, str(out_dir), "not empty")
    assert snapshot(tmp_path) == before
    assert noise_draws == []


def test_release_refuses_a_file_as_the_package_folder(
    make_release: Callable[..., Path], tmp_path: Path, noise_draws: list[object]
) -> None:
    spec_path = make_release()
    out_file = tmp_path / "package.zip"
    out_file.write_bytes(b"PK\x03\x04 an earlier archive")
    before = snapshot(tmp_path)

    result = invoke("release", spec_path, "--out", out_file)

    assert_error(result, str(out_file), "file")
    assert snapshot(tmp_path) == before
    assert noise_draws == []


# --- a real release ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One real release of the admissions fixture, shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("release")
    write_admissions(folder)
    spec_path = write_spec(folder, admissions_spec())
    out_dir = folder / "package"
    result = invoke("release", spec_path, "--out", out_dir)
    return out_dir, result


def test_release_writes_a_package_and_reports_the_loss(released: tuple[Path, Result]) -> None:
    out_dir, result = released

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert f"Released 2 tables to {out_dir}" in result.stdout
    assert "Privacy loss spent: rho = 0.5 " in result.stdout
    assert "epsilon = " in result.stdout
    descriptor = json.loads((out_dir / "datapackage.json").read_text(encoding="utf-8"))
    paths = {r["path"] for r in descriptor["resources"] if r["path"].startswith("data/")}
    for table in ("admissions-by-ward", "admissions-by-ward-and-outcome"):
        assert f"data/{table}.csv" in paths
    assert {str(p.relative_to(out_dir)) for p in (out_dir / "data").glob("*.csv")} == paths
    # No identifier of the private microdata (P00000 to P00299) reaches the package.
    for path in [out_dir / "datapackage.json", *(out_dir / "data").glob("*.csv")]:
        assert not re.search(r"P\d{5}", path.read_text(encoding="utf-8")), path


def test_released_package_validates(released: tuple[Path, Result]) -> None:
    out_dir, _ = released

    result = invoke("validate", out_dir)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out_dir}: valid data package\n"


def test_validate_reports_a_corrupted_cell(released: tuple[Path, Result], tmp_path: Path) -> None:
    package = tmp_path / "package"
    shutil.copytree(released[0], package)
    csv = package / "data" / "admissions-by-ward.csv"
    header, first, *rest = csv.read_text(encoding="utf-8").splitlines()
    cells = first.split(",")
    cells[header.split(",").index("value")] = "abc"
    csv.write_text("\n".join([header, ",".join(cells), *rest]) + "\n", encoding="utf-8")

    result = invoke("validate", package)

    assert_error(result, str(csv), "Type error", "value")


def test_released_package_folder_respects_the_umask(released: tuple[Path, Result]) -> None:
    out_dir, _ = released
    umask = os.umask(0)
    os.umask(umask)

    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o777 & ~umask


def test_validate_reports_a_missing_package(tmp_path: Path) -> None:
    result = invoke("validate", tmp_path / "nothing-here")

    assert_error(result, str(tmp_path / "nothing-here" / "datapackage.json"), "not found")


# --- demo --------------------------------------------------------------------------------


def test_demo_writes_data_and_a_spec_that_checks(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"

    result = invoke("demo", "--out", out_dir, "--crimes", "60", "--seed", "7")

    assert result.exit_code == 0, result.output
    assert (out_dir / "release.yaml").is_file()
    assert list(out_dir.glob("*.csv"))
    assert str(out_dir / "release.yaml") in result.stdout
    checked = invoke("check", out_dir / "release.yaml")
    assert checked.exit_code == 0, checked.output


# --- usage and unexpected errors ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["check"],
        ["check", "release.yaml", "--bogus"],
        ["release"],
        ["release", "release.yaml", "--out"],
        ["validate", "one", "two"],
        ["demo"],
        ["demo", "--out", "x", "--crimes", "0"],
        ["demo", "--out", "x", "--seed", "many"],
        ["no-such-command"],
        ["--bogus"],
    ],
    ids=" ".join,
)
def test_usage_errors_exit_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = invoke(*args)

    assert result.exit_code == 2, result.output
    assert "Error: " in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_top_level_help_lists_every_command() -> None:
    result = invoke("--help")

    assert result.exit_code == 0
    for name in cli.commands:
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help(name: str) -> None:
    command: click.Command = cli.commands[name]

    result = invoke(name, "--help")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: cli {name} ")
    assert command.help
    assert command.help.split(".")[0].split()[0] in result.stdout


def test_version() -> None:
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.rstrip().endswith(f"version {version('publisher')}")


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_option_is_documented(name: str) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    command: click.Command = cli.commands[name]

    assert f"publisher {name}" in docs
    for param in command.params:
        if isinstance(param, click.Option):
            for option in param.opts:
                assert option in docs, f"{name} {option} is not in docs/cli.md"


@pytest.fixture
def broken_release(monkeypatch: pytest.MonkeyPatch) -> None:
    def release(
        spec_path: Path, out_dir: Path, progress: object = None, engine: object = None
    ) -> None:
        raise RuntimeError(PRIVATE_MESSAGE)

    monkeypatch.setattr(pipeline, "release", release)


@pytest.mark.usefixtures("broken_release")
def test_unexpected_errors_show_only_their_type(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path = make_release()

    result = invoke("release", spec_path, "--out", tmp_path / "out")

    assert_error(result, "RuntimeError", "PUBLISHER_DEBUG=1")
    assert len(result.stderr.splitlines()) == 1
    assert PRIVATE_MESSAGE not in result.output


@pytest.mark.usefixtures("broken_release")
def test_unexpected_errors_propagate_when_debugging(
    make_release: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = make_release()
    monkeypatch.setenv("PUBLISHER_DEBUG", "1")

    with pytest.raises(RuntimeError, match=PRIVATE_MESSAGE):
        invoke("release", spec_path, "--out", tmp_path / "out", catch_exceptions=False)


def test_interrupt_exits_130_without_a_traceback(
    make_release: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def release(
        spec_path: Path, out_dir: Path, progress: object = None, engine: object = None
    ) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "release", release)

    result = invoke("release", make_release(), "--out", tmp_path / "out")

    assert result.exit_code == 130
    assert result.stderr.startswith("Error: interrupted")
    assert "Traceback" not in result.output


def test_release_progress_is_drawn_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from publisher.cli import _progress

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    with _progress() as step:  # stderr is captured: not a terminal
        step("Reading and checking crimes", 0.5)
    assert capsys.readouterr().err == ""

    # A terminal (as rich detects it): the stage, a bar and its percentage.
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    with _progress() as step:
        step("Reading and checking crimes", 0.5)
    drawn = capsys.readouterr().err
    assert "Reading and checking crimes" in drawn
    assert "50%" in drawn

    monkeypatch.setenv("CI", "true")  # CI logs are not terminals, whatever they claim
    with _progress() as step:
        step("Reading and checking crimes", 0.5)
    assert capsys.readouterr().err == ""


# --- what a terminal would act on is shown, never acted on ------------------------------------

UNSAFE = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))] + [
    "\u061c",
    "\u200e",
    "\u200f",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
]


def test_printable_escapes_controls_and_bidirectional_overrides() -> None:
    assert printable("a\x1b[2Jb\u202ec\r\nd\x85e\u2067") == "a\\x1b[2Jb\\u202ec\\r\\nd\\x85e\\u2067"
    assert printable("Caf\u00e9 \u0627\u0644") == "Caf\u00e9 \u0627\u0644"  # letters are kept


def test_error_lines_never_carry_a_terminal_control(
    make_release: Callable[..., Path], tmp_path: Path
) -> None:
    # Fails if a spec key or a file name can clear the screen, move the cursor or reverse
    # the text of an error line (a payload once printed a fake "valid").
    spec = admissions_spec()
    spec["shares"][0]["numerator"] = {"ward": ["\u202eX\u2066Y\u2069"]}  # type: ignore[index]
    spec_path = make_release(spec)
    named = tmp_path / "\x1b[2J\x1b[1;1Hvalid.yaml"
    spec["categories"]["ward\x1b[2J"] = {"title": "T", "values": ["A"]}  # type: ignore[index]
    escaping = tmp_path / "escaping.yaml"
    escaping.write_text(yaml.safe_dump(spec), encoding="utf-8")

    results = [invoke("check", spec_path), invoke("check", named), invoke("check", escaping)]

    for result in results:
        assert result.exit_code == 1, result.output
        for line in result.stderr.splitlines():
            assert line.startswith("Error: ")
            assert not any(char in line for char in UNSAFE), repr(line)
    # Bidirectional controls are refused in spec text, at their YAML path.
    assert "numerator.ward[0]: contains the invisible formatting character U+202E" in (
        results[0].stderr
    )
    assert "\\x1b[2J\\x1b[1;1Hvalid.yaml" in results[1].stderr
    assert "categories.ward\\x1b[2J: contains the control character U+001B" in results[2].stderr


def test_progress_shows_spec_names_as_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from publisher.cli import _progress

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    with _progress() as step:
        step("Reading and checking [bold]x[/bold]\x1b[2J", None)
    drawn = capsys.readouterr().err
    assert "[bold]x[/bold]\\x1b[2J" in drawn
