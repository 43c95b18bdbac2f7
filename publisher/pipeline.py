"""The release, end to end: spec -> inputs -> OpenDP -> rules -> package.

Everything that can be checked is checked before any noise is drawn, so bad input
spends nothing and writes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import polars as pl

from publisher import disclosure, ingest, ledger, package, postprocess, privacy, spec
from publisher.errors import PackageError, PublisherError
from publisher.postprocess import ShareEstimate
from publisher.progress import Progress, quiet

__all__ = ["CheckResult", "ReleaseResult", "check", "release"]


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


def check(spec_path: Path, progress: Progress = quiet) -> CheckResult:
    """Validate the spec, every input against it, and that the ledger would accept the
    release (version not yet released, room under the cap). Spends nothing."""
    release_spec = spec.load(spec_path)
    rows = dict(ingest.check(release_spec, progress))
    if release_spec.ledger_path.exists():
        progress("Checking the ledger", None)
        book = ledger.Ledger(release_spec.ledger_path, read_only=True)
        book.preview(_spend_request(release_spec, spec_path))
    return CheckResult(release_spec, rows)


def release(spec_path: Path, out_dir: Path, progress: Progress = quiet) -> ReleaseResult:
    """Run a release of ``spec_path`` into ``out_dir`` (replaced atomically on success).

    Every check comes first; the whole loss is then reserved in the ledger before any noise
    is drawn. From then on the loss is spent: a failure marks the release failed (still
    counted) and leaves the previous package in place.
    """
    release_spec = spec.load(spec_path)
    package.check_destination(out_dir)
    _check_ledger_is_private(release_spec, out_dir)
    with ingest.load(release_spec, progress) as frames:
        return _release(release_spec, spec_path, frames, out_dir, progress)


def _release(
    release_spec: spec.ReleaseSpec,
    spec_path: Path,
    frames: dict[str, pl.LazyFrame],
    out_dir: Path,
    progress: Progress,
) -> ReleaseResult:
    previous = package.previous_release(out_dir)
    book = ledger.Ledger(release_spec.ledger_path)
    progress("Reserving the privacy loss", None)
    reservation = book.reserve(_spend_request(release_spec, spec_path))
    try:
        result = _release_reserved(release_spec, frames, out_dir, reservation, previous, progress)
        book.commit(
            reservation,
            loss=result.measurements.total_loss,
            table_losses={table.name: table.loss for table in result.measurements.tables},
            files=ledger.file_hashes(result.package_dir),
        )
    except BaseException as error:
        # Only the kind of error is recorded: a message could quote private data.
        reason = error.problems[0] if isinstance(error, PublisherError) else type(error).__name__
        book.fail(reservation, reason)
        if isinstance(error, OSError):
            raise PackageError(
                f"{out_dir}: {error.strerror or type(error).__name__} while the package was "
                "written (for example no space left on the disk); nothing was published and "
                "the previous package is intact, but this release drew noise, so its loss is "
                "spent: fix the disk, then release under a new release.version"
            ) from None
        raise
    return result


def _check_ledger_is_private(release_spec: spec.ReleaseSpec, out_dir: Path) -> None:
    if release_spec.ledger_path.is_relative_to(out_dir.resolve()):
        raise PublisherError(
            f"{release_spec.ledger_path} (privacy.ledger): the ledger is private and must not "
            f"be inside the published package {out_dir}; move it next to the data"
        )


def _spend_request(release_spec: spec.ReleaseSpec, spec_path: Path) -> ledger.SpendRequest:
    privacy_spec = release_spec.privacy
    return ledger.SpendRequest(
        dataset=release_spec.dataset_id,
        fingerprint=ledger.fingerprint([release_spec.input_path(n) for n in release_spec.inputs]),
        release_id=release_spec.release.id,
        version=release_spec.release.version,
        model=privacy_spec.model,
        loss=privacy_spec.loss,
        table_losses={t.name: release_spec.table_loss(t) for t in release_spec.tables},
        cap=privacy_spec.cap_loss,
        spec_hash=hashlib.sha256(spec_path.read_bytes()).hexdigest(),
        publisher_version=version("publisher"),
        opendp_version=version("opendp"),
    )


def _release_reserved(
    release_spec: spec.ReleaseSpec,
    frames: dict[str, pl.LazyFrame],
    out_dir: Path,
    reservation: ledger.Reservation,
    previous: package.PreviousRelease | None,
    progress: Progress,
) -> ReleaseResult:
    measurements = privacy.measure(release_spec, frames, progress)
    # OpenDP's accounting must fit what was reserved before anything is published.
    reservation.check(
        loss=measurements.total_loss,
        table_losses={table.name: table.loss for table in measurements.tables},
    )

    progress("Estimating consistent tables", None)
    estimates = postprocess.consistent_estimates(release_spec, measurements)
    revises = package.revised_version(previous, release_spec.release.period) is not None
    rules = release_spec.disclosure
    published = {}
    for table in release_spec.tables:
        order = {column: release_spec.category_of(table, column).values for column in table.by}
        with_totals = postprocess.with_totals(
            estimates[table.name],
            order=order,
            total_label=rules.total_label if table.totals else None,
        )
        published[table.name] = disclosure.mark_status(
            disclosure.apply(
                with_totals, list(table.by), base=rules.rounding_base, threshold=rules.threshold
            ),
            list(table.by),
            provisional=release_spec.release.status == "provisional",
            previous=previous.tables.get(table.name) if previous and revises else None,
        )
    shares = [
        postprocess.estimate_share(share, estimates[share.table]) for share in release_spec.shares
    ]
    content = package.ReleaseContent(release_spec, measurements, published, shares, previous)
    progress("Writing and validating the package", None)
    package_dir = package.write(content, out_dir)
    return ReleaseResult(package_dir, measurements, shares)
