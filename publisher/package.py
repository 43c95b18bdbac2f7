"""Write the release as a Frictionless data package, validate it, then swap it into place.

The package is built in a staging directory beside the destination, validated with
frictionless, and only then renamed into place, so readers never see half a package and a
failed release leaves the previous one intact.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import frictionless
import polars as pl

from publisher import checks, notes
from publisher.disclosure import LOW, MARKERS, PROVISIONAL, REVISED
from publisher.errors import PackageError
from publisher.postprocess import ShareEstimate
from publisher.privacy import Measurements, epsilon_delta
from publisher.spec import LICENCES, ReleaseSpec, Table
from publisher.spreadsheet import MEDIATYPES, write_spreadsheets

__all__ = [
    "DESCRIPTOR",
    "SHARES_RESOURCE",
    "PreviousRelease",
    "ReleaseContent",
    "check_destination",
    "previous_release",
    "revised_version",
    "validate",
    "write",
]

DESCRIPTOR = "datapackage.json"
README = "README.md"
CHANGELOG = "CHANGELOG.md"
CHECKSUMS = "SHA256SUMS"
ARCHIVE = "archive"
SHARES_RESOURCE = "headline-shares"
PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"


@dataclass(frozen=True)
class PreviousRelease:
    """The package a release replaces: kept under ``archive/`` and compared for revisions."""

    directory: Path
    version: str
    period: str
    changelog: str | None
    tables: dict[str, pl.DataFrame]  # published tables by name, values as integers


@dataclass(frozen=True)
class ReleaseContent:
    """What a release publishes: the rules applied and the measurements they came from."""

    spec: ReleaseSpec
    measurements: Measurements
    tables: dict[str, pl.DataFrame]  # published tables by name, columns in order
    shares: list[ShareEstimate]
    previous: PreviousRelease | None = None

    @property
    def revises(self) -> str | None:
        """The version this release revises: the previous one, when for the same period."""
        return revised_version(self.previous, self.spec.release.period)

    @property
    def markers(self) -> dict[str, str]:
        """The markers this release can show, with their meanings."""
        used = [LOW]
        if self.spec.release.status == "provisional":
            used.append(PROVISIONAL)
        elif self.revises:
            used.append(REVISED)
        return {marker: MARKERS[marker] for marker in used}


def revised_version(previous: PreviousRelease | None, period: str) -> str | None:
    """The version a release of ``period`` revises: ``previous``, if it has that period."""
    if previous is None or previous.period != period:
        return None
    return previous.version


def previous_release(out_dir: Path) -> PreviousRelease | None:
    """The package currently at ``out_dir``, if there is one (read for revisions)."""
    descriptor = out_dir / DESCRIPTOR
    if not descriptor.is_file():
        return None
    try:
        meta = json.loads(descriptor.read_text(encoding="utf-8"))
        tables = {}
        for resource in meta["resources"]:
            if "table" not in resource:
                continue
            by = resource["table"]["by"]
            tables[resource["name"]] = pl.read_csv(
                out_dir / resource["path"],
                schema_overrides={**dict.fromkeys(by, pl.String), "value": pl.Int64},
            )
        changelog = out_dir / CHANGELOG
        return PreviousRelease(
            directory=out_dir,
            version=str(meta["version"]),
            period=str(meta["release"]["period"]),
            changelog=changelog.read_text(encoding="utf-8") if changelog.is_file() else None,
            tables=tables,
        )
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):
        raise PackageError(
            f"{descriptor}: the package to be replaced cannot be read; check it with "
            "`publisher validate`, or release into a new directory"
        ) from None


def check_destination(out_dir: Path) -> None:
    """Refuse, before anything is spent, a destination we could not or must not replace.

    A package whose replacement was interrupted between its two renames is put back first.
    """
    _restore_interrupted_swap(out_dir)
    link = _symlink_on(out_dir)
    if link is not None:
        raise PackageError(
            f"{out_dir}: goes through the symlink {link}; give the real directory (a release "
            "replaces the directory and must not write wherever a link points)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise PackageError(f"{out_dir}: exists and is a file; choose a directory for the package")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / DESCRIPTOR).is_file():
        raise PackageError(
            f"{out_dir}: exists, is not empty and holds no {DESCRIPTOR}; choose a new or empty "
            "directory (a release replaces the whole directory)"
        )
    parent = out_dir.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PackageError(f"{probe}: is a file, so {out_dir} cannot be made; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PackageError(f"{parent}: cannot write here; choose a directory you can write to")


def write(content: ReleaseContent, out_dir: Path) -> Path:
    """Build, validate and atomically publish the package at ``out_dir``."""
    check_destination(out_dir)
    return _publish_atomically(out_dir, lambda staging: _build(content, staging))


def _publish_atomically(out_dir: Path, build: Callable[[Path], None]) -> Path:
    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        # mkdtemp makes the directory private (0700); a published package is for everyone.
        staging.chmod(0o777 & ~_umask())
        build(staging)
        problems = validate(staging)
        if problems:
            raise PackageError(
                [f"the new package is not valid, nothing was published: {p}" for p in problems]
            )
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _symlink_on(path: Path) -> Path | None:
    """The first symbolic link on ``path`` as it is written, if any."""
    current = Path(path.anchor)
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def _restore_interrupted_swap(out_dir: Path) -> None:
    """If a swap was killed after moving the old package aside, put the newest one back."""
    target = out_dir.absolute()
    if target.exists() or not target.parent.is_dir():
        return
    retired = sorted(
        target.parent.glob(f".{target.name}.previous-*"), key=lambda path: path.stat().st_mtime
    )
    if retired and (retired[-1] / DESCRIPTOR).is_file():
        retired[-1].rename(target)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _swap(staging: Path, target: Path) -> None:
    """Replace ``target`` with ``staging``: an atomic exchange where the system has one
    (Linux renameat2), else two renames, after which a kill between them is repaired by
    the next release (see :func:`_restore_interrupted_swap`)."""
    if not target.exists():
        staging.rename(target)
        return
    if _exchange(staging, target):
        # ``staging`` now holds the previous package.
        shutil.rmtree(staging, ignore_errors=True)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.previous-", dir=target.parent))
    retired.rmdir()
    target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Atomically exchange two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    return bool(result == 0)


def _build(content: ReleaseContent, staging: Path) -> None:
    """The whole package: tables, metadata, documents, spreadsheets, the previous versions,
    a zip of this version and the checksums of everything."""
    data_dir = staging / "data"
    data_dir.mkdir()
    resources = []
    for table in content.spec.tables:
        path = data_dir / f"{table.name}.csv"
        content.tables[table.name].write_csv(path, line_terminator="\n")
        resources.append(_table_resource(content, table, path))
    if content.shares:
        path = data_dir / f"{SHARES_RESOURCE}.csv"
        _shares_frame(content.shares).write_csv(path, line_terminator="\n")
        resources.append(_shares_resource(content, path))
    descriptor = _descriptor(content, resources)

    previous = content.previous
    _write_descriptor(staging, descriptor)  # the spreadsheets are made from it
    descriptor["files"] = []
    for sheet in write_spreadsheets(staging):
        kind = sheet.suffix.removeprefix(".")
        title = "The whole release as a spreadsheet (" + (
            "OpenDocument)" if kind == "ods" else "Excel)"
        )
        about = (
            "Cover, contents, notes and one table per sheet, with the same numbers and "
            "markers as the CSV files."
        )
        descriptor["files"].append(_file_entry(sheet, title, about, kind, MEDIATYPES[kind]))
    documents = {
        README: ("Data dictionary", "Every file, column and category explained."),
        CHANGELOG: ("Release history", "Every version of this package."),
    }
    listed = [(item["path"], item["title"]) for item in descriptor["files"]]
    listed += [(name, title) for name, (title, _) in documents.items()]
    listed.append((f"{descriptor['name']}-{descriptor['version']}.zip", "This version in one zip"))
    entry = notes.changelog_entry(descriptor, revises=content.revises)
    (staging / CHANGELOG).write_text(
        notes.changelog(entry, previous.changelog if previous else None), encoding="utf-8"
    )
    (staging / README).write_text(notes.readme(descriptor, listed), encoding="utf-8")
    descriptor["files"] += [
        _file_entry(staging / name, title, about, "md", "text/markdown")
        for name, (title, about) in documents.items()
    ]
    _write_descriptor(staging, descriptor)

    if previous is not None:
        _archive(previous, staging / ARCHIVE)
    _zip(staging, staging / f"{descriptor['name']}-{descriptor['version']}.zip")
    _write_checksums(staging)


def _archive_list(content: ReleaseContent) -> list[dict[str, str]]:
    """The earlier versions kept under ``archive/``, newest first."""
    previous = content.previous
    if previous is None:
        return []
    older = previous.directory / ARCHIVE
    versions = [previous.version]
    if older.is_dir():
        versions += sorted((p.name for p in older.iterdir() if p.is_dir()), reverse=True)
    return [{"version": name, "path": f"{ARCHIVE}/{name}/{DESCRIPTOR}"} for name in versions]


def _write_descriptor(staging: Path, descriptor: dict[str, Any]) -> None:
    text = json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n"
    (staging / DESCRIPTOR).write_text(text, encoding="utf-8")


def _file_entry(path: Path, title: str, about: str, kind: str, mediatype: str) -> dict[str, Any]:
    return {
        "name": path.name.lower().replace(".", "-"),
        "path": path.name,
        "format": kind,
        "mediatype": mediatype,
        "title": title,
        "description": about,
        **_file_facts(path),
    }


def _archive(previous: PreviousRelease, archive: Path) -> None:
    """Keep every earlier version: the replaced package and the versions it kept."""
    archive.mkdir()
    older = previous.directory / ARCHIVE
    if older.is_dir():
        for version_dir in sorted(older.iterdir()):
            shutil.copytree(version_dir, archive / version_dir.name)
    shutil.copytree(
        previous.directory,
        archive / previous.version,
        ignore=lambda folder, names: [ARCHIVE] if Path(folder) == previous.directory else [],
    )


def _zip(staging: Path, target: Path) -> None:
    """This version for one-click download: everything but the archive and checksums."""
    members = sorted(
        path
        for path in staging.rglob("*")
        if path.is_file() and path.relative_to(staging).parts[0] not in (ARCHIVE, CHECKSUMS)
    )
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in members:
            archive.write(path, path.relative_to(staging).as_posix())


def _write_checksums(staging: Path) -> None:
    """SHA256SUMS of every file, in the format `sha256sum -c` reads."""
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(staging).as_posix()}"
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    ]
    (staging / CHECKSUMS).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _file_facts(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"bytes": len(data), "hash": f"sha256:{hashlib.sha256(data).hexdigest()}"}


def _csv_resource(name: str, path: Path, title: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "table",
        "path": f"data/{path.name}",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "dialect": {
            "header": True,
            "delimiter": ",",
            "lineTerminator": "\n",
            "quoteChar": '"',
            "doubleQuote": True,
        },
        "title": title,
        "description": description,
        **_file_facts(path),
    }


def _table_resource(content: ReleaseContent, table: Table, path: Path) -> dict[str, Any]:
    spec = content.spec
    rules = spec.disclosure
    noisy = content.measurements.table(table.name)
    total_label = rules.total_label if table.totals else None
    dimensions = []
    fields: list[dict[str, Any]] = []
    for column in table.by:
        category = spec.category_of(table, column)
        keys = [*category.values, *([total_label] if total_label else [])]
        dimensions.append(
            {
                "name": column,
                "title": category.title,
                "description": category.description,
                "values": list(category.values),
                "ordered": category.ordered,
                "unknown": category.unknown,
                "definitions": dict(category.definitions),
            }
        )
        fields.append(
            {
                "name": column,
                "type": "string",
                "title": category.title,
                "description": " ".join(
                    part
                    for part in (
                        category.description,
                        f"'{total_label}' rows sum all keys of this column." if total_label else "",
                    )
                    if part
                ),
                "categories": keys,
                "categoriesOrdered": category.ordered,
                "constraints": {"required": True, "enum": keys},
            }
        )
    counted = table.counts
    fields += [
        {
            "name": "value",
            "type": "integer",
            "title": f"Number of {counted}",
            "description": (
                f"Number of {counted}, with differentially private noise, rounded to the nearest "
                f"{rules.rounding_base}. Empty where a marker stands instead."
            ),
            "constraints": {"minimum": rules.rounding_base},
        },
        {
            "name": "marker",
            "type": "string",
            "title": "Marker",
            "description": "GSS marker, empty when there is none. "
            + " ".join(f"{marker}: {meaning}" for marker, meaning in content.markers.items()),
            "categories": list(content.markers),
            "constraints": {"enum": list(content.markers)},
        },
        _bound_field("lower_95", "Lower bound of the 95% interval", counted, rules.rounding_base),
        _bound_field("upper_95", "Upper bound of the 95% interval", counted, rules.rounding_base),
    ]
    resource = _csv_resource(table.name, path, table.title, table.description)
    resource["schema"] = {"fields": fields, "missingValues": [""], "primaryKey": list(table.by)}
    resource["privacy"] = {
        spec.privacy.loss_name: noisy.loss,
        **_approximate(spec, noisy.loss),
        "distribution": noisy.distribution,
        "scale": noisy.scale,
        "margin_95": noisy.margin_95,
    }
    resource["table"] = {
        "input": table.input,
        "counts": counted,
        "by": list(table.by),
        "totals": table.totals,
        "dimensions": dimensions,
    }
    return resource


def _approximate(spec: ReleaseSpec, loss: float) -> dict[str, float]:
    """A zCDP loss also stated as (epsilon, delta) at the spec's delta, by OpenDP."""
    if spec.privacy.model != "zcdp":
        return {}
    epsilon, delta = epsilon_delta(spec.privacy.model, loss, spec.privacy.delta)
    return {"epsilon": epsilon, "delta": delta}


