"""The release, end to end: spec -> inputs -> OpenDP -> rules -> package.

Everything that can be checked is checked before any noise is drawn, so bad input
spends nothing and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from publisher import disclosure, ingest, package, postprocess, privacy, spec
from publisher.postprocess import ShareEstimate

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


def check(spec_path: Path) -> CheckResult:
    """Validate the spec and every input against it. Spends nothing."""
    release_spec = spec.load(spec_path)
    return CheckResult(release_spec, dict(ingest.check(release_spec)))


def release(spec_path: Path, out_dir: Path) -> ReleaseResult:
    """Run a release of ``spec_path`` into ``out_dir`` (replaced atomically on success)."""
    release_spec = spec.load(spec_path)
    package.check_destination(out_dir)
    frames = ingest.load(release_spec)

    measurements = privacy.measure(release_spec, frames)

    rules = release_spec.disclosure
    published = {}
    for table in release_spec.tables:
        order = {column: release_spec.category_of(table, column).values for column in table.by}
        estimates = postprocess.with_totals(
            measurements.table(table.name),
            order=order,
            total_label=rules.total_label if table.totals else None,
        )
        published[table.name] = disclosure.apply(
            estimates, list(table.by), base=rules.rounding_base, threshold=rules.threshold
        )
    shares = [
        postprocess.estimate_share(share, measurements.table(share.table))
        for share in release_spec.shares
    ]
    content = package.ReleaseContent(release_spec, measurements, published, shares)
    package_dir = package.write(content, out_dir)
    return ReleaseResult(package_dir, measurements, shares)
