"""The release, end to end: spec -> inputs -> OpenDP -> rules -> package.

Everything that can be checked is checked before any noise is drawn, so bad input
spends nothing and writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from publisher import (
    accounting,
    disclosure,
    engines,
    interrupts,
    ledger,
    package,
    postprocess,
    privacy,
    site,
    spec,
    staging,
)
from publisher import bounds as bounds_module
from publisher.errors import PackageError, PublisherError
from publisher.postprocess import ShareEstimate
from publisher.progress import Progress, quiet

__all__ = ["CheckResult", "ReleaseResult", "bounds", "check", "rehearse", "release"]


@dataclass(frozen=True)
class CheckResult:
    """A spec that passed every check, with its inputs' sizes (kept private, not published)."""

    spec: spec.ReleaseSpec
    rows: dict[str, int]


@dataclass(frozen=True)
class ReleaseResult:
    """Where a release was written and what it spent."""

    package_dir: Path
    measurements: privacy.Measurements
    shares: list[ShareEstimate]
    tables: tuple[str, ...]  # the names of the published tables


def check(spec_path: Path, progress: Progress = quiet, engine: str | None = None) -> CheckResult:
    """Validate the spec, every input against it (on the ``engine`` the release would run
    on, see :func:`engines.choose`), and that the ledger would accept the release (version
    not yet released, room under the cap). Spends nothing."""
    progress = _observed(progress)
    release_spec = spec.load(spec_path)
    with _rehearsing(release_spec, spec_path, None, progress) as rehearsed:
        checked = engines.get(engines.choose(release_spec, engine)).check(release_spec, progress)
        _preview(release_spec, spec_path, progress, checked.digests)
        rehearsed()
    return CheckResult(release_spec, dict(checked.rows))


def _preview(
    release_spec: spec.ReleaseSpec,
    spec_path: Path,
    progress: Progress,
    digests: dict[str, str] | None = None,
) -> None:
    """Whether the ledger would accept the release (version, cap), without changing it."""
    if os.path.lexists(release_spec.ledger_path):  # a broken link too: the ledger says so
        progress("Checking the ledger", None)
        book = ledger.Ledger(release_spec.ledger_path, read_only=True)
        book.preview(_spend_request(release_spec, spec_path, book, digests))


def rehearse(
    release_spec: spec.ReleaseSpec,
    spec_path: Path,
    previous: package.PreviousRelease | None,
    progress: Progress = quiet,
) -> None:
    """The dry run: build the whole package from placeholder figures of the right shape
    (:func:`privacy.placeholder`: every table and key, no data read, no noise drawn) into
    a private scratch folder, through the very functions a release uses after its
    measurements (estimates, rules, descriptor, README, spreadsheets, zip, checksums,
    validation), generate its site pages, then discard it all.

    A spec that passes it cannot fail after the spend for any reason the spec or the
    inputs cause. Raises :class:`PackageError` naming the spec and, for each problem, the
    file of the package as it would be published.
    """
    progress("Rehearsing the package with placeholder figures", None)
    placeholder = privacy.placeholder(release_spec, varied=True)
    content = _content(release_spec, placeholder, previous, quiet)
    with staging.private_folder() as scratch:
        folder = scratch / "package"
        folder.mkdir()
        try:
            package.build(content, folder)
            progress("Rehearsing the site pages", None)
            site.generate_pages(folder, scratch / "pages")
        except PublisherError as error:
            raise PackageError(
                [
                    f"{spec_path}: a dry run with placeholder figures (nothing was spent) "
                    f"found the package this spec makes would fail: "
                    + problem.replace(f"{folder}/", "").replace(str(folder), "the package")
                    for problem in error.problems
                ]
            ) from None