def _bound_field(name: str, title: str, counted: str, base: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "integer",
        "title": title,
        "description": (
            f"{title} for the number of {counted}: it accounts for the noise and the "
            f"estimation, computed before rounding and rounded to the nearest {base}."
        ),
        "constraints": {"required": True, "minimum": 0},
    }


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100.0 * share, 1)


def _shares_frame(shares: list[ShareEstimate]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "share": [s.share.name for s in shares],
            "description": [s.share.title for s in shares],
            "percent": [_percent(s.estimate) for s in shares],
            "lower_95": [_percent(s.lower_95) for s in shares],
            "upper_95": [_percent(s.upper_95) for s in shares],
        },
        schema={
            "share": pl.String,
            "description": pl.String,
            "percent": pl.Float64,
            "lower_95": pl.Float64,
            "upper_95": pl.Float64,
        },
    )


def _shares_resource(content: ReleaseContent, path: Path) -> dict[str, Any]:
    names = [s.share.name for s in content.shares]
    resource = _csv_resource(
        SHARES_RESOURCE,
        path,
        "Headline shares",
        "Headline percentages computed from the unrounded estimates of one table, with "
        "95% intervals that allow for the noise in both numerator and denominator.",
    )

    def percent_field(name: str, title: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "number",
            "title": title,
            "description": f"{title}, in percent, to one decimal place.",
            "constraints": {"minimum": 0, "maximum": 100},
        }

    resource["schema"] = {
        "fields": [
            {
                "name": "share",
                "type": "string",
                "title": "Share",
                "description": "The short name of the headline share.",
                "constraints": {"required": True, "unique": True, "enum": names},
            },
            {
                "name": "description",
                "type": "string",
                "title": "Description",
                "description": "What the share measures.",
            },
            percent_field("percent", "Estimated share"),
            percent_field("lower_95", "Lower bound of the 95% interval"),
            percent_field("upper_95", "Upper bound of the 95% interval"),
        ],
        "missingValues": [""],
        "primaryKey": ["share"],
    }
    return resource


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


