"""The ``publisher`` command line: a thin layer over the library.

Each command parses its options, calls one library function and prints the result.
:class:`~publisher.errors.PublisherError` becomes one ``Error: ...`` line per problem and
exit code 1; usage errors exit 2. No traceback is shown for user errors, and an unexpected
error shows only its type, since a traceback could quote private data; set
``PUBLISHER_DEBUG=1`` to see it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from publisher import interrupts
from publisher.errors import PublisherError, printable
from publisher.progress import Progress, quiet

__all__ = ["cli"]

DEFAULT_PACKAGE = Path("datapackage")


class _Group(click.Group):
    """Turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with interrupts.handled():
                return super().invoke(ctx)
        except interrupts.Interrupted as error:
            _say(f"Error: interrupted by {error.name}; {error.outcome}", err=True)
            sys.exit(error.exit_code)
        except PublisherError as error:
            for problem in error.problems:
                _say(f"Error: {problem}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except OSError as error:
            if os.environ.get("PUBLISHER_DEBUG"):
                raise
            where = f"{error.filename}: " if error.filename else ""
            _say(
                f"Error: {where}{error.strerror or type(error).__name__} (a file could not be "
                "read or written); fix the disk or permissions and try again. Nothing new was "
                "published; if the release had drawn noise, its loss is spent, so release "
                "under a new version.",
                err=True,
            )
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; nothing new was published", err=True)
            sys.exit(130)
        except Exception as error:
            if os.environ.get("PUBLISHER_DEBUG"):
                raise
            _say(
                f"Error: unexpected internal error ({type(error).__name__}); nothing new was "
                "published. Rerun with PUBLISHER_DEBUG=1 to see the traceback (it may show "
                "private data) and report it.",
                err=True,
            )
            sys.exit(1)


def _say(text: str, *, err: bool = False) -> None:
    """Print one line; paths and spec text in it are shown with controls escaped."""
    click.echo(printable(text), err=err)


_ENGINE = click.option(
    "--engine",
    type=click.Choice(["auto", "polars", "duckdb", "spark"]),
    default=None,
    help="Where the inputs are read, checked and counted (overrides the spec's engine.name): "
    "polars in memory, duckdb out of core, spark on a Spark session; auto chooses by size.",
)


@click.group(cls=_Group)
@click.version_option(package_name="publisher")
def cli() -> None:
    """Publish sensitive counts safely: differential privacy, official-statistics rules,
    a Frictionless data package and a documentation site."""


@cli.command()
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder to write."
)
@click.option("--crimes", default=4200, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=2023, show_default=True, type=int)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="CSV files, or Parquet folders written in parts (for 10 million crimes and more).",
)
def demo(out_dir: Path, crimes: int, seed: int, file_format: str) -> None:
    """Write synthetic demo microdata and a ready release.yaml into OUT."""
    from publisher import demo as demo_data

    files = demo_data.generate(out_dir, crimes=crimes, seed=seed, format=file_format)
    _say(f"Wrote synthetic demo data ({crimes:,} crimes, seed {seed}) to {out_dir}")
    _say(f"Release spec: {files.spec}")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@_ENGINE
def check(spec_path: Path, engine: str | None) -> None:
    """Check a release spec and its inputs. Spends no privacy budget."""
    from publisher import pipeline

    with _progress() as step:
        result = pipeline.check(spec_path, step, engine)
    caution = result.spec.privacy.caution
    if caution:
        _say(f"Caution: {caution}", err=True)
    _say(
        f"{spec_path}: valid. {len(result.spec.inputs)} inputs, {len(result.spec.tables)} "
        f"tables, {len(result.spec.shares)} headline shares; no privacy budget was spent."
    )


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="TABLE=MARGIN",
    help="Find the least loss that gives TABLE this 95% margin of error per cell (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(spec_path: Path, targets: tuple[str, ...], as_json: bool) -> None:
    """Show the loss split and the expected 95% margins of error, before spending anything.

    Uses the spec's public parameters only: the data is not read.
    """
    from publisher import plan as planner
    from publisher import spec as spec_module

    release_spec = spec_module.load(spec_path)
    result = planner.plan(release_spec, planner.parse_targets(release_spec, targets))
    if as_json:
        click.echo(result.to_json())
    else:
        _print(result.to_table())
    if not result.meets_targets:
        raise PublisherError(
            f"{spec_path}: the targets need {result.loss_name} = {result.total_loss:.4g} in "
            f"total, above the lifetime cap of {result.cap:g} (privacy.cap); relax a target"
        )


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--loss",
    required=True,
    type=float,
    help="The privacy loss to spend, in the spec's model (rho for zcdp, epsilon for pure).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_ENGINE
def bounds(spec_path: Path, loss: float, as_json: bool, engine: str | None) -> None:
    """Measure what candidate per-person bounds would leave out, to choose them.

    Spends LOSS from the dataset's cap (recorded in the ledger like a release): the
    counts it reports are noisy, like a release's.
    """
    from publisher import pipeline

    with _progress() as step:
        report = pipeline.bounds(spec_path, loss, step, engine)
    if as_json:
        click.echo(report.to_json())
    else:
        _print(report.to_table())