@contextmanager
def _rehearsing(
    release_spec: spec.ReleaseSpec,
    spec_path: Path,
    previous: package.PreviousRelease | None,
    progress: Progress,
) -> Iterator[Callable[[], None]]:
    """:func:`rehearse` in a thread of its own while the block reads the inputs: the dry
    run reads none of them, so it runs beside the reading instead of after it. Yields
    the function that waits for it and raises what it found: the block calls it once the
    inputs are checked, so a problem with the inputs is still reported first. The thread
    is waited for before the block is left, whatever happens in it (its scratch folder is
    removed by then)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher-rehearsal") as pool:
        # The thread reports nothing (the display is the main thread's); at each of its
        # stages it stops if an interrupt has arrived (raised in the main thread, which
        # leaves the block and waits here).
        future = pool.submit(rehearse, release_spec, spec_path, previous, _stop_if_interrupted)

        def finished() -> None:
            if not future.done():
                progress("Rehearsing the package with placeholder figures", None)
            future.result()

        yield finished


def _stop_if_interrupted(step: str, fraction: float | None) -> None:
    interrupts.checkpoint()


def release(
    spec_path: Path, out_dir: Path, progress: Progress = quiet, engine: str | None = None
) -> ReleaseResult:
    """Run a release of ``spec_path`` into ``out_dir`` (replaced atomically on success).

    Every check comes first; the whole loss is then reserved in the ledger before any noise
    is drawn. From then on the loss is spent: a failure marks the release failed (still
    counted) and leaves the previous package in place.

    An interrupt (see :mod:`interrupts`) ends it at the next stage boundary: before the
    reservation nothing is recorded, after it the release is recorded as failed; the
    swap of the package and its commit in the ledger are never separated.

    The inputs are read, checked and counted by ``engine`` (``--engine``; by default as
    the spec's ``engine.name`` says, see :func:`engines.choose`).
    """
    progress = _observed(progress)
    release_spec = spec.load(spec_path)
    package.check_destination(out_dir)
    _check_destination_is_public(release_spec, spec_path, out_dir)
    if (out_dir / package.DESCRIPTOR).exists():
        progress("Checking the package to be replaced", None)
    previous = package.previous_release(out_dir)
    _check_previous_against_ledger(release_spec, previous)
    with (
        _rehearsing(release_spec, spec_path, previous, progress) as rehearsed,
        engines.get(engines.choose(release_spec, engine)).load(release_spec, progress) as loaded,
    ):
        # What ``check`` does, then the reserve (which checks the ledger as check's
        # preview does, and resolves a reservation whose process is gone): nothing the
        # spec or the inputs cause can fail after it.
        rehearsed()
        return _release(release_spec, spec_path, loaded, out_dir, previous, progress)


def _release(
    release_spec: spec.ReleaseSpec,
    spec_path: Path,
    loaded: engines.Loaded,
    out_dir: Path,
    previous: package.PreviousRelease | None,
    progress: Progress,
) -> ReleaseResult:
    book = ledger.Ledger(release_spec.ledger_path)
    progress("Reserving the privacy loss", None)
    # An interrupt between the reservation and the ``try`` that fails it would leave the
    # release reserved for ever: it is held back until the ``try`` has begun.
    with interrupts.deferred():
        reservation = book.reserve(_spend_request(release_spec, spec_path, book, loaded.digests()))
    staged: Path | None = None
    drawn = False
    try:
        interrupts.checkpoint()
        drawn = True  # from here on, noise may have been drawn
        measurements = privacy.measure(release_spec, loaded, progress)
        interrupts.checkpoint()  # an interrupt lost in OpenDP's native code is raised here
        # OpenDP's accounting must fit what was reserved before anything is published.
        reservation.check(
            loss=measurements.total_loss,
            table_losses=measured_losses(measurements),
            unit_losses=measurements.unit_losses,
        )
        content = _content(release_spec, measurements, previous, progress)
        progress("Writing and validating the package", None)
        staged = package.stage(content, out_dir)
        interrupts.checkpoint()
        # The package in place and the ledger's record of it go together.
        with interrupts.deferred():
            package_dir = package.swap_in(staged, out_dir)
            staged = None
            book.commit(
                reservation,
                loss=measurements.total_loss,
                table_losses=measured_losses(measurements),
                unit_losses=dict(measurements.unit_losses),
                files=ledger.file_hashes(package_dir),
            )
    except BaseException as error:
        if staged is not None:
            package.discard(staged)
        with interrupts.deferred():
            book.fail(reservation, _failure_reason(error))
        if isinstance(error, interrupts.Interrupted):
            raise interrupts.Interrupted(
                error.signum,
                "nothing new was published; the release is recorded as failed in the ledger "
                + (
                    "and its loss stays spent (noise may have been drawn): release under a new "
                    "release.version"
                    if drawn
                    else "before any noise was drawn (its reservation still counts)"
                ),
            ) from None
        if isinstance(error, OSError):
            raise PackageError(
                f"{out_dir}: {error.strerror or type(error).__name__} while the package was "
                "written (for example no space left on the disk); nothing was published and "
                "the previous package is intact, but this release drew noise, so its loss is "
                "spent: fix the disk, then release under a new release.version"
            ) from None
        raise
    try:
        interrupts.checkpoint()
    except interrupts.Interrupted as error:
        raise interrupts.Interrupted(
            error.signum,
            f"the release had already finished: the package is published in {package_dir} "
            "and recorded in the ledger",
        ) from None
    return ReleaseResult(
        package_dir, measurements, content.shares, tuple(t.name for t in content.spec.tables)
    )


def _check_previous_against_ledger(
    release_spec: spec.ReleaseSpec, previous: package.PreviousRelease | None
) -> None:
    """The package to be replaced holds exactly the files the ledger recorded when it was
    committed (when this ledger released it): figures edited since, even with every hash
    restated, are refused before anything is spent, and never archived as published."""
    if previous is None or not release_spec.ledger_path.is_file():
        return
    records = ledger.Ledger(release_spec.ledger_path, read_only=True).spends()
    recorded = next(
        (
            record.files
            for record in records
            if record.status == "committed"
            and (record.release_id, record.version) == (previous.name, previous.version)
        ),
        None,
    )
    if recorded is None:
        return
    problems = []
    for path in sorted(recorded.keys() | previous.files.keys()):
        where = f"{previous.directory / path}"
        if path not in recorded:
            problems.append(f"{where}: was not part of version {previous.version} as released")
        elif path not in previous.files:
            problems.append(f"{where}: is missing, though version {previous.version} had it")
        elif recorded[path] != previous.files[path]:
            problems.append(f"{where}: differs from version {previous.version} as released")
    if problems:
        raise PackageError(
            [
                f"{problem} (the ledger {release_spec.ledger_path} recorded every file it "
                "published); restore the published package before releasing over it "
                "(nothing was spent)"
                for problem in problems
            ]
        )


def _check_destination_is_public(
    release_spec: spec.ReleaseSpec, spec_path: Path, out_dir: Path
) -> None:
    """The package folder is published whole and replaced whole: it must not hold the
    spec, an input or the ledger, nor lie inside an input folder (a Parquet table)."""
    target = out_dir.resolve()
    private = [
        ("the release spec", spec_path.resolve()),
        *(
            (f"the input inputs.{name}", release_spec.input_path(name))
            for name, source in release_spec.inputs.items()
            if source.path is not None  # a Spark table has no files here
        ),
    ]
    if release_spec.ledger_path.is_relative_to(target):
        raise PackageError(
            f"{release_spec.ledger_path} (privacy.ledger): the ledger is private and must not "
            f"be inside the published package {out_dir}; move it next to the data, or choose "
            "another --out"
        )
    for what, path in private:
        if path.is_relative_to(target):
            raise PackageError(
                f"{out_dir}: holds {what} ({path}), which is private: the package folder is "
                "published and replaced whole, so choose a folder of its own for --out"
            )
        if path.is_dir() and target.is_relative_to(path):
            raise PackageError(
                f"{out_dir}: is inside {what} ({path}): a package there would be read as "
                "part of the input; choose a folder outside it for --out"
            )


def _failure_reason(error: BaseException) -> str:
    """What the ledger records of a failure: only its kind, or our own message (a library's
    message could quote private data)."""
    if isinstance(error, interrupts.Interrupted):
        return f"interrupted by {error.name}"
    return error.problems[0] if isinstance(error, PublisherError) else type(error).__name__


def _spend_request(
    release_spec: spec.ReleaseSpec,
    spec_path: Path,
    book: ledger.Ledger,
    digests: dict[str, str] | None = None,
) -> ledger.SpendRequest:
    privacy_spec = release_spec.privacy
    planned = accounting.account(release_spec)
    return ledger.SpendRequest(
        dataset=release_spec.dataset_id,
        inputs=book.fingerprints(
            {n: release_spec.input_path(n) for n in release_spec.inputs}, digests
        ),
        release_id=release_spec.release.id,
        version=release_spec.release.version,
        model=privacy_spec.model,
        loss=privacy_spec.loss,
        table_losses={
            accounting.ledger_name(item.name, item.kind): item.allocation
            for item in planned.measurements
        },
        unit_losses=dict(planned.unit_losses),
        cap=privacy_spec.cap_loss,
        spec_hash=hashlib.sha256(spec_path.read_bytes()).hexdigest(),
        publisher_version=version("publisher"),
        opendp_version=version("opendp"),
        new_dataset_reason=privacy_spec.new_dataset_reason,
        strategies=planned.strategies,
    )


def measured_losses(measurements: privacy.Measurements) -> dict[str, float]:
    """What each measurement costs the unit it costs most, by the names the ledger keeps."""
    losses = {table.name: table.loss for table in measurements.tables}
    for design in measurements.designs:
        losses |= {query.name: max(query.unit_losses.values()) for query in design.queries}
    for item in measurements.truncation:
        losses[accounting.ledger_name(item.input, "truncation")] = max(item.unit_losses.values())
    return losses


def _content(
    release_spec: spec.ReleaseSpec,
    measurements: privacy.Measurements,
    previous: package.PreviousRelease | None,
    progress: Progress,
) -> package.ReleaseContent:
    """Everything the package publishes, from the measurements by post-processing only:
    consistent estimates, the official-statistics rules, shares and what the bounds left
    out."""
    progress("Estimating consistent tables", None)
    estimates = postprocess.consistent_estimates(release_spec, measurements)
    revises = package.revised_version(previous, release_spec.release.period) is not None
    rules = release_spec.disclosure
    published = {}
    unrounded = {}
    for table in release_spec.tables:
        order = {column: release_spec.category_of(table, column).values for column in table.by}
        with_totals = postprocess.with_totals(
            estimates[table.name],
            order=order,
            total_label=rules.total_label if table.totals else None,
            base=rules.rounding_base,
        )
        published[table.name] = disclosure.mark_status(
            disclosure.apply(
                with_totals, list(table.by), base=rules.rounding_base, threshold=rules.threshold
            ),
            list(table.by),
            provisional=release_spec.release.status == "provisional",
            previous=previous.tables.get(table.name) if previous and revises else None,
        )
        own = measurements.table(table.name)
        unrounded[table.name] = (
            with_totals
            if own is None  # measured with its input's other tables by their strategy
            else with_totals.join(
                own.noisy_counts, on=list(table.by), how="left", maintain_order="left"
            )
        )
    shares = [
        postprocess.estimate_share(share, estimates[share.table]) for share in release_spec.shares
    ]
    truncation = tuple(
        postprocess.truncation_estimate(item, rules.rounding_base)
        for item in measurements.truncation
    )
    return package.ReleaseContent(
        release_spec,
        measurements,
        published,
        shares,
        previous,
        truncation=truncation,
        unrounded=unrounded if rules.unrounded_estimates else None,
    )


def _observed(progress: Progress) -> Progress:
    """``progress`` that first raises an interrupt that arrived (see :mod:`interrupts`):
    every report is a stage boundary, between batches of rows and between OpenDP calls."""

    def report(step: str, fraction: float | None) -> None:
        interrupts.checkpoint()
        progress(step, fraction)

    return report


def bounds(
    spec_path: Path, loss: float, progress: Progress = quiet, engine: str | None = None
) -> bounds_module.BoundsReport:
    """``publisher bounds``: spend ``loss`` (recorded in the ledger, like a release) to
    measure what candidate per-person bounds would leave out, and report it."""
    release_spec = spec.load(spec_path)
    limit = spec.MAX_LOSS[release_spec.privacy.loss_name]
    if not (math.isfinite(loss) and 0 < loss <= limit):
        raise PublisherError(
            f"--loss {loss:g}: expected a positive {release_spec.privacy.loss_name} of at "
            f"most {limit:g}; a small part of the release's loss is usually enough"
        )
    plan = privacy.bounds_plan(release_spec, loss)
    if not plan:
        raise PublisherError(
            f"{spec_path}: no input has a bound to choose (each person has one row in every "
            "input with a table)"
        )
    with engines.get(engines.choose(release_spec, engine)).load(release_spec, progress) as loaded:
        book = ledger.Ledger(release_spec.ledger_path)
        request = dataclasses.replace(
            _spend_request(release_spec, spec_path, book, loaded.digests()),
            kind="bounds",
            version="bounds-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
            loss=loss,
            table_losses={
                accounting.ledger_name(item.name, "bounds"): item.allocation for item in plan
            },
            unit_losses=accounting.unit_totals(item.unit_losses for item in plan),
        )
        progress("Reserving the privacy loss", None)
        with interrupts.deferred():
            reservation = book.reserve(request)
        try:
            progress("Measuring the bounds", None)
            measured = privacy.measure_bounds(release_spec, loaded, plan)
            spent = {accounting.ledger_name(item.name, "bounds"): item.loss for item in plan}
            book.commit(
                reservation,
                loss=max(request.unit_losses.values()),
                table_losses=spent,
                unit_losses=request.unit_losses,
                files={},
            )
        except BaseException as error:
            with interrupts.deferred():
                book.fail(reservation, _failure_reason(error))
            raise
    return bounds_module.report(release_spec, loss, measured)