def _privacy_statement(content: ReleaseContent) -> str:
    spec = content.spec
    measured = content.measurements
    if measured.model == "zcdp":
        loss = (
            f"zero-concentrated differential privacy with rho = {measured.total_loss:.4g} in "
            f"total, which implies (epsilon = {measured.epsilon:.4g}, delta = "
            f"{measured.delta:.0e})-differential privacy"
        )
    else:
        loss = f"pure differential privacy with epsilon = {measured.total_loss:.4g} in total"
    units = "; ".join(
        f"in the tables from '{name}', a person is one {source.identifier} and the tables "
        f"use at most {_records(source.max_records_per_person)} per person"
        for name, source in spec.inputs.items()
        if name in measured.input_loss
    )
    return (
        f"The tables in this release were computed with {loss}, accounted by OpenDP "
        f"{measured.opendp_version}. The privacy unit is the person identified in each "
        f"input: {units}. The total bounds the privacy loss of anyone, whichever inputs "
        f"they appear in. Counts are rounded to the nearest {spec.disclosure.rounding_base} "
        f"and counts below {spec.disclosure.threshold} are shown as {LOW}."
    )


def _descriptor(content: ReleaseContent, resources: list[dict[str, Any]]) -> dict[str, Any]:
    spec = content.spec
    release = spec.release
    measured = content.measurements
    licence_title, licence_url = LICENCES[release.licence]
    loss_name = spec.privacy.loss_name
    published = release.published or date.today()
    contributors: list[dict[str, Any]] = [
        {"title": release.publisher, "roles": ["publisher"]},
        {"title": release.contact.name, "email": release.contact.email, "roles": ["contact"]},
    ]
    return {
        "$schema": PROFILE,
        "name": release.id,
        "id": f"urn:publisher:{release.id}:{release.version}",
        "title": release.title,
        "description": release.description,
        "version": release.version,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "keywords": list(release.keywords),
        "temporal": {"description": release.period},
        "spatial": {"description": release.geography or "Not stated"},
        "licenses": [{"name": release.licence, "title": licence_title, "path": licence_url}],
        "sources": [
            {k: v for k, v in source.model_dump().items() if v} for source in release.sources
        ],
        "contributors": contributors,
        "resources": resources,
        "release": {
            "tool": f"publisher {version('publisher')}",
            "opendp": measured.opendp_version,
            "period": release.period,
            "published": published.isoformat(),
            "geography": release.geography,
            "synthetic": release.synthetic,
            "status": release.status,
            "next_update": release.next_update,
            "revises": content.revises,
            "contact": {"name": release.contact.name, "email": release.contact.email},
        },
        "archive": _archive_list(content),
        "privacy": {
            "model": measured.model,
            "loss": {
                loss_name: measured.total_loss,
                "epsilon": measured.epsilon,
                "delta": measured.delta,
            },
            "units": [
                {
                    "input": name,
                    "title": source.title or name,
                    "identifier": source.identifier,
                    "max_records_per_person": source.max_records_per_person,
                    "tables": [table.name for table in spec.tables if table.input == name],
                    loss_name: measured.input_loss[name],
                    **_approximate(spec, measured.input_loss[name]),
                }
                for name, source in spec.inputs.items()
                if name in measured.input_loss
            ],
            "statement": _privacy_statement(content),
        },
        "disclosure": {
            "rounding_base": spec.disclosure.rounding_base,
            "threshold": spec.disclosure.threshold,
            "total_label": spec.disclosure.total_label,
        },
        "estimation": {
            "method": "generalised least squares",
            "description": (
                "The tables of each input are estimated together from all their noisy cells, "
                "weighted by their noise variances: the estimates agree on every shared "
                "total and margin and are unbiased. Intervals come from the estimates' "
                "covariance and the noise distribution; bounds are rounded to the base."
            ),
            "groups": [
                {"input": name, "tables": [t.name for t in spec.tables if t.input == name]}
                for name in spec.inputs
                if any(t.input == name for t in spec.tables)
            ],
        },
        "markers": content.markers,
        "shares": [
            {
                "name": s.share.name,
                "title": s.share.title,
                "statement": s.share.statement,
                "table": s.share.table,
                "numerator": {k: list(v) for k, v in s.share.numerator.items()},
                "denominator": {k: list(v) for k, v in s.share.denominator.items()},
                "estimate": s.estimate,
                "lower_95": s.lower_95,
                "upper_95": s.upper_95,
            }
            for s in content.shares
        ],
    }


def validate(package_dir: Path) -> list[str]:
    """Validate a package: frictionless (every table against its schema), the Data Package
    v2 profile and the publisher's own rules (see :mod:`publisher.checks`); one line per
    problem, empty when valid."""
    descriptor = package_dir / DESCRIPTOR
    if not descriptor.is_file():
        return [f"{descriptor}: not found; give the directory of a data package"]
    return _frictionless_problems(descriptor) + checks.check_package(package_dir)


def _frictionless_problems(descriptor: Path) -> list[str]:
    try:
        report = frictionless.validate(str(descriptor))
    except Exception as error:  # frictionless raises many kinds for unreadable descriptors
        return [f"{descriptor}: cannot be read as a data package ({type(error).__name__})"]
    problems = []
    for task in report.tasks:
        place = descriptor.parent / task.place if task.place else descriptor
        problems += [f"{place}: {task.name}: {item.message}" for item in task.errors]
    problems += [f"{descriptor}: {item.message}" for item in report.errors]
    return problems