@contextmanager
def _progress() -> Iterator[Progress]:
    """The current stage and, where it is known, a bar of how much of it is done, on
    stderr when it is a terminal; silent in pipes and CI."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Display

    console = Console(stderr=True)
    if not console.is_terminal or os.environ.get("CI"):
        yield quiet
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Display(*columns, console=console, transient=True) as bar:
        stage, task = "", bar.add_task("Starting", total=None)

        def step(description: str, fraction: float | None) -> None:
            # Each stage is a task of its own, so its bar and its time start afresh; without
            # a fraction the bar pulses (the stage is running, its length unknown).
            nonlocal stage, task
            # Stage names quote spec names: shown as text, never as markup or controls.
            description = escape(printable(description))
            if description != stage:
                bar.remove_task(task)
                total = None if fraction is None else 1.0
                stage, task = description, bar.add_task(description, total=total)
            if fraction is not None:
                bar.update(task, completed=fraction)

        yield step


def _print(*renderables: Any) -> None:
    from rich.console import Console

    console = Console(width=max(120, Console().width))
    for renderable in renderables:
        console.print(renderable)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    default=DEFAULT_PACKAGE,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Package directory to write (replaced atomically).",
)
@_ENGINE
def release(spec_path: Path, out_dir: Path, engine: str | None) -> None:
    """Release the tables of SPEC as a validated data package."""
    from publisher import pipeline

    with _progress() as step:
        result = pipeline.release(spec_path, out_dir, step, engine)
    measured = result.measurements
    name = "rho" if measured.model == "zcdp" else "epsilon"
    _say(f"Released {len(result.tables)} tables to {result.package_dir}")
    _say(
        f"Privacy loss spent: {name} = {measured.total_loss:.4g} "
        f"(epsilon = {measured.epsilon:.4g}, delta = {measured.delta:.0e})"
    )


@cli.command()
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(path_type=Path),
    help="The ledger file (default: the --spec's privacy.ledger, else ./ledger.sqlite).",
)
@click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path), help="Read the ledger this spec uses."
)
@click.option("--json", "as_json", is_flag=True, help="Print the ledger as JSON.")
def budget(ledger_path: Path | None, spec_path: Path | None, as_json: bool) -> None:
    """Show what each dataset has spent of its lifetime cap, release by release."""
    from publisher import ledger
    from publisher import spec as spec_module

    if ledger_path is None:
        ledger_path = (
            spec_module.load(spec_path).ledger_path if spec_path else Path("ledger.sqlite")
        )
    report = ledger.report(ledger_path)
    if as_json:
        click.echo(report.to_json())
    else:
        _print(report.to_table())


@cli.command()
@click.argument(
    "package_dir", metavar="PACKAGE_DIR", default=DEFAULT_PACKAGE, type=click.Path(path_type=Path)
)
def validate(package_dir: Path) -> None:
    """Validate a data package with frictionless; exit 1 on any problem."""
    from publisher import package

    problems = package.validate(package_dir)
    if problems:
        raise PublisherError(problems)
    _say(f"{package_dir}: valid data package")


@cli.command()
@click.argument(
    "package_dir", metavar="PACKAGE_DIR", default=DEFAULT_PACKAGE, type=click.Path(path_type=Path)
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Build the site here instead of the project's docs/ and site/.",
)
def site(package_dir: Path, out_dir: Path | None) -> None:
    """Generate the release pages from PACKAGE_DIR and build the site (strict)."""
    from publisher import package
    from publisher import site as site_builder

    package.check_plain(package_dir)
    built = site_builder.build_site(package_dir, out_dir=out_dir)
    _say(f"Built the site from {package_dir} in {built}")


@cli.command()
@click.option(
    "--dir",
    "work_dir",
    default=Path("publisher-quickstart"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Working directory for the demo data, the package and the site.",
)
def quickstart(work_dir: Path) -> None:
    """Demo data -> release -> site, in one go."""
    from publisher import demo as demo_data
    from publisher import pipeline
    from publisher import site as site_builder

    files = demo_data.generate(work_dir / "demo-data")
    # The quickstart is a rehearsal on synthetic data: each run starts a fresh ledger, so it
    # can be run again. A real dataset's ledger is never reset.
    for stale in files.spec.parent.glob("ledger.sqlite*"):
        stale.unlink()
    _say(f"1/3 Synthetic demo data and release spec: {files.spec.parent.resolve()}")
    result = pipeline.release(files.spec, work_dir / "datapackage")
    _say(f"2/3 Validated data package: {result.package_dir}")
    built = site_builder.build_site(result.package_dir, out_dir=work_dir / "site")
    _say(f"3/3 Site: {(built / 'index.html').resolve()}")


if __name__ == "__main__":
    cli()
